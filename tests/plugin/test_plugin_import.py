"""sarstereo:importproduct as a QGIS user runs it, and simulatepair's SICD NITF option."""

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProject, QgsSingleBandPseudoColorRenderer


@pytest.fixture
def sicd_image(tmp_path):
    from sar_stereo_plugin.core.flight import level_flight_model
    from sar_stereo_plugin.core.products.sicd import write_sicd
    from sar_stereo_plugin.core.sicd_model import SicdModel
    model = SicdModel.from_zero_doppler(level_flight_model(10.8, 46.8, 2500.0, 20.0, 8000.0, 40.0, rows=60, cols=40),
                                        2500.0)
    amplitude = np.random.default_rng(4).gamma(2.0, size=(60, 40)).astype(np.float32)
    write_sicd(tmp_path / "image.nitf", model, [(0, amplitude)])
    return tmp_path / "image.nitf", amplitude


def test_importproduct_loads_a_styled_amplitude_image(plugin, sicd_image, tmp_path, qgis_new_project):
    import processing

    from sar_stereo_plugin.core.products import read_sensor_model
    path, amplitude = sicd_image
    out = tmp_path / "imported.tif"
    result = processing.runAndLoadResults("sarstereo:importproduct", {
        "INPUT": str(path), "LOOKS_AZIMUTH": 2, "LOOKS_RANGE": 1, "OUTPUT": str(out)})
    assert (result["IMAGE_NAME"], result["ROWS"], result["COLS"]) == ("VV", 30, 40)
    expected = np.sqrt((amplitude.astype(np.float64) ** 2).reshape(30, 2, 40).mean(axis=1))
    np.testing.assert_allclose(gdal.Open(str(out)).ReadAsArray(), expected, rtol=1e-6)
    model = read_sensor_model(out)
    assert model.kind == "sicd" and (model.rows, model.cols) == (30, 40)
    assert (tmp_path / "imported.sensor.json").is_file() and gdal.Open(str(out)).GetGCPCount() == 64
    layer = next(iter(QgsProject.instance().mapLayers().values()))
    assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer)
    assert "dB" in layer.renderer().shader().rasterShaderFunction().colorRampItemList()[0].label


def test_importproduct_lists_the_images_to_choose(plugin, shared_data, tmp_path):
    import processing
    with pytest.raises(QgsProcessingException, match=r"IMAGE.*A/VH, A/VV, A/HH, A/HV"):
        processing.run("sarstereo:importproduct", {
            "INPUT": str(shared_data / "alos" / "alos1_palsar_rslc_riobranco_100x50.h5"),
            "OUTPUT": str(tmp_path / "x.tif")})
    with pytest.raises(QgsProcessingException, match="not a supported SAR product"):
        (tmp_path / "notes.txt").write_text("hello")
        processing.run("sarstereo:importproduct", {"INPUT": str(tmp_path / "notes.txt"),
                                                   "OUTPUT": str(tmp_path / "y.tif")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_simulatepair_writes_sicd_nitf(plugin, tmp_path):
    import processing
    result = processing.run("sarstereo:simulatepair", {
        "ROWS": 64, "COLS": 64, "PIXEL_SPACING": 30.0, "FORMAT": 1,
        "REFERENCE_OUTPUT": str(tmp_path / "ref.nitf"), "SECONDARY_OUTPUT": str(tmp_path / "sec.nitf"),
        "GROUND_TRUTH_OUTPUT": str(tmp_path / "gt.tif")})
    assert (tmp_path / "ref.nitf").read_bytes()[:4] == b"NITF" and result["VALID_FRACTION"] > 0.3
    imported = processing.run("sarstereo:importproduct", {"INPUT": str(tmp_path / "ref.nitf"),
                                                          "OUTPUT": str(tmp_path / "ref.tif")})
    assert (imported["ROWS"], imported["COLS"]) == (64, 64)
