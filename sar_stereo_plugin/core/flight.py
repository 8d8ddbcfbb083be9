"""Designed flights: level, straight (geodesic) lines at constant height, and stereo designs.

Used by the simulator, the tests and mission planning. The platform flies along the ellipsoid
geodesic through its nadir point at a constant height above the ellipsoid; state vectors carry
exact positions and the analytic tangent velocity, so cubic Hermite interpolation is exact to
well below a millimetre.
"""

import math
from dataclasses import dataclass

import numpy as np
from pyproj import Geod

from . import ellipsoid
from .errors import GeometryError, located
from .sensor import SCHEMA, SensorModel

_GEOD = Geod(ellps="WGS84")
X_BAND_WAVELENGTH_M = 0.0312
MIN_INCIDENCE_DEG, MAX_INCIDENCE_DEG = 10.0, 80.0


def _track(lon0, lat0, azimuth_deg, height, distance):
    """ECEF positions and unit tangents along the geodesic at the given distances (m)."""
    n = np.size(distance)
    lon, lat, back = _GEOD.fwd(np.full(n, lon0), np.full(n, lat0), np.full(n, azimuth_deg), distance)
    az = np.radians(np.asarray(back) + 180.0)
    lon_r, lat_r = np.radians(lon), np.radians(lat)
    xyz, d_lon, d_lat = ellipsoid.geodetic_frame(lon_r, lat_r, height)
    # surface geodesic: dlat/ds = cos(az)/M, dlon/ds = sin(az)/(N cos(lat)); d_lat holds (M+h)*north
    sl = np.sin(lat_r)
    w = 1.0 - ellipsoid.E2 * sl * sl
    n_rad, m_rad = ellipsoid.A / np.sqrt(w), ellipsoid.A * (1 - ellipsoid.E2) / w ** 1.5
    tangent = (np.cos(az) / m_rad)[:, None] * d_lat + (np.sin(az) / (n_rad * np.cos(lat_r)))[:, None] * d_lon
    return xyz, tangent  # tangent = dX/ds for surface distance s


def level_flight_model(center_lon, center_lat, center_h, heading_deg, altitude_m, incidence_deg,
                       look_side="right", wavelength_m=X_BAND_WAVELENGTH_M, range_spacing_m=1.0,
                       azimuth_spacing_m=1.0, rows=512, cols=512, speed_m_s=200.0,
                       reference_epoch="2026-01-01T00:00:00Z"):
    """Model of an image centred on a ground point, seen at ``incidence_deg`` from a level flight.

    ``heading_deg``: flight direction at the scene, clockwise from north. ``altitude_m``: platform
    height above the ellipsoid. Slant-range and along-track pixel spacings are in metres.
    """
    if look_side not in ("left", "right"):
        raise GeometryError(f"look side must be 'left' or 'right', got {look_side!r}")
    if altitude_m <= center_h + 100.0:
        raise GeometryError(f"altitude {altitude_m} m must be well above the scene height {center_h:.0f} m")
    if not 1.0 <= incidence_deg <= 85.0:
        raise GeometryError(f"incidence {incidence_deg} deg must lie between 1 and 85 degrees")
    target = ellipsoid.llh_to_ecef(center_lon, center_lat, center_h)
    side = -90.0 if look_side == "right" else 90.0  # the platform flies beside the scene
    offset = (altitude_m - center_h) * np.tan(np.radians(incidence_deg))
    up = np.array(ellipsoid.normal(np.radians(center_lon), np.radians(center_lat)))
    for _ in range(30):  # adjust the cross-track offset until the incidence at the centre is exact
        nlon, nlat, back = _GEOD.fwd(center_lon, center_lat, heading_deg + side, offset)
        track_az = back + 180.0 - side  # heading at the nadir point
        pos, tan = _track(nlon, nlat, track_az, altitude_m, np.array([0.0]))
        s_c = np.dot(target[None] - pos, tan.T).item() / np.dot(tan[0], tan[0])  # along-track to zero Doppler
        pos_c = _track(nlon, nlat, track_az, altitude_m, np.array([s_c]))[0][0]
        los = pos_c - target
        actual = np.degrees(np.arccos(np.dot(los, up) / np.linalg.norm(los)))
        if abs(actual - incidence_deg) < 1e-9:
            break
        offset *= np.tan(np.radians(incidence_deg)) / np.tan(np.radians(actual))
    # time runs with surface distance: s = c t, |dX/dt| = speed at the scene
    c = speed_m_s / np.linalg.norm(_track(nlon, nlat, track_az, altitude_m, np.array([s_c]))[1][0])
    line_interval = azimuth_spacing_m / speed_m_s
    half = 0.5 * (rows - 1) * line_interval
    margin = half * 0.2 + 5.0
    times = np.arange(-half - margin, half + margin + 1.0, 1.0)
    pos, tan = _track(nlon, nlat, track_az, altitude_m, s_c + c * times)
    slant = np.linalg.norm(pos_c - target)
    near = slant - 0.5 * (cols - 1) * range_spacing_m
    if near <= 0:  # the image would start behind the platform
        raise GeometryError(located("flight design", "cols", f"{cols} columns of {range_spacing_m:g} m reach "
                                    f"{0.5 * (cols - 1) * range_spacing_m:.0f} m nearer than the scene centre's "
                                    f"slant range ({slant:.0f} m), behind the platform; give fewer columns (COLS) or "
                                    "a smaller pixel spacing (PIXEL_SPACING)"))
    doc = {
        "schema": SCHEMA, "wavelength_m": float(wavelength_m), "look_side": look_side,
        "reference_epoch": reference_epoch,
        "orbit": {"time_s": times.tolist(), "position_m": pos.tolist(), "velocity_m_s": (c * tan).tolist()},
        "azimuth": {"first_line_time_s": -half, "line_interval_s": line_interval},
        "range": {"first_sample_range_m": slant - 0.5 * (cols - 1) * range_spacing_m,
                  "sample_spacing_m": float(range_spacing_m)},
        "doppler_centroid_hz": 0.0,
        "shape": {"rows": int(rows), "cols": int(cols)},
    }
    return SensorModel.from_json(doc, source="designed flight")


