"""Sensor-model refinement: corrections of both models from the images themselves (and a DEM).

Relative orientation: tie points between the images must close; each one's *misclosure* is
how many secondary lines the secondary row it should have (where the reference pixel's
range/Doppler circle meets the secondary's range sphere, seen by the secondary) lies from the row
matched. Absolute orientation: where a reference DEM is given, the triangulated tie points must
lie on it (their height differences, whose dependence on a horizontal shift through the DEM's
slopes is the Nuth & Kaab co-registration of DEMs); ground control points fix heights where they
are. Both are solved together by iteratively reweighted least squares (Tukey's biweight on
residuals scaled by their robust spread), the Jacobian by finite differences of the geometry
itself.

Parameters (module :mod:`.corrections`): per image an azimuth time offset and drift, a slant-range
offset and drift, and for airborne platforms a cross-track and a vertical trajectory offset. Only
those the data pin down are solved: candidates are taken in order of how common such errors are,
and one is kept only while every kept parameter's standard deviation stays below ``max_sd_px`` of
image displacement. The others are held at their start and named unobservable: with tie points
alone, a common shift of both images and every slant-range term (two range spheres always meet).
"""

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .corrections import Corrections
from .errors import GeometryError, SettingsError, located
from .rangedoppler import Circle, blockwise
from .stereo import triangulate

TUKEY_C = 4.685
NAMES = ("azimuth_offset", "azimuth_drift", "range_offset", "range_drift", "cross_track", "vertical")
# the order candidates are tried in: the secondary's timing first (relative orientation), then what
# only absolute control reaches
ORDER = (("secondary", "azimuth_offset"), ("secondary", "azimuth_drift"), ("reference", "azimuth_offset"),
         ("reference", "azimuth_drift"), ("secondary", "range_offset"), ("reference", "range_offset"),
         ("secondary", "range_drift"), ("reference", "range_drift"), ("secondary", "cross_track"),
         ("reference", "cross_track"), ("secondary", "vertical"), ("reference", "vertical"))
AIRBORNE_MAX_HEIGHT_M = 100_000.0  # trajectory offsets are solved for platforms below this


@dataclass(frozen=True)
class Parameter:
    """One correction term of one image; ``px`` is the value that moves the image by one pixel."""

    role: str
    name: str
    px: float

    @property
    def label(self):
        return f"{self.role}.{self.name}"


def parameters(ref, sec):
    """Every candidate :class:`Parameter` of a pair, in :data:`ORDER`."""
    out = []
    for role, name in ORDER:
        model = ref if role == "reference" else sec
        half = max(0.5 * (model.rows - 1) * model.line_interval_s, model.line_interval_s)
        px = {"azimuth_offset": model.line_interval_s, "azimuth_drift": model.line_interval_s / half,
              "range_offset": model.sample_spacing_m, "range_drift": model.sample_spacing_m / half,
              "cross_track": model.sample_spacing_m, "vertical": model.sample_spacing_m}[name]
        if name in ("cross_track", "vertical") and _platform_height(model) > AIRBORNE_MAX_HEIGHT_M:
            continue
        out.append(Parameter(role, name, px))
    return out


def with_values(model, role, params, x):
    """``model``'s corrections plus the values ``x`` (in pixels) of the parameters of ``role``."""
    c = model.corrections or Corrections(reference_time_s=model.centre_time_s)
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
    return model.with_corrections(Corrections(c.reference_time_s, tuple(a), tuple(r), tuple(p)))


