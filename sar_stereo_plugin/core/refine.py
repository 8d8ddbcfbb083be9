"""Sensor-model refinement: corrections of both models from the images themselves (and a DEM).

Relative orientation: tie points between the images must close (their misclosure,
:func:`.stereo.misclosure_px`, must vanish). Absolute orientation: where a reference DEM is
given, the triangulated tie points must lie on it (their height differences, whose dependence
on a horizontal shift through the DEM's slopes is the Nuth & Kaab co-registration of DEMs);
ground control points fix heights where they are. Both are solved together by iteratively
reweighted least squares (Tukey's biweight on residuals scaled by their robust spread, widened
by how far neighbours share their errors), the Jacobian by finite differences of the geometry.

Parameters (module :mod:`.corrections`): per image an azimuth time offset and drift, a slant-range
offset and drift, and for airborne platforms a cross-track and a vertical trajectory offset. Only
those the data pin down are solved: from all of them, the rarest (in :data:`ORDER`) that is neither
known to ``DETERMINED_PX`` nor clearly away from zero goes, until none is left; "clearly" counts,
beside a term's standard deviation, how far the solution would follow a DEM misplaced horizontally
by its own accuracy (``dem_accuracy_m``). The others are held at their start and named
unobservable: with tie points alone, a common shift of both images and every slant-range term (two
range spheres always meet).
"""

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .corrections import TERMS, Corrections
from .errors import GeometryError, SettingsError, located
from .stereo import misclosure_px, triangulate

TUKEY_C = 4.685
# the order candidates are tried in: the secondary's timing first (relative orientation), then what
# only absolute control reaches
ORDER = (("secondary", "azimuth_offset"), ("secondary", "azimuth_drift"), ("reference", "azimuth_offset"),
         ("reference", "azimuth_drift"), ("secondary", "range_offset"), ("reference", "range_offset"),
         ("secondary", "range_drift"), ("reference", "range_drift"), ("secondary", "cross_track"),
         ("reference", "cross_track"), ("secondary", "vertical"), ("reference", "vertical"))
AIRBORNE_MAX_HEIGHT_M = 100_000.0  # trajectory offsets are solved for platforms below this
NEEDS_CONTROL = "needs absolute control (REFERENCE_DEM or GCPS)"
DEM_ACCURACY_M = 5.0  # a reference DEM's own horizontal accuracy by default (Copernicus GLO-30: a few metres)


@dataclass(frozen=True)
class Parameter:
    """One correction term of one image; ``px`` is the value that moves the image by one pixel."""

    role: str
    name: str
    px: float
    prior: float = 1000.0  # prior standard deviation (pixels)

    @property
    def label(self):
        return f"{self.role}.{self.name}"


def parameters(ref, sec, absolute=True):
    """(the :class:`Parameter` s to solve, in :data:`ORDER`; {label: why} of those held). Without
    absolute control only the secondary's timing is solved: the reference's is the datum, and no
    slant-range or trajectory term changes the misclosure."""
    out, held = [], {}
    for role, name in ORDER:
        model = ref if role == "reference" else sec
        half = max(0.5 * (model.rows - 1) * model.line_interval_s, model.line_interval_s)
        px = {"azimuth_offset": model.line_interval_s, "azimuth_drift": model.line_interval_s / half,
              "range_offset": model.sample_spacing_m, "range_drift": model.sample_spacing_m / half,
              "cross_track": model.sample_spacing_m, "vertical": model.sample_spacing_m}[name]
        if name in ("cross_track", "vertical") and _platform_height(model) > AIRBORNE_MAX_HEIGHT_M:
            continue
        if not absolute and (role == "reference" or not name.startswith("azimuth")):
            held[f"{role}.{name}"] = ("a common shift of both images: " if name.startswith("azimuth") else
                                      "tie points cannot see it: ") + NEEDS_CONTROL
            continue
        prior = PRIOR_PX.get(name, PRIOR_TRAJECTORY_M / model.sample_spacing_m)
        out.append(Parameter(role, name, px, prior))
    return out, held


def refined_models(ref, sec, solution):
    """Both models with the solved corrections, each naming the terms of its own that no absolute
    control could see (``Corrections.unobservable``)."""
    out = []
    for role, model in zip(("reference", "secondary"), models_at(ref, sec, solution.params, solution.x)):
        blind = tuple(name for name in TERMS if NEEDS_CONTROL in solution.unobservable.get(f"{role}.{name}", ""))
        out.append(model.with_corrections(replace(Corrections.of(model), unobservable=blind)))
    return tuple(out)


