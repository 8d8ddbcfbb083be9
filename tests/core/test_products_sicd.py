"""SICD NITF through sarpy: the real TerraSAR-X and RCM crops, agreement with sarpy's own
projection on SICDs sarpy writes (zero-Doppler, squinted RGZERO and polar-format grids), the
pixel orientation, and damaged files."""

import warnings

import numpy as np
import pytest

from sar_stereo_plugin.core import RasterError, SarStereoError, SensorModelError
from sar_stereo_plugin.core.ellipsoid import ecef_to_llh, llh_to_ecef
from sar_stereo_plugin.core.flight import level_flight_model
from sar_stereo_plugin.core.products import open_product, read_sensor_model
from sar_stereo_plugin.core.products.sicd import model_from_sicd, write_sicd
from sar_stereo_plugin.core.sicd_model import SicdModel

pp = pytest.importorskip("sarpy.geometry.point_projection")
CROPS = {"tsx_spotlight_rosenheim_crop5x5.nitf": 178.3, "rcm_stripmap_montreal_50x50.nitf": 11.6}


def _open(path):
    """sarpy's reader (which warns that its SICD code moves to sarkit)."""
    from sarpy.io.complex.converter import open_complex
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return open_complex(str(path))


def _sicd(path):
    return _open(path).get_sicds_as_tuple()[0]


def _scp_pixel(model):
    """Our (row, col) of the SCP pixel."""
    (row0, row_step), (col0, col_step) = model.doc["pixels"]["sicd_row"], model.doc["pixels"]["sicd_col"]
    scp_row, scp_col = model.doc["sicd"]["scp_pixel"]
    return (scp_col - col0) / col_step, (scp_row - row0) / row_step


@pytest.mark.parametrize("name", CROPS)
def test_scp_pixel_projects_to_the_scp(shared_data, name):
    """The real crops: SCP pixel -> SCP within 1 cm, and geo2rdr brings it back within 1e-4 px."""
    model = read_sensor_model(shared_data / "sicd" / name)
    assert isinstance(model, SicdModel) and model.grid_type == "RGZERO" and model.look_side == "right"
    scp = np.asarray(model.doc["sicd"]["scp_ecf_m"])
    lon, lat, h = ecef_to_llh(scp)
    row, col = _scp_pixel(model)
    assert np.linalg.norm(llh_to_ecef(*model.rdr2geo(row, col, height=h)) - scp) < 0.01
    r, c = model.geo2rdr(lon, lat, h)
    assert abs(r - row) < 1e-4 and abs(c - col) < 1e-4
    with open_product(shared_data / "sicd" / name) as product:  # pixels: SICD's columns are our rows
        image = product.image()
        data = image.read(0, model.rows)
        raw = _sicd_pixels(shared_data / "sicd" / name)
    np.testing.assert_array_equal(data, raw.T)


def _sicd_pixels(path):
    return _open(path)[:, :]


@pytest.mark.parametrize("name", CROPS)
def test_why_sarpy_misses_the_scp_of_a_crop(shared_data, name):
    """sarpy's image_to_ground takes pixels of the crop as stored: the full image's SCPPixel names
    a pixel FirstRow rows and FirstCol columns beyond the SCP, which lands 178.3 m (TSX: 100 rows of
    0.91 m in slant range, 100 columns of 1.28 m) and 11.6 m (RCM: 1 row of 7.0 m, 1 column of 2.5 m)
    away. Given the SCP pixel in the crop's own coordinates, sarpy lands on the SCP, and our model
    reproduces sarpy's 178.3 m point itself when handed the same misread pixel."""
    path = shared_data / "sicd" / name
    sicd = _sicd(path)
    scp = sicd.GeoData.SCP.ECF.get_array()
    im = sicd.ImageData
    full = np.array([im.SCPPixel.Row, im.SCPPixel.Col], np.float64)
    missed = pp.image_to_ground(full, sicd)
    assert np.linalg.norm(missed - scp) == pytest.approx(CROPS[name], abs=0.1)
    assert np.linalg.norm(pp.image_to_ground(full - [im.FirstRow, im.FirstCol], sicd) - scp) < 0.01
    model = model_from_sicd(sicd, str(path))
    ours = model.rdr2geo(full[1], full[0], height=ecef_to_llh(missed)[2])  # our row = SICD column
    assert np.linalg.norm(llh_to_ecef(*ours) - missed) < 0.01