# ---------------------------------------------------------------- observations
def misclosure_px(ref, sec, r1, c1, r2, c2, iterations=4):
    """Signed misclosure of correspondences, in secondary lines (see the module doc); NaN where the
    geometry fails."""
    args = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (r1, c1, r2, c2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return blockwise(_misclosure_block, *args, ref=ref, sec=sec, iterations=iterations)[0]


def _misclosure_block(r1, c1, r2, c2, ref, sec, iterations):
    circle = Circle(ref, *ref.contour(r1, c1))
    t2 = sec.row_to_time(r2)
    lo, hi = sec.orbit.span
    for _ in range(iterations):
        p = sec.orbit.position(np.clip(t2, lo, hi))
        x = circle.point(*circle.cut(p[:, 0], p[:, 1], p[:, 2], sec.col_to_range(c2, t2), exact=False))
        t2, _ = sec.ecef_to_time_range(np.stack(x, axis=-1))
    return (sec.time_to_row(t2) - r2,)


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

    def dem_points_per_cell(self, ref, sec):
        """Tie points per reference-DEM cell they fall in: their height differences to the DEM share
        its errors cell by cell, so the DEM counts about once per cell, not once per point."""
        if self.dem is None:
            return 1.0
        lon, lat, _, _ = triangulate(ref, self.r1, self.c1, sec, self.r2, self.c2)
        rows, cols = self.dem.lonlat_to_pixel(lon, lat)
        ok = np.isfinite(rows) & np.isfinite(cols)
        if not ok.any():
            return 1.0
        cells = np.unique(np.floor(rows[ok]).astype(np.int64) * 1_000_003 + np.floor(cols[ok]).astype(np.int64))
        return max(ok.sum() / cells.size, 1.0)

    def residuals(self, ref, sec):
        """(misclosure px, DEM height difference m or None, GCP height difference m or None)."""
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
    unobservable: list
    iterations: int
    weights: tuple = field(repr=False, default=None)  # final Tukey weights of (misclosure, dem, gcp)
    scales: tuple = (None, None, None)  # robust spreads (px, m, m)


def solve(ref, sec, obs, max_sd_px=0.1, max_iterations=20, tolerance_px=1e-3):
    """The :class:`Solution` of a pair (module doc). Two stages: every candidate, damped, fits away
    what the data can explain, so that the residuals left show their noise; on that noise the
    observable parameters are chosen and solved alone, and chosen again once they settle, until
    the choice holds."""
    params = parameters(ref, sec)
    fit = _Fit(ref, sec, obs, params)
    x = np.zeros(len(params))
    everything = list(range(len(params)))
    for _ in range(6):
        step = fit.step(x, everything, damping=1e-6)
        x[everything] += step
        if np.max(np.abs(step), initial=0.0) < tolerance_px:
            break
    noise = fit.noise(x)
    solved, held = _observable(fit.jacobian(x) / noise[:, None], fit.weights(x), max_sd_px)
    x[held] = 0.0
    for it in range(1, max_iterations + 1):
        step = fit.step(x, solved)
        x[solved] += step
        if np.max(np.abs(step), initial=0.0) < tolerance_px:
            chosen, now_held = _observable(fit.jacobian(x) / fit.noise(x)[:, None], fit.weights(x), max_sd_px)
            if chosen == solved:
                break
            solved, held = chosen, now_held
            x[held] = 0.0
    else:
        raise GeometryError(located("refinement", "solution", f"did not converge in {max_iterations} iterations; "
                                                              "the tie points may be unreliable: try another "
                                                              "MATCHER or a smaller MAX_SD"))
    return fit.solution(x, solved, held, it)


class _Fit:
    """The stacked residuals of a pair as a function of the parameter values (pixels)."""

    def __init__(self, ref, sec, obs, params):
        self.ref, self.sec, self.obs, self.params = ref, sec, obs, params
        self.inflation = (1.0, math.sqrt(obs.dem_points_per_cell(ref, sec)), 1.0)
        self._cache = (None, None)

    def residuals(self, x):
        if self._cache[0] is None or not np.array_equal(self._cache[0], x):
            models = (with_values(self.ref, "reference", self.params, x),
                      with_values(self.sec, "secondary", self.params, x))
            self._cache = (x.copy(), self.obs.residuals(*models))
        return self._cache[1]

    def spread(self, x):
        return _row_scales(self.residuals(x), _robust_scale, self.inflation)

    def noise(self, x):
        return _row_scales(self.residuals(x), _noise, self.inflation)

    def weights(self, x):
        weights = _tukey(_stack(self.residuals(x)) / self.spread(x))
        if not (weights > 0).sum() >= len(self.params):
            raise GeometryError(located("refinement", "TIE_POINTS", "too few consistent tie points to solve "
                                                                     "anything; check that the images overlap"))
        return weights

    def jacobian(self, x):
        return _jacobian(self.ref, self.sec, self.obs, self.params, x, _stack(self.residuals(x)))

    def step(self, x, which, damping=0.0):
        """The Gauss-Newton step of the parameters ``which`` (IRLS weights; Marquardt ``damping``)."""
        spread = self.spread(x)
        z, weights = _stack(self.residuals(x)) / spread, self.weights(x)
        jac = self.jacobian(x)[:, which] / spread[:, None]
        n = _normal(jac, weights)
        n += damping * np.diag(np.diag(n)) + damping * np.trace(n) / max(len(which), 1) * np.eye(len(which))
        return -np.linalg.solve(n, jac.T @ (weights * np.nan_to_num(z)))

    def solution(self, x, solved, held, iterations):
        res, spread = self.residuals(x), self.spread(x)
        weights = self.weights(x)
        sd = np.full(len(self.params), np.nan)
        sd[solved] = _standard_deviations(self.jacobian(x)[:, solved] / spread[:, None], weights,
                                          _stack(res) / spread)
        split = np.cumsum([0] + [0 if r is None else r.size for r in res])
        parts = tuple(None if r is None else weights[a:b] for r, a, b in zip(res, split[:-1], split[1:]))
        scales = tuple(None if r is None else _robust_scale(r, kind) for kind, r in enumerate(res))
        return Solution(self.params, x, sd, list(solved), [self.params[i].label for i in held], iterations, parts,
                        scales)


FLOORS = (0.02, 0.1, 0.1)  # smallest spread of misclosure (px), DEM and GCP height differences (m)


def _row_scales(res, scale, inflation):
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
    """The residuals' spread about their median (NMAD): the noise an offset does not inflate."""
    r = r[np.isfinite(r)]
    return max(1.4826 * float(np.median(np.abs(r - np.median(r)))), FLOORS[kind]) if r.size else FLOORS[kind]


def _tukey(z):
    u = np.where(np.isfinite(z), z / TUKEY_C, np.inf)
    return np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)


