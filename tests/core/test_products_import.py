"""import_product, and the whole chain on SICD-kind models: the simulator's pair written as SICD
NITF, imported, matched and turned into a DEM equals the DEM of the same pair as GeoTIFF."""

import json

import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core import (
    ElevationSettings,
    ImportCanceled,
    MatchSettings,
    RasterError,
    SensorModelError,
    create_matcher,
    generate_elevation,
    import_product,
    match_pair,
    read_sensor_model,
    simulate_pair,
)
from sar_stereo_plugin.core.flight import FlightDesign
from sar_stereo_plugin.core.products import open_product, sidecar_path
from sar_stereo_plugin.core.raster import SENSOR_ITEM
from sar_stereo_plugin.core.sicd_model import SicdModel


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, shared_data):
    """One simulated 256 x 256 pair over the Hintereisferner, as GeoTIFF and as SICD NITF."""
    tmp = tmp_path_factory.mktemp("pairs")
    dem = str(shared_data / "dem" / "hintereisferner_srtm3.tif")
    flight = FlightDesign(rows=256, cols=256, pixel_spacing_m=20.0)
    results = {}
    for fmt, ext in (("geotiff", "tif"), ("sicd", "nitf")):  # distinct stems: a sidecar would serve both
        results[fmt] = simulate_pair(dem, flight, seed=3, reference_output=tmp / f"ref_{fmt}.{ext}",
                                     secondary_output=tmp / f"sec_{fmt}.{ext}",
                                     ground_truth_output=tmp / f"gt_{fmt}.tif", format=fmt)
    return tmp, results


def test_simulator_writes_sicd_nitf(pairs):
    tmp, results = pairs
    assert isinstance(results["sicd"].reference_model, SicdModel)
    assert (tmp / "ref_sicd.nitf").read_bytes()[:4] == b"NITF" and not sidecar_path(tmp / "ref_sicd.nitf").exists()
    with open_product(tmp / "ref_sicd.nitf") as product:
        assert product.family == "SICD" and product.image().model.doc["sicd"]["grid_type"] == "RGZERO"
    truth = gdal.Open(str(tmp / "gt_sicd.tif"))  # the ground truth carries the SICD-kind models
    assert json.loads(truth.GetMetadataItem(SENSOR_ITEM))["kind"] == "sicd"


def test_sicd_pair_gives_the_same_dem(pairs):
    """Imported, the SICD pair holds the GeoTIFF pair's pixels bit for bit; matched (POC, the same
    prior height for both: the GeoTIFFs' GCPs lie on the DEM, the import's on the SCP height) and
    triangulated, it gives the same DEM to 0.01 m on every cell. Patches do not overlap here: where
    they do, the POC's float32 prior can swap near-ties between two patches' answers (0.008 m)."""
    tmp, _ = pairs
    for role in ("ref", "sec"):
        result = import_product(tmp / f"{role}_sicd.nitf", tmp / f"{role}_imported.tif")
        assert (result.rows, result.cols, result.family) == (256, 256, "SICD")
        np.testing.assert_array_equal(gdal.Open(str(tmp / f"{role}_imported.tif")).ReadAsArray(),
                                      gdal.Open(str(tmp / f"{role}_geotiff.tif")).ReadAsArray())
    settings = MatchSettings(patch_size=128, overlap=0, height_prior=3000.0)
    dems = {}
    for name, suffix in (("geotiff", "geotiff"), ("sicd", "imported")):
        match_pair(tmp / f"ref_{suffix}.tif", tmp / f"sec_{suffix}.tif", tmp / f"matches_{name}.tif",
                   create_matcher("poc"), settings)
        assert isinstance(read_sensor_model(tmp / f"ref_{suffix}.tif"), SicdModel) == (name == "sicd")
        generate_elevation(tmp / f"matches_{name}.tif", tmp / f"dem_{name}.tif", ElevationSettings())
        ds = gdal.Open(str(tmp / f"dem_{name}.tif"))
        dems[name] = (ds.GetGeoTransform(), ds.ReadAsArray())
    (gt_a, a), (gt_b, b) = dems["geotiff"], dems["sicd"]
    assert gt_a == gt_b and a.shape == b.shape and np.isfinite(a).mean() > 0.8
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 0.01


