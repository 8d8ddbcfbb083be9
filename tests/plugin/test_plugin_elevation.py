"""sarstereo:generateelevation and sarstereo:evaluatedem as a QGIS user runs them: styled, grouped
layers, the report, and clear errors."""

import json

import pytest
from qgis.core import (
    QgsHillshadeRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProject,
    QgsSingleBandPseudoColorRenderer,
)


def _ramp(layer):
    renderer = layer.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    ramp = renderer.shader().rasterShaderFunction()
    return ramp.minimumValue(), ramp.maximumValue(), [item.color.name() for item in ramp.colorRampItemList()]


def test_elevation_outputs_load_styled_and_grouped(plugin, alpine_pair, tmp_path, qgis_new_project):
    import processing
    paths, _ = alpine_pair
    out = {key: str(tmp_path / f"{key.lower()}.tif") for key in
           ("OUTPUT", "COUNT_OUTPUT", "UNCERTAINTY_OUTPUT", "QUALITY_OUTPUT", "ERROR_OUTPUT")}
    result = processing.runAndLoadResults("sarstereo:generateelevation", {
        "MATCHES": paths["ground_truth"], "REFERENCE_DEM": paths["dem"], "REPORT": str(tmp_path / "report.json"),
        **out})
    assert result["POINTS"] > 50000 and result["RESOLUTION_M"] == 10.0
    assert result["MEDIAN_ABS_ERROR"] < 0.5 and result["COVERAGE"] > 0.95
    project = QgsProject.instance()
    groups = project.layerTreeRoot().findGroups()
    assert [g.name() for g in groups] == ["ref × sec — DEM"]  # the pair the ground truth was made for
    members = [node.layer() for node in groups[0].findLayers()]
    by_source = {}
    for layer in members:
        by_source.setdefault(layer.source(), []).append(layer)
    assert len(members) == 6 and len(by_source[out["OUTPUT"]]) == 2  # the DEM twice: colour and hillshade
    # top to bottom: quality, error, uncertainty, count, DEM (multiplied over) its hillshade
    assert [layer.source() for layer in members] == [out["QUALITY_OUTPUT"], out["ERROR_OUTPUT"],
                                                      out["UNCERTAINTY_OUTPUT"], out["COUNT_OUTPUT"], out["OUTPUT"],
                                                      out["OUTPUT"]]
    assert [layer.name() for layer in members] == ["DEM quality", "Error (DEM − reference)",
                                                   "Height uncertainty (1σ)", "Points per cell", "DEM",
                                                   "DEM hillshade"]
    quality, error, uncertainty, count, dem, shade = members
    # the quality layer: one class per kind of cell, each with its legend entry, measured cells faint
    renderer = quality.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer) and renderer.band() == 1
    classes = {c.value: (c.label, c.color.alpha()) for c in renderer.classes()}
    assert {value: label for value, (label, _) in classes.items()} == {
        0: "no data", 1: "measured", 2: "filled", 3: "rejected as inconsistent", 4: "layover", 5: "shadow"}
    assert classes[0][1] == 0 and 0 < classes[1][1] < 100 and min(classes[v][1] for v in (2, 3, 4, 5)) > 150
    legend = [item.data(0) for item in quality.legend().createLayerTreeModelLegendNodes(
        groups[0].findLayer(quality.id()))]
    assert {"measured", "filled", "rejected as inconsistent", "layover", "shadow"} <= set(legend)
    low, high, colours = _ramp(error)
    assert low == -high and 0.1 < high < 5 and colours[0] == "#2166ac" and colours[-1] == "#b2182b"
    assert colours[len(colours) // 2] == "#f7f7f7"  # white at zero
    low, high, colours = _ramp(dem)
    assert 2500 < low < high < 3800 and colours[0] == "#1a9641" and colours[-1] == "#ffffff"
    for layer in (uncertainty, count):
        low, high, _ = _ramp(layer)
        assert low == 0 and high > 0
    assert isinstance(shade.renderer(), QgsHillshadeRenderer)
    visible = {layer.id(): groups[0].findLayer(layer.id()).itemVisibilityChecked() for layer in members}
    assert [visible[layer.id()] for layer in members] == [True, False, False, False, True, True]

    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["fraction_within_m"]) == {"1", "2", "5", "10", "20"}
    assert report["elevation"]["points"] == result["POINTS"]
    # the report counts each class of the quality layer: perfect matches measure almost every cell
    cells = report["elevation"]["quality"]
    assert set(cells) == {"no data", "measured", "filled", "rejected as inconsistent", "layover", "shadow"}
    assert cells["measured"] == report["elevation"]["cells_with_points"] > 0.9 * (sum(cells.values())
                                                                                   - cells["no data"])
    assert cells["rejected as inconsistent"] < 0.01 * cells["measured"]  # sharp crests off their neighbourhood
    assert 0 < result["BLUNDER_SHARE"] == report["blunder_share"] < 0.5  # of a 4 cm NMAD: gridding's own tail


