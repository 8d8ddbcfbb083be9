"""SAR sensor model (schema ``sarstereo.sensor/1``) and range/Doppler geometry.

Pixel convention: (row, col) are continuous, integer at pixel centres. Row r is the azimuth time
``first_line_time_s + r * line_interval_s`` at which the target is seen with the model's Doppler
centroid (zero-Doppler by default); col c is the slant range ``first_sample_range_m +
c * sample_spacing_m``. Every geometric function works on arrays of any shape and is vectorised.
"""

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from . import ellipsoid
from .errors import GeometryError, SensorModelError, located
from .orbit import Orbit

SCHEMA = "sarstereo.sensor/1"
MIN_STATE_VECTORS = 4
_NEWTON_MAX = 30


# ---------------------------------------------------------------- parsing and validation
def _number(value, where, source, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SensorModelError(located(source, where, f"expected a number, got {type(value).__name__}"))
    if not math.isfinite(value):
        raise SensorModelError(located(source, where, f"must be finite, got {value}"))
    if positive and value <= 0:
        raise SensorModelError(located(source, where, f"must be positive, got {value}"))
    return float(value)


def _integer(value, where, source):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SensorModelError(located(source, where, f"expected a positive integer, got {value!r}"))
    return value


def _section(doc, key, keys, source, optional=()):
    """Return doc[key] as a dict holding exactly `keys` (plus any of `optional`)."""
    if key not in doc:
        raise SensorModelError(located(source, key, "is missing"))
    sec = doc[key]
    if not isinstance(sec, dict):
        raise SensorModelError(located(source, key, f"expected an object, got {type(sec).__name__}"))
    _exact_keys(sec, keys, source, prefix=f"{key}.", optional=optional)
    return sec


def _exact_keys(doc, keys, source, prefix="", optional=()):
    for k in keys:
        if k not in doc:
            raise SensorModelError(located(source, prefix + k, "is missing"))
    unknown = sorted(set(doc) - set(keys) - set(optional))
    if unknown:
        raise SensorModelError(located(source, prefix + unknown[0],
                                       f"is not part of schema {SCHEMA}; remove it"))


def _vectors(value, where, source, n):
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SensorModelError(located(source, where, "expected a list of [x, y, z] numbers")) from None
    if arr.shape != (n, 3) or not isinstance(value, list) or any(
            isinstance(c, bool) for row in value if isinstance(row, list) for c in row):
        raise SensorModelError(located(source, where, f"expected {n} rows of [x, y, z], got shape {arr.shape}"))
    if not np.isfinite(arr).all():
        raise SensorModelError(located(source, where, "holds a non-finite value"))
    return arr


def _parse_epoch(value, source):
    if not isinstance(value, str):
        raise SensorModelError(located(source, "reference_epoch", "expected an ISO 8601 UTC string"))
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SensorModelError(located(source, "reference_epoch",
                                       f"{value!r} is not an ISO 8601 time such as 2024-05-01T02:00:00Z")) from None
    if stamp.utcoffset() not in (None,) and stamp.utcoffset().total_seconds() != 0:
        raise SensorModelError(located(source, "reference_epoch", "must be UTC (end it with Z)"))
    return value


@dataclass(frozen=True, eq=False)
class SensorModel:
    """Geometry of one slant-range SAR image. Build it with ``SensorModel.from_json``."""

    wavelength_m: float
    look_side: str
    reference_epoch: str
    orbit_time_s: np.ndarray
    orbit_position_m: np.ndarray
    orbit_velocity_m_s: np.ndarray
    first_line_time_s: float
    line_interval_s: float
    first_sample_range_m: float
    sample_spacing_m: float
    rows: int
    cols: int
    doppler_centroid_hz: float = 0.0
    source: str = field(default="", compare=False)
    orbit: Orbit = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "orbit", Orbit(self.orbit_time_s, self.orbit_position_m,
                                                self.orbit_velocity_m_s))

    # ------------------------------------------------------------ JSON
    @classmethod
    def from_json(cls, path_or_dict, source=None):
        """Parse and validate a model from a JSON file path, a JSON text, or a dict."""
        if isinstance(path_or_dict, dict):
            doc, source = path_or_dict, source or "<sensor model>"
        elif isinstance(path_or_dict, str) and path_or_dict.lstrip().startswith("{"):
            doc, source = _loads(path_or_dict, source or "<sensor model>"), source or "<sensor model>"
        else:
            source = source or str(path_or_dict)
            try:
                text = Path(path_or_dict).read_text(encoding="utf-8")
            except OSError as exc:
                raise SensorModelError(f"{source}: cannot read the sensor model ({exc.strerror})") from None
            doc = _loads(text, source)
        return cls._from_dict(doc, source)

    @classmethod
    def _from_dict(cls, doc, source):
        if not isinstance(doc, dict):
            raise SensorModelError(located(source, "<root>", "expected a JSON object"))
        _exact_keys(doc, ("schema", "wavelength_m", "look_side", "reference_epoch", "orbit",
                          "azimuth", "range", "shape"), source, optional=("doppler_centroid_hz",))
        if doc["schema"] != SCHEMA:
            raise SensorModelError(located(source, "schema", f"expected {SCHEMA!r}, got {doc['schema']!r}"))
        if doc["look_side"] not in ("left", "right"):
            raise SensorModelError(located(source, "look_side", f"expected 'left' or 'right', got {doc['look_side']!r}"))
        orbit = _section(doc, "orbit", ("time_s", "position_m", "velocity_m_s"), source)
        az = _section(doc, "azimuth", ("first_line_time_s", "line_interval_s"), source)
        rg = _section(doc, "range", ("first_sample_range_m", "sample_spacing_m"), source)
        shape = _section(doc, "shape", ("rows", "cols"), source)

        times = orbit["time_s"]
        if not isinstance(times, list):
            raise SensorModelError(located(source, "orbit.time_s", "expected a list of numbers"))
        times = np.array([_number(t, f"orbit.time_s[{i}]", source) for i, t in enumerate(times)])
        if times.size < MIN_STATE_VECTORS:
            raise SensorModelError(located(source, "orbit.time_s",
                                           f"{times.size} state vectors; at least {MIN_STATE_VECTORS} are needed"))
        steps = np.diff(times)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0)) + 1
            raise SensorModelError(located(source, "orbit.time_s",
                                           f"times must increase strictly (index {i}: {times[i]} after {times[i - 1]})"))
        pos = _vectors(orbit["position_m"], "orbit.position_m", source, times.size)
        vel = _vectors(orbit["velocity_m_s"], "orbit.velocity_m_s", source, times.size)
        radius = np.linalg.norm(pos, axis=1)
        if (radius < ellipsoid.B - 1.0e5).any() or (radius > 1.0e8).any():
            raise SensorModelError(located(source, "orbit.position_m",
                                           "positions must be ECEF metres (EPSG:4978), above the Earth's surface"))
        if (np.linalg.norm(vel, axis=1) <= 0).any():
            raise SensorModelError(located(source, "orbit.velocity_m_s", "holds a zero velocity"))

        model = cls(
            wavelength_m=_number(doc["wavelength_m"], "wavelength_m", source, positive=True),
            look_side=doc["look_side"],
            reference_epoch=_parse_epoch(doc["reference_epoch"], source),
            orbit_time_s=times, orbit_position_m=pos, orbit_velocity_m_s=vel,
            first_line_time_s=_number(az["first_line_time_s"], "azimuth.first_line_time_s", source),
            line_interval_s=_number(az["line_interval_s"], "azimuth.line_interval_s", source, positive=True),
            first_sample_range_m=_number(rg["first_sample_range_m"], "range.first_sample_range_m", source, positive=True),
            sample_spacing_m=_number(rg["sample_spacing_m"], "range.sample_spacing_m", source, positive=True),
            rows=_integer(shape["rows"], "shape.rows", source),
            cols=_integer(shape["cols"], "shape.cols", source),
            doppler_centroid_hz=_number(doc.get("doppler_centroid_hz", 0.0), "doppler_centroid_hz", source),
            source=source)
        t_first, t_last = model.row_to_time(0), model.row_to_time(model.rows - 1)
        if t_first < times[0] or t_last > times[-1]:
            raise SensorModelError(located(
                source, "azimuth.first_line_time_s",
                f"image lines span {t_first:.6f}..{t_last:.6f} s but the orbit covers only "
                f"{times[0]:.6f}..{times[-1]:.6f} s; supply state vectors covering the whole image"))
        return model

    def to_dict(self):
        return {
            "schema": SCHEMA,
            "wavelength_m": self.wavelength_m,
            "look_side": self.look_side,
            "reference_epoch": self.reference_epoch,
            "orbit": {"time_s": self.orbit_time_s.tolist(),
                      "position_m": self.orbit_position_m.tolist(),
                      "velocity_m_s": self.orbit_velocity_m_s.tolist()},
            "azimuth": {"first_line_time_s": self.first_line_time_s, "line_interval_s": self.line_interval_s},
            "range": {"first_sample_range_m": self.first_sample_range_m, "sample_spacing_m": self.sample_spacing_m},
            "doppler_centroid_hz": self.doppler_centroid_hz,
            "shape": {"rows": self.rows, "cols": self.cols},
        }

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1)

    # ------------------------------------------------------------ pixel <-> time/range
    def row_to_time(self, rows):
        return self.first_line_time_s + np.asarray(rows, dtype=np.float64) * self.line_interval_s

    def col_to_range(self, cols):
        return self.first_sample_range_m + np.asarray(cols, dtype=np.float64) * self.sample_spacing_m

    @property
    def _half_lambda_fdc(self):
        """lambda * f_dc / 2: the Doppler condition reads v.(X - p) = (lambda f_dc / 2) * |X - p|."""
        return 0.5 * self.wavelength_m * self.doppler_centroid_hz

    # ------------------------------------------------------------ geo2rdr
    def geo2rdr(self, lon, lat, h):
        """Image (rows, cols) of geographic points (degrees, metres above the ellipsoid).

        Points whose Doppler time falls outside the orbit get NaN. Rows/cols outside the image
        are returned as they are: callers decide what lies inside.
        """
        xyz = ellipsoid.llh_to_ecef(lon, lat, h)
        t, rng = self.ecef_to_time_range(xyz)
        return ((t - self.first_line_time_s) / self.line_interval_s,
                (rng - self.first_sample_range_m) / self.sample_spacing_m)

    def ecef_to_time_range(self, xyz):
        """Azimuth time and slant range of ECEF points (..., 3) by Newton iteration on Doppler."""
        xyz = np.asarray(xyz, dtype=np.float64)
        lo, hi = self.orbit.span
        t = np.full(xyz.shape[:-1], 0.5 * (self.row_to_time(0) + self.row_to_time(self.rows - 1)))
        t[~np.isfinite(xyz).all(axis=-1)] = np.nan
        k = self._half_lambda_fdc
        for _ in range(_NEWTON_MAX):
            p, v, a = self.orbit.state(t)
            d = xyz - p
            rng = np.linalg.norm(d, axis=-1)
            vd = np.einsum("...i,...i->...", v, d)
            g = vd - k * rng
            dg = np.einsum("...i,...i->...", a, d) - np.einsum("...i,...i->...", v, v) + k * vd / rng
            step = g / dg
            t = np.clip(t - step, lo, hi)
            if not np.nanmax(np.abs(step), initial=0.0) > 1e-10:
                break
        p = self.orbit.position(t)
        rng = np.linalg.norm(xyz - p, axis=-1)
        # a solution pinned at the orbit's end is no solution: the point is seen outside the orbit
        converged = np.abs(step) <= 1e-6
        return np.where(converged, t, np.nan), np.where(converged, rng, np.nan)

    # ------------------------------------------------------------ rdr2geo
    def rdr2geo(self, rows, cols, height=None, dem=None):
        """Geographic (lon, lat, h) of image points on a height surface or on a DEM.

        ``height``: scalar or array of metres above the ellipsoid (default 0). ``dem``: a
        GDAL-readable raster path (or ``Dem``) whose surface is intersected instead; points
        off the DEM get NaN.
        """
        rows, cols = np.broadcast_arrays(np.asarray(rows, np.float64), np.asarray(cols, np.float64))
        t, rng = self.row_to_time(rows), self.col_to_range(cols)
        if dem is None:
            h = np.broadcast_to(np.asarray(0.0 if height is None else height, np.float64), rows.shape)
            lon, lat = self.time_range_to_lonlat(t, rng, h)
            return np.degrees(lon), np.degrees(lat), np.where(np.isfinite(lon), h, np.nan)
        return self._intersect_dem(t, rng, dem)

    def time_range_to_lonlat(self, t, rng, h, start=None):
        """Longitude and latitude (radians) of the target at time t, slant range rng, height h.

        Newton iteration on (lon, lat) of the range and Doppler conditions; ``start`` is an
        optional (lon, lat) guess in radians. NaN where the range cannot reach height h.
        """
        p, v, _ = self.orbit.state(t)
        vhat = v / np.linalg.norm(v, axis=-1, keepdims=True)
        lon, lat = start if start is not None else self._sphere_guess(p, vhat, rng, h)
        k = self._half_lambda_fdc / np.linalg.norm(v, axis=-1)  # sine of the squint angle
        for _ in range(_NEWTON_MAX):
            x, d_lon, d_lat = ellipsoid.geodetic_frame(lon, lat, h)
            d = x - p
            r_now = np.linalg.norm(d, axis=-1)
            los = d / r_now[..., None]
            f1 = r_now - rng
            f2 = np.einsum("...i,...i->...", vhat, d) - k * rng
            j11 = np.einsum("...i,...i->...", los, d_lon)
            j12 = np.einsum("...i,...i->...", los, d_lat)
            j21 = np.einsum("...i,...i->...", vhat, d_lon)
            j22 = np.einsum("...i,...i->...", vhat, d_lat)
            det = j11 * j22 - j12 * j21
            dlon = -(j22 * f1 - j12 * f2) / det
            dlat = -(j11 * f2 - j21 * f1) / det
            lon, lat = lon + dlon, lat + dlat
            if not np.nanmax(np.abs(dlon) + np.abs(dlat), initial=0.0) > 1e-14:
                break
        return lon, lat

    def _sphere_guess(self, p, vhat, rng, h):
        """Target on a local sphere, in the plane normal to the velocity, on the look side."""
        up = p - np.einsum("...i,...i->...", p, vhat)[..., None] * vhat
        rp = np.linalg.norm(up, axis=-1)
        up = up / rp[..., None]
        side = np.cross(vhat, up) if self.look_side == "right" else np.cross(up, vhat)
        rt = ellipsoid.geocentric_radius(p) + h
        cos_theta = (rp ** 2 + rt ** 2 - rng ** 2) / (2.0 * rp * rt)
        cos_theta = np.where(np.abs(cos_theta) <= 1.0, cos_theta, np.nan)
        sin_theta = np.sqrt(1.0 - cos_theta ** 2)
        x = rt[..., None] * (cos_theta[..., None] * up + sin_theta[..., None] * side)
        lon = np.arctan2(x[..., 1], x[..., 0])
        lat = np.arctan2(x[..., 2], (1.0 - ellipsoid.E2) * np.hypot(x[..., 0], x[..., 1]))
        return lon, lat

    def _intersect_dem(self, t, rng, dem, tol_m=1e-3, max_iter=50):
        from .dem import Dem
        dem = dem if isinstance(dem, Dem) else Dem(dem)
        h = np.full(t.shape, float(np.nanmedian(dem.heights)))
        lon, lat = self.time_range_to_lonlat(t, rng, h)
        h_prev = r_prev = None
        for _ in range(max_iter):
            r = dem.sample(np.degrees(lon), np.degrees(lat)) - h  # g(h) = DEM(X(h)) - h
            if not np.nanmax(np.abs(r), initial=0.0) > tol_m:
                break
            h_next = h + r  # fixed point: move to the DEM height seen at the current point
            if h_prev is not None:  # secant on g converges where the fixed point oscillates
                with np.errstate(divide="ignore", invalid="ignore"):
                    slope = (r - r_prev) / (h - h_prev)
                    secant = h - r / slope
                usable = np.isfinite(secant) & (np.abs(h - h_prev) > 1e-9) & (slope < -0.05)
                h_next = np.where(usable, secant, h_next)
            h_prev, r_prev, h = h, r, h_next
            lon, lat = self.time_range_to_lonlat(t, rng, h, start=(lon, lat))
        bad = ~(np.abs(r) <= 10 * tol_m)
        h = np.where(bad, np.nan, h)
        return np.degrees(np.where(bad, np.nan, lon)), np.degrees(np.where(bad, np.nan, lat)), h


