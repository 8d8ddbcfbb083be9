"""WGS84 ellipsoid: geodetic <-> ECEF conversions and local frames, vectorised."""

import numpy as np
from pyproj import Transformer

A = 6378137.0  # semi-major axis, m
F = 1.0 / 298.257223563
B = A * (1.0 - F)
E2 = F * (2.0 - F)  # first eccentricity squared

_TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
_TO_LLH = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


def llh_to_ecef(lon, lat, h):
    """Geodetic (degrees, metres above the ellipsoid) -> ECEF array of shape (..., 3)."""
    lon, lat, h = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (lon, lat, h)))
    x, y, z = _TO_ECEF.transform(lon, lat, h)
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def ecef_to_llh(xyz):
    """ECEF array (..., 3) -> (lon, lat, h) in degrees and metres above the ellipsoid."""
    xyz = np.asarray(xyz, dtype=np.float64)
    lon, lat, h = _TO_LLH.transform(xyz[..., 0], xyz[..., 1], xyz[..., 2])
    return np.asarray(lon), np.asarray(lat), np.asarray(h)


def geodetic_frame(lon_rad, lat_rad, h):
    """ECEF position and its derivatives with respect to longitude and latitude (radians).

    Returns (xyz, d_lon, d_lat), each (..., 3): d_lon = (N+h) cos(lat) * east,
    d_lat = (M+h) * north, with N and M the prime-vertical and meridian radii of curvature.
    """
    sl, cl = np.sin(lat_rad), np.cos(lat_rad)
    so, co = np.sin(lon_rad), np.cos(lon_rad)
    w = 1.0 - E2 * sl * sl
    n = A / np.sqrt(w)
    m = A * (1.0 - E2) / (w * np.sqrt(w))
    xyz = np.stack([(n + h) * cl * co, (n + h) * cl * so, (n * (1.0 - E2) + h) * sl], axis=-1)
    east = np.stack([-so, co, np.zeros_like(co)], axis=-1)
    north = np.stack([-sl * co, -sl * so, cl], axis=-1)
    return xyz, ((n + h) * cl)[..., None] * east, (m + h)[..., None] * north


def geocentric_radius(xyz):
    """Radius of the ellipsoid surface along the geocentric direction of each ECEF point."""
    xyz = np.asarray(xyz, dtype=np.float64)
    rho = np.hypot(xyz[..., 0], xyz[..., 1])
    r = np.linalg.norm(xyz, axis=-1)
    cos_c, sin_c = rho / r, xyz[..., 2] / r
    return A * B / np.sqrt((B * cos_c) ** 2 + (A * sin_c) ** 2)