def test_evaluatedem_writes_error_map_and_report(plugin, alpine_pair, tmp_path):
    import processing
    paths, _ = alpine_pair
    processing.run("sarstereo:generateelevation", {"MATCHES": paths["ground_truth"],
                                                   "OUTPUT": str(tmp_path / "dem.tif")})
    result = processing.run("sarstereo:evaluatedem", {
        "DEM": str(tmp_path / "dem.tif"), "REFERENCE_DEM": paths["dem"], "ERROR_OUTPUT": str(tmp_path / "e.tif"),
        "REPORT": str(tmp_path / "r.json")})
    report = json.loads((tmp_path / "r.json").read_text())
    for key in ("median_abs_error_m", "rmse_m", "nmad_m", "le90_m", "coverage", "blunder_share"):
        assert report[key] is not None
    assert result["MEDIAN_ABS_ERROR"] == report["median_abs_error_m"] < 0.5
    assert 0 < result["BLUNDER_SHARE"] == report["blunder_share"] < 0.5  # of a 4 cm NMAD: gridding's own tail
    assert "blunder share" in (tmp_path / "r.html").read_text()
    assert result["REPORT_HTML"] == str(tmp_path / "r.html")  # a kept file: shown as it is
    assert (tmp_path / "r.html").exists() and (tmp_path / "r.png").exists() and (tmp_path / "e.tif").exists()


def test_resolution_zero_is_a_clear_error(plugin, alpine_pair, tmp_path):
    import processing
    paths, _ = alpine_pair
    with pytest.raises(QgsProcessingException, match="RESOLUTION.*positive cell size"):
        processing.run("sarstereo:generateelevation", {"MATCHES": paths["ground_truth"], "RESOLUTION": 0,
                                                       "OUTPUT": str(tmp_path / "dem.tif")})
    assert not list(tmp_path.iterdir())


def test_without_reference_no_error_map_is_loaded(plugin, alpine_pair, tmp_path, qgis_new_project):
    """The usual case: no reference DEM. The default error-map output is not asked to load (QGIS
    reported it in red as 'not correctly generated')."""
    import processing
    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        errors = []

        def reportError(self, error, fatalError=False):  # noqa: N802,N803 - QGIS API
            self.errors.append(error)

    paths, _ = alpine_pair
    feedback = Feedback()
    result = processing.runAndLoadResults("sarstereo:generateelevation", {
        "MATCHES": paths["ground_truth"], "OUTPUT": str(tmp_path / "dem.tif"), **{
            key: "TEMPORARY_OUTPUT" for key in ("COUNT_OUTPUT", "UNCERTAINTY_OUTPUT", "QUALITY_OUTPUT",
                                                "ERROR_OUTPUT")}},
        feedback=feedback)
    assert feedback.errors == [] and "ERROR_OUTPUT" not in result and result["MEDIAN_ABS_ERROR"] is None
    names = sorted(layer.name() for layer in QgsProject.instance().mapLayers().values())
    assert names == ["DEM", "DEM hillshade", "DEM quality", "Height uncertainty (1σ)", "Points per cell"]
