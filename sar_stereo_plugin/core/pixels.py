"""The pixel convention, in one place.

(row, col) are continuous image coordinates with integer values at pixel *centres*; pixel i covers
i - 0.5 .. i + 0.5, so an image of n pixels spans -0.5 .. n - 0.5 (both edges inside). GDAL's raster
space puts the centre of pixel 0 at 0.5; the deep matchers' normalised coordinates put the outer
pixel edges at -1 and 1 (``align_corners=False``). Every function works on numpy arrays and on torch
tensors alike (plain arithmetic), and NaN positions are never inside.
"""

import numpy as np


def inside(rows, cols, shape):
    """Whether (rows, cols) fall on an image of ``shape`` (rows, cols): -0.5 <= r <= n - 0.5."""
    n_rows, n_cols = shape[0], shape[1]
    with np.errstate(invalid="ignore"):
        return (rows >= -0.5) & (rows <= n_rows - 0.5) & (cols >= -0.5) & (cols <= n_cols - 0.5)


def nearest(rows, cols, shape):
    """Integer (row, col) of the nearest pixel centre, clipped into the image (NaN -> pixel 0)."""
    r = np.clip(np.rint(np.nan_to_num(rows)), 0, shape[0] - 1).astype(np.intp)
    c = np.clip(np.rint(np.nan_to_num(cols)), 0, shape[1] - 1).astype(np.intp)
    return r, c


def to_normalised(coord, size):
    """Pixel coordinate -> normalised coordinate in [-1, 1] over an axis of ``size`` pixels."""
    return (2.0 * coord + 1.0) / size - 1.0


def from_normalised(x, size):
    """Normalised coordinate in [-1, 1] -> pixel coordinate over an axis of ``size`` pixels."""
    return (x + 1.0) * (size / 2.0) - 0.5


def centres_normalised(size):
    """Normalised coordinates of the ``size`` pixel centres of an axis (numpy float64)."""
    return to_normalised(np.arange(size, dtype=np.float64), size)


def to_gdal(coord):
    """Pixel coordinate -> GDAL raster-space coordinate (centre of pixel 0 at 0.5)."""
    return coord + 0.5


def from_gdal(coord):
    """GDAL raster-space coordinate -> pixel coordinate."""
    return coord - 0.5
