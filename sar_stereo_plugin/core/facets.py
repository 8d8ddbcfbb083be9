"""The ground facets of one SAR view: lines that follow the radar, placed by range/Doppler.

Shared by the simulator (:mod:`.simulate`), which renders and flags them, and by
:func:`.terrain.terrain_fractions`, which walks them more coarsely. Vectors here are component-first
arrays (3, ...), hence the small helpers ``dot3``, ``cross3``, ...
"""

import math

import numpy as np
from scipy.ndimage import map_coordinates

from . import ellipsoid
from .errors import GeometryError, located

LINES_PER_NODE = 16  # fine facet lines per coarse geometry line
FACETS_PER_NODE = 32  # fine facets per coarse geometry node along a line
PREFIX_COARSEN = 4  # terrain before the near edge only casts shadow: sample it coarser
BEAM_MARGIN_DEG = 15.0  # the antenna's elevation beam reaches this far beyond the image's angles
BEAM_MIN_OFF_NADIR_DEG = 5.0  # but never below the platform: nadir is not illuminated


def dot3(a, b):
    return np.einsum("i...,i...->...", a, b)


def cross3(a, b):
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def normal3(lon, lat):
    """Unit ellipsoid normal (3, ...) at geodetic lon/lat (radians)."""
    return np.stack(ellipsoid.normal(lon, lat))


def surface3(lon, lat, h):
    """ECEF (3, ...) of geodetic lon/lat (radians) and height (m)."""
    return np.stack(np.broadcast_arrays(*ellipsoid.llh_to_xyz(lon, lat, h)))


def llh3(xyz):
    """Geodetic lon, lat (radians) and height of ECEF points (3, ...)."""
    return ellipsoid.xyz_to_llh(xyz[0], xyz[1], xyz[2])


def unit3(v):
    return v / np.sqrt(dot3(v, v))


def bilinear(grid, rows, cols):
    """Bilinear values of ``grid`` at (rows, cols); NaN outside or next to NaN."""
    out = map_coordinates(grid, [rows.ravel(), cols.ravel()], order=1, mode="constant", cval=np.nan,
                          prefilter=False)
    return out.reshape(rows.shape)


