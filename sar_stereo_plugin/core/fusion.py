"""Robust fusion of triangulated points into grid cells, and what a cell's height is worth.

Pure numerics on flat cell indices (row-major over the grid), shared by the elevation step:

* :func:`cell_medians`: the median of each cell's points, weighted (a point's certainty) or not;
* :func:`window_plane`: per cell, the plane through the cell heights of a square window around it
  (a robust slope, the median level), and their robust spread about it, NaN ignored;
* :func:`disagreeing`: the points further from that plane than ``k`` robust standard deviations,
  of the window's roughness or of the points' own scatter, whichever is larger;
* :data:`QUALITY`: the classes of the quality layer, and :func:`classify`.
"""

import numpy as np
from scipy import ndimage

# quality layer: value -> class (the elevation report counts each)
QUALITY = {0: "no data", 1: "measured", 2: "filled", 3: "rejected as inconsistent", 4: "layover", 5: "shadow"}
MEASURED, FILLED, REJECTED, LAYOVER, SHADOW, NO_DATA = 1, 2, 3, 4, 5, 0
NMAD = 1.4826  # median absolute deviation -> standard deviation of a normal distribution
_WINDOW_VALUES = 4_000_000  # values of a window stack processed at once (16 MB of float32)


def cell_medians(cell, values, weights=None):
    """(cells, medians, counts, order, starts): the median of ``values`` per cell that holds any,
    weighted by ``weights`` where given (the point where the cumulative weight reaches half the
    cell's total; the mean of two points where it is exactly half, so equal weights give the
    plain median). ``order`` sorts the points by (cell, value); ``starts`` are where each cell's
    run begins in that order."""
    order = np.lexsort((values, cell))
    cs, vs = cell[order], values[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    n = np.diff(np.r_[starts, cs.size])
    if weights is None:
        median = 0.5 * (vs[starts + (n - 1) // 2] + vs[starts + n // 2])
        return cs[starts], median, n, order, starts
    w = np.maximum(np.asarray(weights, np.float64)[order], 1e-6)
    total = np.cumsum(w)
    before = np.r_[0.0, total][starts]  # the weight of the cells before each run
    group = np.repeat(np.arange(starts.size), n)
    half = 0.5 * (total[starts + n - 1] - before)
    within = total - before[group]
    tolerance = 1e-6 * half  # far above the rounding of a long cumulative sum, far below a weight
    reached = within >= half[group] - tolerance[group]
    first = np.flatnonzero(reached & np.r_[True, ~reached[:-1] | (group[1:] != group[:-1])])
    exact = np.abs(within[first] - half) <= tolerance
    nxt = np.minimum(first + 1, starts + n - 1)
    median = np.where(exact, 0.5 * (vs[first] + vs[nxt]), vs[first])
    return cs[starts], median, n, order, starts


def window_plane(grid, resolution, radius):
    """(height, spread) per cell of a 2-D grid of cell heights (NaN: none) from the
    (2 radius + 1)^2 window around it, NaN ignored: the window's heights detrended by the cell's
    robust slope (:func:`_robust_slopes`), their median (the plane's
    height at the cell), and the narrower of their half interquartile ranges / 0.6745 (wrong cells
    on one side, up to half the window, widen only the other): the roughness about that plane, not
    the relief a sloping window spans. NaN where the cell has
    no height. Row blocks of the cells with a height keep the stack of shifted copies small; one
    sort per block gives both figures."""
    rows, cols = grid.shape
    size = 2 * radius + 1
    slope_north, slope_east = _robust_slopes(grid, resolution, radius)
    padded = np.pad(grid.astype(np.float32), radius, constant_values=np.nan)
    height, spread = np.full(grid.shape, np.nan, np.float32), np.full(grid.shape, np.nan, np.float32)
    block = max(1, _WINDOW_VALUES // (size * size * cols))
    for r0 in range(0, rows, block):
        r1 = min(r0 + block, rows)
        at = np.nonzero(np.isfinite(grid[r0:r1]))
        if not at[0].size:
            continue
        s_north, s_east = (g[r0:r1][at].astype(np.float32) for g in (slope_north, slope_east))
        level = np.empty((at[0].size, size * size), np.float32)
        for k, (i, j) in enumerate((i, j) for i in range(size) for j in range(size)):
            tilt = s_north * ((radius - i) * resolution) + s_east * ((j - radius) * resolution)
            level[:, k] = padded[at[0] + r0 + i, at[1] + j] - tilt
        level.sort(axis=1)  # NaN sorts last
        n = np.isfinite(level).sum(axis=1)  # at least the cell itself
        middle = _quantile_rows(level, n, 0.5)
        lower, upper = middle - _quantile_rows(level, n, 0.25), _quantile_rows(level, n, 0.75) - middle
        height[r0:r1][at] = middle
        spread[r0:r1][at] = np.minimum(lower, upper) / 0.6745
    return height, spread


def _robust_slopes(grid, resolution, radius):
    """(north, east) slope per cell: the median of the cells' central differences (where one is
    unknown, the nearest known one stands in) over the window, sampled every ``radius`` cells (so the
    median takes 9 values, not (2 radius + 1)^2, at a tenth of the cost): neither a wrong cell nor
    the edge of a cluster of them tilts a cell's plane."""
    step = max(1, int(radius))
    out = []
    for axis, spacing in ((0, -resolution), (1, resolution)):
        slope = np.gradient(grid, spacing, axis=axis) if grid.shape[axis] > 1 else np.zeros(grid.shape)
        known = np.isfinite(slope)
        if not known.any():
            out.append(np.zeros(grid.shape))
            continue
        nearest = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
        filled = slope[tuple(nearest)]
        median = np.empty(grid.shape)
        for i in range(step):  # each phase of the sampling on its own decimated grid
            for j in range(step):
                median[i::step, j::step] = ndimage.median_filter(filled[i::step, j::step], size=3, mode="nearest")
        out.append(median)
    return out


def _quantile_rows(ordered, n, q):
    """The q-quantile of the first ``n`` values of each row of ``ordered`` (sorted; linear between ranks)."""
    x = q * (n - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    rows = np.arange(ordered.shape[0])
    return ordered[rows, lo] + (x - lo) * (ordered[rows, hi] - ordered[rows, lo])


def disagreeing(cell, h, cell_height, shape, resolution, k, floor=0.0, radius=2):
    """Points (bool per point) whose height ``h`` lies further than ``k`` robust standard
    deviations from the robust plane through the cell heights around their cell
    (:func:`window_plane` over ``cell_height``, flat, NaN where a cell has none). The standard
    deviation is the largest of the window's roughness about that plane, the points' own scatter
    about their cells' heights (1.4826 x the median over all points: the matching noise) and
    ``floor`` (metres: what a fraction of a pixel of disparity means in height, so that exact points
    on curved ground are not outliers of a plane)."""
    plane, spread = (a.ravel() for a in window_plane(cell_height.reshape(shape), resolution, radius))
    residual = np.abs(h - plane[cell])
    scatter = NMAD * float(np.nanmedian(np.abs(h - cell_height[cell]))) if h.size else 0.0
    with np.errstate(invalid="ignore"):
        return ~(residual <= k * np.fmax(spread[cell], max(scatter, float(floor))))


def classify(measured, filled, rejected, layover, shadow):
    """The quality layer (:data:`QUALITY`) from bool grids: measured cells are measured whatever
    the terrain; of the others, layover before shadow before rejected before filled."""
    out = np.full(measured.shape, NO_DATA, np.float32)
    for mask, value in ((filled, FILLED), (rejected, REJECTED), (shadow, SHADOW), (layover, LAYOVER),
                        (measured, MEASURED)):
        out[mask] = value
    return out


def class_counts(quality):
    """{class name: cells} of a quality grid."""
    values, counts = np.unique(quality, return_counts=True)
    found = dict(zip(values.astype(int).tolist(), counts.tolist()))
    return {name: int(found.get(value, 0)) for value, name in QUALITY.items()}
