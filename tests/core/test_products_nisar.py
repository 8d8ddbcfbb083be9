"""NISAR RSLC in the current layout: the real ALOS-1 PALSAR crop (science/LSAR/RSLC, four
polarisations stored as pairs of float16), its geolocation grid, and its 60-second state vectors."""

import h5py
import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core import SensorModelError, import_product, read_sensor_model
from sar_stereo_plugin.core.ellipsoid import llh_to_ecef
from sar_stereo_plugin.core.products import open_product
from sar_stereo_plugin.core.products.orbits import densify

RSLC = "science/LSAR/RSLC"


@pytest.fixture(scope="module")
def alos(shared_data):
    return shared_data / "alos" / "alos1_palsar_rslc_riobranco_100x50.h5"


def _grid(path):
    with h5py.File(path, "r") as h5:
        g = h5[f"{RSLC}/metadata/geolocationGrid"]
        return (float(g["zeroDopplerTime"][0]), float(g["slantRange"][0]), g["coordinateX"][:, 0, 0],
                g["coordinateY"][:, 0, 0], g["heightAboveEllipsoid"][()])


def test_current_layout_is_read(alos):
    model = read_sensor_model(alos)
    assert (model.rows, model.cols, model.look_side) == (100, 50, "right")
    assert model.wavelength_m == pytest.approx(299792458.0 / 1269999750.0604727, rel=1e-12)
    with open_product(alos) as product:
        assert sorted(product.names) == ["A/HH", "A/HV", "A/VH", "A/VV"]
        hv = product.image("A/HV").read(0, 100)
    with h5py.File(alos, "r") as h5:
        pairs = h5[f"{RSLC}/swaths/frequencyA/HV"].astype(np.dtype([("r", "<f2"), ("i", "<f2")]))[()]
    np.testing.assert_array_equal(hv, pairs["r"].astype(np.float32) + 1j * pairs["i"].astype(np.float32))


def test_geolocation_grid(alos):
    """rdr2geo of the grid's point at each of its 20 heights (-500..9000 m): within 1e-5 degree and
    0.1 m of the product's own geolocation (2 mm measured)."""
    model = read_sensor_model(alos)
    t, rng, lon, lat, h = _grid(alos)
    assert model.reference_epoch == "2006-07-20T00:00:00Z"  # the grid's times share the epoch
    row, col = model.time_to_row(t), model.range_to_col(rng)
    ours = model.rdr2geo(np.full(h.shape, row), np.full(h.shape, col), height=h)
    assert max(np.abs(ours[0] - lon).max(), np.abs(ours[1] - lat).max()) < 1e-5
    assert np.linalg.norm(llh_to_ecef(*ours) - llh_to_ecef(lon, lat, h), axis=-1).max() < 0.1


def test_sparse_state_vectors_are_densified(alos):
    """The product's state vectors are 60 s apart: a cubic through neighbours errs by ~1 m along the
    track there, the degree-7 Hermite through four of them by millimetres."""
    with h5py.File(alos, "r") as h5:
        o = h5[f"{RSLC}/metadata/orbit"]
        t, p, v = o["time"][()], o["position"][()], o["velocity"][()]
    dense_t, dense_p, dense_v = densify(t, p, v)
    assert np.diff(dense_t).max() <= 10.0 and np.isin(t, dense_t).all()
    np.testing.assert_array_equal(dense_p[np.isin(dense_t, t)], p)
    from sar_stereo_plugin.core.orbit import Orbit
    cubic, fine = Orbit(t, p, v), Orbit(dense_t, dense_p, dense_v)
    mid = t[:-1] + 30.0
    assert np.linalg.norm(cubic.position(mid) - fine.position(mid), axis=-1).max() > 0.3


def test_import_needs_the_image_of_a_quad_pol_product(alos, tmp_path):
    with pytest.raises(SensorModelError, match=r"field 'IMAGE'.*4 images.*A/VH, A/VV, A/HH, A/HV"):
        import_product(alos, tmp_path / "x.tif")
    result = import_product(alos, tmp_path / "vv.tif", image="a/vv", looks_range=2)
    assert (result.image, result.rows, result.cols) == ("A/VV", 100, 25)
    ds = gdal.Open(result.path)
    assert ds.GetGCPCount() == 64 and ds.GetMetadataItem("SARSTEREO_SOURCE").endswith(":A/VV")
    spacing = read_sensor_model(alos).sample_spacing_m
    assert read_sensor_model(result.path).sample_spacing_m == pytest.approx(2 * spacing)