class FacetLines:
    """The ground facets of one view, laid out as lines (azimuth) x facets (ground range).

    Line ``m`` is at image row ``(index[m] + 0.5) * rows_per_line - 0.5`` (so each row holds
    1 / rows_per_line lines, symmetric about its centre); its facets lie on the Doppler surface of
    that time at the reference height, along the ground from near to far range,
    ``cross_spacing`` metres apart. Positions, normals and DEM pixel coordinates are
    computed exactly on a coarse node grid and interpolated linearly (the ellipsoid bends by
    micrometres over a coarse cell), then heights are sampled from the DEM per facet.
    """

    def __init__(self, model, dem, h_lo, h_hi, h_ref, rows_per_line, cross_spacing):
        self.model, self.dem, self.h_ref = model, dem, h_ref
        self.rows_per_line, self.cross_spacing = rows_per_line, cross_spacing
        self.k_doppler = -model.range_rate
        self.sign = -1.0 if model.look_side == "right" else 1.0
        self._lines()
        self._cross_extent(h_lo, h_hi)
        self.main = self._coarse(self.c_main[::FACETS_PER_NODE])
        self.prefix = self._coarse(self.c_prefix[::FACETS_PER_NODE]) if self.c_prefix.size else None

    # ---------------------------------------------------------------- lines
    def _lines(self):
        m, dr = self.model, self.rows_per_line
        pad = max(2, int(math.ceil(2.0 / dr)))
        n_needed = int(math.ceil(m.rows / dr)) + 2 * pad
        q = int(math.ceil((n_needed - 1) / LINES_PER_NODE)) + 2
        index = np.arange(-pad - LINES_PER_NODE, -pad - LINES_PER_NODE + LINES_PER_NODE * q + 1)
        times = m.row_to_time((index + 0.5) * dr - 0.5)
        lo, hi = m.orbit.span
        inside = np.flatnonzero((times >= lo) & (times <= hi))
        if inside.size < LINES_PER_NODE + 1:
            raise GeometryError(located(m.source, "orbit.time_s", "the orbit is too short for the image; supply "
                                                                  "state vectors covering the whole acquisition"))
        # keep the lines that cover the image (plus pad), on whole coarse cells, inside the orbit
        want_lo = np.searchsorted(index, -pad)
        want_hi = np.searchsorted(index, int(math.ceil(m.rows / dr)) + pad)
        first = max(inside[0], min(want_lo, inside[-1] - LINES_PER_NODE))
        cells = max(1, min(int(math.ceil((want_hi - first) / LINES_PER_NODE)), (inside[-1] - first) // LINES_PER_NODE))
        sel = np.arange(first, first + LINES_PER_NODE * cells + 1)
        self.index, self.t = index[sel], times[sel]
        self.line_rows = (self.index + 0.5) * dr - 0.5
        p, v, a = m.orbit.state(self.t)
        lon, lat, hp = llh3(p.T)
        self.P, self.V, self.A = p.T, v.T, a.T  # (3, n)
        self.up = normal3(lon, lat)
        self.platform_height = hp
        self.N = self.P - hp * self.up
        cross = cross3(self.V, self.up) if m.look_side == "right" else cross3(self.up, self.V)
        self.side = unit3(cross)
        self.along = unit3(cross3(self.up, self.side) if m.look_side == "right" else cross3(self.side, self.up))
        sl = np.sin(lat)
        w = 1.0 - ellipsoid.E2 * sl * sl
        self.rho = ellipsoid.A * np.sqrt(1.0 - ellipsoid.E2) / w  # Gaussian mean radius
        self.n_lines = self.t.size

    # ---------------------------------------------------------------- cross-track extent
    def _ground_distance(self, idx, rng, h):
        t = self.t[idx]
        lon, lat = self.model.time_range_to_lonlat(t, np.full(t.shape, rng), np.full(t.shape, h))
        foot = surface3(lon, lat, 0.0)
        sigma = dot3(foot - self.P[:, idx], self.side[:, idx])
        return self.rho[idx] * np.arcsin(np.clip(sigma / self.rho[idx], -1.0, 1.0))

    def _cross_extent(self, h_lo, h_hi):
        """Ground span of the facet lines, and the antenna's elevation beam.

        The beam spans the image's off-nadir angles at the reference height, widened by
        ``BEAM_MARGIN_DEG`` each side but not closer to nadir than ``BEAM_MIN_OFF_NADIR_DEG``;
        facets outside it are not illuminated (this keeps low terrain near nadir, whose short
        range could otherwise fall into the image, out). Facets that may land in the image start
        at ``c_main[0]``; before it, down to the nearest ground the beam can reach, a coarser
        prefix only casts shadow.
        """
        m = self.model
        mid = np.array([self.n_lines // 2])
        edges = [self._ground_point(mid, m.col_to_range(c), self.h_ref) for c in (-0.5, m.cols - 0.5)]
        if not np.isfinite(edges[1]).all():
            raise GeometryError(located(m.source, "range.first_sample_range_m",
                                        "the image's slant ranges do not reach the ground at the scene height; "
                                        "check the range sampling and the platform height"))
        tan_b = float(self.tan_off_nadir(edges[1], mid[0], mid[0] + 1)[0, 0])
        # a near edge nearer than the scene's depth below the platform: the image starts at nadir
        near_ok = np.isfinite(edges[0]).all()
        tan_a = float(self.tan_off_nadir(edges[0], mid[0], mid[0] + 1)[0, 0]) if near_ok else 0.0
        angle_a, angle_b = math.atan(tan_a), math.atan(tan_b)
        widen = math.radians(BEAM_MARGIN_DEG)
        self.beam = (math.tan(max(angle_a - widen, math.radians(BEAM_MIN_OFF_NADIR_DEG))),
                     math.tan(min(angle_b + widen, math.radians(89.0))))
        dz_hi = max(float(np.min(self.platform_height)) - h_hi, 1.0)
        dz_lo = float(np.max(self.platform_height)) - h_lo
        idx = np.arange(0, self.n_lines, LINES_PER_NODE)
        # facets that can land in the image reach at least the near range (nearest for the lowest
        # terrain) and lie inside the beam (nearest for the highest terrain; flat ground: a lower
        # bound on the curved Earth); likewise at most the far range and the beam's far edge
        near = np.nan_to_num(self._ground_distance(idx, m.col_to_range(-2.5), h_lo), nan=0.0)
        c_lo = max(float(np.min(near)), dz_hi * self.beam[0], 0.0)
        far = self._ground_distance(idx, m.col_to_range(m.cols + 1.5), h_hi)
        c_hi = min(float(np.nanmax(far)), dz_lo * self.beam[1]) if np.isfinite(far).any() else dz_lo * self.beam[1]
        nodes = math.ceil(max(c_hi - c_lo, self.cross_spacing) / (self.cross_spacing * FACETS_PER_NODE))
        n_main = FACETS_PER_NODE * int(nodes) + 1
        self.c_main = c_lo + self.cross_spacing * np.arange(n_main)
        # a facet's blocker lies on its ray, so inside the beam and below h_hi: no nearer than this
        c_start = 0.98 * dz_hi * self.beam[0]
        step = self.cross_spacing * PREFIX_COARSEN
        if c_lo - c_start > step:
            n_pre = FACETS_PER_NODE * int(math.ceil((c_lo - c_start) / (step * FACETS_PER_NODE))) + 1
            self.c_prefix = np.maximum(c_lo - step * np.arange(n_pre, 0, -1), 0.0)
        else:
            self.c_prefix = np.zeros(0)

    def _ground_point(self, idx, rng, h):
        t = self.t[idx]
        lon, lat = self.model.time_range_to_lonlat(t, np.full(t.shape, rng), np.full(t.shape, h))
        return surface3(lon, lat, h)[:, :, None]

    # ---------------------------------------------------------------- coarse nodes
    def _coarse(self, c_nodes):
        """Foot point, normal and DEM pixel of nodes (every LINES_PER_NODE lines, at ground distances c)."""
        idx = np.arange(0, self.n_lines, LINES_PER_NODE)
        P, V, N, up, side, along = (a[:, idx, None] for a in (self.P, self.V, self.N, self.up, self.side,
                                                               self.along))
        rho = self.rho[idx, None]
        ang = c_nodes[None, :] / rho
        q = N + rho * (np.sin(ang) * side + (np.cos(ang) - 1.0) * up)
        k = self.k_doppler
        for _ in range(4):  # slide along track onto the Doppler surface at the reference height
            lon, lat, _ = llh3(q)
            x = surface3(lon, lat, self.h_ref)
            d = x - P
            r = np.sqrt(dot3(d, d))
            g = dot3(V, d) - k * r
            dg = dot3(V, along) - k * dot3(d, along) / r
            shift = g / dg
            q = q - shift * along
            if np.abs(shift).max() < 1e-4:
                break
        lon, lat, _ = llh3(q)
        pr, pc = self.dem.lonlat_to_pixel(np.degrees(lon), np.degrees(lat))
        return np.concatenate([surface3(lon, lat, 0.0), normal3(lon, lat), pr[None], pc[None]])

    # ---------------------------------------------------------------- fine facets
    @staticmethod
    def _fine(coarse, i0, i1, n_cross):
        """Linear interpolation of coarse channels onto fine lines i0..i1-1 and all facets."""
        last = coarse.shape[1] - 1
        # whole coarse cells c0..c1-1 cover the lines
        c0, c1 = i0 // LINES_PER_NODE, min(-(-i1 // LINES_PER_NODE), last)
        j = np.arange(n_cross)
        jc = np.minimum(j // FACETS_PER_NODE, coarse.shape[2] - 2)
        wj = (j - jc * FACETS_PER_NODE) / FACETS_PER_NODE
        block = coarse[:, c0:c1 + 1]
        nodes = block[:, :, jc] * (1.0 - wj) + block[:, :, jc + 1] * wj  # coarse lines, all facets
        step = nodes[:, 1:] - nodes[:, :-1]
        w = (np.arange(LINES_PER_NODE) / LINES_PER_NODE)[:, None]
        fine = np.empty((coarse.shape[0], c1 - c0, LINES_PER_NODE, n_cross))
        np.multiply(step[:, :, None], w, out=fine)
        fine += nodes[:, :-1, None]
        fine = fine.reshape(coarse.shape[0], -1, n_cross)
        if i1 - 1 == c1 * LINES_PER_NODE:  # the very last line is a coarse line itself
            fine = np.concatenate([fine, nodes[:, -1:]], axis=1)
        return fine[:, i0 - c0 * LINES_PER_NODE:i1 - c0 * LINES_PER_NODE]

    def positions(self, coarse, n_cross, i0, i1):
        """ECEF facet positions (3, lines, facets), DEM pixel coordinates and feet."""
        f = self._fine(coarse, i0, i1, n_cross)
        h = bilinear(self.dem.heights, f[6], f[7])
        return f[0:3] + h * f[3:6], f[6], f[7], f[0:3]

    def tan_off_nadir(self, x, i0, i1):
        """tan of the angle between nadir and the look to each facet, seen from its line's sensor."""
        d = x - self.P[:, i0:i1, None]
        return dot3(d, self.side[:, i0:i1, None]) / -dot3(d, self.up[:, i0:i1, None])

    def prefix_horizon(self, i0, i1):
        """Highest tan(off-nadir) of the terrain before the near edge, per line (-inf: none)."""
        if self.prefix is None:
            return np.full(i1 - i0, -np.inf)
        x = self.positions(self.prefix, self.c_prefix.size, i0, i1)[0]
        q = self.tan_off_nadir(x, i0, i1)
        lit = np.isfinite(q) & (q >= self.beam[0]) & (q <= self.beam[1])
        return np.max(np.where(lit, q, -np.inf), axis=1)

    def doppler_time(self, x, i0, i1, max_iter=4):
        """Time offset (s) from each facet's line time to its Doppler time, and its slant range.

        Newton on the orbit's local Taylor model p(t) = P + V t + A t^2 / 2 around the line time
        (offsets are far below a line interval, where this model is exact to micrometres).
        """
        P, V, A = (a[:, i0:i1, None] for a in (self.P, self.V, self.A))
        k = self.k_doppler
        tau = np.zeros(x.shape[1:])
        d = x - P
        for _ in range(max_iter):
            v = V + A * tau
            vd = dot3(v, d)
            if k:
                r = np.sqrt(dot3(d, d))
                step = (vd - k * r) / (dot3(A, d) - dot3(v, v) + k * vd / r)
            else:
                step = vd / (dot3(A, d) - dot3(v, v))
            tau -= step
            d = x - (P + V * tau + 0.5 * A * tau * tau)
            # Newton's error after a step is ~ (|A|/|V|) step^2: nothing left below a millisecond
            if not np.nanmax(np.abs(step), initial=0.0) > 1e-3:
                break
        return tau, np.sqrt(dot3(d, d)), d

    def az_ground_spacing(self):
        """Ground distance between image rows at the middle of the scene (m)."""
        s = self.main[0:3]
        i, j = s.shape[1] // 2, s.shape[2] // 2
        step = s[:, min(i + 1, s.shape[1] - 1), j] - s[:, max(i - 1, 0), j]
        lines = (min(i + 1, s.shape[1] - 1) - max(i - 1, 0)) * LINES_PER_NODE
        return float(np.sqrt(dot3(step, step))) / lines / self.rows_per_line
