"""The patch engine: exact cutting, mapping and merging (proved with an oracle matcher), the
match raster contract, and bad inputs."""

import json

import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core.dem import height_bounds, open_dem
from sar_stereo_plugin.core.errors import GeometryError, RasterError, SensorModelError
from sar_stereo_plugin.core.evaluate import evaluate_matches
from sar_stereo_plugin.core.matchers import Matcher, MatchingCanceled
from sar_stereo_plugin.core.matching import MatchSettings, match_pair
from sar_stereo_plugin.core.products import read_pair_models, write_image


def _covering(paths, **kw):
    """Settings whose constant prior and uncertainty cover all of the DEM's heights; no
    forward-backward check (an oracle knows the truth one way only; tests/test_consistency.py
    proves the check)."""
    lo, hi, _ = height_bounds(open_dem(paths["dem"]))
    return MatchSettings(height_prior=(lo + hi) / 2, height_uncertainty_m=(hi - lo) / 2,
                         **{"consistency_px": 0.0, **kw})


def _bands(path):
    return gdal.Open(str(path)).ReadAsArray()


@pytest.mark.parametrize("patch_size, overlap, use_dem", [(96, 24, False), (128, 0, False), (64, 16, True)])
def test_oracle_mosaic_reproduces_ground_truth(alpine_pair, oracle, tmp_path, patch_size, overlap, use_dem):
    paths, _ = alpine_pair
    out = tmp_path / "match.tif"
    if use_dem:  # a DEM prior: windows only need a small margin
        settings, dem = MatchSettings(patch_size, overlap, height_uncertainty_m=30.0, consistency_px=0.0), paths["dem"]
    else:
        settings, dem = _covering(paths, patch_size=patch_size, overlap=overlap), None
    result = match_pair(paths["reference"], paths["secondary"], out, oracle(paths["ground_truth"]), settings,
                        prior_dem=dem)
    truth, match = _bands(paths["ground_truth"]), _bands(out)
    valid = truth[2] == 1
    assert match.shape == (3, 300, 300)
    assert np.isfinite(match[0][valid]).mean() > 0.9999
    assert np.nanmax(np.abs(match[:2][:, valid] - truth[:2][:, valid])) <= 1e-3
    assert not np.isfinite(match[0][~valid]).any()  # nothing invented
    assert result.outside_patches == result.nodata_patches == 0 and result.matched_patches >= result.patches - 2
    assert result.matched_fraction == pytest.approx(valid.mean(), abs=1e-3)


def test_patch_geometry_defaults_to_the_matchers_own(alpine_pair, oracle, tmp_path):
    """Left unset, patch size and overlap are the matcher's (light: 256/64, what it was trained
    on); given, they win. The 300-pixel image holds 3 x 3 patches of 128 every 88 pixels."""
    from sar_stereo_plugin.core.raster import MATCHING_ITEM
    paths, _ = alpine_pair
    matcher = oracle(paths["ground_truth"])
    matcher.patch_size, matcher.overlap = 128, 40
    result = match_pair(paths["reference"], paths["secondary"], tmp_path / "own.tif", matcher, _covering(paths))
    used = json.loads(gdal.Open(str(tmp_path / "own.tif")).GetMetadataItem(MATCHING_ITEM))["settings"]
    assert (result.patches, used["patch_size"], used["overlap"]) == (9, 128, 40)
    result = match_pair(paths["reference"], paths["secondary"], tmp_path / "given.tif", matcher,
                        _covering(paths, patch_size=150, overlap=0))
    assert result.patches == 4
    from sar_stereo_plugin.core.matchers.light import LightMatcher
    assert (LightMatcher.patch_size, LightMatcher.overlap) == (256, 64)


def test_pairs_carry_the_epipolar_direction_and_the_band(alpine_pair):
    """Every PatchPair knows the direction in which a rising height moves its pixels in the
    secondary (range, for these parallel same-side tracks) and how far across it the truth may lie."""
    from sar_stereo_plugin.core.matching import plan_pair
    paths, _ = alpine_pair
    for band, expected in ((None, np.inf), (5.0, 5.0)):
        plan = plan_pair(paths["reference"], paths["secondary"], _covering(paths, patch_size=96, overlap=24,
                                                                          epipolar_band_px=band))
        for _, cut in plan.strips():
            for job, pair in cut:
                rows, cols = job.r0 + np.arange(0, 96, 19.0), job.c0 + np.arange(0, 96, 19.0)
                at = {key: plan.prior.at(rows, cols, key) for key in ("low", "mid", "high")}
                rise = np.concatenate([at["high"] - at["mid"], at["mid"] - at["low"]], axis=1)  # an end may miss
                rise /= np.hypot(*rise)
                assert np.nanmax(np.abs(rise - np.array(pair.epipolar)[:, None])) < 1e-3, (pair.epipolar, rise)
                assert abs(pair.epipolar[0]) < 1e-2 and pair.band_px == expected
    assert MatchSettings(patch_size=96, overlap=0).epipolar_band_px == 12.0  # the default
    with pytest.raises(GeometryError, match="EPIPOLAR_BAND"):
        MatchSettings(patch_size=96, overlap=0, epipolar_band_px=0.0).validate()