@dataclass(frozen=True)
class FlightDesign:
    """Two level flights over the DEM's centre (the reference and the secondary view).

    Same-side stereo: same heading and look side, two incidences. Opposite-side stereo
    (``opposite_side=True``): the secondary flies the reverse heading with the same look side,
    so it sees the scene from the other side. Incidences are at the scene centre (the DEM's
    centre at its median height). ``pixel_spacing_m`` is the slant-range and the azimuth
    spacing. ``rows``/``cols`` fix the image size; otherwise see :meth:`models`.
    """

    look_side: str = "right"
    heading_deg: float = 0.0
    altitude_m: float = 8000.0
    reference_incidence_deg: float = 35.0
    secondary_incidence_deg: float = 55.0
    opposite_side: bool = False
    wavelength_m: float = 0.0312
    pixel_spacing_m: float = 5.0
    rows: int = None
    cols: int = None
    max_size: int = 2048
    speed_m_s: float = 200.0

    def validate(self, dem_heights=None, source="flight design"):
        def bad(name, problem):
            raise GeometryError(located(source, name, problem))
        if self.look_side not in ("left", "right"):
            bad("look_side", f"expected 'left' or 'right', got {self.look_side!r}")
        for name in ("reference_incidence_deg", "secondary_incidence_deg"):
            value = getattr(self, name)
            if not MIN_INCIDENCE_DEG <= value <= MAX_INCIDENCE_DEG:
                bad(name, f"{value} degrees is outside {MIN_INCIDENCE_DEG:g}..{MAX_INCIDENCE_DEG:g}; "
                          "choose an incidence angle in that range")
        if not self.opposite_side and abs(self.reference_incidence_deg - self.secondary_incidence_deg) < 1.0:
            bad("secondary_incidence_deg", "same-side stereo needs two incidences at least 1 degree apart "
                                           "(or set opposite_side)")
        for name in ("pixel_spacing_m", "wavelength_m", "speed_m_s"):
            if not getattr(self, name) > 0:
                bad(name, f"must be positive, got {getattr(self, name)}")
        if not math.isfinite(self.heading_deg):
            bad("heading_deg", "must be a finite number of degrees")
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if value is not None and not 8 <= int(value) <= 65536:
                bad(name, f"{value} pixels; give 8..65536 or leave it empty for the automatic size")
        if self.max_size < 8:
            bad("max_size", f"{self.max_size} pixels; give at least 8")
        if dem_heights is not None:
            top = float(np.nanmax(dem_heights))
            if self.altitude_m < top + 500.0:
                bad("altitude_m", f"{self.altitude_m:g} m is not well above the highest terrain ({top:.0f} m); "
                                  "fly at least 500 m above it")

    def view(self, which):
        """(heading, incidence) of the 'reference' or the 'secondary' flight."""
        if which == "reference":
            return self.heading_deg, self.reference_incidence_deg
        return (self.heading_deg + (180.0 if self.opposite_side else 0.0)) % 360.0, self.secondary_incidence_deg

    def models(self, dem):
        """Sensor models of both views over ``dem``.

        Each image is centred on the DEM's centre (at its median height), so that point is seen
        at exactly the designed incidence. Without ``rows``/``cols`` an image extends, in each
        direction, as far as the farthest DEM edge, but no further than ``max_size`` pixels in
        all and no nearer to the flight track than 10 degrees incidence (or beyond 80 degrees);
        the extent is symmetric about the centre.
        """
        self.validate(dem.heights)
        lon, lat = dem.center_lonlat()
        h = float(np.nanmedian(dem.heights))
        return tuple(self._model(dem, lon, lat, h, *self.view(which)) for which in ("reference", "secondary"))

    def _model(self, dem, lon, lat, h, heading, incidence):
        kw = dict(center_lon=lon, center_lat=lat, center_h=h, heading_deg=heading, altitude_m=self.altitude_m,
                  incidence_deg=incidence, look_side=self.look_side, wavelength_m=self.wavelength_m,
                  range_spacing_m=self.pixel_spacing_m, azimuth_spacing_m=self.pixel_spacing_m,
                  speed_m_s=self.speed_m_s)
        rows, cols = self.rows, self.cols
        if rows is None or cols is None:
            auto_rows, auto_cols = self._auto_size(dem, h, kw)
            rows, cols = rows or auto_rows, cols or auto_cols
        return level_flight_model(rows=int(rows), cols=int(cols), **kw)

    def _auto_size(self, dem, h, kw):
        n_r, n_c = dem.shape
        size_r, size_c = dem.pixel_size_m()
        diagonal = math.hypot(n_r * size_r, n_c * size_c)
        probe_rows = 2 * int(diagonal / self.pixel_spacing_m) + 3
        probe = level_flight_model(rows=probe_rows, cols=1, **kw)
        # DEM outline, every few pixels, at its heights (median where unknown)
        rr = np.concatenate([np.zeros(n_c), np.full(n_c, n_r - 1.0), np.arange(n_r), np.arange(n_r)])
        cc = np.concatenate([np.arange(n_c), np.arange(n_c), np.zeros(n_r), np.full(n_r, n_c - 1.0)])
        hh = dem.heights[rr.astype(int), cc.astype(int)]
        lon, lat = dem.lonlat(*dem.pixel_to_xy(rr, cc))
        rows, cols = probe.geo2rdr(lon, lat, np.where(np.isfinite(hh), hh, h))
        half_rows = np.nanmax(np.abs(rows - (probe_rows - 1) / 2.0))
        half_cols = np.nanmax(np.abs(cols))
        centre_range = probe.first_sample_range_m
        dz = self.altitude_m - h
        near = (centre_range - dz / math.cos(math.radians(MIN_INCIDENCE_DEG))) / self.pixel_spacing_m
        far = (dz / math.cos(math.radians(MAX_INCIDENCE_DEG)) - centre_range) / self.pixel_spacing_m
        half_cols = min(half_cols, near, far)
        if not half_cols >= 4:
            raise GeometryError(located("flight design", "reference_incidence_deg",
                                        "the image would reach nearer than 10 degrees incidence; raise the "
                                        "incidence or the altitude, or lower pixel_spacing_m"))
        limit = (self.max_size - 1) // 2
        return 2 * min(int(math.ceil(half_rows)), limit) + 1, 2 * min(int(half_cols), limit) + 1