def models_at(ref, sec, params, x):
    """Both models with the values ``x`` (pixels) of the parameters ``params``."""
    return with_values(ref, "reference", params, x), with_values(sec, "secondary", params, x)


def with_values(model, role, params, x):
    """``model``'s corrections plus the values ``x`` (in pixels) of the parameters of ``role``."""
    c = Corrections.of(model)
    a, r, p = list(c.azimuth_time_s), list(c.slant_range_m), list(c.position_m)
    for param, value in zip(params, x):
        if param.role != role or not value:
            continue
        v = value * param.px
        if param.name == "azimuth_offset":
            a[0] += v
        elif param.name == "azimuth_drift":
            a[1] += v
        elif param.name == "range_offset":
            r[0] += v
        elif param.name == "range_drift":
            r[1] += v
        else:
            p[1 if param.name == "cross_track" else 2] += v
    return model.with_corrections(replace(c, azimuth_time_s=tuple(a), slant_range_m=tuple(r), position_m=tuple(p)))


# ---------------------------------------------------------------- observations
@dataclass
class Observations:
    """What the parameters are fitted to: tie points, and optionally a DEM and ground control."""

    r1: np.ndarray
    c1: np.ndarray
    r2: np.ndarray
    c2: np.ndarray
    dem: object = None  # a Dem (heights above the ellipsoid) or None
    gcps: np.ndarray = None  # (n, 3) lon, lat, height or None
    gcp_radius_m: float = 50.0
    dem_accuracy_m: float = DEM_ACCURACY_M  # the DEM's own horizontal accuracy

    cells: tuple = field(default=None, repr=False)  # DEM (row, col) of the cell each tie point falls in

    def group_by_dem_cell(self, ref, sec):
        """Note which reference-DEM cell each tie point falls in (where the models put it now)."""
        lon, lat, _, _ = triangulate(ref, self.r1, self.c1, sec, self.r2, self.c2)
        self.cells = tuple(np.round(v) for v in self.dem.lonlat_to_pixel(lon, lat))  # centres are integers

    def residuals(self, ref, sec):
        """(misclosure px, DEM height difference m or None, GCP height difference m or None) of each
        tie point (GCP: of each control point)."""
        mis = misclosure_px(ref, sec, self.r1, self.c1, self.r2, self.c2)
        if self.dem is None and self.gcps is None:
            return mis, None, None
        lon, lat, h, _ = triangulate(ref, self.r1, self.c1, sec, self.r2, self.c2)
        dz = h - self.dem.sample(lon, lat) if self.dem is not None else None
        gz = _gcp_differences(self.gcps, lon, lat, h, self.gcp_radius_m) if self.gcps is not None else None
        return mis, dz, gz


def _gcp_differences(gcps, lon, lat, h, radius_m):
    """Per ground control point: the height of the nearest triangulated tie point minus its own (NaN
    where no tie point lies within ``radius_m``)."""
    from scipy.spatial import cKDTree
    ok = np.isfinite(lon) & np.isfinite(lat) & np.isfinite(h)
    out = np.full(len(gcps), np.nan)
    if not ok.any():
        return out
    scale = np.cos(np.radians(np.nanmedian(lat[ok])))
    metres = 111_320.0
    tree = cKDTree(np.c_[lon[ok] * scale, lat[ok]] * metres)
    dist, idx = tree.query(np.c_[gcps[:, 0] * scale, gcps[:, 1]] * metres)
    near = dist <= radius_m
    out[near] = h[ok][idx[near]] - gcps[near, 2]
    return out


# ---------------------------------------------------------------- the solver
@dataclass
class Solution:
    """The solved parameters (pixels), their standard deviations, and what was held fixed."""

    params: list
    x: np.ndarray
    sd: np.ndarray
    solved: list  # indices into params
    unobservable: dict  # label -> why it was held
    iterations: int
    weights: tuple = field(repr=False, default=None)  # final Tukey weights of (misclosure, dem, gcp)
    scales: tuple = (None, None, None)  # robust spreads (px, m, m)


