"""Sensor models in and out of files: GeoTIFF metadata, sidecars, NISAR RSLC HDF5."""

import json
import shutil

import h5py
import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core import RasterError, SarStereoError, SensorModelError, read_sensor_model
from sar_stereo_plugin.core.flight import level_flight_model
from sar_stereo_plugin.core.products import (
    SPEED_OF_LIGHT,
    nisar_to_geotiff,
    read_nisar_rslc,
    sidecar_path,
    write_image,
    write_sensor_model,
)
from sar_stereo_plugin.core.raster import SENSOR_ITEM, write_geotiff

SWATHS = "science/LSAR/SLC/swaths"


@pytest.fixture(scope="module")
def model():
    return level_flight_model(10.8, 46.8, 2500.0, 20.0, 8000.0, 35.0, rows=40, cols=30)


@pytest.fixture(scope="module")
def other_model():
    return level_flight_model(10.8, 46.8, 2500.0, 20.0, 8000.0, 50.0, rows=40, cols=30)


def _amplitude(shape=(40, 30)):
    return np.random.default_rng(0).gamma(1.0, size=shape).astype(np.float32)


# ---------------------------------------------------------------- GeoTIFF + sidecar
def test_embedded_model_round_trip(tmp_path, model):
    path = tmp_path / "ref.tif"
    write_image(path, _amplitude(), model)
    sidecar_path(path).unlink()  # the embedded copy alone must suffice
    got = read_sensor_model(path)
    assert got.to_dict() == model.to_dict()
    assert SENSOR_ITEM in got.source and str(path) in got.source
    ds = gdal.Open(str(path))
    assert (ds.RasterXSize, ds.RasterYSize) == (30, 40)
    np.testing.assert_array_equal(ds.GetRasterBand(1).ReadAsArray(), _amplitude())


def test_sidecar_only_is_found(tmp_path, model):
    path = tmp_path / "plain.tif"
    write_geotiff(path, _amplitude())
    assert gdal.Open(str(path)).GetMetadataItem(SENSOR_ITEM) is None
    sidecar_path(path).write_text(model.to_json(), encoding="utf-8")
    got = read_sensor_model(path)
    assert got.to_dict() == model.to_dict()
    assert got.source == str(tmp_path / "plain.sensor.json")


def test_embedded_model_wins_over_sidecar(tmp_path, model, other_model):
    path = tmp_path / "both.tif"
    write_image(path, _amplitude(), model)
    sidecar_path(path).write_text(other_model.to_json(), encoding="utf-8")
    assert read_sensor_model(path).to_dict() == model.to_dict()


def test_write_sensor_model_embeds_and_writes_sidecar(tmp_path, model):
    path = tmp_path / "later.tif"
    write_geotiff(path, _amplitude())
    write_sensor_model(path, model)
    assert json.loads(gdal.Open(str(path)).GetMetadataItem(SENSOR_ITEM)) == model.to_dict()
    assert json.loads(sidecar_path(path).read_text()) == model.to_dict()
    with pytest.raises(RasterError, match="missing.tif"):
        write_sensor_model(tmp_path / "missing.tif", model)


def test_raster_without_model_names_the_file(tmp_path):
    path = tmp_path / "orphan.tif"
    write_geotiff(path, _amplitude())
    with pytest.raises(SensorModelError) as info:
        read_sensor_model(path)
    message = str(info.value)
    assert str(path) in message and SENSOR_ITEM in message and "orphan.sensor.json" in message
    with pytest.raises(SensorModelError, match="file not found"):
        read_sensor_model(tmp_path / "nowhere.tif")
    with pytest.raises(SensorModelError, match="not a file"):
        read_sensor_model(tmp_path)


def test_broken_embedded_or_sidecar_model_names_file_and_field(tmp_path, model):
    path = tmp_path / "bad.tif"
    write_geotiff(path, _amplitude(), metadata={SENSOR_ITEM: '{"schema": '})
    with pytest.raises(SensorModelError, match=f"{path}.*not valid JSON"):
        read_sensor_model(path)
    plain = tmp_path / "bad2.tif"
    write_geotiff(plain, _amplitude())
    doc = model.to_dict()
    doc["range"]["sample_spacing_m"] = -1.0
    sidecar_path(plain).write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(SensorModelError, match=r"bad2\.sensor\.json: field 'range\.sample_spacing_m'"):
        read_sensor_model(plain)