# ---------------------------------------------------------------- agreement with sarpy
def _rewritten(src, dst):
    """A real SICD written again by sarpy's writer (metadata and pixels as read)."""
    from sarpy.io.complex.sicd import SICDWriter
    reader = _open(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        writer = SICDWriter(str(dst), reader.get_sicds_as_tuple()[0], check_existence=False)
        writer.write_chip(reader[:, :], start_indices=(0, 0))
        writer.close()
    return dst


def _capella_crop(shared_data, tmp_path, name):
    """64 x 48 pixels around the centre of a real Capella spotlight (polar format), written by sarpy."""
    model = read_sensor_model(next((shared_data / "capella").glob(f"*{name}*_extended.json")))
    doc = model.to_dict()
    doc["pixels"]["sicd_row"][0] += model.cols // 2 - 24
    doc["pixels"]["sicd_col"][0] += model.rows // 2 - 32
    doc["shape"] = {"rows": 64, "cols": 48}
    crop = SicdModel.from_dict(doc, name)
    path = tmp_path / f"{name}.nitf"
    write_sicd(path, crop, [(0, np.ones((64, 48), np.float32))])
    return path


@pytest.fixture(scope="module")
def written(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("sicd_written")
    sim = level_flight_model(10.8, 46.8, 2500.0, 20.0, 8000.0, 40.0, look_side="left", rows=60, cols=50)
    sim_model = SicdModel.from_zero_doppler(sim, 2500.0)
    write_sicd(tmp / "zero_doppler.nitf", sim_model, [(0, np.ones((60, 50), np.float32))])
    return {"zero_doppler": tmp / "zero_doppler.nitf",
            "rgzero_tsx": _rewritten(shared_data / "sicd" / "tsx_spotlight_rosenheim_crop5x5.nitf", tmp / "tsx.nitf"),
            "rgzero_rcm": _rewritten(shared_data / "sicd" / "rcm_stripmap_montreal_50x50.nitf", tmp / "rcm.nitf"),
            "pfa_right": _capella_crop(shared_data, tmp, "20241126"),
            "pfa_left": _capella_crop(shared_data, tmp, "20250826")}


@pytest.mark.parametrize("case", ["zero_doppler", "rgzero_tsx", "rgzero_rcm", "pfa_right", "pfa_left"])
def test_agrees_with_sarpy_point_projection(written, case):
    """Image -> ground at the SCP's height within 1 cm of sarpy's image_to_ground_hae, ground -> image
    within 1e-3 px of sarpy's ground_to_image, on a 5 x 5 grid over the image."""
    path = written[case]
    sicd = _sicd(path)
    model = read_sensor_model(path)
    expected = {"zero_doppler": "RGZERO", "rgzero_tsx": "RGZERO", "rgzero_rcm": "RGZERO", "pfa_right": "RGAZIM",
                "pfa_left": "RGAZIM"}[case]
    assert sicd.Grid.Type == model.grid_type == expected
    (row0, row_step), (col0, col_step) = model.doc["pixels"]["sicd_row"], model.doc["pixels"]["sicd_col"]
    rows, cols = (a.ravel() for a in np.meshgrid(np.linspace(0, model.rows - 1, 5), np.linspace(0, model.cols - 1, 5),
                                                 indexing="ij"))
    crop_pixels = np.stack([row0 + row_step * cols - sicd.ImageData.FirstRow,
                            col0 + col_step * rows - sicd.ImageData.FirstCol], axis=-1)
    hae = float(sicd.GeoData.SCP.LLH.HAE)
    ground = pp.image_to_ground_hae(crop_pixels, sicd, hae0=hae, tolerance=1e-6, max_iterations=50)
    ours = llh_to_ecef(*model.rdr2geo(rows, cols, height=hae))
    assert np.linalg.norm(ours - ground, axis=-1).max() < 0.01
    sarpy_pixels = pp.ground_to_image(ground, sicd, tolerance=1e-7, max_iterations=50)[0]
    r, c = model.geo2rdr(*ecef_to_llh(ground))
    ours_pixels = np.stack([row0 + row_step * c - sicd.ImageData.FirstRow,
                            col0 + col_step * r - sicd.ImageData.FirstCol], axis=-1)
    assert np.abs(ours_pixels - sarpy_pixels).max() < 1e-3


def test_rows_run_with_time_whatever_sicd_does(tmp_path):
    """A SICD whose columns run backwards in time (SICD's usual left-looking orientation) reads back
    with our rows running forwards: same pixels, same geometry as the image it was written from."""
    base = SicdModel.from_zero_doppler(
        level_flight_model(10.8, 46.8, 2500.0, 20.0, 8000.0, 40.0, look_side="left", rows=40, cols=30), 2500.0)
    doc = base.to_dict()
    doc["pixels"]["sicd_col"] = [base.rows - 1, -1]  # our row r is SICD column rows - 1 - r
    doc["sicd"]["scp_pixel"][1] = base.rows - 1 - doc["sicd"]["scp_pixel"][1]
    doc["sicd"]["col_uvect_ecf"] = [-v for v in doc["sicd"]["col_uvect_ecf"]]
    doc["sicd"]["time_coa_poly"][0][1] *= -1  # time falls along SICD columns
    doc["sicd"]["inca"]["time_ca_poly"][1] *= -1
    flipped = SicdModel.from_dict(doc, "flipped")
    data = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    write_sicd(tmp_path / "flipped.nitf", flipped, [(0, data[:25]), (25, data[25:])])
    raw = _sicd_pixels(tmp_path / "flipped.nitf")
    np.testing.assert_array_equal(raw.real, data[::-1].T)  # as stored: SICD columns backwards in time
    with open_product(tmp_path / "flipped.nitf") as product:
        image = product.image()
        np.testing.assert_array_equal(image.read(0, 40).real, data)
        model = image.model
    assert model.doc["pixels"]["sicd_col"] == [39, -1]
    rows, cols = np.meshgrid(np.arange(0, 40, 13.0), np.arange(0, 30, 9.0), indexing="ij")
    a, b = model.rdr2geo(rows, cols, height=2600.0), base.rdr2geo(rows, cols, height=2600.0)
    assert max(np.abs(a[0] - b[0]).max(), np.abs(a[1] - b[1]).max()) < 1e-10


# ---------------------------------------------------------------- damaged files
@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.7, 0.99])
def test_truncated_nitf_is_a_clear_error(shared_data, tmp_path, fraction):
    data = (shared_data / "sicd" / "tsx_spotlight_rosenheim_crop5x5.nitf").read_bytes()
    path = tmp_path / "cut.nitf"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(SarStereoError) as info:
        with open_product(path) as product:
            product.image().read(0, 5)
    assert str(path) in str(info.value)
    assert isinstance(info.value, (RasterError, SensorModelError))


def test_corrupt_sicd_xml_is_a_clear_error(shared_data, tmp_path):
    data = bytearray((shared_data / "sicd" / "rcm_stripmap_montreal_50x50.nitf").read_bytes())
    start = data.index(b"<SCPCOA>")
    data[start:start + 400] = b"#" * 400  # the XML no longer parses
    path = tmp_path / "garbled.nitf"
    path.write_bytes(bytes(data))
    with pytest.raises(SarStereoError, match=str(path)):
        read_sensor_model(path)