# prior standard deviations (pixels of image displacement): beyond any metadata error, they keep
# combinations the data do not see at zero instead of letting noise fit them, and a term solved at
# SIGNIFICANT of them is taken for what it is, a stand-in for another effect
PRIOR_PX = {"azimuth_offset": 500.0, "azimuth_drift": 100.0, "range_offset": 200.0, "range_drift": 100.0}
PRIOR_TRAJECTORY_M = 20.0  # cross-track and vertical trajectory offsets of airborne platforms
DETERMINED_PX = 0.1  # a term is solved where the data determine it to this standard deviation (pixels) ...
SIGNIFICANT = 3.0  # ... or where it is this many standard deviations away from zero ...
ABSURD_PX = 5.0  # ... but never where its standard deviation exceeds this
UNDETERMINED = f"not determined by the data (standard deviation over {DETERMINED_PX} px with the terms solved, " \
               "and not significant)"
BEYOND_PRIOR = f"beyond what such an error can be ({SIGNIFICANT:g} times its prior standard deviation): it " \
               "would stand in for another effect"


def solve(ref, sec, obs, max_iterations=50, tolerance_px=0.01):
    """The :class:`Solution` of a pair (module doc): robust least squares with weak priors. Once the
    fit settles, the noise's spatial correlation is learnt from the residuals and the terms the data
    do not determine are dropped (:meth:`_Fit.determined`); then the rest is solved again, until the
    choice holds."""
    absolute = obs.dem is not None or obs.gcps is not None
    params, held = parameters(ref, sec, absolute)
    fit = _Fit(ref, sec, obs, params)
    x = np.zeros(len(params))
    active, iterations = list(range(len(params))), 0
    for round_ in range(4):
        # the first round, with every term, only has to settle what the data determine: the rest
        # may creep along directions the priors alone hold, and is held next
        first = min(max_iterations, 12)
        iterations += _converge(fit, x, active, max_iterations if round_ else first, tolerance_px, strict=round_ > 0)
        fit.learn_correlation(x)
        kept, dropped = fit.determined(x, active)
        for k, why in dropped.items():
            held[params[k].label] = why
            x[k] = 0.0
        if kept == active:
            break
        active = kept
    return fit.solution(x, active, held, iterations)


def _converge(fit, x, which, max_iterations, tolerance_px, strict=True):
    """Gauss-Newton (IRLS) on the parameters ``which`` until the step is below ``tolerance_px``;
    updates ``x`` in place, returns the iterations taken. Not converging is an error if ``strict``."""
    for it in range(1, max_iterations + 1):
        if not which:
            return it
        step = fit.step(x, which)
        x[which] += step
        if np.max(np.abs(step), initial=0.0) < tolerance_px:
            return it
    if not strict:
        return max_iterations
    raise GeometryError(located("refinement", "solution", f"did not converge in {max_iterations} iterations; the "
                                                          "tie points may be unreliable: try another MATCHER"))


