"""sarstereo:builddataset: ground truth checked against the simulator's, the engine's cut, the spatial
split, the folder format, and bad inputs."""

import json

import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core.dem import Dem
from sar_stereo_plugin.core.errors import GeometryError, SensorModelError
from sar_stereo_plugin.core.flight import FlightDesign
from sar_stereo_plugin.core.matching import MatchSettings, plan_pair
from sar_stereo_plugin.core.simulate import simulate_pair
from sar_stereo_plugin.core.training.dataset import (
    SCHEMA,
    SPLITS,
    DatasetCanceled,
    DatasetError,
    PairTruth,
    as_patch_pair,
    block_splits,
    build_dataset,
    load_manifest,
    load_sample,
)

SETTINGS = dict(patch_size=128, overlap=32, block_px=150, split=(0.5, 0.25, 0.25), seed=0)


@pytest.fixture(scope="module")
def dataset(alpine_pair, tmp_path_factory):
    """The alpine pair's dataset: (folder, result, mosaic of the truth (2, 300, 300), split of each pixel)."""
    paths, _ = alpine_pair
    folder = tmp_path_factory.mktemp("dataset") / "ds"
    result = build_dataset([(paths["reference"], paths["secondary"])], paths["dem"], folder, **SETTINGS)
    mosaic, owner = np.full((2, 300, 300), np.nan), np.full((300, 300), -1)
    for entry in load_manifest(folder)["samples"]:
        s = load_sample(folder, entry)
        (r0, c0), split = entry["reference_origin"], SPLITS.index(entry["split"])
        window = np.s_[r0:r0 + 128, c0:c0 + 128]
        assert np.isin(owner[window], (-1, split)).all(), "a reference pixel in two splits"
        owner[window] = split
        valid = s["valid"] == 1
        mosaic[:, r0:r0 + 128, c0:c0 + 128][:, valid] = s["secondary_rc"][:, valid]
    return folder, result, mosaic, owner


def test_ground_truth_agrees_with_simulator(alpine_pair, dataset):
    """Both truths put the pixel's ground point on the bilinear DSM (the simulator moves its facet
    point there), so wherever both exist they agree to 1e-3 px."""
    paths, _ = alpine_pair
    _, _, mosaic, owner = dataset
    truth = gdal.Open(paths["ground_truth"]).ReadAsArray()
    ours, theirs = np.isfinite(mosaic[0]), (truth[2] == 1) & (owner >= 0)
    both = ours & theirs
    assert both.sum() >= 0.999 * theirs.sum() and (ours & ~theirs).sum() <= 1e-3 * ours.sum()
    error = np.abs(mosaic - truth[:2]).max(axis=0)[both]
    assert error.max() <= 1e-3  # 7.6e-6 px over 45,227 pixels


def test_layover_and_shadow_are_never_valid(shared_data, tmp_path):
    """A steep 20/65 degree pair: layover in the reference, shadow in the secondary."""
    paths = {k: str(tmp_path / f"{k}.tif") for k in ("reference", "secondary", "truth")}
    dem = str(shared_data / "dem" / "hintereisferner_srtm3.tif")
    sim = simulate_pair(dem, FlightDesign(rows=300, cols=300, reference_incidence_deg=20.0,
                                          secondary_incidence_deg=65.0, pixel_spacing_m=10.0), seed=1,
                        reference_output=paths["reference"], secondary_output=paths["secondary"],
                        ground_truth_output=paths["truth"])
    assert sim.stats["layover_fraction"] > 0.005 and sim.stats["secondary_shadow_fraction"] > 0.05
    truth = gdal.Open(paths["truth"]).ReadAsArray()
    rows, cols = np.mgrid[0:300, 0:300].astype(float)
    s_rows, s_cols, valid = PairTruth(sim.reference_model, sim.secondary_model, dem).at(rows, cols)
    theirs = truth[2] == 1
    assert valid.sum() > 0.4 * theirs.sum()
    assert (valid & (truth[4] == 1)).sum() <= 1e-3 * valid.sum()  # reference layover
    assert (valid & ~theirs).sum() <= 0.03 * valid.sum()  # chiefly hidden from the secondary
    assert np.isnan(s_rows[~valid]).all() and np.isfinite(s_cols[valid]).all()