def _loads(text, source):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SensorModelError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


# ---------------------------------------------------------------- stereo geometry
_CHUNK = 1 << 16  # points per block: keeps the ~40 work arrays in cache instead of RAM


def _view(model, rows, cols):
    """Per-point quantities of one view as component arrays: position, unit velocity, range,
    and the Doppler plane constant c (the Doppler condition is linear: vhat.X = c)."""
    t = model.row_to_time(rows)
    p = model.orbit.position(t)
    v = model.orbit.velocity(t)
    px, py, pz = (np.ascontiguousarray(p[:, i]) for i in range(3))
    vx, vy, vz = v[:, 0], v[:, 1], v[:, 2]
    speed = np.sqrt(vx * vx + vy * vy + vz * vz)
    vx, vy, vz = vx / speed, vy / speed, vz / speed
    rng = model.col_to_range(cols)
    # Doppler: vhat.(X - p) = (lambda f_dc / 2 / |v|) * range
    c = vx * px + vy * py + vz * pz + (model._half_lambda_fdc / speed) * rng
    return (px, py, pz), (vx, vy, vz), rng, c


def _plane_two_spheres(view1, view2, look_side):
    """Closed-form point on view 1's Doppler plane at both ranges, on view 1's look side.

    In view 1's Doppler plane the range sphere is a circle; view 2's sphere cuts the plane in a
    line. Of the two crossings take the one on the look side, and of two such the lower one (the
    other is the mirror image above the platforms). NaN where the line misses a degenerate plane.
    """
    (px, py, pz), (vx, vy, vz), r1, c1 = view1
    (qx, qy, qz), _, r2, _ = view2
    off = c1 - (vx * px + vy * py + vz * pz)  # distance of the circle's centre from p1 along vhat
    cx, cy, cz = px + off * vx, py + off * vy, pz + off * vz
    rho2 = np.maximum(r1 * r1 - off * off, 0.0)
    # in-plane basis: 'up' = p1 without its along-track part, 'side' = vhat x up (right looking)
    pv = px * vx + py * vy + pz * vz
    ux, uy, uz = px - pv * vx, py - pv * vy, pz - pv * vz
    un = np.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / un, uy / un, uz / un
    sx, sy, sz = vy * uz - vz * uy, vz * ux - vx * uz, vx * uy - vy * ux
    if look_side == "left":
        sx, sy, sz = -sx, -sy, -sz
    dx, dy, dz = cx - qx, cy - qy, cz - qz
    qs, qu = dx * sx + dy * sy + dz * sz, dx * ux + dy * uy + dz * uz
    # |d + a s + b u|^2 = r2^2 with a^2 + b^2 = rho2  ->  qs a + qu b = w
    w = 0.5 * (r2 * r2 - (dx * dx + dy * dy + dz * dz) - rho2)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.sqrt(qs * qs + qu * qu)
        ns, nu = qs / norm, qu / norm
        foot = w / norm
        half = np.sqrt(np.maximum(rho2 - foot * foot, 0.0))  # inconsistent ranges: closest point
    a1, b1 = foot * ns - half * nu, foot * nu + half * ns
    a2, b2 = foot * ns + half * nu, foot * nu - half * ns
    first = np.where((a1 > 0) != (a2 > 0), a1 > 0, b1 < b2)
    a, b = np.where(first, a1, a2), np.where(first, b1, b2)
    return cx + a * sx + b * ux, cy + a * sy + b * uy, cz + a * sz + b * uz