class _Fit:
    """The stacked residuals of a pair as a function of the parameter values (pixels)."""

    def __init__(self, ref, sec, obs, params):
        self.ref, self.sec, self.obs, self.params = ref, sec, obs, params
        self.inverse_prior = np.array([1.0 / p.prior ** 2 for p in params])
        self.inflation = (1.0, 1.0, 1.0)
        self._cache = (None, None)
        self._jac = (None, None, None)

    def residuals(self, x):
        if self._cache[0] is None or not np.array_equal(self._cache[0], x):
            self._cache = (x.copy(), self.evaluate(x))
        return self._cache[1]

    def evaluate(self, x):
        return self.obs.residuals(*self.models(x))

    def models(self, x):
        return models_at(self.ref, self.sec, self.params, x)

    def learn_correlation(self, x):
        """Inflate each kind's spread by how much neighbours share their errors (matcher windows
        overlap, terrain biases matches alike; a coarse DEM misses the same ridge for all the points
        near it): for the misclosure, a lag-one correlation rho on the tie-point grid makes
        ((1 + rho) / (1 - rho))^2 points count as one; for the DEM, the spread of the means over
        blocks of DEM cells says how many (:func:`_block_inflation`)."""
        mis, dz, gz = self.residuals(x)
        rho = _grid_correlation(self.obs.r1, self.obs.c1, mis)
        if dz is not None and self.obs.cells is None:
            self.obs.group_by_dem_cell(*self.models(x))
        self.inflation = ((1.0 + rho) / (1.0 - rho), 1.0 if dz is None else _block_inflation(dz, *self.obs.cells),
                          1.0)

    def weights(self, x):
        """Tukey weights of the residuals on their own robust spread (blunders get 0)."""
        weights = _tukey(_stack(self.residuals(x)) / _row_scales(self.residuals(x), _robust_scale))
        if not (weights > 0).sum() >= len(self.params):
            raise GeometryError(located("refinement", "TIE_POINTS", "too few consistent tie points to solve "
                                                                     "anything; check that the images overlap"))
        return weights

    def _scaled(self, x, which):
        """(Jacobian, residuals) of ``which``, each row divided by its spread times its inflation."""
        res = self.residuals(x)
        scale = _row_scales(res, _robust_scale, self.inflation)
        return self.jacobian(x, which) / scale[:, None], np.nan_to_num(_stack(res) / scale)

    def jacobian(self, x, which):
        """d(residuals)/d(parameters ``which``), kept while the parameters stay within
        :data:`JACOBIAN_REUSE_PX` of where it was taken: the geometry is nearly linear in them."""
        at, columns, jac = self._jac
        if at is None or columns != list(which) or np.max(np.abs(x - at)) > JACOBIAN_REUSE_PX:
            self._jac = (x.copy(), list(which), _jacobian(self.evaluate, x, _stack(self.residuals(x)), which))
        return self._jac[2]

    def step(self, x, which):
        """The Gauss-Newton step of the parameters ``which`` (IRLS weights, weak priors)."""
        jac, z = self._scaled(x, which)
        weights = self.weights(x)
        g = jac.T @ (weights * z) + self.inverse_prior[which] * x[which]
        return -np.linalg.solve(self._normal_with_prior(jac, weights, which), g)

    def _normal_with_prior(self, jac, weights, which):
        """The weighted normal matrix of the columns ``jac`` of the parameters ``which``, priors added."""
        return _normal(jac, weights) + np.diag(self.inverse_prior[which])

    def determined(self, x, which):
        """(``which`` without the terms the data do not determine, {term dropped: why}). Starting from
        all of them, refitted (linearly) after each removal, the rarest term in :data:`ORDER` goes that
        is neither known to :data:`DETERMINED_PX` nor :data:`SIGNIFICANT` standard deviations from zero
        (or is known worse than :data:`ABSURD_PX`), or that lies beyond :data:`SIGNIFICANT` prior
        standard deviations: no metadata is that wrong, so it stands in for some other effect (terms
        that nearly share one, a slant-range offset and a trajectory offset along the line of sight,
        would otherwise take large opposite values). A term's standard deviation counts, besides the
        noise, how far the terms kept would follow a reference DEM misplaced by its accuracy
        (:meth:`misplaced_dem`): a term a shifted DEM would explain is not known from it. So of terms
        that share one effect the commoner stays (the secondary's timing carries the relative azimuth,
        a slant-range offset a vertical offset), and an effect is never pushed into a wrong term
        because the right one was not tried yet."""
        jac, z = self._scaled(x, which)
        weights = self.weights(x)
        misplaced = self.misplaced_dem(x)
        kept, dropped = list(which), {}
        while kept:
            inside = [which.index(k) for k in kept]
            rest = [j for j in range(len(which)) if which[j] not in kept]
            z_kept = z - jac[:, rest] @ x[[which[j] for j in rest]]  # the dropped terms at zero (linearly)
            part = jac[:, inside]
            normal = self._normal_with_prior(part, weights, kept)
            step = -np.linalg.solve(normal, part.T @ (weights * z_kept) + self.inverse_prior[kept] * x[kept])
            sd = self._standard_deviations(part, z_kept + part @ step, x, kept)
            sd_control = np.hypot(sd, self._pull(part, weights, normal, misplaced))
            value = np.abs(x[kept] + step)
            absurd = value > SIGNIFICANT / np.sqrt(self.inverse_prior[kept])
            failing = ((sd_control > DETERMINED_PX) & (value < SIGNIFICANT * sd_control)) | (sd > ABSURD_PX) | absurd
            if not failing.any():
                break
            last = int(np.flatnonzero(failing)[-1])
            dropped[kept.pop(last)] = BEYOND_PRIOR if absurd[last] else UNDETERMINED
        return kept, dropped

    def _pull(self, part, weights, normal, misplaced):
        """How far (pixels) the solution of the columns ``part`` would follow a DEM moved by its
        accuracy east and north (``misplaced``: :meth:`misplaced_dem`); 0 without a DEM."""
        if misplaced is None:
            return 0.0
        follow = np.linalg.solve(normal, part.T @ (weights[:, None] * misplaced))  # pixels per metre
        return self.obs.dem_accuracy_m * np.linalg.norm(follow, axis=1)

    def misplaced_dem(self, x):
        """d(scaled residuals)/d(the reference DEM moved one metre east, north): two columns, zero but
        for the DEM differences, which follow the DEM's slope under each tie point; None without a
        DEM or where its accuracy is taken as perfect."""
        res = self.residuals(x)
        if res[1] is None or not self.obs.dem_accuracy_m:
            return None
        (ref, sec), o = self.models(x), self.obs
        lon, lat, _, _ = triangulate(ref, o.r1, o.c1, sec, o.r2, o.c2)
        columns = np.zeros((_stack(res).size, 2))
        columns[res[0].size:res[0].size + res[1].size] = np.c_[_slopes(o.dem, lon, lat)]
        return np.nan_to_num(columns / _row_scales(res, _robust_scale, self.inflation)[:, None])

    def _standard_deviations(self, jac, z, x, which):
        """Posterior standard deviations (pixels) of the parameters ``which`` (columns ``jac``, scaled
        residuals ``z``) at ``x``."""
        weights = self.weights(x)
        dof = max(int((weights > 0).sum()) - len(which), 1)
        sigma2 = max(float(np.sum(weights * z * z)) / dof, 1.0)
        n = _normal(jac, weights) / sigma2 + np.diag(self.inverse_prior[which])
        return np.sqrt(np.maximum(np.diag(np.linalg.inv(n)), 0.0))

    def solution(self, x, solved, held, iterations):
        """The :class:`Solution` at ``x``; each standard deviation counts the DEM's own misplacement."""
        res = self.residuals(x)
        weights = self.weights(x)
        sd = np.full(len(self.params), np.nan)
        if solved:
            jac, z = self._scaled(x, solved)
            sd[solved] = np.hypot(self._standard_deviations(jac, z, x, solved),
                                  self._pull(jac, weights, self._normal_with_prior(jac, weights, solved),
                                             self.misplaced_dem(x)))
        split = np.cumsum([0] + [0 if r is None else r.size for r in res])
        parts = tuple(None if r is None else weights[a:b] for r, a, b in zip(res, split[:-1], split[1:]))
        scales = tuple(None if r is None else _robust_scale(r, kind) for kind, r in enumerate(res))
        return Solution(self.params, x, sd, list(solved), dict(sorted(held.items())), iterations, parts, scales)


