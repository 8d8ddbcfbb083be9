"""Prior alignment: resampling a window onto the patch grid, mapping answers back, and training
samples in the same geometry."""

import numpy as np
import pytest

from sar_stereo_plugin.core.evaluate import evaluate_matches
from sar_stereo_plugin.core.matchers import Matcher, PatchMatch, PatchPair, create_matcher
from sar_stereo_plugin.core.matchers.aligned import AlignedMatcher, align_pair, align_sample, fit_alignment
from sar_stereo_plugin.core.patches import MatchSettings, match_pair


def _affine_pair(rng):
    """A textured window and a reference patch that is that window seen through a known affine."""
    from scipy.ndimage import gaussian_filter, map_coordinates
    window = gaussian_filter(rng.normal(size=(140, 200)), 1.5).astype(np.float32) + 5.0
    affine = np.array([[1.02, 0.01, 20.0], [0.03, 1.3, 30.0]])  # range stretch 1.3, small shear
    r, c = np.mgrid[0:64, 0:64].astype(np.float64)
    prior = np.tensordot(affine, np.stack([r, c, np.ones_like(r)]), axes=1)
    reference = map_coordinates(window, prior, order=1).astype(np.float32)
    return PatchPair(reference, window, prior.astype(np.float32), 6.0, (0, 0), (0, 0)), affine


def test_aligned_window_shows_the_reference_on_its_grid():
    pair, affine = _affine_pair(np.random.default_rng(0))
    aligned, alignment = align_pair(pair)
    np.testing.assert_allclose(alignment.affine, affine, atol=1e-4)
    m = alignment.margin
    assert m == 14 and aligned.secondary.shape == (64 + 2 * m, 64 + 2 * m)
    inner = aligned.secondary[m:m + 64, m:m + 64]
    assert np.abs(inner - pair.reference).max() < 1e-3  # the same bilinear samples, through the fitted affine
    rows, cols = np.mgrid[0:90, 0:90].astype(np.float64)
    back = alignment.to_aligned(*alignment.to_window(rows, cols))
    assert np.abs(back - np.stack([rows, cols])).max() < 1e-6


class _AnswerPrior(Matcher):
    """Answers each aligned pair's prior (the identity shifted by the margin)."""

    def match(self, pairs):
        return [PatchMatch(p.prior[0], p.prior[1], np.ones(p.reference.shape, np.float32)) for p in pairs]


def test_answers_map_back_to_the_native_window(alpine_pair, tmp_path):
    """Answering 'where the prior says' in the aligned frame gives back the prior in the window
    (a DEM prior over Alpine relief: far from affine), and POC run on aligned pairs keeps its accuracy."""
    from sar_stereo_plugin.core.patches import plan_pair
    paths, _ = alpine_pair
    plan = plan_pair(paths["reference"], paths["secondary"], MatchSettings(128, 32), prior_dem=paths["dem"])
    pairs = [pair for _, cut in plan.strips() for _, pair in cut if pair is not None][:6]
    for pair, answer in zip(pairs, AlignedMatcher(_AnswerPrior()).match(pairs)):
        ok = np.isfinite(pair.prior).all(axis=0)
        assert np.abs(np.stack([answer.rows, answer.cols])[:, ok] - pair.prior[:, ok]).max() < 1e-3

    out = tmp_path / "m.tif"
    match_pair(paths["reference"], paths["secondary"], out, AlignedMatcher(create_matcher("poc")),
               MatchSettings(128, 32, height_uncertainty_m=100.0), prior_dem=paths["dem"])
    accuracy = evaluate_matches(out, paths["ground_truth"])["accuracy_at_px"]
    assert accuracy["3"] > 0.9 and accuracy["10"] > 0.93


def test_training_samples_in_the_aligned_geometry(alpine_pair, tmp_path):
    from sar_stereo_plugin.core.training.dataset import build_dataset, load_manifest, load_sample
    paths, _ = alpine_pair
    folder = tmp_path / "ds"
    build_dataset([(paths["reference"], paths["secondary"])], paths["dem"], folder, patch_size=128, overlap=32,
                  block_px=1024, split=(1.0, 0.0, 0.0))
    for entry in load_manifest(folder)["samples"][:3]:
        sample = load_sample(folder, entry)
        aligned = align_sample(sample)
        alignment = fit_alignment(sample["prior"], float(sample["search_px"]))
        ha, wa = aligned["secondary"].shape
        keep = aligned["valid"] > 0
        assert keep.sum() >= 0.95 * (sample["valid"] > 0).sum()
        rows = (aligned["warp"][..., 1] + 1.0) * ha / 2.0 - 0.5
        cols = (aligned["warp"][..., 0] + 1.0) * wa / 2.0 - 0.5
        window = alignment.to_window(rows, cols)
        truth = sample["secondary_rc"] - np.asarray(sample["secondary_origin"], np.float32)[:, None, None]
        assert np.abs(window[:, keep] - truth[:, keep]).max() < 2e-3  # float32 warp storage
        assert np.isnan(aligned["warp"][~keep]).all()


def test_unusable_prior_passes_the_pair_through():
    pair = PatchPair(np.ones((8, 8), np.float32), np.ones((20, 20), np.float32),
                     np.full((2, 8, 8), np.nan, np.float32), 3.0, (0, 0), (0, 0))
    assert align_pair(pair) == (pair, None)
    with pytest.raises(AssertionError):
        assert fit_alignment(pair.prior, 3.0) is not None
