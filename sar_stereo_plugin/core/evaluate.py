"""Accuracy of a match raster against ground truth (a simulator's, or one derived from a DSM).

The end-point error (EPE) of a reference pixel is the distance, in secondary pixels, between the
matched and the true secondary position. Statistics are over the *valid* ground-truth pixels
(band 3 = 1: one visible ground point, seen by both images). A pixel is *matched* when its
match is finite and its certainty reaches the threshold.

* ``accuracy_at_px[t]``: share of valid pixels matched with EPE <= t pixels (an unmatched valid
  pixel counts as a failure), for t = 1, 3, 5, 10. This is the method's matching accuracy.
* ``accuracy_of_matched_at_px[t]``: the same share among matched valid pixels only.
* ``coverage``: share of valid pixels matched; ``median_epe_px``: median EPE of matched valid pixels.

Both rasters are read in row blocks, so the evaluation of large images stays small in memory.
"""

import numpy as np

from .errors import RasterError
from .raster import open_raster

THRESHOLDS_PX = (1, 3, 5, 10)
BLOCK_ROWS = 1024


def evaluate_matches(matches, ground_truth, certainty_threshold=0.0):
    """The report dict described in the module doc, for two raster paths."""
    m_ds, g_ds = open_raster(matches, "MATCHES"), open_raster(ground_truth, "GROUND_TRUTH")
    if m_ds.RasterCount < 3:
        raise RasterError(f"{matches}: field 'bands': a match raster has 3 bands (secondary row, col, certainty), "
                          f"this one has {m_ds.RasterCount}")
    if g_ds.RasterCount < 3:
        raise RasterError(f"{ground_truth}: field 'bands': ground truth needs bands secondary row, col and validity, "
                          f"this raster has {g_ds.RasterCount}")
    shape = (m_ds.RasterYSize, m_ds.RasterXSize)
    if shape != (g_ds.RasterYSize, g_ds.RasterXSize):
        raise RasterError(f"{matches}: field 'size': {shape[0]} x {shape[1]} pixels, but the ground truth "
                          f"{ground_truth} has {g_ds.RasterYSize} x {g_ds.RasterXSize}; both must be in the "
                          "reference image's geometry")
    valid_count, errors = 0, []
    for row0 in range(0, shape[0], BLOCK_ROWS):
        n = min(BLOCK_ROWS, shape[0] - row0)
        m = [m_ds.GetRasterBand(b).ReadAsArray(0, row0, shape[1], n) for b in (1, 2, 3)]
        g = [g_ds.GetRasterBand(b).ReadAsArray(0, row0, shape[1], n) for b in (1, 2, 3)]
        valid = (g[2] == 1) & np.isfinite(g[0]) & np.isfinite(g[1])
        matched = valid & np.isfinite(m[0]) & np.isfinite(m[1]) & (m[2] >= certainty_threshold)
        valid_count += int(valid.sum())
        errors.append(np.hypot(m[0][matched] - g[0][matched], m[1][matched] - g[1][matched]).astype(np.float32))
    if not valid_count:
        raise RasterError(f"{ground_truth}: field 'validity': no valid ground-truth pixel to evaluate against")
    epe = np.concatenate(errors)
    return {
        "matches": str(matches), "ground_truth": str(ground_truth),
        "certainty_threshold": float(certainty_threshold),
        "valid_pixels": valid_count, "matched_pixels": int(epe.size),
        "coverage": epe.size / valid_count,
        "accuracy_at_px": {str(t): int((epe <= t).sum()) / valid_count for t in THRESHOLDS_PX},
        "accuracy_of_matched_at_px": {str(t): float((epe <= t).mean()) if epe.size else 0.0 for t in THRESHOLDS_PX},
        "median_epe_px": float(np.median(epe)) if epe.size else None,
    }