JACOBIAN_REUSE_PX = 0.5
FLOORS = (0.02, 0.1, 0.1)  # smallest spread of misclosure (px), DEM and GCP height differences (m)


def _row_scales(res, scale, inflation=(1.0, 1.0, 1.0)):
    """Per stacked residual, the spread ``scale(r, kind)`` of its kind times its ``inflation`` (the
    square root of how many residuals share one independent error)."""
    return np.concatenate([np.full(r.size, scale(r, kind) * inflation[kind]) for kind, r in enumerate(res)
                           if r is not None])


def _stack(res):
    """The residuals of every kind in one vector."""
    return np.concatenate([r for r in res if r is not None])


def _robust_scale(r, kind):
    """1.4826 x the median absolute residual (about zero: a large common offset, not yet solved,
    widens the scale instead of rejecting every point)."""
    r = r[np.isfinite(r)]
    return max(1.4826 * float(np.median(np.abs(r))), FLOORS[kind]) if r.size else FLOORS[kind]


def _noise(r, kind):
    """The residuals' spread about their median (NMAD)."""
    r = r[np.isfinite(r)]
    return max(1.4826 * float(np.median(np.abs(r - np.median(r)))), FLOORS[kind]) if r.size else FLOORS[kind]


def _tukey(z):
    u = np.where(np.isfinite(z), z / TUKEY_C, np.inf)
    return np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)


def _jacobian(evaluate, x, r, which, step_px=0.05):
    """d(residuals)/d(parameters ``which``, pixels), by forward differences of ``evaluate``."""
    jac = np.zeros((r.size, len(which)))
    for j, k in enumerate(which):
        xk = x.copy()
        xk[k] += step_px
        jac[:, j] = (_stack(evaluate(xk)) - r) / step_px
    return np.nan_to_num(jac)