def _triangulate_block(ref_model, r1, c1, sec_model, r2, c2, height_guess, max_iter):
    view1, view2 = _view(ref_model, r1, c1), _view(sec_model, r2, c2)
    x, y, z = _plane_two_spheres(view1, view2, ref_model.look_side)
    bad = ~np.isfinite(x)
    if bad.any():  # degenerate geometry: start on the reference circle at the guessed height
        (px, py, pz), (vx, vy, vz), rg, _ = view1
        p = np.stack([px[bad], py[bad], pz[bad]], axis=-1)
        vh = np.stack([vx[bad], vy[bad], vz[bad]], axis=-1)
        h0 = np.maximum(height_guess, np.linalg.norm(p, axis=-1) - ellipsoid.geocentric_radius(p) - 0.95 * rg[bad])
        lon, lat = ref_model._sphere_guess(p, vh, rg[bad], h0)
        xyz = ellipsoid.geodetic_frame(lon, lat, h0)[0]
        x[bad], y[bad], z[bad] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    (p1x, p1y, p1z), (v1x, v1y, v1z), rg1, dc1 = view1
    (p2x, p2y, p2z), (v2x, v2y, v2z), rg2, dc2 = view2
    # Gauss-Newton on the four equations; the Doppler rows of J^T J never change
    a00 = v1x * v1x + v2x * v2x
    a01 = v1x * v1y + v2x * v2y
    a02 = v1x * v1z + v2x * v2z
    a11 = v1y * v1y + v2y * v2y
    a12 = v1y * v1z + v2y * v2z
    a22 = v1z * v1z + v2z * v2z
    for it in range(max_iter + 1):
        d1x, d1y, d1z = x - p1x, y - p1y, z - p1z
        n1 = np.sqrt(d1x * d1x + d1y * d1y + d1z * d1z)
        d1x /= n1
        d1y /= n1
        d1z /= n1
        d2x, d2y, d2z = x - p2x, y - p2y, z - p2z
        n2 = np.sqrt(d2x * d2x + d2y * d2y + d2z * d2z)
        d2x /= n2
        d2y /= n2
        d2z /= n2
        f1, f2 = n1 - rg1, n2 - rg2
        g1 = v1x * x + v1y * y + v1z * z - dc1
        g2 = v2x * x + v2y * y + v2z * z - dc2
        if it == max_iter:
            break
        m00 = a00 + d1x * d1x + d2x * d2x
        m01 = a01 + d1x * d1y + d2x * d2y
        m02 = a02 + d1x * d1z + d2x * d2z
        m11 = a11 + d1y * d1y + d2y * d2y
        m12 = a12 + d1y * d1z + d2y * d2z
        m22 = a22 + d1z * d1z + d2z * d2z
        b0 = -(d1x * f1 + d2x * f2 + v1x * g1 + v2x * g2)
        b1 = -(d1y * f1 + d2y * f2 + v1y * g1 + v2y * g2)
        b2 = -(d1z * f1 + d2z * f2 + v1z * g1 + v2z * g2)
        c00 = m11 * m22 - m12 * m12  # adjugate of the symmetric 3x3 normal matrix
        c01 = m02 * m12 - m01 * m22
        c02 = m01 * m12 - m02 * m11
        c11 = m00 * m22 - m02 * m02
        c12 = m01 * m02 - m00 * m12
        c22 = m00 * m11 - m01 * m01
        det = m00 * c00 + m01 * c01 + m02 * c02
        sx = (c00 * b0 + c01 * b1 + c02 * b2) / det
        sy = (c01 * b0 + c11 * b1 + c12 * b2) / det
        sz = (c02 * b0 + c12 * b1 + c22 * b2) / det
        x, y, z = x + sx, y + sy, z + sz
        if not np.nanmax(np.abs(sx) + np.abs(sy) + np.abs(sz), initial=0.0) > 1e-7:
            max_iter = it + 1  # converged: one more pass evaluates the residual at the result
    residual = np.sqrt(f1 * f1 + g1 * g1 + f2 * f2 + g2 * g2)
    lon, lat, h = ellipsoid.ecef_to_llh(np.stack([x, y, z], axis=-1))
    return lon, lat, h, residual