# ---------------------------------------------------------------- NISAR RSLC (real UAVSAR product)
def test_nisar_rslc_model(winnipeg):
    path = winnipeg / "winnipeg.h5"
    model, dataset = read_nisar_rslc(path)
    assert dataset == f"{SWATHS}/frequencyA/HH"
    assert model.look_side == "left"
    assert model.wavelength_m == pytest.approx(SPEED_OF_LIGHT / 1.243e9, rel=1e-12)
    assert (model.rows, model.cols) == (250, 250)
    assert model.doppler_centroid_hz == 0.0  # zero-Doppler product
    assert model.orbit_time_s.size == 100
    with h5py.File(path, "r") as h5:
        times, ranges = h5[f"{SWATHS}/zeroDopplerTime"][()], h5[f"{SWATHS}/frequencyA/slantRange"][()]
    # the uniform grid reproduces every line time and sample range of the product
    np.testing.assert_allclose(model.row_to_time(np.arange(250)), times, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.col_to_range(np.arange(250)), ranges, rtol=0, atol=1e-6)
    assert model.reference_epoch == "2012-07-15T14:36:47Z"
    assert read_sensor_model(path).to_dict() == model.to_dict()


def test_nisar_unknown_polarization_or_frequency(winnipeg):
    path = winnipeg / "winnipeg.h5"
    with pytest.raises(SensorModelError, match=r"winnipeg\.h5.*polarization 'VV' not present; choose one of \['HH'\]"):
        read_nisar_rslc(path, polarization="VV")
    with pytest.raises(SensorModelError, match=r"frequency 'C' not present; choose one of \['A', 'B'\]"):
        read_sensor_model(path, frequency="C")
    # frequency B lists four polarizations but this product carries no B image
    with pytest.raises(SensorModelError, match=f"field '{SWATHS}/frequencyB/HV': is missing"):
        read_nisar_rslc(path, frequency="B", polarization="HV")


@pytest.fixture
def quad_pol_copy(winnipeg, tmp_path):
    """The Winnipeg product with frequency B images added (HH, HV, VH, VV: 250 x 660)."""
    path = tmp_path / "quad.h5"
    shutil.copy(winnipeg / "winnipeg.h5", path)
    rng = np.random.default_rng(5)
    images = {}
    with h5py.File(path, "r+") as h5:
        for pol in ("HH", "HV", "VH", "VV"):
            images[pol] = (rng.normal(size=(250, 660)) + 1j * rng.normal(size=(250, 660))).astype(np.complex64)
            h5[f"{SWATHS}/frequencyB/{pol}"] = images[pol]
    return path, images


def test_nisar_frequency_b_and_polarization_selection(quad_pol_copy, tmp_path):
    path, images = quad_pol_copy
    model, dataset = read_nisar_rslc(path, frequency="B", polarization="HV")
    assert dataset == f"{SWATHS}/frequencyB/HV"
    assert model.wavelength_m == pytest.approx(SPEED_OF_LIGHT / 1.27e9, rel=1e-12)
    assert (model.rows, model.cols) == (250, 660)
    assert model.sample_spacing_m == pytest.approx(24.98270483, rel=1e-8)
    assert "frequency B, HV" in model.source
    out = tmp_path / "vv.tif"
    nisar_to_geotiff(path, out, frequency="B", polarization="VV")
    np.testing.assert_array_equal(gdal.Open(str(out)).ReadAsArray(), np.abs(images["VV"]))
    assert read_nisar_rslc(path, frequency="B")[1].endswith("/HH")  # default: the first listed
    # QGIS names an HDF5 image by its GDAL subdataset; frequency and polarisation come from it
    by_name = read_sensor_model(f'HDF5:"{path}"://{SWATHS}/frequencyB/HV')
    assert by_name.to_dict() == model.to_dict()


