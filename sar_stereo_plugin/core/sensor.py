"""SAR sensor model (schema ``sarstereo.sensor/1``) and range/Doppler geometry.

Pixel convention: (row, col) are continuous, integer at pixel centres. Row r is the azimuth time
``first_line_time_s + r * line_interval_s`` at which the target is seen with the model's Doppler
centroid (zero-Doppler by default); col c is the slant range ``first_sample_range_m +
c * sample_spacing_m``. Every geometric function works on arrays of any shape and is vectorised.
"""

import json
import math
import numbers
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from . import ellipsoid
from .corrections import Corrections
from .dem import height_bounds, open_dem
from .errors import SensorModelError, located
from .inputs import parse_json, read_text
from .orbit import Orbit
from .rangedoppler import Circle, blockwise

SCHEMA = "sarstereo.sensor/1"
SCHEMA_V2 = "sarstereo.sensor/2"  # adds "kind": zero_doppler (the /1 fields) or sicd (.sicd_model)
MIN_STATE_VECTORS = 4
_NEWTON_MAX = 30
_MAX_PIXELS = 2 ** 31 - 1  # GDAL's limit on a raster dimension


# ---------------------------------------------------------------- parsing and validation
def _is_real(value):
    """A real number from JSON or from code (numpy scalars included), never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _number(value, where, source, positive=False):
    if not _is_real(value):
        raise SensorModelError(located(source, where, f"expected a number, got {type(value).__name__}"))
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float range
        raise SensorModelError(located(source, where, "is too large")) from None
    if not math.isfinite(value):
        raise SensorModelError(located(source, where, f"must be finite, got {value}"))
    if positive and value <= 0:
        raise SensorModelError(located(source, where, f"must be positive, got {value}"))
    return value


def _integer(value, where, source):
    if (not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_))
            or not 1 <= value <= _MAX_PIXELS):
        raise SensorModelError(located(source, where, f"expected an integer from 1 to {_MAX_PIXELS}, got {value!r}"))
    return int(value)


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
    unknown = sorted(set(doc) - set(keys) - set(optional), key=str)
    if unknown:
        raise SensorModelError(located(source, prefix + unknown[0],
                                       f"is not part of schema {SCHEMA}; remove it"))


def _vectors(value, where, source, n):
    """An (n, 3) float array from a list of [x, y, z] numbers (or such a numpy array)."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        value = value.tolist()
    if not (isinstance(value, (list, tuple)) and all(
            isinstance(row, (list, tuple)) and len(row) == 3 and all(_is_real(c) for c in row)
            for row in value)):
        raise SensorModelError(located(source, where, f"expected a list of {n} [x, y, z] number triples"))
    if len(value) != n:
        raise SensorModelError(located(source, where, f"expected {n} rows of [x, y, z] (one per orbit.time_s), "
                                       f"got {len(value)}"))
    try:
        arr = np.array(value, dtype=np.float64).reshape(n, 3)
    except OverflowError:
        raise SensorModelError(located(source, where, "holds a number too large")) from None
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
    corrections: Corrections = None  # refinement's corrections (module corrections); None: exact as written
    orbit: Orbit = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        position = self.orbit_position_m
        if self.corrections is not None:
            base = Orbit(self.orbit_time_s, position, self.orbit_velocity_m_s)
            t = float(np.clip(self.corrections.reference_time_s, *base.span))
            position = position + self.corrections.position_offset(base.position(t), base.velocity(t),
                                                                   self.look_side)
        object.__setattr__(self, "orbit", Orbit(self.orbit_time_s, position, self.orbit_velocity_m_s))

    def with_corrections(self, corrections):
        """This model with ``corrections`` (a :class:`Corrections`, or None for none) instead of its own."""
        return replace(self, corrections=None if corrections is None or corrections.is_zero() else corrections)

    @property
    def centre_time_s(self):
        """Nominal time of the image's middle row: the reference time of new corrections."""
        return self.first_line_time_s + 0.5 * (self.rows - 1) * self.line_interval_s

    # ------------------------------------------------------------ JSON
    @classmethod
    def from_json(cls, path_or_dict, source=None):
        """Parse and validate a model from a JSON file path, a JSON text, or a dict."""
        if isinstance(path_or_dict, dict):
            doc, source = path_or_dict, source or "<sensor model>"
        elif isinstance(path_or_dict, str) and path_or_dict.lstrip("\ufeff \t\r\n")[:1] in ("{", "["):
            doc, source = _loads(path_or_dict, source or "<sensor model>"), source or "<sensor model>"
        else:
            source = source or str(path_or_dict)
            doc = _loads(read_text(path_or_dict, "sensor model"), source)
        return cls._from_dict(doc, source)

    @classmethod
    def _from_dict(cls, doc, source):
        if not isinstance(doc, dict):
            raise SensorModelError(located(source, "<root>", "expected a JSON object"))
        if doc.get("schema") == SCHEMA_V2:
            if doc.get("kind") == "sicd":
                from .sicd_model import SicdModel
                return SicdModel.from_dict(doc, source)
            if doc.get("kind") != "zero_doppler":
                raise SensorModelError(located(source, "kind",
                                               f"expected 'zero_doppler' or 'sicd', got {doc.get('kind')!r}"))
            doc = {**{k: v for k, v in doc.items() if k != "kind"}, "schema": SCHEMA}
        _exact_keys(doc, ("schema", "wavelength_m", "look_side", "reference_epoch", "orbit",
                          "azimuth", "range", "shape"), source, optional=("doppler_centroid_hz", "corrections"))
        if doc["schema"] != SCHEMA:
            raise SensorModelError(located(source, "schema", f"expected {SCHEMA!r}, got {doc['schema']!r}"))
        if doc["look_side"] not in ("left", "right"):
            raise SensorModelError(located(source, "look_side",
                                           f"expected 'left' or 'right', got {doc['look_side']!r}"))
        orbit = _section(doc, "orbit", ("time_s", "position_m", "velocity_m_s"), source)
        az = _section(doc, "azimuth", ("first_line_time_s", "line_interval_s"), source)
        rg = _section(doc, "range", ("first_sample_range_m", "sample_spacing_m"), source)
        shape = _section(doc, "shape", ("rows", "cols"), source)

        times = orbit["time_s"]
        if isinstance(times, np.ndarray):
            times = times.tolist()
        if not isinstance(times, (list, tuple)):
            raise SensorModelError(located(source, "orbit.time_s", "expected a list of numbers"))
        times = np.array([_number(t, f"orbit.time_s[{i}]", source) for i, t in enumerate(times)])
        if times.size < MIN_STATE_VECTORS:
            raise SensorModelError(located(source, "orbit.time_s",
                                           f"{times.size} state vectors; at least {MIN_STATE_VECTORS} are needed"))
        steps = np.diff(times)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0)) + 1
            raise SensorModelError(located(source, "orbit.time_s",
                                           f"times must increase strictly (index {i}: {times[i]} after "
                                           f"{times[i - 1]})"))
        pos = _vectors(orbit["position_m"], "orbit.position_m", source, times.size)
        vel = _vectors(orbit["velocity_m_s"], "orbit.velocity_m_s", source, times.size)
        with np.errstate(over="ignore"):  # absurd values overflow to inf and fail below
            radius = np.linalg.norm(pos, axis=1)
            speed = np.linalg.norm(vel, axis=1)
        if (radius < ellipsoid.B - 1.0e5).any() or (radius > 1.0e8).any():
            raise SensorModelError(located(source, "orbit.position_m",
                                           "positions must be ECEF metres (EPSG:4978), above the Earth's surface"))
        if (speed <= 0).any():
            raise SensorModelError(located(source, "orbit.velocity_m_s", "holds a zero velocity"))

        model = cls(
            wavelength_m=_number(doc["wavelength_m"], "wavelength_m", source, positive=True),
            look_side=doc["look_side"],
            reference_epoch=_parse_epoch(doc["reference_epoch"], source),
            orbit_time_s=times, orbit_position_m=pos, orbit_velocity_m_s=vel,
            first_line_time_s=_number(az["first_line_time_s"], "azimuth.first_line_time_s", source),
            line_interval_s=_number(az["line_interval_s"], "azimuth.line_interval_s", source, positive=True),
            first_sample_range_m=_number(rg["first_sample_range_m"], "range.first_sample_range_m", source,
                                         positive=True),
            sample_spacing_m=_number(rg["sample_spacing_m"], "range.sample_spacing_m", source, positive=True),
            rows=_integer(shape["rows"], "shape.rows", source),
            cols=_integer(shape["cols"], "shape.cols", source),
            doppler_centroid_hz=_number(doc.get("doppler_centroid_hz", 0.0), "doppler_centroid_hz", source),
            source=source,
            corrections=Corrections.from_dict(doc["corrections"], source) if "corrections" in doc else None)
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
        } | ({"corrections": self.corrections.to_dict()} if self.corrections is not None else {})

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1)

    # ------------------------------------------------------------ pixel <-> time/range
    def contour(self, rows, cols):
        """(time, slant range, range rate) of image points: each point's target lies where the
        platform at that time sees it at that range, closing or opening at that rate (m/s). This
        range/Doppler contour is the projection model every geometric step works on."""
        t = self.row_to_time(rows)
        return t, self.col_to_range(cols, t), np.full(np.shape(t), self.range_rate)

    @property
    def range_rate(self):
        """d|X - p|/dt of every target at its image time: -lambda f_dc / 2 (0 for zero-Doppler)."""
        return -0.5 * self.wavelength_m * self.doppler_centroid_hz

    def row_to_time(self, rows):
        t = self.first_line_time_s + np.asarray(rows, dtype=np.float64) * self.line_interval_s
        return t if self.corrections is None else self.corrections.time(t)

    def time_to_row(self, t):
        t = np.asarray(t, dtype=np.float64)
        if self.corrections is not None:
            t = self.corrections.nominal_time(t)
        return (t - self.first_line_time_s) / self.line_interval_s

    def col_to_range(self, cols, t=None):
        """Slant range of columns (``t``: their image times, which a range drift depends on)."""
        rng = self.first_sample_range_m + np.asarray(cols, dtype=np.float64) * self.sample_spacing_m
        return rng if self.corrections is None else rng + self.corrections.range_offset(t)

    def range_to_col(self, rng, t=None):
        rng = np.asarray(rng, dtype=np.float64)
        if self.corrections is not None:
            rng = rng - self.corrections.range_offset(t)
        return (rng - self.first_sample_range_m) / self.sample_spacing_m

    # ------------------------------------------------------------ geo2rdr
    def geo2rdr(self, lon, lat, h, look_side_only=False):
        """Image (rows, cols) of geographic points (degrees, metres above the ellipsoid).

        Points whose Doppler time falls outside the orbit get NaN. Rows/cols outside the image
        are returned as they are: callers decide what lies inside. The range/Doppler equations
        also map the ground on the other side of the track into the image, mirrored: with
        ``look_side_only`` those points get NaN too.
        """
        lon, lat, h = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (lon, lat, h)))
        t, rng = blockwise(self._time_range_block, lon, lat, h, degrees=True)
        rows, cols = self.time_to_row(t), self.range_to_col(rng, t)
        if look_side_only:
            xyz = ellipsoid.llh_to_ecef(lon, lat, h)
            pos, vel = self.orbit.position(t), self.orbit.velocity(t)
            right = np.einsum("...i,...i", np.cross(vel, pos), xyz - pos)  # velocity x up points right
            with np.errstate(invalid="ignore"):
                other = ~(right * (1.0 if self.look_side == "right" else -1.0) > 0)
            rows, cols = np.where(other, np.nan, rows), np.where(other, np.nan, cols)
        return rows, cols

    def ecef_to_time_range(self, xyz):
        """Azimuth time and slant range of ECEF points (..., 3) by Newton iteration on Doppler.

        NaN where the Doppler time falls outside the orbit.
        """
        xyz = np.asarray(xyz, dtype=np.float64)
        return blockwise(self._time_range_block, xyz[..., 0], xyz[..., 1], xyz[..., 2])

    def _time_range_block(self, x, y, z, degrees=False):
        if degrees:  # (lon, lat, h) -> ECEF
            x, y, z = ellipsoid.llh_to_xyz(np.radians(x), np.radians(y), z)
        lo, hi = self.orbit.span
        # start: where the point projects on the trajectory's tangent at the scene centre
        t0 = 0.5 * (self.row_to_time(0) + self.row_to_time(self.rows - 1))
        (p0x, p0y, p0z), (v0x, v0y, v0z) = self.orbit.position(t0), self.orbit.velocity(t0)
        t = t0 + ((x - p0x) * v0x + (y - p0y) * v0y + (z - p0z) * v0z) / (v0x * v0x + v0y * v0y + v0z * v0z)
        t = np.clip(t, lo, hi)
        k = -self.range_rate
        pinned = np.zeros(t.shape, bool)
        for _ in range(_NEWTON_MAX):
            p, v, a = self.orbit.state(t)
            dx, dy, dz = x - p[:, 0], y - p[:, 1], z - p[:, 2]
            vx, vy, vz = v[:, 0], v[:, 1], v[:, 2]
            rng = np.sqrt(dx * dx + dy * dy + dz * dz)
            vd = vx * dx + vy * dy + vz * dz
            dg = a[:, 0] * dx + a[:, 1] * dy + a[:, 2] * dz - (vx * vx + vy * vy + vz * vz) + k * vd / rng
            step = (vd - k * rng) / dg
            t = t - step
            outside = (t < lo) | (t > hi)
            t = np.clip(t, lo, hi)
            # pushed out of the orbit twice running: the point is seen outside the orbit
            lost = outside & pinned
            t[lost], step[lost], pinned = np.nan, np.nan, outside
            if not np.nanmax(np.abs(step), initial=0.0) > 1e-10:
                break
        t = np.where(np.abs(step) <= 1e-6, t, np.nan)
        p = self.orbit.position(t)
        dx, dy, dz = x - p[:, 0], y - p[:, 1], z - p[:, 2]
        return t, np.sqrt(dx * dx + dy * dy + dz * dz)

    # ------------------------------------------------------------ rdr2geo
    def rdr2geo(self, rows, cols, height=None, dem=None):
        """Geographic (lon, lat, h) of image points on a height surface or on a DEM.

        ``height``: scalar or array of metres above the ellipsoid (default 0). ``dem``: a
        GDAL-readable raster path (or ``Dem``) whose surface is intersected instead; points
        off the DEM get NaN. Rows whose time lies outside the orbit raise ``GeometryError``.
        """
        rows, cols, h = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (
            rows, cols, 0.0 if height is None else height)))
        t, rng, rdot = self.contour(rows, cols)
        if dem is None:
            lon, lat = self.time_range_to_lonlat(t, rng, h, rdot=rdot)
            return np.degrees(lon), np.degrees(lat), np.where(np.isfinite(lon), h, np.nan)
        return self._intersect_dem(t, rng, dem, rdot)

    def time_range_to_lonlat(self, t, rng, h, start=None, rdot=None):
        """Longitude and latitude (radians) of the target at time t, slant range rng, height h.

        The target lies on a circle: the range sphere cut by the Doppler plane (cone). A sphere
        about the Earth's centre picks the start on it, on the look side; Newton's method along
        the circle then meets the geodetic height h, so range and Doppler hold exactly at every
        step. ``start``: optional (lon, lat) guess in radians. NaN where the range cannot
        reach height h. ``rdot``: the points' range rates (default the model's).
        """
        arrays = [t, rng, h, self.range_rate if rdot is None else rdot] + ([] if start is None else list(start))
        return blockwise(self._lonlat_block, *np.broadcast_arrays(
            *(np.asarray(a, np.float64) for a in arrays)))

    def _lonlat_block(self, t, rng, h, rdot, start_lon=None, start_lat=None):
        view = Circle(self, t, rng, rdot)
        if start_lon is None:
            rt = ellipsoid.geocentric_radius_xyz(*view.p) + h
        else:
            rt = np.sqrt(sum(c * c for c in ellipsoid.llh_to_xyz(start_lon, start_lat, h)))
        a, b = view.cut(0.0, 0.0, 0.0, rt, exact=True)
        if start_lon is None:  # once more, with the Earth's radius at the first crossing
            rt = ellipsoid.geocentric_radius_xyz(*view.point(a, b)) + h
            a, b = view.cut(0.0, 0.0, 0.0, rt, exact=True)
        theta, rho = np.arctan2(a, b), view.rho
        (cx, cy, cz), (ux, uy, uz), (sx, sy, sz) = view.centre, view.up, view.side
        final = False
        for _ in range(_NEWTON_MAX):
            st, ct = np.sin(theta), np.cos(theta)
            x, y, z = cx + rho * (st * sx + ct * ux), cy + rho * (st * sy + ct * uy), cz + rho * (st * sz + ct * uz)
            p, sphi, cphi, hx = ellipsoid.geodetic(x, y, z)
            if final:
                break
            # d(height)/d(theta) = normal . dX/dtheta, with dX/dtheta = rho (cos s - sin u)
            tx, ty, tz = ct * sx - st * ux, ct * sy - st * uy, ct * sz - st * uz
            slope = rho * (cphi * (x * tx + y * ty) / p + sphi * tz)
            step = (hx - h) / slope
            theta = theta - step
            final = not np.nanmax(np.abs(step * rho), initial=0.0) > 1e-6  # then one more pass
        return np.arctan2(y, x), np.arctan2(sphi, cphi)

    def _intersect_dem(self, t, rng, dem, rdot=None, tol_m=1e-3, max_iter=50):
        dem = open_dem(dem)
        h = np.full(t.shape, height_bounds(dem)[2])
        lon, lat = self.time_range_to_lonlat(t, rng, h, rdot=rdot)
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
            lon, lat = self.time_range_to_lonlat(t, rng, h, start=(lon, lat), rdot=rdot)
        bad = ~(np.abs(r) <= 10 * tol_m)
        h = np.where(bad, np.nan, h)
        return np.degrees(np.where(bad, np.nan, lon)), np.degrees(np.where(bad, np.nan, lat)), h


def _loads(text, source):
    return parse_json(text, source)