def triangulate(ref_model, ref_rows, ref_cols, sec_model, sec_rows, sec_cols, height_guess=0.0,
                max_iter=15):
    """3D points of correspondences by least squares on both range spheres and Doppler cones.

    Returns (lon, lat, h, residual_m): degrees, metres above the ellipsoid, and the misclosure
    of the four range/Doppler equations in metres (near zero for an exact match; a mismatch in
    azimuth raises it). NaN inputs give NaN outputs. The solver starts from the closed-form
    crossing of the reference Doppler plane with both range spheres; ``height_guess`` (m) seeds
    it only where that crossing is degenerate.
    """
    arrays = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in
                                   (ref_rows, ref_cols, sec_rows, sec_cols)))
    shape = arrays[0].shape
    r1, c1, r2, c2 = (a.ravel() for a in arrays)
    ok = np.flatnonzero(np.isfinite(r1) & np.isfinite(c1) & np.isfinite(r2) & np.isfinite(c2))
    out = [np.full(r1.shape, np.nan) for _ in range(4)]
    for start in range(0, ok.size, _CHUNK):
        sel = ok[start:start + _CHUNK]
        block = _triangulate_block(ref_model, r1[sel], c1[sel], sec_model, r2[sel], c2[sel],
                                   height_guess, max_iter)
        for o, val in zip(out, block):
            o[sel] = val
    return tuple(o.reshape(shape) for o in out)