@pytest.mark.parametrize("block_rows", [1024, 37])  # whole image, and streamed with a ragged last block
def test_nisar_to_geotiff(winnipeg, tmp_path, block_rows):
    src = winnipeg / "winnipeg.h5"
    out = tmp_path / "winnipeg_hh.tif"
    model = nisar_to_geotiff(src, out, block_rows=block_rows)
    ds = gdal.Open(str(out))
    assert ds.GetDriver().ShortName == "GTiff" and (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (250, 250, 1)
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Float32 and band.GetDescription() == "amplitude"
    with h5py.File(src, "r") as h5:
        slc = h5[f"{SWATHS}/frequencyA/HH"][()]
    np.testing.assert_array_equal(band.ReadAsArray(), np.abs(slc).astype(np.float32))
    assert json.loads(ds.GetMetadataItem(SENSOR_ITEM)) == model.to_dict()
    assert json.loads(sidecar_path(out).read_text()) == model.to_dict()
    assert read_sensor_model(out).to_dict() == model.to_dict()
    assert ds.GetMetadataItem("SARSTEREO_SOURCE").endswith("frequencyA/HH")
    # GCPs put the slant-range image on the map; GDAL's pixel centres sit at +0.5
    gcps = ds.GetGCPs()
    assert len(gcps) == 64 and "4326" in ds.GetGCPSpatialRef().ExportToWkt().replace('"', "")
    lon, lat, h = (np.array([getattr(g, f"GCP{a}") for g in gcps]) for a in "XYZ")
    rows, cols = model.geo2rdr(lon, lat, h)
    np.testing.assert_allclose(rows, [g.GCPLine - 0.5 for g in gcps], atol=1e-6)
    np.testing.assert_allclose(cols, [g.GCPPixel - 0.5 for g in gcps], atol=1e-6)
    assert rows.min() == pytest.approx(0.0, abs=1e-6) and rows.max() == pytest.approx(249.0, abs=1e-6)


# ---------------------------------------------------------------- damaged products
@pytest.mark.parametrize("fraction", [0.001, 0.05, 0.5, 0.99])
def test_truncated_hdf5_gives_clear_error(winnipeg, tmp_path, fraction):
    data = (winnipeg / "winnipeg.h5").read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[:int(len(data) * fraction)])
    out = tmp_path / "cut.tif"
    for call in (lambda: read_sensor_model(path), lambda: nisar_to_geotiff(path, out)):
        with pytest.raises(RasterError, match=f"{path}: cannot be read as HDF5"):
            call()
    assert not out.exists() and not sidecar_path(out).exists()


def test_damaged_hdf5_metadata_fails_only_with_project_errors(winnipeg, tmp_path):
    """Overwrite bytes outside the raw data blocks (headers, B-trees, attributes, small arrays)."""
    src = winnipeg / "winnipeg.h5"
    data = bytearray(src.read_bytes())
    metadata = np.ones(len(data), bool)
    with h5py.File(src, "r") as h5:
        def mark_raw(_, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None and obj.size > 1000:
                metadata[obj.id.get_offset():obj.id.get_offset() + obj.id.get_storage_size()] = False
        h5.visititems(mark_raw)
    rng = np.random.default_rng(11)
    outcomes = set()
    for i, offset in enumerate(rng.choice(np.flatnonzero(metadata), 40, replace=False)):
        damaged = bytearray(data)
        damaged[offset:offset + 32] = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        path = tmp_path / f"damaged{i}.h5"
        path.write_bytes(damaged)
        try:
            read_sensor_model(path)
            outcomes.add("read")
        except SarStereoError as exc:  # anything else (KeyError, h5py's OSError...) fails the test
            assert str(path) in str(exc)
            outcomes.add(type(exc).__name__)
    assert outcomes - {"read"}, "no damage was detected at all: the test hit nothing"


def test_rslc_missing_metadata_names_the_field(winnipeg, tmp_path):
    path = tmp_path / "nolook.h5"
    shutil.copy(winnipeg / "winnipeg.h5", path)
    with h5py.File(path, "r+") as h5:
        del h5["science/LSAR/identification/lookDirection"]
    with pytest.raises(SensorModelError, match="field 'science/LSAR/identification/lookDirection': is missing"):
        read_sensor_model(path)
    with h5py.File(path, "r+") as h5:
        h5["science/LSAR/identification/lookDirection"] = np.bytes_("sideways")
    with pytest.raises(SensorModelError, match="field 'look_side'"):
        read_sensor_model(path)


def test_rslc_image_shape_must_match_its_axes(winnipeg, tmp_path):
    path = tmp_path / "shape.h5"
    shutil.copy(winnipeg / "winnipeg.h5", path)
    with h5py.File(path, "r+") as h5:
        del h5[f"{SWATHS}/frequencyA/HH"]
        h5[f"{SWATHS}/frequencyA/HH"] = np.zeros((250, 200), np.complex64)
    with pytest.raises(SensorModelError, match=r"image shape \(250, 200\) does not match"):
        read_sensor_model(path)


def test_not_a_nisar_product(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["data"] = np.zeros(3)
    with pytest.raises(SensorModelError, match="not a NISAR product"):
        read_sensor_model(path)


def test_failed_streamed_write_leaves_nothing(tmp_path):
    """An error half-way through a streamed image leaves no file that could pass for a result."""
    from sar_stereo_plugin.core.raster import geotiff_writer
    out = tmp_path / "half.tif"
    with pytest.raises(RuntimeError, match="stop"):
        with geotiff_writer(out, 100, 50) as write:
            write(np.ones((40, 50)), 0)
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with geotiff_writer(out, 100, 50) as write:
        write(np.ones((60, 50)), 0)
        write(np.full((40, 50), 2.0), 60)
    data = gdal.Open(str(out)).ReadAsArray()
    assert data.shape == (100, 50) and (data[:60] == 1).all() and (data[60:] == 2).all()
    assert [p.name for p in tmp_path.iterdir()] == ["half.tif"]
