"""SICD-kind sensor model (schema ``sarstereo.sensor/2``, ``kind: sicd``): the R/Rdot contour of
NGA's SICD Image Projections Description.

Our pixel (row, col) -- rows azimuth, cols range, as everywhere in the project -- maps to a SICD
image pixel by an affine map per axis (the transpose of SICD's row = range orientation, the crop's
first row/column, multilooking, and a flip where SICD's columns run backwards in time):
``sicd_row = row0 + row_step * col``, ``sicd_col = col0 + col_step * row``. Its image coordinates
are ``xrow = (sicd_row - SCPPixel.Row) * Row.SS`` and ``ycol = (sicd_col - SCPPixel.Col) * Col.SS``.
The point's centre-of-aperture time is ``t = TimeCOAPoly(xrow, ycol)``, the aperture reference
point there ``ARPPoly(t)`` (velocity: its derivative), and its range R and range rate Rdot to that
point follow from the image formation grid:

* RGZERO (RMA, INCA): closest approach at range ``R_CA_SCP + xrow`` and time ``TimeCAPoly(ycol)``;
  ``R^2 = R_CA^2 + DRSF |V_CA|^2 (t - t_CA)^2`` and ``Rdot = DRSF |V_CA|^2 (t - t_CA) / R``;
* RGAZIM, PFA: ``R = |ARP - SCP| + KSF(theta) (xrow cos theta + ycol sin theta)`` with the polar angle
  ``theta = PolarAngPoly(t)``, Rdot its time derivative;
* RGAZIM, RGAZCOMP: ``R = |ARP - SCP| + xrow``, ``Rdot = Rdot_SCP - |V| AzSF ycol``;
* PLANE / XRGYCR / XCTYAT: R and Rdot of the image-plane point ``SCP + xrow uRow + ycol uCol``.

The target lies where the ARP at t sees it at range R closing at rate Rdot (the range/Doppler circle
of :class:`.rangedoppler.Circle`): :meth:`contour` gives (t, R, Rdot), and everything downstream
(rdr2geo, triangulation, the patch prior) works on it as on the zero-Doppler model. :meth:`geo2rdr`
inverts the contour by a vectorised 2-D Newton iteration on (xrow, ycol).
"""

import json

import numpy as np

from . import ellipsoid
from .errors import GeometryError, SensorModelError, located
from .orbit import within_span
from .rangedoppler import blockwise
from .sensor import SensorModel

SCHEMA = "sarstereo.sensor/2"
KIND = "sicd"
PLANE_GRIDS = ("PLANE", "XRGYCR", "XCTYAT")
# SICD polynomials are fit over the collection; converted products (sarpy's RCM) put the COA time of
# their last lines a little past CollectDuration, so that much extrapolation is tolerated
SPAN_MARGIN = 0.25
_NEWTON_MAX = 30


# ---------------------------------------------------------------- polynomials
def poly1(coefs, x):
    """sum_i c[i] x^i by Horner's rule (a scalar for a constant polynomial: it broadcasts)."""
    if len(coefs) == 1:
        return np.float64(coefs[0])
    out = coefs[-1] * x
    out += coefs[-2]
    for c in coefs[-3::-1]:
        out *= x
        out += c
    return out


def poly2(coefs, x, y):
    """sum_ij c[i, j] x^i y^j."""
    out = poly1(coefs[-1], y)
    for row in coefs[-2::-1]:
        out = out * x + poly1(row, y)
    return out


def derivative(coefs):
    coefs = np.asarray(coefs, np.float64)
    return coefs[..., 1:] * np.arange(1, coefs.shape[-1]) if coefs.shape[-1] > 1 else np.zeros_like(coefs)


def _trim(coefs):
    """A 1-D or 2-D coefficient array without trailing zero rows/columns (cheaper to evaluate)."""
    coefs = np.atleast_1d(np.asarray(coefs, np.float64))
    while coefs.shape[0] > 1 and not coefs[-1].any():
        coefs = coefs[:-1]
    while coefs.ndim == 2 and coefs.shape[1] > 1 and not coefs[:, -1].any():
        coefs = coefs[:, :-1]
    return coefs


