"""sarstereo:matchpair and sarstereo:evaluatematches as a QGIS user runs them."""

import json

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsProject, QgsSingleBandPseudoColorRenderer


def _pair(alpine_pair):
    paths, _ = alpine_pair
    return {"REFERENCE": paths["reference"], "SECONDARY": paths["secondary"]}


def test_matchpair_poc_then_evaluate(plugin, alpine_pair, tmp_path, qgis_new_project):
    import processing
    paths, _ = alpine_pair
    out = tmp_path / "matches.tif"
    result = processing.runAndLoadResults("sarstereo:matchpair", {
        **_pair(alpine_pair), "MATCHER": 2, "PATCH_SIZE": 128, "OVERLAP": 32, "PRIOR_DEM": paths["dem"],
        "HEIGHT_UNCERTAINTY": 100.0, "OUTPUT": str(out)})
    assert 0.3 < result["MATCHED_FRACTION"] <= 1.0
    ds = gdal.Open(str(out))
    # the forward-backward check runs by default: its round-trip error is the fourth band
    assert (ds.RasterCount, ds.RasterYSize, ds.RasterXSize) == (4, 300, 300)
    trip = ds.GetRasterBand(4).ReadAsArray()
    assert ds.GetRasterBand(4).GetDescription() == "round_trip_px"
    assert (trip[np.isfinite(ds.GetRasterBand(1).ReadAsArray())] <= 2.0).all()  # POC's own tolerance
    assert json.loads(ds.GetMetadataItem("SARSTEREO_MATCHING"))["settings"]["consistency_px"] == 2.0
    layer = next(iter(QgsProject.instance().mapLayers().values()))
    assert layer.name() == "Matches (POC)"
    assert [g.name() for g in QgsProject.instance().layerTreeRoot().findGroups()] == ["ref × sec — matches (POC)"]
    renderer = layer.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer) and renderer.band() == 3
    ramp = renderer.shader().rasterShaderFunction()
    assert (ramp.minimumValue(), ramp.maximumValue()) == (0.0, 1.0)

    report_path = tmp_path / "report.json"
    evaluated = processing.run("sarstereo:evaluatematches", {
        "MATCHES": str(out), "GROUND_TRUTH": paths["ground_truth"], "REPORT": str(report_path)})
    report = json.loads(report_path.read_text())
    assert set(report["accuracy_at_px"]) == {"1", "3", "5", "10"}
    assert evaluated["ACCURACY_10PX"] == report["accuracy_at_px"]["10"] > 0.5
    assert evaluated["COVERAGE"] == report["coverage"] >= report["accuracy_at_px"]["10"]


def test_matchpair_fused_loads_its_matches(plugin, alpine_pair, tmp_path, qgis_new_project):
    """MATCHER=fused: POC and light on every patch, each checked by its own round trip (the raster's
    fourth band within the larger of their tolerances, 5 px), the fused certainty a probability."""
    import processing
    paths, _ = alpine_pair
    out = tmp_path / "matches.tif"
    result = processing.runAndLoadResults("sarstereo:matchpair", {
        **_pair(alpine_pair), "MATCHER": 4, "PATCH_SIZE": 256, "OVERLAP": 32, "PRIOR_DEM": paths["dem"],
        "HEIGHT_UNCERTAINTY": 100.0, "OUTPUT": str(out)})
    ds = gdal.Open(str(out))
    bands = ds.ReadAsArray()
    kept = np.isfinite(bands[0])
    assert ds.RasterCount == 4 and result["MATCHED_FRACTION"] > 0.5
    assert (bands[3][kept] <= 5.0).all() and (bands[2][kept] <= 1.0).all()
    matching = json.loads(ds.GetMetadataItem("SARSTEREO_MATCHING"))
    assert matching["matcher"].startswith("fused") and matching["certainty_threshold"] == 0.5
    truth = gdal.Open(paths["ground_truth"]).ReadAsArray()
    epe = np.hypot(bands[0] - truth[0], bands[1] - truth[1])[truth[2] == 1]
    assert np.mean(epe <= 3.0) > 0.8
    layer = next(iter(QgsProject.instance().mapLayers().values()))
    assert layer.name() == "Matches (fused)"

def test_matchpair_without_the_check_writes_three_bands(plugin, alpine_pair, tmp_path):
    import processing
    out = tmp_path / "matches.tif"
    result = processing.run("sarstereo:matchpair", {**_pair(alpine_pair), "MATCHER": 2, "PATCH_SIZE": 128,
                                                    "OVERLAP": 32, "CONSISTENCY_PX": 0, "OUTPUT": str(out)})
    assert gdal.Open(str(out)).RasterCount == 3 and result["MATCHED_FRACTION"] > 0.3


def test_matchpair_refuses_patch_larger_than_image(plugin, alpine_pair, tmp_path):
    import processing
    # the advice names the smaller side at once (it used to name the rows, then fail on the columns)
    with pytest.raises(QgsProcessingException, match=r"PATCH_SIZE.*larger.*300 rows x 300 columns.*at most 300"):
        processing.run("sarstereo:matchpair", {**_pair(alpine_pair), "MATCHER": 2, "PATCH_SIZE": 1024,
                                               "OUTPUT": str(tmp_path / "m.tif")})
    assert not list(tmp_path.iterdir())


def test_matchpair_roma_without_weights_says_where_to_put_them(plugin, alpine_pair, tmp_path, monkeypatch):
    import processing
    monkeypatch.setenv("SARSTEREO_WEIGHTS_DIR", str(tmp_path / "cache"))
    with pytest.raises(QgsProcessingException, match="roma_outdoor.pth"):
        processing.run("sarstereo:matchpair", {**_pair(alpine_pair), "MATCHER": 1, "PATCH_SIZE": 128,
                                               "DEVICE": "cpu", "OUTPUT": str(tmp_path / "m.tif")})
    assert not (tmp_path / "m.tif").exists()


def test_matchpair_cancel_leaves_no_output(plugin, alpine_pair, tmp_path):
    import processing
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: p > 0 and feedback.cancel())
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run("sarstereo:matchpair", {**_pair(alpine_pair), "MATCHER": 2, "PATCH_SIZE": 64,
                                               "OVERLAP": 0, "OUTPUT": str(tmp_path / "m.tif")}, feedback=feedback)
    assert not list(tmp_path.iterdir())


def test_weights_folder_setting(plugin):
    """The provider declares its weights folder in the Processing options, and removes it on unload."""
    from processing.core.ProcessingConfig import ProcessingConfig

    from sar_stereo_plugin.processing.common import WEIGHTS_SETTING
    assert ProcessingConfig.settings[WEIGHTS_SETTING].group == "SAR stereo radargrammetry"
    plugin.unload()
    assert WEIGHTS_SETTING not in ProcessingConfig.settings
    plugin.initProcessing()