def test_splits_are_spatially_disjoint(dataset):
    folder, result, _, owner = dataset
    manifest = load_manifest(folder)
    assert manifest["schema"] == SCHEMA and manifest["counts"] == result.counts
    assert all(result.counts[s] > 0 for s in SPLITS) and len(manifest["samples"]) == sum(result.counts.values())
    assert result.straddling > 0  # the dataset fixture asserted no pixel in two splits
    assert {e["file"].split("/")[0] for e in manifest["samples"]} == set(SPLITS)
    assert all(e["file"].startswith(e["split"] + "/") and (folder / e["file"]).is_file() for e in manifest["samples"])
    splits = block_splits((5000, 5000), 100, (0.7, 0.15, 0.15), seed=3)
    assert np.allclose(np.bincount(splits.ravel()) / splits.size, (0.7, 0.15, 0.15), atol=0.01)
    assert (block_splits((5000, 5000), 100, (0.7, 0.15, 0.15), seed=4) != splits).any()


def test_samples_are_the_engines_patches(alpine_pair, dataset):
    paths, _ = alpine_pair
    folder, _, _, _ = dataset
    entries = load_manifest(folder)["samples"]
    plan = plan_pair(paths["reference"], paths["secondary"], MatchSettings(128, 32), prior_dem=paths["dem"])
    cut = {pair.reference_origin: pair for _, strip in plan.strips() for _, pair in strip}
    for entry in entries:
        s = load_sample(folder, entry)
        pair, mine = cut[tuple(entry["reference_origin"])], as_patch_pair(s)
        h2, w2 = entry["secondary_shape"]
        assert s["secondary"].shape == (h2, w2) and s["warp"].shape == (128, 128, 2)
        assert s["valid"].dtype == np.uint8 and s["secondary_rc"].shape == (2, 128, 128)
        for key in ("reference", "secondary", "prior"):
            assert np.array_equal(getattr(mine, key), getattr(pair, key), equal_nan=True)
        assert mine.secondary_origin == pair.secondary_origin == tuple(entry["secondary_origin"])
        assert mine.search_px == pytest.approx(pair.search_px)
        valid = s["valid"] == 1
        assert entry["valid_fraction"] == pytest.approx(valid.mean()) and valid.mean() >= 0.2
        decoded = np.stack([(s["warp"][..., 1] + 1) * h2 / 2 - 0.5, (s["warp"][..., 0] + 1) * w2 / 2 - 0.5])
        decoded += np.array(entry["secondary_origin"])[:, None, None]
        assert np.abs(decoded - s["secondary_rc"])[:, valid].max() <= 1e-3
        assert np.isnan(s["warp"][~valid]).all() and (np.abs(s["warp"][valid]) <= 1).all()


def test_dsm_not_covering_the_pair(alpine_pair, tmp_path):
    paths, _ = alpine_pair
    elsewhere = Dem.from_array(np.full((50, 50), 500.0), (2.0, 0.001, 0.0, 48.0, 0.0, -0.001), "EPSG:4326",
                               name="elsewhere_dsm")
    with pytest.raises(GeometryError, match=r"elsewhere_dsm: field 'DSM': does not cover the reference image .*ref"):
        build_dataset([(paths["reference"], paths["secondary"])], elsewhere, tmp_path / "ds", **SETTINGS)
    assert not list(tmp_path.iterdir())


def test_image_without_sensor_model(alpine_pair, tmp_path):
    paths, _ = alpine_pair
    plain = tmp_path / "plain.tif"
    gdal.GetDriverByName("GTiff").Create(str(plain), 300, 300, 1, gdal.GDT_Float32).FlushCache()
    with pytest.raises(SensorModelError, match="plain.tif: no sensor model"):
        build_dataset([(paths["reference"], str(plain))], paths["dem"], tmp_path / "ds", **SETTINGS)
    assert not (tmp_path / "ds").exists()