def test_window_follows_height_uncertainty(alpine_pair, oracle, tmp_path):
    """With no height uncertainty the windows are too tight on Alpine relief: matches go missing."""
    paths, _ = alpine_pair
    lo, hi, _ = height_bounds(open_dem(paths["dem"]))
    match_pair(paths["reference"], paths["secondary"], tmp_path / "m.tif", oracle(paths["ground_truth"]),
               MatchSettings(96, 24, height_prior=lo, height_uncertainty_m=0.0, consistency_px=0.0))
    truth, match = _bands(paths["ground_truth"]), _bands(tmp_path / "m.tif")
    valid = truth[2] == 1
    assert np.isfinite(match[0][valid]).mean() < 0.9


def test_overlaps_keep_the_more_certain_answer(alpine_pair, oracle, tmp_path):
    """Patches starting on an odd multiple of the stride answer 5 px off with low certainty; every
    pixel they share with an honest patch gets the honest answer."""
    paths, _ = alpine_pair
    stride = 96 - 48
    liar = oracle(paths["ground_truth"], offset=(0.0, 5.0))
    honest = oracle(paths["ground_truth"])

    class Mixed(Matcher):
        name, batch_size = "mixed", 2

        def describe(self):
            return "mixed"

        def match(self, pairs):
            return [(liar if (p.reference_origin[1] // stride) % 2 else honest).match([p])[0] for p in pairs]

    liar.certainty = 0.2
    match_pair(paths["reference"], paths["secondary"], tmp_path / "m.tif", Mixed(),
               _covering(paths, patch_size=96, overlap=48))
    truth, match = _bands(paths["ground_truth"]), _bands(tmp_path / "m.tif")
    valid = truth[2] == 1
    err = np.abs(match[1] - truth[1])
    # columns 0..47 belong to the first (honest) patch only; 48..95 are shared with a liar
    assert np.nanmax(err[:, :96][valid[:, :96]]) <= 1e-3
    liar_only = valid & (np.arange(300) >= 252 - 48)[None, :] & (np.arange(300) < 252)[None, :]
    cert = match[2]
    assert np.all((cert[valid] == 1.0) | (cert[valid] == pytest.approx(0.2)))
    assert np.isfinite(err[liar_only]).all()


def test_match_raster_contract(alpine_pair, oracle, tmp_path):
    paths, result = alpine_pair
    out = tmp_path / "m.tif"
    progress = []
    match_pair(paths["reference"], paths["secondary"], out, oracle(paths["ground_truth"]),
               _covering(paths, patch_size=128, overlap=32), progress=progress.append)
    ds = gdal.Open(str(out))
    assert [ds.GetRasterBand(b).GetDescription() for b in (1, 2, 3)] == ["secondary_row", "secondary_col",
                                                                          "certainty"]
    assert ds.GetRasterBand(1).DataType == gdal.GDT_Float32 and ds.GetGCPCount() > 0
    ref, sec = read_pair_models(out)
    assert ref.to_dict() == result.reference_model.to_dict() and sec.to_dict() == result.secondary_model.to_dict()
    meta = ds.GetMetadata()
    assert meta["SARSTEREO_REFERENCE_IMAGE"] == paths["reference"]
    assert '"matcher": "oracle"' in meta["SARSTEREO_MATCHING"]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) >= 3


def test_evaluate_matches_counts_end_point_errors(alpine_pair, oracle, tmp_path):
    paths, _ = alpine_pair
    settings = _covering(paths, patch_size=128, overlap=32)
    exact, shifted = tmp_path / "exact.tif", tmp_path / "shifted.tif"
    match_pair(paths["reference"], paths["secondary"], exact, oracle(paths["ground_truth"]), settings)
    match_pair(paths["reference"], paths["secondary"], shifted,
               oracle(paths["ground_truth"], offset=(3.0, 3.9), certainty=0.5), settings)
    report = evaluate_matches(exact, paths["ground_truth"])
    assert report["coverage"] > 0.9999
    assert report["accuracy_at_px"] == {k: pytest.approx(report["coverage"]) for k in ("1", "3", "5", "10")}
    assert report["median_epe_px"] < 1e-3
    # 4.92 px off (3, 3.9): beyond 1 and 3 px, within 5 and 10 (the window clips some answers)
    report = evaluate_matches(shifted, paths["ground_truth"])
    assert report["accuracy_at_px"]["1"] == report["accuracy_at_px"]["3"] == 0.0
    assert report["accuracy_at_px"]["5"] == report["accuracy_at_px"]["10"] == pytest.approx(report["coverage"])
    assert report["median_epe_px"] == pytest.approx(np.hypot(3.0, 3.9), abs=1e-3)
    assert report["coverage"] > 0.95
    assert evaluate_matches(shifted, paths["ground_truth"], certainty_threshold=0.6)["coverage"] == 0.0


def test_evaluate_refuses_mismatched_rasters(alpine_pair, tmp_path):
    paths, _ = alpine_pair
    small = tmp_path / "small.tif"
    gdal.Translate(str(small), paths["ground_truth"], srcWin=[0, 0, 100, 100])
    with pytest.raises(RasterError, match="size"):
        evaluate_matches(small, paths["ground_truth"])
    one_band = tmp_path / "one.tif"
    gdal.Translate(str(one_band), paths["ground_truth"], bandList=[1])
    with pytest.raises(RasterError, match="3 bands"):
        evaluate_matches(one_band, paths["ground_truth"])


# ------------------------------------------------------------------ bad inputs: clear errors, no output
def _no_output(tmp_path):
    return not any(tmp_path.glob("*match*"))


def test_patch_larger_than_image(alpine_pair, oracle, tmp_path):
    paths, _ = alpine_pair
    with pytest.raises(GeometryError, match="PATCH_SIZE.*larger than the reference image"):
        match_pair(paths["reference"], paths["secondary"], tmp_path / "match.tif", oracle(paths["ground_truth"]),
                   MatchSettings(patch_size=512))
    with pytest.raises(GeometryError, match="OVERLAP"):
        match_pair(paths["reference"], paths["secondary"], tmp_path / "match.tif", oracle(paths["ground_truth"]),
                   MatchSettings(patch_size=64, overlap=64))
    assert _no_output(tmp_path)


def test_images_that_do_not_overlap(alpine_pair, oracle, tmp_path):
    from sar_stereo_plugin.core.flight import level_flight_model
    paths, result = alpine_pair
    far = level_flight_model(center_lon=12.5, center_lat=47.5, center_h=2500.0, heading_deg=0.0,
                             altitude_m=8000.0, incidence_deg=55.0, rows=300, cols=300)
    write_image(tmp_path / "far.tif", np.ones((300, 300), np.float32), far)
    with pytest.raises(GeometryError, match="do not overlap"):
        match_pair(paths["reference"], tmp_path / "far.tif", tmp_path / "match.tif", oracle(paths["ground_truth"]),
                   _covering(paths, patch_size=100))
    assert _no_output(tmp_path)


def test_no_data_and_partial_no_data(alpine_pair, oracle, tmp_path):
    paths, result = alpine_pair
    amplitude = _bands(paths["reference"])
    holes = amplitude.copy()
    holes[:, :150] = np.nan
    write_image(tmp_path / "holes.tif", holes, result.reference_model)
    out = tmp_path / "holes_match.tif"
    res = match_pair(tmp_path / "holes.tif", paths["secondary"], out, oracle(paths["ground_truth"]),
                     _covering(paths, patch_size=100, overlap=0))
    match = _bands(out)
    assert not np.isfinite(match[:, :, :150]).any() and np.isfinite(match[:, :, 150:]).any()
    assert res.nodata_patches == 3  # the first of three patches in each of three strips
    write_image(tmp_path / "empty.tif", np.full_like(amplitude, np.nan), result.reference_model)
    with pytest.raises(RasterError, match="no data"):
        match_pair(tmp_path / "empty.tif", paths["secondary"], tmp_path / "empty_match.tif",
                   oracle(paths["ground_truth"]), _covering(paths, patch_size=100))
    assert not (tmp_path / "empty_match.tif").exists()


def test_model_that_does_not_fit_the_image(alpine_pair, oracle, tmp_path):
    paths, result = alpine_pair
    write_image(tmp_path / "crop.tif", _bands(paths["reference"])[:200], result.reference_model.__class__.from_json(
        {**result.reference_model.to_dict(), "shape": {"rows": 200, "cols": 300}}))
    with pytest.raises(SensorModelError, match="shape.*300 x 300"):
        match_pair(tmp_path / "crop.tif", paths["secondary"], tmp_path / "match.tif", oracle(paths["ground_truth"]),
                   reference_model=result.reference_model)
    assert _no_output(tmp_path)


def test_cancel_leaves_nothing(alpine_pair, oracle, tmp_path):
    paths, _ = alpine_pair
    matcher = oracle(paths["ground_truth"])
    with pytest.raises(MatchingCanceled):
        match_pair(paths["reference"], paths["secondary"], tmp_path / "match.tif", matcher,
                   _covering(paths, patch_size=64, overlap=16), is_canceled=lambda: matcher.calls >= 4)
    assert matcher.calls == 6  # two batches of three, then the check before the third batch
    assert not list(tmp_path.iterdir())
