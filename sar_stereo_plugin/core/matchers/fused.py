"""Fused matcher: POC and the light matcher on every patch, per pixel the answer more likely right.

Both matchers answer the same :class:`.PatchPair`, in POC's patch geometry (512/64: POC finds large
disparities less often in 256-pixel patches), which the light matcher matches in overlapping tiles of
its own (256/64, :func:`.light.tiles`). With the engine's forward-backward check
(:meth:`FusedMatcher.match_checked`) each matcher's answers are first matched back by that matcher and
dropped where their round trip does not close within its own tolerance (:attr:`.Matcher.consistency_px`,
or the one the user gave), so a consistent answer wins over a more certain inconsistent one. Each raw
certainty is then turned into the probability that the answer lies within 3 pixels of the truth, read
off the matcher's calibration (:data:`CALIBRATION`: piecewise linear, non-decreasing, measured on the
validation pairs by ``scripts/calibrate_fusion.py``): raw certainties mean different things (POC: a
correlation peak's height over chance; light: the network's odds of a valid match). Per reference pixel:

* where the two answers lie within :data:`AGREE_PX` of each other they are one answer, vouched for,
  the mean of the two positions weighted by the inverse of each one's error variance where they
  agree (:data:`POC_WEIGHT`, measured with the calibration), with probability
  ``1 - (1 - p_poc)(1 - p_light)`` (two methods that fail differently rarely agree by chance);
* elsewhere the light matcher's answer, vouched for where that matcher would put it in a DEM (raw
  certainty at or above its :attr:`.Matcher.certainty_threshold`);
* where only POC answered, POC's answer, never vouched for.

Where the two disagree, POC's answer is the wrong one far more often than its calibration says (the
calibration holds over all its answers, most of them agreed on): on the validation pairs, where the two
disagreed, POC's answers were within 3 px 54-63 % of the time and the light matcher's 85-87 %; POC's
answers where the light matcher had none, 19-75 % (``scripts/calibrate_fusion.py`` prints these).

The fused certainty is ``(vouched + p) / 2``: at or above one half exactly where the answer is vouched
for, so that the elevation step's default (:attr:`FusedMatcher.certainty_threshold`, 0.5) keeps what
the light matcher alone would keep, and more where the two agree; within each half it follows the
probability. The round-trip band of the match raster holds the taken answer's round trip
(the smaller of the two where they agree or neither was kept).
"""

import numpy as np

from . import Matcher, answer

AGREE_PX = 2.0  # two answers this close are one (secondary pixels)
POC_WEIGHT = 0.536  # POC's weight in the mean of two agreeing answers, from scripts/calibrate_fusion.py
# raw certainty -> probability within 3 px, knots (raw, probability), from scripts/calibrate_fusion.py
CALIBRATION = {
    "poc": ((0.0498, 0.821), (0.0961, 0.909), (0.1251, 0.949), (0.148, 0.961), (0.1673, 0.975),
             (0.1851, 0.981), (0.2015, 0.986), (0.2174, 0.988), (0.2329, 0.991), (0.2486, 0.994),
             (0.265, 0.995), (0.2821, 0.996), (0.3004, 0.997), (0.3223, 0.997), (0.3504, 0.997),
             (0.4, 0.997)),
    "light": ((0.699, 0.772), (0.8323, 0.918), (0.8887, 0.961), (0.9212, 0.974), (0.942, 0.986),
             (0.9563, 0.993), (0.9665, 0.997), (0.9744, 0.998), (0.9803, 0.999), (0.985, 0.999),
             (0.9885, 0.999), (0.9915, 1.0), (0.9939, 1.0), (0.9958, 1.0), (0.9973, 1.0),
             (0.9988, 1.0)),
}


def calibrated(name, certainty):
    """Probability within 3 px of raw certainties of matcher ``name`` (NaN stays NaN)."""
    knots = np.asarray(CALIBRATION[name], np.float64)
    certainty = np.asarray(certainty, np.float64)
    return np.where(np.isfinite(certainty), np.interp(certainty, knots[:, 0], knots[:, 1]), np.nan)


