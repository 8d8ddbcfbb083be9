"""sarstereo:simulatepair as a QGIS user runs it, and inspectpair's terrain report against it."""

import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsProject


def _outputs(tmp_path):
    return {"REFERENCE_OUTPUT": str(tmp_path / "ref.tif"), "SECONDARY_OUTPUT": str(tmp_path / "sec.tif"),
            "GROUND_TRUTH_OUTPUT": str(tmp_path / "gt.tif")}


@pytest.fixture(scope="module")
def alpine(tmp_path_factory, qgis_iface, qgis_processing, shared_data):
    """A 35/55 degree pair over the Hintereisferner DEM, simulated through the algorithm."""
    import processing

    import sar_stereo_plugin
    plugin = sar_stereo_plugin.classFactory(qgis_iface)
    plugin.initProcessing()
    tmp = tmp_path_factory.mktemp("alpine")
    dem = str(shared_data / "dem" / "hintereisferner_srtm3.tif")
    result = processing.run("sarstereo:simulatepair", {
        "DEM": dem, "REFERENCE_INCIDENCE": 35.0, "SECONDARY_INCIDENCE": 55.0, "HEADING": 10.0,
        "ALTITUDE": 9000.0, "PIXEL_SPACING": 40.0, "LOOKS": 4, "SEED": 7, **_outputs(tmp)})
    plugin.unload()
    return dem, tmp, result


def test_simulatepair_writes_pair_and_truth(alpine):
    from sar_stereo_plugin.core.products import read_sensor_model
    _, tmp, result = alpine
    ref, sec = read_sensor_model(result["REFERENCE_OUTPUT"]), read_sensor_model(result["SECONDARY_OUTPUT"])
    assert (tmp / "ref.sensor.json").is_file() and (tmp / "sec.sensor.json").is_file()
    gt = gdal.Open(result["GROUND_TRUTH_OUTPUT"])
    assert (gt.RasterCount, gt.RasterYSize, gt.RasterXSize) == (6, ref.rows, ref.cols)
    image = gdal.Open(result["REFERENCE_OUTPUT"])
    assert image.GetGCPCount() > 0 and image.GetRasterBand(1).DataType == gdal.GDT_Float32
    amplitude = image.ReadAsArray()
    assert np.isfinite(amplitude).all() and amplitude.min() >= 0
    valid = gt.GetRasterBand(3).ReadAsArray() == 1
    assert 0.5 < result["VALID_FRACTION"] <= 1.0
    assert valid.mean() > 0.3
    # ground truth is geometry: secondary positions are the projections of the band-4 points
    rows, cols = np.nonzero(valid)
    sec_rows, sec_cols = gt.GetRasterBand(1).ReadAsArray()[valid], gt.GetRasterBand(2).ReadAsArray()[valid]
    height = gt.GetRasterBand(4).ReadAsArray()[valid]
    lon, lat, h = ref.rdr2geo(rows, cols, height=height)
    r2, c2 = sec.geo2rdr(lon, lat, h)
    assert np.median(np.hypot(r2 - sec_rows, c2 - sec_cols)) < 0.01  # float32 storage of positions
    assert 0.0 <= result["LAYOVER_FRACTION"] < 0.5 and 0.0 <= result["SHADOW_FRACTION"] < 0.5


def test_inspectpair_terrain_agrees_with_simulator(plugin, alpine, tmp_path):
    """inspectpair given the DEM reports layover/shadow fractions within 2 % of the simulator's flags."""
    import processing
    dem, _, sim = alpine
    result = processing.run("sarstereo:inspectpair", {
        "REFERENCE": sim["REFERENCE_OUTPUT"], "SECONDARY": sim["SECONDARY_OUTPUT"], "DEM": dem,
        "FOOTPRINTS": "memory:", "REPORT": str(tmp_path / "report.json")})
    report = json.loads(Path(result["REPORT"]).read_text())
    terrain = report["terrain"]["reference"]
    assert terrain["layover"] == pytest.approx(sim["LAYOVER_FRACTION"], abs=0.02)
    assert terrain["shadow"] == pytest.approx(sim["SHADOW_FRACTION"], abs=0.02)
    assert report["intersection_angle_deg"]["median"] == pytest.approx(20.0, abs=2.0)


def test_simulatepair_loads_styled(plugin, tmp_path, shared_data, qgis_new_project):
    import processing
    processing.runAndLoadResults("sarstereo:simulatepair", {
        "DEM": str(shared_data / "dem" / "hintereisferner_srtm3.tif"), "PIXEL_SPACING": 60.0,
        "ROWS": 96, "COLS": 96, **_outputs(tmp_path)})
    layers = {Path(lyr.source()).name: lyr for lyr in QgsProject.instance().mapLayers().values()}
    assert sorted(layer.name() for layer in layers.values()) == ["Ground truth (valid pixels)", "Reference image",
                                                                 "Secondary image"]
    ramp = layers["ref.tif"].renderer().shader().rasterShaderFunction()
    labels = [item.label for item in ramp.colorRampItemList()]
    assert labels[0].endswith(" dB") and len(labels) == 17
    # stops equally spaced in dB: the amplitude ratio between neighbouring stops is constant
    values = np.array([item.value for item in ramp.colorRampItemList()])
    assert np.allclose(values[1:] / values[:-1], values[1] / values[0], rtol=1e-6)
    amplitude = gdal.Open(str(tmp_path / "ref.tif")).ReadAsArray()
    db = 20 * np.log10(amplitude[amplitude > 0])
    assert 20 * np.log10(values[0]) == pytest.approx(np.percentile(db, 2), abs=0.2)
    assert 20 * np.log10(values[-1]) == pytest.approx(np.percentile(db, 98), abs=0.2)
    truth = layers["gt.tif"].renderer()
    assert truth.band() == 3  # validity shown as a mask


def test_simulatepair_cancel_leaves_no_output(plugin, tmp_path, shared_data):
    from qgis import processing
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: p > 20 and feedback.cancel())
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run("sarstereo:simulatepair", {
            "DEM": str(shared_data / "dem" / "hintereisferner_srtm3.tif"), "PIXEL_SPACING": 30.0,
            **_outputs(tmp_path)}, feedback=feedback)
    assert not any(p.suffix == ".tif" for p in tmp_path.iterdir())


def test_simulatepair_needs_both_models(plugin, tmp_path, shared_data):
    import processing
    json_path = tmp_path / "only.json"
    json_path.write_text("{}")
    with pytest.raises(QgsProcessingException, match="give both"):
        processing.run("sarstereo:simulatepair", {"REFERENCE_MODEL": str(json_path), **_outputs(tmp_path)})


def test_inspectpair_takes_height_from_gcps(plugin, alpine, tmp_path):
    """Without HEIGHT or DEM, a simulated pair is placed at its GCPs' height (on the DEM), not at 0 m,
    which the airborne near range would not even reach over the Alps."""
    import processing

    from sar_stereo_plugin.core.dem import Dem
    dem, _, sim = alpine
    result = processing.run("sarstereo:inspectpair", {
        "REFERENCE": sim["REFERENCE_OUTPUT"], "SECONDARY": sim["SECONDARY_OUTPUT"],
        "FOOTPRINTS": "memory:", "REPORT": str(tmp_path / "report.json")})
    report = json.loads(Path(result["REPORT"]).read_text())
    assert report["reference_height_m"] == pytest.approx(np.nanmedian(Dem(dem).heights), abs=400)
    assert report["overlap_fraction"] > 0.5
    assert report["intersection_angle_deg"]["median"] == pytest.approx(20.0, abs=2.0)
