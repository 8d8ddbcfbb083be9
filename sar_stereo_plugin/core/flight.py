"""Sensor models for designed flights: level, straight (geodesic) lines at constant height.

Used by the simulator, the tests and mission planning. The platform flies along the ellipsoid
geodesic through its nadir point at a constant height above the ellipsoid; state vectors carry
exact positions and the analytic tangent velocity, so cubic Hermite interpolation is exact to
well below a millimetre.
"""

import numpy as np
from pyproj import Geod

from . import ellipsoid
from .errors import GeometryError
from .sensor import SCHEMA, SensorModel

_GEOD = Geod(ellps="WGS84")
X_BAND_WAVELENGTH_M = 0.0312


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