def fuse_arrays(poc, light, light_threshold=0.0, agree_px=AGREE_PX):
    """The fusion rule (module doc) on (rows, cols, raw certainty) of POC and of the light matcher,
    arrays of any one shape, with the light matcher's certainty threshold: (rows, cols, certainty,
    choice), NaN where neither answered; ``choice`` 0 where POC's answer was taken, 1 the light
    matcher's, 2 their mean, -1 none."""
    p_poc, p_light = calibrated("poc", poc[2]), calibrated("light", light[2])
    have_poc, have_light = np.isfinite(p_poc), np.isfinite(p_light)
    with np.errstate(invalid="ignore"):
        agree = have_poc & have_light & (np.hypot(poc[0] - light[0], poc[1] - light[1]) <= agree_px)
        vouched = agree | (have_light & (light[2] >= light_threshold))
    w = POC_WEIGHT
    rows = np.where(agree, w * poc[0] + (1 - w) * light[0], np.where(have_light, light[0], poc[0]))
    cols = np.where(agree, w * poc[1] + (1 - w) * light[1], np.where(have_light, light[1], poc[1]))
    p = np.where(agree, 1.0 - (1.0 - p_poc) * (1.0 - p_light), np.where(have_light, p_light, p_poc))
    choice = np.where(agree, 2, np.where(have_light, 1, np.where(have_poc, 0, -1)))
    answered = choice >= 0
    return (*(np.where(answered, a, np.nan) for a in (rows, cols, 0.5 * (vouched + p))), choice)


class FusedMatcher(Matcher):
    """POC and the light matcher on each patch, fused per pixel (module doc). ``poc``, ``light``:
    matchers already built, used instead; ``options`` go to the one that takes them
    (:attr:`.PocMatcher.OPTIONS`, :attr:`.LightMatcher.OPTIONS`; the batch size to the light matcher)."""

    name = "fused"
    patch_size, overlap = 512, 64
    certainty_threshold = 0.5  # vouched for (module doc)
    chance_certainty = 0.05  # as POC's
    consistency_px = 5.0  # only switches the check on: each part is checked with its own tolerance
    OPTIONS = ("weights", "weights_dir", "device", "batch_size", "max_side", "flips", "grid_step", "window",
               "levels", "workers")

    def __init__(self, poc=None, light=None, **options):
        from .light import LightMatcher
        from .poc import PocMatcher
        self.poc = poc or PocMatcher(**{k: v for k, v in options.items()
                                        if k in PocMatcher.OPTIONS and k != "batch_size"})
        self.light = light or LightMatcher(**{k: v for k, v in options.items() if k in LightMatcher.OPTIONS})
        self.batch_size = self.light.batch_size

    def describe(self):
        return f"fused (agreement within {AGREE_PX:g} px): {self.poc.describe()}; {self.light.describe()}"

    def match(self, pairs):
        pairs = list(pairs)
        return [self._fuse(pair, a, b)[0] for pair, a, b in zip(pairs, self.poc.match(pairs), self.light.match(pairs))]

    def match_checked(self, pairs, check):
        """Each part's answers checked by that part (module doc), then fused: (answers, round trips)."""
        pairs = list(pairs)
        poc, poc_trips = check(self.poc, self.poc.match(pairs))
        light, light_trips = check(self.light, self.light.match(pairs))
        out, trips = [], []
        for pair, a, b, ta, tb in zip(pairs, poc, light, poc_trips, light_trips):
            found, choice = self._fuse(pair, a, b)
            # the taken answer's round trip; where none was kept (or both agree), the smaller of the two
            trips.append(np.where(choice == 0, ta, np.where(choice == 1, tb, np.fmin(ta, tb))).astype(np.float32))
            out.append(found)
        return out, trips

    def _fuse(self, pair, poc, light):
        """(the fused :class:`.PatchMatch` of one pair, the choice per pixel, as :func:`fuse_arrays`)."""
        rows, cols, certainty, choice = fuse_arrays((poc.rows, poc.cols, poc.certainty),
                                                    (light.rows, light.cols, light.certainty),
                                                    self.light.certainty_threshold)
        return answer(pair, rows, cols, certainty), choice