def test_cancel_leaves_nothing(alpine_pair, tmp_path):
    paths, _ = alpine_pair
    calls = []
    with pytest.raises(DatasetCanceled, match="canceled"):
        build_dataset([(paths["reference"], paths["secondary"])], paths["dem"], tmp_path / "ds", **SETTINGS,
                      is_canceled=lambda: calls.append(1) or len(calls) > 2)
    assert not list(tmp_path.iterdir())


def test_folders_that_are_not_datasets(alpine_pair, dataset, tmp_path):
    paths, _ = alpine_pair
    with pytest.raises(DatasetError, match="field 'manifest.json': the folder is not a dataset built by "
                                           "sarstereo:builddataset; build one with"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(DatasetError, match="manifest.json.*cannot be read"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "other/1"}))
    with pytest.raises(DatasetError, match="schema 'other/1'"):
        load_manifest(tmp_path)
    with pytest.raises(DatasetError, match="OUTPUT.*not empty"):  # never overwrite what is not ours
        build_dataset([(paths["reference"], paths["secondary"])], paths["dem"], tmp_path, **SETTINGS)
    assert (tmp_path / "manifest.json").read_text() == json.dumps({"schema": "other/1"})
    with pytest.raises(GeometryError, match="VALIDATION_FRACTION"):
        build_dataset([(paths["reference"], paths["secondary"])], paths["dem"], tmp_path / "x",
                      **{**SETTINGS, "split": (0.9, 0.2, 0.1)})


def test_simulator_truth_and_a_coarse_prior(alpine_pair, dataset, tmp_path):
    """With the simulator's ground-truth raster as truth the samples hold the same correspondences as
    with the DSM's (to 1e-3 px where both exist); with a coarse prior DEM the engine's prior is that
    one's, so the truth no longer sits at the prior, as in use; a raster of another size is refused."""
    from scipy.ndimage import uniform_filter

    from sar_stereo_plugin.core.dem import open_dem
    paths, _ = alpine_pair
    dsm = open_dem(paths["dem"])
    coarse = tmp_path / "coarse.tif"
    Dem.from_array(uniform_filter(dsm.heights, 15, mode="nearest"), dsm.geotransform, dsm.crs.to_wkt()).write(coarse)
    folder = tmp_path / "ds"
    build_dataset([(paths["reference"], paths["secondary"])], paths["dem"], folder, **SETTINGS,
                  ground_truth=[paths["ground_truth"]], prior_dem=coarse)
    _, _, mosaic, _ = dataset
    manifest = load_manifest(folder)
    assert manifest["prior_dem"] == str(coarse) and manifest["pairs"][0]["ground_truth"] == paths["ground_truth"]
    errors, prior_miss = [], []
    for entry in manifest["samples"]:
        s = load_sample(folder, entry)
        (r0, c0), valid = entry["reference_origin"], s["valid"] == 1
        theirs = mosaic[:, r0:r0 + 128, c0:c0 + 128]
        both = valid & np.isfinite(theirs[0])
        errors.append(np.abs(s["secondary_rc"][:, both] - theirs[:, both]).max(initial=0.0))
        window = np.asarray(entry["secondary_origin"], np.float64)[:, None]
        prior_miss.append(np.hypot(*(s["prior"][:, valid] + window - s["secondary_rc"][:, valid])))
    assert max(errors) <= 1e-3
    assert np.median(np.concatenate(prior_miss)) > 1.0  # the smoothed relief: the truth lies off the prior
    with pytest.raises(GeometryError, match="GROUND_TRUTH"):
        build_dataset([(paths["reference"], paths["secondary"])], paths["dem"], tmp_path / "bad", **SETTINGS,
                      ground_truth=[paths["reference"]])
