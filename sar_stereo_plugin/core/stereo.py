"""Geometry of two views: triangulation, convergence, height sensitivity, reference -> secondary.

Every function works on arrays of any shape and is vectorised.
"""

import numpy as np

from . import ellipsoid
from .rangedoppler import Circle, blockwise


def _triangulate_block(r1, c1, r2, c2, ref_model, sec_model, height_guess, max_iter):
    v1 = Circle(ref_model, *ref_model.contour(r1, c1))
    v2 = Circle(sec_model, *sec_model.contour(r2, c2))
    # start: the reference circle cut by the secondary range sphere (exact for exact matches)
    a, b = v1.cut(*v2.p, v2.rng, exact=False)
    bad = ~np.isfinite(a)
    if bad.any():  # degenerate pair geometry: the reference circle at the guessed height
        a0, b0 = v1.cut(0.0, 0.0, 0.0, ellipsoid.geocentric_radius_xyz(*v1.p) + height_guess, exact=False)
        a, b = np.where(bad, a0, a), np.where(bad, b0, b)
    x, y, z = v1.point(a, b)
    (p1x, p1y, p1z), (w1x, w1y, w1z), rg1, dc1 = v1.p, v1.v, v1.rng, v1.doppler
    (p2x, p2y, p2z), (w2x, w2y, w2z), rg2, dc2 = v2.p, v2.v, v2.rng, v2.doppler
    # Gauss-Newton on the four equations; the Doppler rows of J^T J never change
    a00, a01, a02 = w1x * w1x + w2x * w2x, w1x * w1y + w2x * w2y, w1x * w1z + w2x * w2z
    a11, a12, a22 = w1y * w1y + w2y * w2y, w1y * w1z + w2y * w2z, w1z * w1z + w2z * w2z
    it = 0
    while True:
        d1x, d1y, d1z = x - p1x, y - p1y, z - p1z
        n1 = np.sqrt(d1x * d1x + d1y * d1y + d1z * d1z)
        d2x, d2y, d2z = x - p2x, y - p2y, z - p2z
        n2 = np.sqrt(d2x * d2x + d2y * d2y + d2z * d2z)
        f1, f2 = n1 - rg1, n2 - rg2
        g1 = w1x * x + w1y * y + w1z * z - dc1
        g2 = w2x * x + w2y * y + w2z * z - dc2
        if it == max_iter:
            break
        it += 1
        d1x, d1y, d1z = d1x / n1, d1y / n1, d1z / n1  # unit lines of sight: the range rows of J
        d2x, d2y, d2z = d2x / n2, d2y / n2, d2z / n2
        m00 = a00 + d1x * d1x + d2x * d2x
        m01 = a01 + d1x * d1y + d2x * d2y
        m02 = a02 + d1x * d1z + d2x * d2z
        m11 = a11 + d1y * d1y + d2y * d2y
        m12 = a12 + d1y * d1z + d2y * d2z
        m22 = a22 + d1z * d1z + d2z * d2z
        b0 = -(d1x * f1 + d2x * f2 + w1x * g1 + w2x * g2)
        b1 = -(d1y * f1 + d2y * f2 + w1y * g1 + w2y * g2)
        b2 = -(d1z * f1 + d2z * f2 + w1z * g1 + w2z * g2)
        c00, c01, c02 = m11 * m22 - m12 * m12, m02 * m12 - m01 * m22, m01 * m12 - m02 * m11
        c11, c12, c22 = m00 * m22 - m02 * m02, m01 * m02 - m00 * m12, m00 * m11 - m01 * m01
        det = m00 * c00 + m01 * c01 + m02 * c02  # adjugate solve of the symmetric 3x3 system
        sx = (c00 * b0 + c01 * b1 + c02 * b2) / det
        sy = (c01 * b0 + c11 * b1 + c12 * b2) / det
        sz = (c02 * b0 + c12 * b1 + c22 * b2) / det
        x, y, z = x + sx, y + sy, z + sz
        if not np.nanmax(np.abs(sx) + np.abs(sy) + np.abs(sz), initial=0.0) > 1e-7:
            max_iter = it  # converged: one more pass evaluates the residual at the result
    lon, lat, h = ellipsoid.xyz_to_llh(x, y, z)
    return np.degrees(lon), np.degrees(lat), h, np.sqrt(f1 * f1 + g1 * g1 + f2 * f2 + g2 * g2)


