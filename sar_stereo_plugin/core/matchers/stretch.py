"""SAR amplitude -> 8-bit grey: the one stretch every learned matcher and the dataset builder use.

Matchers pretrained on photographs expect 8-bit images; SAR amplitude spans decades, so it is
taken to decibels and clipped at per-patch percentiles, which keeps speckle contrast comparable
from patch to patch whatever the calibration.
"""

import numpy as np


def amplitude_to_uint8(amplitude, low_pct=2.0, high_pct=98.0):
    """Map a SAR amplitude patch to uint8, same shape.

    ``20·log10(amplitude)`` is clipped at its ``low_pct`` and ``high_pct`` percentiles (taken over
    the finite, positive pixels only), scaled linearly so that they become 0 and 255, and
    rounded. NaN, infinite, zero or negative amplitude (no data) -> 0. A patch whose percentiles
    coincide (flat) maps its valid pixels to 128.
    """
    a = np.asarray(amplitude, dtype=np.float32)
    out = np.zeros(a.shape, np.uint8)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(a) & (a > 0)
    if not valid.any():
        return out
    db = 20.0 * np.log10(a[valid])
    low, high = np.percentile(db, [low_pct, high_pct])
    if high > low:
        out[valid] = np.rint(np.clip((db - low) * (255.0 / (high - low)), 0.0, 255.0))
    else:
        out[valid] = 128
    return out