def _slopes(dem, lon, lat):
    """The DEM's slope (metres per metre) east and north at each point, across one of its cells."""
    half = 0.5 * min(dem.pixel_size_m())
    east = half / (111_320.0 * np.cos(np.radians(lat)))
    north = half / 111_320.0
    return ((dem.sample(lon + east, lat) - dem.sample(lon - east, lat)) / (2.0 * half),
            (dem.sample(lon, lat + north) - dem.sample(lon, lat - north)) / (2.0 * half))


def _normal(jac, weights):
    return jac.T @ (weights[:, None] * jac)


DEM_BLOCK = 4  # DEM cells a side of the blocks whose means show how far the DEM differences share errors


def _block_inflation(values, rows, cols):
    """How much wider the spread of a mean of the tie points' DEM ``values`` is than independent
    points would give: the batch-means estimate, from the means over blocks of :data:`DEM_BLOCK` x
    :data:`DEM_BLOCK` DEM cells (``rows``, ``cols``: each point's cell); at least 1."""
    ok = np.isfinite(values) & np.isfinite(rows) & np.isfinite(cols)
    if ok.sum() < 4 * DEM_BLOCK ** 2:
        return 1.0
    block = np.unique(np.c_[rows[ok] // DEM_BLOCK, cols[ok] // DEM_BLOCK], axis=0, return_inverse=True)[1].ravel()
    v = values[ok] - np.median(values[ok])
    spread = _noise(v, 1)
    keep = np.abs(v) <= 4.0 * spread  # blunders would dominate both spreads
    n = np.bincount(block[keep], minlength=block.max() + 1)
    means = np.bincount(block[keep], v[keep], minlength=n.size)[n > 0] / n[n > 0]
    n = n[n > 0]
    full = n >= 0.5 * np.median(n)  # a sliver of a block at the image's edge says little
    if full.sum() < 4:
        return 1.0
    # a mean of n independent points spreads spread / sqrt(n); compare with what the blocks show
    return float(max(_noise(means[full], 1) / (spread / np.sqrt(np.median(n[full]))), 1.0))


def _grid_correlation(rows, cols, values):
    """Lag-one correlation (0..0.9) of values on a regular grid of (rows, cols) with gaps."""
    step = np.min(np.diff(np.unique(rows))) if np.unique(rows).size > 1 else 1.0
    index = {(r, c): i for i, (r, c) in enumerate(zip(rows, cols))}
    pairs = [(i, index[(r + dr, c + dc)]) for i, (r, c) in enumerate(zip(rows, cols))
             for dr, dc in ((step, 0.0), (0.0, step)) if (r + dr, c + dc) in index]
    if len(pairs) < 10:
        return 0.0
    a, b = (values[list(p)] for p in zip(*pairs))
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10:
        return 0.0
    a, b = a[ok], b[ok]
    med = np.median(np.r_[a, b])  # robust: blunders would hide the correlation of the rest
    keep = (np.abs(a - med) < 5 * _noise(a, 0)) & (np.abs(b - med) < 5 * _noise(b, 0))
    rho = np.corrcoef(a[keep], b[keep])[0, 1] if keep.sum() >= 10 else 0.0
    return float(np.clip(np.nan_to_num(rho), 0.0, 0.9))


def platform_speed(model):
    """The platform's speed (m/s) at the middle of the image."""
    return float(np.linalg.norm(model.orbit.velocity(model.row_to_time((model.rows - 1) / 2.0))))


def _platform_height(model):
    from .ellipsoid import ecef_to_llh
    t = model.row_to_time((model.rows - 1) / 2.0)
    return float(ecef_to_llh(model.orbit.position(t))[2])


# ---------------------------------------------------------------- settings and result
@dataclass(frozen=True)
class RefineSettings:
    """The tunables of :func:`refine_pair` (what the QGIS algorithm exposes)."""

    tie_step_px: int = 8  # tie points every this many reference pixels (where the matcher is sure)
    min_certainty: float = None  # None: the more certain half of the matches (at least the matcher's threshold)
    height_prior: float = None  # m above the ellipsoid; None: the reference DEM's median, else the GCPs', else 0
    height_uncertainty_m: float = 300.0
    coarse_search_px: int = 64  # the coarse registration finds offsets up to this many secondary pixels
    dem_accuracy_m: float = DEM_ACCURACY_M
    min_tie_points: int = 30
    max_iterations: int = 50
    patch_size: int = None  # None: the matcher's own
    overlap: int = None

    def validate(self):
        checks = (("TIE_STEP", self.tie_step_px, 1 <= int(self.tie_step_px) <= 1024, "1..1024 pixels"),
                  ("HEIGHT_UNCERTAINTY", self.height_uncertainty_m, self.height_uncertainty_m >= 0, ">= 0 m"),
                  ("COARSE_SEARCH", self.coarse_search_px, 0 <= self.coarse_search_px <= 4096, "0..4096 pixels"),
                  ("DEM_ACCURACY", self.dem_accuracy_m, 0 <= self.dem_accuracy_m < 1e4, "0..10000 m"),
                  ("MIN_TIE_POINTS", self.min_tie_points, int(self.min_tie_points) >= 10, "at least 10"),
                  ("MAX_ITERATIONS", self.max_iterations, 2 <= int(self.max_iterations) <= 200, "2..200"))
        for name, value, ok, want in checks:
            if not ok:
                raise SettingsError(located("refinement", name, f"{value!r}; give {want}"))
        if self.min_certainty is not None and not 0.0 <= self.min_certainty <= 1.0:
            raise SettingsError(located("refinement", "MIN_CERTAINTY", f"{self.min_certainty}; give 0..1"))
        if self.height_prior is not None and not math.isfinite(self.height_prior):
            raise SettingsError(located("refinement", "HEIGHT_PRIOR", f"{self.height_prior}; give a height in "
                                                                      "metres, or leave it empty"))


@dataclass
class RefineResult:
    """What :func:`refine_pair` found. ``corrections``: role -> name -> {value, sd, unit, px, sd_px}
    of every solved term; ``unobservable``: the terms held at their start, with why."""

    reference_model: object = field(repr=False)
    secondary_model: object = field(repr=False)
    corrections: dict
    unobservable: dict
    coarse_offset_px: dict
    tie_points: int  # the more certain matches on the tie-point grid
    tie_points_used: int  # of those, the ones not rejected as blunders
    misclosure_px: dict  # before / after: median |misclosure| and RMS of the used tie points
    dem_difference_m: dict  # before / after: median and NMAD of tie point heights minus the DEM (None without)
    gcp_difference_m: dict
    iterations: int
    warnings: list
    seconds: float
    paths: dict = field(default_factory=dict)
    matches_on_grid: int = 0  # matches on the tie-point grid before the certainty cut

    def to_dict(self):
        out = asdict(self)
        out.pop("reference_model")
        out.pop("secondary_model")
        return out


UNITS = {"azimuth_offset": "s", "azimuth_drift": "s/s", "range_offset": "m", "range_drift": "m/s",
         "cross_track": "m", "vertical": "m"}


def describe(solution):
    """role -> name -> figures of every solved parameter (see :class:`RefineResult`)."""
    out = {"reference": {}, "secondary": {}}
    for k in solution.solved:
        p = solution.params[k]
        out[p.role][p.name] = {"value": float(solution.x[k] * p.px), "sd": float(solution.sd[k] * p.px),
                               "unit": UNITS[p.name], "px": float(solution.x[k]), "sd_px": float(solution.sd[k])}
    return out


def disagreement_px(a, b, dem, grid=25):
    """The largest distance (pixels of ``a``) between where two models of one image put the ground of
    ``dem`` (path or Dem), over a ``grid`` x ``grid`` net of the image: how far apart they are."""
    rows, cols = np.meshgrid(np.linspace(0, a.rows - 1, grid), np.linspace(0, a.cols - 1, grid), indexing="ij")
    lon, lat, h = a.rdr2geo(rows, cols, dem=dem)
    return float(np.nanmax(np.hypot(*(np.stack(a.geo2rdr(lon, lat, h)) - np.stack(b.geo2rdr(lon, lat, h))))))


def summary(values, used=None):
    """{median_abs, rms, median, nmad, count} of finite (and used) values."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v) if used is None else np.isfinite(v) & used
    v = v[ok]
    if not v.size:
        return None
    med = float(np.median(v))
    return {"median_abs": float(np.median(np.abs(v))), "rms": float(np.sqrt(np.mean(v * v))), "median": med,
            "nmad": float(1.4826 * np.median(np.abs(v - med))), "count": int(v.size)}


def timer():
    start = time.perf_counter()
    return lambda: time.perf_counter() - start
