"""WGS84 ellipsoid: geodetic <-> ECEF conversions and local frames, vectorised.

Both conversions are evaluated here in closed form rather than through PROJ: PROJ's ECEF ->
geodetic inverse is an approximation (errors of micrometres near the ground, millimetres at
satellite heights), too coarse for round trips tested to 1e-6 of a pixel. Bowring's iteration
below is exact to float64 rounding (< 1e-8 m) from the ground to beyond orbit heights.
"""

import numpy as np

A = 6378137.0  # semi-major axis, m
F = 1.0 / 298.257223563
B = A * (1.0 - F)
E2 = F * (2.0 - F)  # first eccentricity squared
EP2 = E2 / (1.0 - E2)  # second eccentricity squared


def llh_to_xyz(lon_rad, lat_rad, h):
    """Geodetic (radians, metres) -> ECEF components x, y, z (arrays broadcast together)."""
    sl, cl = np.sin(lat_rad), np.cos(lat_rad)
    n = A / np.sqrt(1.0 - E2 * sl * sl)
    r = (n + h) * cl
    return r * np.cos(lon_rad), r * np.sin(lon_rad), (n * (1.0 - E2) + h) * sl


def normal(lon_rad, lat_rad):
    """Unit ellipsoid normal ('up') at geodetic longitude and latitude (radians): x, y, z."""
    cl = np.cos(lat_rad)
    return cl * np.cos(lon_rad), cl * np.sin(lon_rad), np.sin(lat_rad)


def geodetic(x, y, z):
    """ECEF components -> (p, sin(lat), cos(lat), h): p the distance from the polar axis.

    Bowring's method: three updates of the reduced latitude from the closed-form start give
    float64 precision (< 1e-8 m) for any point farther than ~500 km from the Earth's centre.
    The surface normal is (cos(lat) x / p, cos(lat) y / p, sin(lat)).
    """
    p = np.hypot(x, y)
    sb, cb = z, (1.0 - F) * p  # reduced latitude of the start: exact for points on the ellipsoid
    for _ in range(3):
        nb = np.hypot(sb, cb)
        sb, cb = sb / nb, cb / nb
        num = z + EP2 * B * sb * sb * sb
        den = p - E2 * A * cb * cb * cb
        sb, cb = (1.0 - F) * num, den  # tan(beta) = (1 - f) tan(lat)
    nphi = np.hypot(num, den)
    sphi, cphi = num / nphi, den / nphi
    return p, sphi, cphi, p * cphi + z * sphi - A * np.sqrt(1.0 - E2 * sphi * sphi)


def xyz_to_llh(x, y, z):
    """ECEF components -> (lon, lat) in radians and h in metres above the ellipsoid."""
    _, sphi, cphi, h = geodetic(x, y, z)
    return np.arctan2(y, x), np.arctan2(sphi, cphi), h


def geocentric_radius_xyz(x, y, z):
    """Radius of the ellipsoid surface along the geocentric direction of ECEF points."""
    rho2, z2 = x * x + y * y, z * z
    return A * B * np.sqrt((rho2 + z2) / (B * B * rho2 + A * A * z2))


def llh_to_ecef(lon, lat, h):
    """Geodetic (degrees, metres above the ellipsoid) -> ECEF array of shape (..., 3)."""
    lon, lat, h = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (lon, lat, h)))
    return np.stack(llh_to_xyz(np.radians(lon), np.radians(lat), h), axis=-1)


def ecef_to_llh(xyz):
    """ECEF array (..., 3) -> (lon, lat, h) in degrees and metres above the ellipsoid."""
    xyz = np.asarray(xyz, dtype=np.float64)
    lon, lat, h = xyz_to_llh(xyz[..., 0], xyz[..., 1], xyz[..., 2])
    return np.degrees(lon), np.degrees(lat), np.asarray(h)


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
    return geocentric_radius_xyz(xyz[..., 0], xyz[..., 1], xyz[..., 2])