def test_refining_a_sicd_pair_is_refused_clearly(pairs, tmp_path):
    """SICD models carry no corrections section: refinepair says so, names the file, writes nothing."""
    from sar_stereo_plugin.core.refine_pair import refine_pair
    tmp, _ = pairs
    for role in ("ref", "sec"):
        if not (tmp / f"{role}_imported.tif").exists():
            import_product(tmp / f"{role}_sicd.nitf", tmp / f"{role}_imported.tif")
    out = tmp_path / "sec.json"
    with pytest.raises(SensorModelError, match=r"ref_imported.*schema.*SICD.*cannot carry corrections"):
        refine_pair(tmp / "ref_imported.tif", tmp / "sec_imported.tif", refined_secondary_model=out)
    assert not out.exists()


def test_multilook_progress_and_cancel(pairs, tmp_path):
    tmp, _ = pairs
    steps = []
    result = import_product(tmp / "ref_sicd.nitf", tmp_path / "ml.tif", looks_azimuth=4, looks_range=3,
                            progress=steps.append, block_pixels=4096)
    assert (result.rows, result.cols) == (64, 85) and len(steps) > 5 and steps == sorted(steps) and steps[-1] == 1.0
    full = gdal.Open(str(tmp / "ref_geotiff.tif")).ReadAsArray().astype(np.float64)
    expected = np.sqrt((full[:, :255] ** 2).reshape(64, 4, 85, 3).mean(axis=(1, 3)))
    np.testing.assert_allclose(gdal.Open(result.path).ReadAsArray(), expected, rtol=1e-5)
    calls = []
    with pytest.raises(ImportCanceled):
        import_product(tmp / "ref_sicd.nitf", tmp_path / "cancel.tif", block_pixels=4096,
                       is_canceled=lambda: calls.append(1) or len(calls) > 3)
    assert not (tmp_path / "cancel.tif").exists() and not sidecar_path(tmp_path / "cancel.tif").exists()
    with pytest.raises(ValueError, match="LOOKS_RANGE"):
        import_product(tmp / "ref_sicd.nitf", tmp_path / "bad.tif", looks_range=0)


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n" + bytes(64), b"just some text\n"])
def test_unsupported_file_lists_the_formats(tmp_path, content):
    path = tmp_path / "thing.dat"
    path.write_bytes(content)
    with pytest.raises(SensorModelError, match=r"not a supported SAR product; supported: SICD NITF.*Sentinel-1"):
        import_product(path, tmp_path / "out.tif")
    with pytest.raises(SensorModelError, match=r"no sensor model found.*supported SAR product \(SICD NITF"):
        read_sensor_model(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing.dat"]


def test_truncated_nitf_leaves_nothing(pairs, tmp_path):
    tmp, _ = pairs
    data = (tmp / "ref_sicd.nitf").read_bytes()
    path = tmp_path / "cut.nitf"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(RasterError, match=str(path)):
        import_product(path, tmp_path / "out.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.nitf"]


def test_an_image_with_our_model_is_a_product_too(pairs, tmp_path):
    """A GeoTIFF carrying a sensor model imports (here: multilooked) like any product."""
    tmp, results = pairs
    result = import_product(tmp / "ref_geotiff.tif", tmp_path / "looked.tif", looks_azimuth=2, looks_range=2)
    assert (result.rows, result.cols, result.family) == (128, 128, "image with sensor model")
    model = read_sensor_model(result.path)
    assert model.line_interval_s == pytest.approx(2 * results["geotiff"].reference_model.line_interval_s)
