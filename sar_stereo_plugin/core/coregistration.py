"""How far a DEM is shifted against a reference DEM: Nuth & Kaab co-registration.

A DEM displaced horizontally by (dx, dy) differs from its reference by about
``-dh/dx dx - dh/dy dy`` on slopes, plus a vertical offset dz everywhere (Nuth & Kaab, 2011, The
Cryosphere 5: the cosine relation of elevation differences to aspect is this, written with the
slope's components). The shift is solved by robust least squares on the cells, the reference
moved by it and the fit repeated until it no longer moves, so shifts of several cells are found
too. Flat ground says nothing about a horizontal shift; the result then reports it as unknown.
"""

import numpy as np
from scipy.ndimage import map_coordinates

MIN_CELLS = 100  # fewer cells with both heights: no estimate
MIN_SLOPE = 0.02  # terrain flatter than this (rise over run) everywhere: horizontal shift unknown


def dem_shift(heights, reference, resolution, iterations=8, tolerance_m=0.01):
    """(dx, dy, dz) in metres of ``heights`` against ``reference``, both on one north-up grid of
    square ``resolution`` cells (dx east, dy north, dz up; NaN where unknown), and the number of
    iterations: moving ``heights`` back by (dx, dy) and down by dz aligns it best. None where too
    few cells hold both."""
    heights, reference = (np.asarray(a, np.float64) for a in (heights, reference))
    if (np.isfinite(heights) & np.isfinite(reference)).sum() < MIN_CELLS:
        return None
    gy, gx = np.gradient(reference, -resolution, resolution)  # rows run south
    rows, cols = np.mgrid[0:reference.shape[0], 0:reference.shape[1]].astype(np.float64)
    shift = np.zeros(2)  # east, north (m)
    dz = 0.0
    steep = True
    for it in range(1, iterations + 1):  # noqa: B007 (the count is returned)
        moved = _shifted(reference, rows, cols, shift, resolution)
        slope_x, slope_y = (_shifted(g, rows, cols, shift, resolution) for g in (gx, gy))
        dh = heights - moved
        ok = np.isfinite(dh) & np.isfinite(slope_x) & np.isfinite(slope_y)
        if ok.sum() < MIN_CELLS:
            return None
        steep = np.percentile(np.hypot(slope_x[ok], slope_y[ok]), 75) > MIN_SLOPE
        a = np.c_[slope_x[ok], slope_y[ok], np.ones(ok.sum())] if steep else np.ones((ok.sum(), 1))
        solution = _robust_fit(a, dh[ok])
        dz = float(solution[-1])
        if not steep:
            break
        step = -solution[:2]  # dh = -slope . (displacement - shift) + dz
        shift += step
        if np.hypot(*step) < tolerance_m:
            break
    if not steep:
        return float("nan"), float("nan"), dz, it
    return float(shift[0]), float(shift[1]), dz, it


def _shifted(grid, rows, cols, shift, resolution):
    """``grid`` with its content moved by ``shift`` (east, north metres): sampled (bilinear) at each
    cell's position less the shift; rows run south."""
    return map_coordinates(grid, [rows + shift[1] / resolution, cols - shift[0] / resolution], order=1,
                           mode="constant", cval=np.nan)


def _robust_fit(a, b, iterations=10):
    """Least squares of a x = b with Tukey weights on the residuals' robust spread."""
    w = np.ones(b.size)
    x = np.zeros(a.shape[1])
    for _ in range(iterations):
        sw = np.sqrt(w)
        x = np.linalg.lstsq(a * sw[:, None], b * sw, rcond=None)[0]
        r = b - a @ x
        scale = max(1.4826 * float(np.median(np.abs(r - np.median(r)))), 1e-6)
        u = r / (4.685 * scale)
        w = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
    return x
