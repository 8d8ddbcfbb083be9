"""Land-cover reflectivity: a seeded, spatially correlated log-normal texture both views share."""

import math

import numpy as np


class Texture:
    """Seeded land-cover reflectivity (mean 1) on a ground grid tied to the DEM's pixels."""

    CLASS_DB = np.array([-4.0, -1.0, 0.5, 2.0])  # dark (wet, smooth), grass, fields, rock/built
    CLASS_SHARE = np.array([0.1, 0.35, 0.4, 0.15])
    MAX_CELLS = 16_000_000

    def __init__(self, dem, bounds, cell_m, strength_db, rng):
        self.r0, self.c0 = bounds[0], bounds[2]
        size_r, size_c = dem.pixel_size_m()
        cells = (bounds[1] - bounds[0]) * size_r * (bounds[3] - bounds[2]) * size_c / cell_m ** 2
        cell_m *= max(1.0, math.sqrt(cells / self.MAX_CELLS))
        self.per_r, self.per_c = size_r / cell_m, size_c / cell_m  # texture cells per DEM pixel
        shape = (int((bounds[1] - bounds[0]) * self.per_r) + 2, int((bounds[3] - bounds[2]) * self.per_c) + 2)
        if strength_db <= 0:
            self.grid = np.ones((1, 1), np.float32)
            self.per_r = self.per_c = 0.0
            return
        parcels = _smooth_noise(rng, shape, 120.0 / cell_m)
        edges = np.quantile(parcels, np.cumsum(self.CLASS_SHARE)[:-1])
        db = self.CLASS_DB[np.searchsorted(edges, parcels)]
        db += 1.5 * _smooth_noise(rng, shape, 15.0 / cell_m) + rng.standard_normal(shape)
        db *= strength_db / db.std()
        grid = 10.0 ** (db / 10.0)
        self.grid = (grid / grid.mean()).astype(np.float32)

    @classmethod
    def for_views(cls, dem, views, strength_db, rng):
        """A texture covering the ground of all views, with cells about a pixel across."""
        boxes = np.array([[np.nanmin(v.main[6]), np.nanmax(v.main[6]), np.nanmin(v.main[7]), np.nanmax(v.main[7])]
                          for v in views])
        n_r, n_c = dem.shape
        bounds = (max(boxes[:, 0].min(), -1.0), min(boxes[:, 1].max(), n_r), max(boxes[:, 2].min(), -1.0),
                  min(boxes[:, 3].max(), n_c))
        if not (bounds[1] > bounds[0] and bounds[3] > bounds[2]):
            bounds = (-1.0, n_r, -1.0, n_c)
        cell = min(min(v.model.sample_spacing_m, v.az_ground_spacing()) for v in views)
        return cls(dem, bounds, cell, strength_db, rng)

    def sample(self, pr, pc):
        i = np.clip(np.rint((pr - self.r0) * self.per_r), 0, self.grid.shape[0] - 1).astype(np.intp)
        j = np.clip(np.rint((pc - self.c0) * self.per_c), 0, self.grid.shape[1] - 1).astype(np.intp)
        return self.grid[i, j]


def _smooth_noise(rng, shape, corr_cells):
    """Unit-variance Gaussian noise correlated over about ``corr_cells`` cells (smooth-step upsampling)."""
    corr = max(float(corr_cells), 1.0)
    coarse = rng.standard_normal((int(shape[0] / corr) + 3, int(shape[1] / corr) + 3))

    def axis_weights(n):
        x = np.arange(n) / corr
        i = x.astype(np.intp)
        w = x - i
        return i, w * w * (3.0 - 2.0 * w)

    ir, wr = axis_weights(shape[0])
    ic, wc = axis_weights(shape[1])
    rows = coarse[ir] * (1.0 - wr)[:, None] + coarse[ir + 1] * wr[:, None]
    out = rows[:, ic] * (1.0 - wc) + rows[:, ic + 1] * wc
    return (out - out.mean()) / out.std()