class PolyOrbit:
    """The aperture reference point's ECEF trajectory, ``ARPPoly`` (seconds after the collect start);
    the same interface as :class:`.orbit.Orbit`. Times outside ``span`` raise ``GeometryError``."""

    def __init__(self, coefs, span):
        self.coefs = np.asarray(coefs, np.float64)
        self.d1 = derivative(self.coefs)
        self.d2 = derivative(self.d1)
        self.time = np.asarray(span, np.float64)

    @property
    def span(self):
        return float(self.time[0]), float(self.time[-1])

    def _check(self, t):
        return within_span(t, self.span, "the span of the product's ARP polynomial", " (the collection)")

    def _stack(self, coefs, t):
        return np.stack([poly1(c, t) for c in coefs], axis=-1)

    def position(self, t):
        return self._stack(self.coefs, self._check(t))

    def velocity(self, t):
        return self._stack(self.d1, self._check(t))

    def state(self, t):
        t = self._check(t)
        return self._stack(self.coefs, t), self._stack(self.d1, t), self._stack(self.d2, t)


# ---------------------------------------------------------------- the model
class SicdModel:
    """Geometry of a SICD-kind image in our pixel convention. Build it with :meth:`from_dict` (or
    ``SensorModel.from_json``, which dispatches on ``kind``) or a product reader."""

    kind = KIND
    corrections = None  # the product's own geometry: refinement's corrections do not apply to it (yet)

    def __init__(self, doc, source=""):
        """``doc``: a validated ``sarstereo.sensor/2`` dict of kind sicd (see :meth:`from_dict`)."""
        self.doc = doc
        self.source = source
        sec = doc["sicd"]
        self.wavelength_m = float(doc["wavelength_m"])
        self.look_side = doc["look_side"]
        self.reference_epoch = doc["reference_epoch"]
        self.rows, self.cols = int(doc["shape"]["rows"]), int(doc["shape"]["cols"])
        self.grid_type, self.image_formation = sec["grid_type"], sec["image_formation"]
        self.method = _method(self.grid_type, self.image_formation)
        self.scp = np.asarray(sec["scp_ecf_m"], np.float64)
        scp_row, scp_col = (float(v) for v in sec["scp_pixel"])
        ss_row, ss_col = (float(v) for v in sec["sample_spacing_m"])
        (row0, row_step), (col0, col_step) = doc["pixels"]["sicd_row"], doc["pixels"]["sicd_col"]
        # xrow = ax + bx * col, ycol = ay + by * row (metres from the SCP)
        self._ax, self._bx = (row0 - scp_row) * ss_row, row_step * ss_row
        self._ay, self._by = (col0 - scp_col) * ss_col, col_step * ss_col
        self.urow = np.asarray(sec["row_uvect_ecf"], np.float64)
        self.ucol = np.asarray(sec["col_uvect_ecf"], np.float64)
        self.tcoa = _trim(sec["time_coa_poly"])
        self.arp = _pad_stack([_trim(sec["arp_poly"][k]) for k in "xyz"])
        self.varp = derivative(self.arp)
        duration = float(sec["collect_duration_s"])
        self.orbit = PolyOrbit(self.arp, (-SPAN_MARGIN * duration, (1.0 + SPAN_MARGIN) * duration))
        if self.method == "inca":
            inca = sec["inca"]
            self.r_ca_scp, self.tca = float(inca["r_ca_scp_m"]), _trim(inca["time_ca_poly"])
            self.drsf = _trim(inca["drate_sf_poly"])
        elif self.method == "pfa":
            pfa = sec["pfa"]
            self.pa, self.ksf = _trim(pfa["polar_ang_poly"]), _trim(pfa["spatial_freq_sf_poly"])
            self.dpa, self.dksf = derivative(self.pa), derivative(self.ksf)
        elif self.method == "rgazcomp":
            self.az_sf = float(sec["rgazcomp"]["az_sf"])
        self._linearise()

    # ------------------------------------------------------------ JSON
    @classmethod
    def from_dict(cls, doc, source="<sensor model>"):
        """Validate a ``sarstereo.sensor/2`` dict of kind sicd; errors name the field."""
        from .sicd_doc import validate
        model = cls(validate(doc, source), source)
        model.check_coverage()
        return model

    def to_dict(self):
        return json.loads(json.dumps(self.doc))

    def to_json(self):
        return json.dumps(self.doc, indent=1)

    def check_coverage(self):
        """Raise ``SensorModelError`` where the image's COA times leave the collection (ARP polynomial)."""
        rows, cols = np.meshgrid([0.0, (self.rows - 1) / 2.0, self.rows - 1.0],
                                 [0.0, (self.cols - 1) / 2.0, self.cols - 1.0], indexing="ij")
        with np.errstate(invalid="ignore"):
            t = self.contour(rows, cols)[0]
        lo, hi = self.orbit.span
        if not (np.isfinite(t).all() and t.min() >= lo and t.max() <= hi):
            raise SensorModelError(located(
                self.source, "sicd.time_coa_poly",
                f"the image's centre-of-aperture times span {np.nanmin(t):.6f}..{np.nanmax(t):.6f} s but the "
                f"collection (sicd.collect_duration_s, ARP polynomial) covers only {lo:.6f}..{hi:.6f} s; the "
                "product's orbit does not cover its image"))

    # ------------------------------------------------------------ derived quantities
    @property
    def sample_spacing_m(self):
        """Spacing of our columns: the SICD row sample spacing (slant range for slant-plane grids)."""
        return abs(self._bx)

    @property
    def range_rate(self):
        raise GeometryError(f"{self.source}: a SICD-kind model has a range rate per pixel; use contour()")

    @property
    def azimuth_spacing_m(self):
        return abs(self._by)

    @property
    def line_interval_s(self):
        """The time the ARP takes to fly one azimuth pixel at the image centre: an equivalent line
        interval for spacing heuristics (a spotlight's rows share one COA time)."""
        t = self.row_to_time((self.rows - 1) / 2.0)
        return self.azimuth_spacing_m / float(np.linalg.norm(self.orbit.velocity(t)))

    def row_to_time(self, rows, cols=None):
        """COA times of image points (of the centre column where ``cols`` is not given)."""
        rows = np.asarray(rows, np.float64)
        cols = np.full(rows.shape, (self.cols - 1) / 2.0) if cols is None else cols
        return self.contour(rows, cols)[0]

    def image_coordinates(self, rows, cols):
        """SICD (xrow, ycol) in metres from the SCP of our (rows, cols)."""
        return self._ax + self._bx * np.asarray(cols, np.float64), self._ay + self._by * np.asarray(rows, np.float64)

    def pixels_of(self, xrow, ycol):
        """Our (rows, cols) of SICD image coordinates (metres from the SCP)."""
        return (np.asarray(ycol) - self._ay) / self._by, (np.asarray(xrow) - self._ax) / self._bx

    def multilooked(self, looks_azimuth, looks_range):
        """The model of this image averaged over blocks of looks (rows, cols); the remainder dropped."""
        doc = self.to_dict()
        (row0, row_step), (col0, col_step) = doc["pixels"]["sicd_row"], doc["pixels"]["sicd_col"]
        doc["pixels"] = {"sicd_row": [row0 + row_step * (looks_range - 1) / 2.0, row_step * looks_range],
                         "sicd_col": [col0 + col_step * (looks_azimuth - 1) / 2.0, col_step * looks_azimuth]}
        doc["shape"] = {"rows": self.rows // looks_azimuth, "cols": self.cols // looks_range}
        return SicdModel(doc, self.source)

    # ------------------------------------------------------------ the contour
    def contour(self, rows, cols):
        """(COA time, range R, range rate Rdot) of image points; see the module doc."""
        rows, cols = np.broadcast_arrays(np.asarray(rows, np.float64), np.asarray(cols, np.float64))
        xr, yc = self.image_coordinates(rows, cols)
        return blockwise(self._contour_block, xr, yc)

    def _contour_block(self, xr, yc):
        t, _, _, rng, rdot = self._state(xr, yc)
        return t, rng, rdot

    def _state(self, xr, yc):
        """t, ARP position and velocity (component tuples), R and Rdot at image coordinates."""
        t = poly2(self.tcoa, xr, yc)
        if np.ndim(t) < np.ndim(xr):  # a spotlight's one COA time
            t = np.full(np.shape(xr), t)
        p = tuple(poly1(c, t) for c in self.arp)
        v = tuple(poly1(c, t) for c in self.varp)
        if self.method == "inca":
            r_ca = self.r_ca_scp + xr
            t_ca = poly1(self.tca, yc)
            vel2 = sum(poly1(c, t_ca) ** 2 for c in self.varp)
            k = poly2(self.drsf, xr, yc) * vel2
            dt = t - t_ca
            rng = np.sqrt(r_ca * r_ca + k * dt * dt)
            return t, p, v, rng, k * dt / rng
        if self.method == "plane":
            d = tuple(p[i] - (self.scp[i] + xr * self.urow[i] + yc * self.ucol[i]) for i in range(3))
            rng = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
            return t, p, v, rng, (v[0] * d[0] + v[1] * d[1] + v[2] * d[2]) / rng
        d = tuple(p[i] - self.scp[i] for i in range(3))
        r_scp = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        rdot_scp = (v[0] * d[0] + v[1] * d[1] + v[2] * d[2]) / r_scp
        if self.method == "rgazcomp":
            speed = np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
            return t, p, v, r_scp + xr, rdot_scp - speed * self.az_sf * yc
        theta = poly1(self.pa, t)
        st, ct = np.sin(theta), np.cos(theta)
        ka, kc = xr * ct + yc * st, yc * ct - xr * st
        ksf = poly1(self.ksf, theta)
        rdot = rdot_scp + poly1(self.dpa, t) * (poly1(self.dksf, theta) * ka + ksf * kc)
        return t, p, v, r_scp + ksf * ka, rdot

    # ------------------------------------------------------------ geo2rdr
    def _linearise(self):
        """The contour's Jacobian at the SCP: the start of every geo2rdr Newton iteration."""
        zero = np.zeros(1)
        t, p, v, rng, rdot = self._state(zero, zero)
        self._p0, self._v0 = np.array([c[0] for c in p]), np.array([c[0] for c in v])
        self._f0 = np.array([rng[0], rdot[0]])
        dx, dy = abs(self._bx), abs(self._by)
        j = np.empty((2, 2))
        for i, (xr, yc, d) in enumerate(((np.array([dx]), zero, dx), (zero, np.array([dy]), dy))):
            f = self._residual(xr, yc, *self.scp)[:2]
            j[:, i] = [f[0][0] / d, f[1][0] / d]
        if not (np.isfinite(j).all() and np.isfinite(self._f0).all() and abs(np.linalg.det(j)) > 0):
            raise SensorModelError(located(self.source, "sicd", "the SCP's range/range-rate contour is degenerate "
                                                                "(R, Rdot or their pixel derivatives are not finite); "
                                                                "the SICD polynomials are inconsistent"))
        self._j0_inv = np.linalg.inv(j)

    def _residual(self, xr, yc, x, y, z):
        """(|X - ARP(t)| - R, Rdot of X - Rdot, t) at image coordinates, for ECEF points X."""
        t, p, v, rng, rdot = self._state(xr, yc)
        dx, dy, dz = p[0] - x, p[1] - y, p[2] - z
        r = np.sqrt(dx * dx + dy * dy + dz * dz)
        return r - rng, (v[0] * dx + v[1] * dy + v[2] * dz) / r - rdot, t

    def geo2rdr(self, lon, lat, h, look_side_only=False):
        """Image (rows, cols) of geographic points (degrees, metres above the ellipsoid).

        NaN where the iteration fails or the point's COA time lies outside the collection; rows
        and cols outside the image are returned as they are. ``look_side_only``: NaN too for
        ground on the other side of the track, which the contour maps into the image mirrored.
        """
        lon, lat, h = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (lon, lat, h)))
        x, y, z = ellipsoid.llh_to_xyz(np.radians(lon), np.radians(lat), h)
        rows, cols, t = self._pixels_of_ecef(x, y, z)
        if look_side_only:
            xyz = np.stack([x, y, z], axis=-1)
            pos, vel = self.orbit.position(t), self.orbit.velocity(t)
            right = np.einsum("...i,...i", np.cross(vel, pos), xyz - pos)
            with np.errstate(invalid="ignore"):
                other = ~(right * (1.0 if self.look_side == "right" else -1.0) > 0)
            rows, cols = np.where(other, np.nan, rows), np.where(other, np.nan, cols)
        return rows, cols

    def ecef_to_time_range(self, xyz):
        """COA time and range of ECEF points (..., 3); NaN where geo2rdr fails."""
        xyz = np.asarray(xyz, np.float64)
        x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
        _, _, t = self._pixels_of_ecef(x, y, z)
        p = self.orbit.position(t)
        return t, np.sqrt((x - p[..., 0]) ** 2 + (y - p[..., 1]) ** 2 + (z - p[..., 2]) ** 2)

    def _pixels_of_ecef(self, x, y, z):
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            xr, yc, t = blockwise(self._newton_block, *np.broadcast_arrays(x, y, z))
        lo, hi = self.orbit.span
        with np.errstate(invalid="ignore"):
            bad = ~((t >= lo) & (t <= hi))
        rows, cols = self.pixels_of(xr, yc)
        return np.where(bad, np.nan, rows), np.where(bad, np.nan, cols), np.where(bad, np.nan, t)

    def _newton_block(self, x, y, z):
        # start: the SCP's ARP state and Jacobian (exact for a spotlight's common COA time)
        dx, dy, dz = self._p0[0] - x, self._p0[1] - y, self._p0[2] - z
        r = np.sqrt(dx * dx + dy * dy + dz * dz)
        f1 = r - self._f0[0]
        f2 = (self._v0[0] * dx + self._v0[1] * dy + self._v0[2] * dz) / r - self._f0[1]
        (a, b), (c, d) = self._j0_inv
        xr, yc = -(a * f1 + b * f2), -(c * f1 + d * f2)
        hx, hy = abs(self._bx), abs(self._by)  # one pixel: the finite-difference steps
        fresh = True
        for _ in range(_NEWTON_MAX):
            f1, f2, t = self._residual(xr, yc, x, y, z)
            if fresh:  # Newton while far; then the last Jacobian serves (it is exact to ~1e-6)
                g1, g2, _ = self._residual(xr + hx, yc, x, y, z)
                k1, k2, _ = self._residual(xr, yc + hy, x, y, z)
                j11, j21, j12, j22 = (g1 - f1) / hx, (g2 - f2) / hx, (k1 - f1) / hy, (k2 - f2) / hy
                det = j11 * j22 - j12 * j21
            sx = (j12 * f2 - j22 * f1) / det
            sy = (j21 * f1 - j11 * f2) / det
            xr, yc = xr + sx, yc + sy
            moved = np.nanmax(np.maximum(np.abs(sx) / hx, np.abs(sy) / hy), initial=0.0)
            fresh = moved > 0.5
            if not moved > 1e-8:  # pixels; rounding leaves ~1e-9
                break
        ok = (np.abs(sx) <= 1e-6 * hx) & (np.abs(sy) <= 1e-6 * hy)
        t = poly2(self.tcoa, xr, yc) + 0.0 * xr
        return np.where(ok, xr, np.nan), np.where(ok, yc, np.nan), np.where(ok, t, np.nan)

    # ------------------------------------------------------------ rdr2geo: the contour's, shared
    rdr2geo = SensorModel.rdr2geo
    time_range_to_lonlat = SensorModel.time_range_to_lonlat
    _lonlat_block = SensorModel._lonlat_block
    _intersect_dem = SensorModel._intersect_dem

    # ------------------------------------------------------------ building one from a zero-Doppler model
    @classmethod
    def from_zero_doppler(cls, model, scene_height=0.0, source=None):
        """The RGZERO (INCA) equivalent of a zero-Doppler :class:`SensorModel`: the ARP polynomial
        fit to its orbit over the image, COA time = closest-approach time of every column."""
        from .sicd_doc import zero_doppler_doc
        return cls.from_dict(zero_doppler_doc(model, scene_height), source or model.source)


def _method(grid_type, image_formation):
    if grid_type == "RGZERO":
        return "inca"
    if grid_type == "RGAZIM" and image_formation in ("PFA", "RGAZCOMP"):
        return image_formation.lower()
    if grid_type in PLANE_GRIDS:
        return "plane"
    raise SensorModelError(f"SICD grid {grid_type!r} with image formation {image_formation!r} has no projection "
                           "model (SICD defines RGZERO, RGAZIM with PFA or RGAZCOMP, and the plane grids)")


def _pad_stack(rows):
    n = max(r.size for r in rows)
    return np.stack([np.pad(r, (0, n - r.size)) for r in rows])