def _jacobian(ref, sec, obs, params, x, r, step_px=0.05):
    """d(residuals)/d(parameters in pixels), by forward differences."""
    jac = np.zeros((r.size, len(params)))
    for k in range(len(params)):
        xk = x.copy()
        xk[k] += step_px
        models = (with_values(ref, "reference", params, xk), with_values(sec, "secondary", params, xk))
        jac[:, k] = (_stack(obs.residuals(*models)) - r) / step_px
    return np.nan_to_num(jac)


def _normal(jac, weights):
    w = weights[:, None]
    return jac.T @ (w * jac)


def _standard_deviations(jac, weights, z):
    """Standard deviations (pixels) of the parameters, the residuals' variance of unit weight taken
    from the data (at least 1: the scales are the residuals' own spread)."""
    used = weights > 0
    dof = max(int(used.sum()) - jac.shape[1], 1)
    sigma2 = max(float(np.sum(weights * np.nan_to_num(z) ** 2)) / dof, 1.0)
    try:
        cov = np.linalg.inv(_normal(jac, weights)) * sigma2
    except np.linalg.LinAlgError:
        return np.full(jac.shape[1], np.inf)
    return np.sqrt(np.maximum(np.diag(cov), 0.0))


def _observable(jac, weights, max_sd_px):
    """(indices solved, indices held): candidates in order, each kept while every kept standard
    deviation stays within ``max_sd_px``."""
    z = np.zeros(jac.shape[0])
    kept, held = [], []
    for k in range(jac.shape[1]):
        trial = kept + [k]
        sub = jac[:, trial]
        n = _normal(sub, weights)
        ok = np.linalg.cond(n) < 1e12 and np.all(_standard_deviations(sub, weights, z) <= max_sd_px)
        (kept if ok else held).append(k)
    return kept, held


def _platform_height(model):
    from .ellipsoid import ecef_to_llh
    t = model.row_to_time((model.rows - 1) / 2.0)
    return float(ecef_to_llh(model.orbit.position(t))[2])


# ---------------------------------------------------------------- settings and result
@dataclass(frozen=True)
class RefineSettings:
    """The tunables of :func:`refine_pair` (what the QGIS algorithm exposes)."""

    tie_step_px: int = 8  # tie points every this many reference pixels (where the matcher is sure)
    min_certainty: float = None  # None: the matcher's own threshold
    height_prior: float = None  # m above the ellipsoid; None: the reference DEM's median, else the GCPs', else 0
    height_uncertainty_m: float = 300.0
    coarse_search_px: int = 64  # the coarse registration finds offsets up to this many secondary pixels
    max_sd_px: float = 0.1  # a correction is solved only where the data determine it this well
    min_tie_points: int = 30
    max_iterations: int = 20
    patch_size: int = None  # None: the matcher's own
    overlap: int = None

    def validate(self):
        checks = (("TIE_STEP", self.tie_step_px, 1 <= int(self.tie_step_px) <= 1024, "1..1024 pixels"),
                  ("HEIGHT_UNCERTAINTY", self.height_uncertainty_m, self.height_uncertainty_m >= 0, ">= 0 m"),
                  ("COARSE_SEARCH", self.coarse_search_px, 0 <= self.coarse_search_px <= 4096, "0..4096 pixels"),
                  ("MAX_SD", self.max_sd_px, 0 < self.max_sd_px <= 10, "0..10 pixels"),
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
    of every solved term; ``unobservable``: the terms held at their start."""

    reference_model: object = field(repr=False)
    secondary_model: object = field(repr=False)
    corrections: dict
    unobservable: list
    coarse_offset_px: dict
    tie_points: int
    tie_points_used: int
    misclosure_px: dict  # before / after: median |misclosure| and RMS of the used tie points
    dem_difference_m: dict  # before / after: median and NMAD of tie point heights minus the DEM (None without)
    gcp_difference_m: dict
    iterations: int
    warnings: list
    seconds: float
    paths: dict = field(default_factory=dict)

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
