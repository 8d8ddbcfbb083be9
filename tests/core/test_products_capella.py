"""Capella: the three real extended JSONs (a zero-Doppler stripmap, two polar-format spotlights, one
left-looking), the SLC GeoTIFF with its metadata inside, and an orbit that misses the image."""

import json

import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core import SensorModelError, import_product, read_sensor_model
from sar_stereo_plugin.core.ellipsoid import ecef_to_llh
from sar_stereo_plugin.core.sensor import SensorModel
from sar_stereo_plugin.core.sicd_model import SicdModel

FILES = {"stripmap": "CAPELLA_C11_SM_SLC_VV_20251031191104", "spotlight": "CAPELLA_C13_SP_SLC_HH_20241126045307",
         "spotlight_left": "CAPELLA_C13_SP_SLC_HH_20250826023518"}


def _path(shared_data, key):
    return next((shared_data / "capella").glob(f"{FILES[key]}*_extended.json"))


@pytest.mark.parametrize("key", FILES)
def test_scene_centre_target_lands_on_the_centre_pixel(shared_data, key):
    """The product's own scene-centre target maps to (rows // 2, cols // 2) within 0.05 px."""
    path = _path(shared_data, key)
    doc = json.loads(path.read_text())
    model = read_sensor_model(path)
    assert isinstance(model, SicdModel if key.startswith("spotlight") else SensorModel)
    assert model.look_side == ("left" if key == "spotlight_left" else "right")
    assert (model.rows, model.cols) == (doc["collect"]["image"]["rows"], doc["collect"]["image"]["columns"])
    target = np.asarray(doc["collect"]["image"]["center_pixel"]["target_position"])
    rows, cols = model.geo2rdr(*ecef_to_llh(target))
    assert abs(rows - model.rows // 2) < 0.05 and abs(cols - model.cols // 2) < 0.05


def test_centre_time_is_not_the_zero_doppler_time(shared_data):
    """The stripmap's centre_time is the target's centre-of-aperture time: read as a zero-Doppler
    line time it names a line 125 lines (136 m) before the target's."""
    doc = json.loads(_path(shared_data, "stripmap").read_text())
    model = read_sensor_model(_path(shared_data, "stripmap"))
    centre = np.datetime64(doc["collect"]["image"]["center_pixel"]["center_time"].rstrip("Z"), "ns")
    epoch = np.datetime64(model.reference_epoch.rstrip("Z"), "ns")
    row = model.time_to_row((centre - epoch) / np.timedelta64(1, "ns") * 1e-9)
    assert model.rows // 2 - row == pytest.approx(124.7, abs=0.5)


def _small_doc(shared_data, rows=120, cols=80):
    """The stripmap's metadata, cut to its first ``rows`` lines and ``cols`` samples."""
    doc = json.loads(_path(shared_data, "stripmap").read_text())
    doc["collect"]["image"].update(rows=rows, columns=cols)
    return doc


def _capella_tiff(path, doc, data):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[1], data.shape[0], 1, gdal.GDT_CInt16)
    ds.SetMetadataItem("TIFFTAG_IMAGEDESCRIPTION", json.dumps(doc))
    ds.GetRasterBand(1).WriteArray(data)
    ds = None


def test_slc_geotiff_and_extended_json_beside_it(shared_data, tmp_path):
    doc = _small_doc(shared_data)
    rng = np.random.default_rng(2)
    data = (rng.integers(-300, 300, (120, 80)) + 1j * rng.integers(-300, 300, (120, 80))).astype(np.complex64)
    tiff = tmp_path / "CAPELLA_TEST_SLC.tif"
    _capella_tiff(tiff, doc, data)
    model = read_sensor_model(tiff)
    assert (model.rows, model.cols) == (120, 80)
    full = read_sensor_model(_path(shared_data, "stripmap"))
    assert model.first_line_time_s == full.first_line_time_s and model.sample_spacing_m == full.sample_spacing_m
    result = import_product(tiff, tmp_path / "slc.tif", looks_azimuth=2)
    amp = gdal.Open(result.path).ReadAsArray()
    np.testing.assert_allclose(amp, np.sqrt((np.abs(data) ** 2).reshape(60, 2, 80).mean(axis=1)), rtol=1e-6)
    extended = tmp_path / "CAPELLA_TEST_SLC_extended.json"  # the extended JSON finds the pixels beside it
    extended.write_text(json.dumps(doc))
    result = import_product(extended, tmp_path / "from_json.tif")
    np.testing.assert_allclose(gdal.Open(result.path).ReadAsArray(), np.abs(data), rtol=1e-6)


def test_extended_json_alone_has_no_pixels(shared_data, tmp_path):
    with pytest.raises(SensorModelError, match="metadata only"):
        import_product(_path(shared_data, "spotlight"), tmp_path / "nothing.tif")
    assert not list(tmp_path.iterdir())


def test_orbit_not_covering_the_image(shared_data, tmp_path):
    doc = json.loads(_path(shared_data, "stripmap").read_text())
    doc["collect"]["state"]["state_vectors"] = doc["collect"]["state"]["state_vectors"][:8]
    path = tmp_path / "short_orbit_extended.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SensorModelError, match="orbit covers only"):
        read_sensor_model(path)
