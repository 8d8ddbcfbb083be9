"""The phase-only correlation matcher: sub-pixel accuracy through an affine prior, no-data
handling, certainty, options, and accuracy on a simulated SAR pair against exact ground truth."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, map_coordinates

from sar_stereo_plugin.core.matchers import MatcherUnavailable, PatchPair, create_matcher
from sar_stereo_plugin.core.matchers.poc import PocMatcher

SCALE = 1.3  # secondary columns per reference column
SHIFT = (2.37, -4.61)  # true secondary (row, col) offset, secondary pixels
PRIOR_ERROR = (1.9, -5.3)  # the prior is off by this much: the matcher has to find it


def speckled_texture(shape, seed):
    """Log-normal land-cover texture times 4-look speckle, correlated over about a pixel."""
    rng = np.random.default_rng(seed)
    texture = np.exp(3.0 * gaussian_filter(rng.standard_normal(shape), 4)
                     + gaussian_filter(rng.standard_normal(shape), 1))
    return gaussian_filter(np.sqrt(texture * rng.gamma(4.0, 0.25, shape)), 0.7)


def affine_pair(size=192, seed=1):
    """A reference and a secondary showing it with SHIFT and columns stretched by SCALE; the truth
    (2, size, size) and a prior with the right affine but PRIOR_ERROR off."""
    big = speckled_texture((size + 40, int(size * SCALE) + 80), seed)
    ref = big[20:20 + size, 40:40 + size].astype(np.float32)
    qr, qc = np.mgrid[0:size, 0:int(size * SCALE)].astype(float)  # secondary pixel -> reference position
    sec = map_coordinates(big, [qr - SHIFT[0] + 20, (qc - SHIFT[1]) / SCALE + 40], order=3, mode="nearest")
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float32)
    truth = np.stack([rr + SHIFT[0], cc * SCALE + SHIFT[1]])
    prior = truth + np.array(PRIOR_ERROR, np.float32)[:, None, None]
    return ref, sec.astype(np.float32), truth, prior


def pair_of(ref, sec, prior, search_px=10.0):
    return PatchPair(ref, sec, prior.astype(np.float32), search_px, (0, 0), (0, 0))


def error(match, truth):
    return np.hypot(match.rows - truth[0], match.cols - truth[1])


# ---------------------------------------------------------------------------------------- synthetic
def test_recovers_subpixel_shift_through_affine_prior():
    ref, sec, truth, prior = affine_pair()
    assert np.hypot(*PRIOR_ERROR) > 5  # the prior alone is far off
    match = PocMatcher().match([pair_of(ref, sec, prior)])[0]
    for a in (match.rows, match.cols, match.certainty):
        assert a.shape == ref.shape and a.dtype == np.float32
    err = error(match, truth)
    assert np.isfinite(err).mean() > 0.9
    assert np.nanmedian(err) < 0.1  # measured 0.017
    assert np.nanpercentile(err, 90) < 0.2
    assert np.nanmin(match.certainty) >= 0 and np.nanmax(match.certainty) <= 1
    assert np.nanmedian(match.certainty) > 0.8  # same speckle in both: nearly identical windows (0.99)


def test_the_way_back_is_cheaper_and_still_within_a_pixel():
    """match_back (the forward-backward check's way back) correlates a grid twice as coarse; its
    answers stay far inside the check's tolerance (2 px)."""
    ref, sec, truth, prior = affine_pair()
    matcher = PocMatcher()
    full, back = matcher.match([pair_of(ref, sec, prior)])[0], matcher.match_back([pair_of(ref, sec, prior)])[0]
    assert np.isfinite(error(back, truth)).mean() > 0.9
    assert np.nanpercentile(error(back, truth), 90) < 0.2  # measured 0.02 (the full grid: 0.04)
    assert np.nanmedian(np.hypot(back.rows - full.rows, back.cols - full.cols)) < 0.1  # measured 0.008


def test_certainty_separates_matching_from_unrelated_content():
    ref, sec, _, prior = affine_pair()
    unrelated = speckled_texture(sec.shape, seed=7).astype(np.float32)
    good = PocMatcher().match([pair_of(ref, sec, prior)])[0]
    bad = PocMatcher().match([pair_of(ref, unrelated, prior)])[0]
    assert np.nanmedian(bad.certainty) < 0.1 < 0.8 < np.nanmedian(good.certainty)  # measured 0.02, 0.99


def test_several_pairs_in_one_call_answer_in_order():
    ref, sec, truth, prior = affine_pair(size=96)
    flipped = pair_of(ref, sec, prior)
    far = pair_of(ref, np.full_like(sec, np.nan), prior)
    answers = PocMatcher(batch_size=2).match([flipped, far])
    assert len(answers) == 2
    assert np.nanmedian(error(answers[0], truth)) < 0.1
    assert np.isnan(answers[1].rows).all()


# ---------------------------------------------------------------------------------------- no data
def test_nan_areas_give_nan_matches_not_errors():
    ref, sec, truth, prior = affine_pair()
    ref[40:90, 30:80] = np.nan
    sec[120:170, 150:230] = np.nan  # reference rows ~118-168, cols ~119-180 land there
    match = PocMatcher().match([pair_of(ref, sec, prior)])[0]
    assert np.isnan(match.rows[40:90, 30:80]).all() and np.isnan(match.certainty[40:90, 30:80]).all()
    assert np.isnan(match.cols[125:160, 125:172]).all()
    # every answer falls on secondary data, and away from the holes the matches stay exact
    hit = np.isfinite(match.rows)
    ri, ci = np.rint(match.rows[hit]).astype(int), np.rint(match.cols[hit]).astype(int)
    assert np.isfinite(sec[ri, ci]).all()
    err = error(match, truth)
    assert np.isfinite(err).mean() > 0.6
    assert np.nanmedian(err) < 0.1


@pytest.mark.parametrize("which", ["reference", "secondary", "both"])
def test_all_nan_input_gives_all_nan(which):
    ref, sec, _, prior = affine_pair(size=64)
    if which in ("reference", "both"):
        ref[:] = np.nan
    if which in ("secondary", "both"):
        sec[:] = np.nan
    match = PocMatcher().match([pair_of(ref, sec, prior)])[0]
    for a in (match.rows, match.cols, match.certainty):
        assert a.shape == ref.shape and np.isnan(a).all()


def test_nan_prior_gives_nan_there():
    ref, sec, truth, prior = affine_pair(size=128)
    prior[:, 50:80, 60:100] = np.nan  # the geometry failed there
    match = PocMatcher().match([pair_of(ref, sec, prior)])[0]
    assert np.isnan(match.rows[50:80, 60:100]).all()
    assert np.nanmedian(error(match, truth)) < 0.1


def test_threads_give_the_same_answer():
    ref, sec, _, prior = affine_pair(size=128)
    one, two = (PocMatcher(workers=w).match([pair_of(ref, sec, prior)])[0] for w in (1, 2))
    np.testing.assert_array_equal(one.cols, two.cols)


def test_zero_amplitude_shadow_is_no_crash():
    ref, sec, truth, prior = affine_pair(size=96)
    ref[10:30, 10:30] = 0.0  # radar shadow: exactly dark, not no-data
    match = PocMatcher().match([pair_of(ref, sec, prior)])[0]
    assert np.isfinite(match.rows).mean() > 0.8
    assert np.nanmedian(error(match, truth)) < 0.1


# ---------------------------------------------------------------------------------------- options
def test_create_matcher_passes_only_its_options():
    m = create_matcher("poc", grid_step=8, window=48, levels=3, weights="ignored.pth", device="cuda")
    assert isinstance(m, PocMatcher) and (m.grid_step, m.window, m.levels) == (8, 48, 3)
    assert "poc" in m.describe()


@pytest.mark.parametrize("option, value", [("grid_step", 0), ("window", 33), ("window", 4), ("levels", 9),
                                           ("batch_size", 0), ("grid_step", 2.5), ("window", "32")])
def test_bad_options_name_the_field(option, value):
    with pytest.raises(MatcherUnavailable, match=f"field '{option.upper()}'") as info:
        PocMatcher(**{option: value})
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------------------- simulated SAR
def test_simulated_pair_against_ground_truth(shared_data, tmp_path):
    """A 256 x 256 same-side pair (35/55 degrees, 5 m pixels, independent speckle) over the
    Hintereisferner; the prior comes from both sensor models at the scene's median height, the
    search range from +-300 m around it, as the patch engine does."""
    from sar_stereo_plugin.core.flight import FlightDesign
    from sar_stereo_plugin.core.simulate import simulate_pair
    sim = simulate_pair(shared_data / "dem" / "hintereisferner_srtm3.tif", FlightDesign(rows=256, cols=256),
                        seed=3, return_arrays=True)
    gt = sim.arrays["ground_truth"]
    ref_model, sec_model = sim.reference_model, sim.secondary_model
    h = float(np.nanmedian(gt[3]))
    rr, cc = np.mgrid[0:256, 0:256].astype(float)
    prior = np.stack(sec_model.geo2rdr(*ref_model.rdr2geo(rr, cc, height=h)))
    high = np.stack(sec_model.geo2rdr(*ref_model.rdr2geo(rr, cc, height=h + 300.0)))
    search = float(np.nanmax(np.hypot(*(high - prior))))
    pair = PatchPair(sim.arrays["reference"]["amplitude"], sim.arrays["secondary"]["amplitude"],
                     prior.astype(np.float32), search, (0, 0), (0, 0))
    valid = gt[2] == 1
    prior_err = np.hypot(prior[0] - gt[0], prior[1] - gt[1])[valid]
    assert (prior_err < 3).mean() < 0.5  # the terrain moves most pixels well away from the prior

    match = PocMatcher().match([pair])[0]
    err = np.hypot(match.rows - gt[0], match.cols - gt[1])[valid]
    within3 = (np.nan_to_num(err, nan=np.inf) < 3).mean()
    within1 = (np.nan_to_num(err, nan=np.inf) < 1).mean()
    assert within3 > 0.9  # measured 0.936 (seeds 3-5: 0.917-0.938); the prior alone: 0.185
    assert within1 > 0.65  # measured 0.759
    cert = match.certainty[valid]
    assert np.nanmedian(cert) > 0.1  # measured 0.21 (unrelated windows: 0.02)
    # the certainty ranks the answers: the more certain half is more often right (0.93 vs 0.64)
    right = np.nan_to_num(err, nan=np.inf) < 1
    top = cert > np.nanmedian(cert)
    assert right[top].mean() > right[~top & np.isfinite(cert)].mean() + 0.15


def test_poc_accuracy_table_on_hintereisferner(alpine_pair, tmp_path):
    """The method's table for POC through the whole engine: a 300 x 300 pair (35/55 degrees, 5 m)
    over Hintereisferner, constant prior at the DEM's mid height +- 700 m, 128-px patches."""
    from sar_stereo_plugin.core import MatchSettings, create_matcher, evaluate_matches, match_pair
    paths, _ = alpine_pair
    out = tmp_path / "poc.tif"
    match_pair(paths["reference"], paths["secondary"], out, create_matcher("poc"),
               MatchSettings(patch_size=128, overlap=32, height_uncertainty_m=700.0, consistency_px=0.0))
    report = evaluate_matches(out, paths["ground_truth"])  # the matcher's answers, as the method's table has them
    # measured: 0.795 / 0.954 / 0.967 / 0.973, coverage 0.974, median EPE 0.53 px
    floors = {"1": 0.75, "3": 0.92, "5": 0.94, "10": 0.95}
    assert all(report["accuracy_at_px"][k] > floors[k] for k in floors), report["accuracy_at_px"]
    assert report["coverage"] > 0.95 and report["median_epe_px"] < 0.7