def triangulate(ref_model, ref_rows, ref_cols, sec_model, sec_rows, sec_cols, height_guess=0.0,
                max_iter=15):
    """3D points of correspondences by least squares on both range spheres and Doppler cones.

    Returns (lon, lat, h, residual_m): degrees, metres above the ellipsoid, and the misclosure
    of the four range/Doppler equations in metres (near zero for an exact match; a mismatch of
    d metres in azimuth between parallel tracks gives d / sqrt(2)). NaN inputs, and rows whose
    time lies outside their orbit, give NaN outputs. The solver starts from the closed-form
    crossing of the reference range/Doppler circle with the secondary range sphere;
    ``height_guess`` (m) seeds it only where that crossing is degenerate.
    """
    r1, c1, r2, c2 = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in
                                          (ref_rows, ref_cols, sec_rows, sec_cols)))
    r1, r2 = _inside_orbit(ref_model, r1, c1), _inside_orbit(sec_model, r2, c2)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # wild matches may diverge
        return blockwise(_triangulate_block, r1, c1, r2, c2, ref_model=ref_model, sec_model=sec_model,
                          height_guess=float(height_guess), max_iter=int(max_iter))


def _inside_orbit(model, rows, cols):
    """rows, with NaN where the image points' times lie outside the model's orbit."""
    lo, hi = model.orbit.span
    t = model.contour(rows, cols)[0]
    with np.errstate(invalid="ignore"):
        return np.where((t >= lo) & (t <= hi), rows, np.nan)


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
    cols_sec = [rdr2rdr(ref_model, sec_model, rows, cols, height=hh)[1] for hh in (h - dh / 2, h + dh / 2)]
    with np.errstate(divide="ignore"):
        return dh / np.abs(cols_sec[1] - cols_sec[0])


def rdr2rdr(ref_model, sec_model, rows, cols, height=None, dem=None):
    """Secondary (rows, cols) of reference pixels: each taken to the ground at ``height`` (m above
    the ellipsoid, scalar or array) or onto ``dem`` (:meth:`SensorModel.rdr2geo`), then into the
    secondary image (:meth:`SensorModel.geo2rdr`). NaN where either step fails."""
    lon, lat, h = ref_model.rdr2geo(rows, cols, height=height, dem=dem)
    return sec_model.geo2rdr(lon, lat, h)


def look_angles(model, lon, lat, h):
    """(heading, incidence) in degrees of ``model``'s view of one ground point: the platform's
    heading (clockwise from north) when it sees the point, and the angle between the line of
    sight and the ellipsoid normal there."""
    xyz = ellipsoid.llh_to_ecef(lon, lat, h)
    t, _ = model.ecef_to_time_range(xyz)
    p, v, _ = model.orbit.state(t)
    _, d_lon, d_lat = ellipsoid.geodetic_frame(np.radians(lon), np.radians(lat), h)
    east, north = d_lon / np.linalg.norm(d_lon), d_lat / np.linalg.norm(d_lat)
    up = np.cross(east, north)
    heading = np.degrees(np.arctan2(v @ east, v @ north)) % 360.0
    los = (p - xyz) / np.linalg.norm(p - xyz)
    return float(heading), float(np.degrees(np.arccos(np.clip(los @ up, -1, 1))))


def misclosure_px(ref, sec, r1, c1, r2, c2, iterations=2):
    """Signed misclosure of correspondences, in secondary lines: where the reference pixel's
    range/Doppler circle meets the secondary's range sphere at the matched column, the secondary
    sees that point at some row; this is that row minus the matched one (0 for an exact match and
    exact models; a secondary model that puts the ground d lines later than its image shows it gives
    d). NaN where the geometry fails."""
    args = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (r1, c1, r2, c2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return blockwise(_misclosure_block, *args, ref=ref, sec=sec, iterations=iterations)[0]


def _misclosure_block(r1, c1, r2, c2, ref, sec, iterations):
    circle = Circle(ref, *ref.contour(r1, c1))
    row = r2
    lo, hi = sec.orbit.span
    for _ in range(iterations):  # the secondary's range sphere at the time of the row the point is seen at
        t2, rng2, _ = sec.contour(row, c2)
        p = sec.orbit.position(np.clip(t2, lo, hi))
        x = np.stack(circle.point(*circle.cut(p[:, 0], p[:, 1], p[:, 2], rng2, exact=False)), axis=-1)
        lon, lat, h = ellipsoid.ecef_to_llh(x)
        row = sec.geo2rdr(lon, lat, h)[0]
    return (row - r2,)