def _lines_of_sight(model, lon, lat, h):
    xyz = ellipsoid.llh_to_ecef(lon, lat, h)
    t, _ = model.ecef_to_time_range(xyz)
    return model.orbit.position(t) - xyz


def intersection_angle(ref_model, sec_model, lon, lat, h):
    """Convergence angle (degrees) between the two lines of sight at ground points."""
    a, b = _lines_of_sight(ref_model, lon, lat, h), _lines_of_sight(sec_model, lon, lat, h)
    cos = np.einsum("...i,...i->...", a, b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def height_sensitivity(ref_model, sec_model, lon, lat, h, dh=1.0):
    """Metres of height per pixel of range disparity at ground points.

    For a fixed reference pixel, the target slides along the reference range/Doppler circle
    when its height changes; this is dh divided by how far its secondary column moves.
    """
    rows, cols = ref_model.geo2rdr(lon, lat, h)
    h = np.asarray(h, np.float64)
    cols_sec = []
    for hh in (h - dh / 2, h + dh / 2):
        ln, lt, _ = ref_model.rdr2geo(rows, cols, height=hh)
        cols_sec.append(sec_model.geo2rdr(ln, lt, hh)[1])
    with np.errstate(divide="ignore"):
        return dh / np.abs(cols_sec[1] - cols_sec[0])


