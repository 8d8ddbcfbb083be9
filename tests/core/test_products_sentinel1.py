"""Sentinel-1 SLC from the real annotations: every point of ESA's geolocation grid through geo2rdr
with the model of the image (stripmap) or burst (TOPS) that holds it, the image list, bursts'
valid samples, and an orbit that misses the image.

ESA's grid agrees with the products' own state vectors everywhere for the IW product (orbit from
the auxiliary orbit file). The stripmap and EW products (IPF 3.31) use the orbit downlinked with the
data; their grid's along-track position departs from the state vectors' smooth interpolation by a
parabola between consecutive vectors -- zero at each vector, up to 1.4 m (S3) and 3.1 m (EW) in
the middle of their 10-second intervals -- which no interpolation through the vectors themselves
reproduces. There the azimuth time is held to 0.1 ms near the vectors and the departure to that
parabola elsewhere.
"""

import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core import SensorModelError, import_product, read_sensor_model
from sar_stereo_plugin.core.products import open_product
from sar_stereo_plugin.core.products.base import SPEED_OF_LIGHT

PRODUCTS = {"S3": "S1A_S3_SLC__1SDV_20210401T152855", "IW": "S1A_IW_SLC__1SDH_20220414T102209",
            "EW": "S1A_EW_SLC__1SDH_20210403T122536"}


def _safe(shared_data, key):
    return next((shared_data / "sentinel1").glob(f"{PRODUCTS[key]}*.SAFE"))


def _grid(xml):
    points = ET.parse(xml).getroot().findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    get = {k: np.array([float(p.findtext(k)) for p in points]) for k in
           ("slantRangeTime", "line", "pixel", "latitude", "longitude", "height")}
    get["azimuthTime"] = np.array([np.datetime64(p.findtext("azimuthTime"), "us") for p in points])
    return get


def _misfit(shared_data, key):
    """Per annotation: the grid, and geo2rdr's azimuth time and range errors (s, m) and state-vector phase."""
    out = []
    with open_product(_safe(shared_data, key)) as product:
        for xml in sorted((_safe(shared_data, key) / "annotation").glob("*.xml")):
            images = [i for i in product.images if i.model.source.startswith(str(xml))]
            grid = _grid(xml)
            lines = images[0].model.rows
            burst = np.minimum(grid["line"] // lines, len(images) - 1).astype(int)
            dt, dr, phase = (np.full(burst.size, np.nan) for _ in range(3))
            for k in np.unique(burst):
                model, sel = images[k].model, burst == k
                rows, cols = model.geo2rdr(grid["longitude"][sel], grid["latitude"][sel], grid["height"][sel])
                epoch = np.datetime64(model.reference_epoch.rstrip("Z"), "us")
                reference = (grid["azimuthTime"][sel] - epoch) / np.timedelta64(1, "us") * 1e-6
                t = model.row_to_time(rows)
                dt[sel] = t - reference
                dr[sel] = model.col_to_range(cols) - 0.5 * SPEED_OF_LIGHT * grid["slantRangeTime"][sel]
                vectors = model.orbit_time_s
                i = np.searchsorted(vectors, t) - 1
                phase[sel] = (t - vectors[i]) / (vectors[i + 1] - vectors[i])
            out.append((xml, len(images), dt, dr, phase))
    return out


def test_iw_grid_within_a_tenth_of_a_millisecond_and_5_cm(shared_data):
    """Every one of the 210 points of the IW1 grid, each with its burst's model."""
    [(_, bursts, dt, dr, _)] = _misfit(shared_data, "IW")
    assert bursts == 9 and dt.size == 210
    assert np.abs(dt).max() < 1e-4 and np.abs(dr).max() < 0.05
    assert np.abs(dt).max() < 5e-6 and np.abs(dr).max() < 0.001  # what is measured: 2 us and 0.2 mm


@pytest.mark.parametrize("key, amplitude_m", [("S3", 1.4), ("EW", 3.1)])
def test_downlink_orbit_grids(shared_data, key, amplitude_m):
    for _, _, dt, dr, phase in _misfit(shared_data, key):
        assert np.abs(dr).max() < 0.05  # range: every point
        near = np.minimum(phase, 1 - phase) < 0.05  # within half a second of a state vector
        assert near.sum() >= 3 and np.abs(dt[near]).max() < 1e-4
        parabola = phase * (1 - phase)
        coef = np.sum(dt * parabola) / np.sum(parabola ** 2)
        assert np.abs(dt - coef * parabola).max() < 5e-5  # the whole departure is that one parabola
        assert abs(coef) / 4 * 7600.0 == pytest.approx(amplitude_m, abs=0.15)  # metres along track, mid-interval


def test_images_and_bursts(shared_data, tmp_path):
    with open_product(_safe(shared_data, "IW")) as product:
        assert product.names == [f"iw1-hh-b{k}" for k in range(1, 10)]
        burst = product.image("IW1-HH-B3")
        assert burst.model.rows == 1500 and burst.model.cols == 21169
        first = product.image("iw1-hh-b2").model
        assert burst.model.first_line_time_s - first.first_line_time_s == pytest.approx(2.758, abs=0.01)
    with pytest.raises(SensorModelError, match=r"field 'IMAGE'.*9 images.*iw1-hh-b1, iw1-hh-b2"):
        read_sensor_model(_safe(shared_data, "IW"))
    with open_product(_safe(shared_data, "EW")) as product:
        assert {n.split("-b")[0] for n in product.names} == {"ew1-hh", "ew1-hv"}
    model = read_sensor_model(_safe(shared_data, "S3") / "manifest.safe")  # stripmap: one image
    assert (model.rows, model.cols) == (36895, 18998)
    # a burst imported: zeros inside the burst's valid window, NaN outside it
    result = import_product(_safe(shared_data, "IW"), tmp_path / "b1.tif", image="iw1-hh-b1", looks_azimuth=5,
                            looks_range=20)
    amp = gdal.Open(result.path).ReadAsArray()
    assert amp.shape == (300, 1058) and np.isnan(amp[:3]).all() and (amp[10:290, 30:1000] == 0).all()


def test_hv_annotation_without_its_measurement(shared_data, tmp_path):
    """The EW product ships the HV annotation but not its measurement TIFF: the model reads, the
    pixels are a clear error and nothing is written."""
    from sar_stereo_plugin.core import RasterError
    assert read_sensor_model(_safe(shared_data, "EW"), image="ew1-hv-b2").rows > 0
    with pytest.raises(RasterError, match="measurement image of this annotation is missing"):
        import_product(_safe(shared_data, "EW"), tmp_path / "hv.tif", image="ew1-hv-b2")
    assert not list(tmp_path.iterdir())


def test_orbit_not_covering_the_image(shared_data, tmp_path):
    safe = tmp_path / "short.SAFE"
    shutil.copytree(_safe(shared_data, "S3"), safe, ignore=shutil.ignore_patterns("*.tiff"))
    xml = next((safe / "annotation").glob("*.xml"))
    tree = ET.parse(xml)
    orbits = tree.getroot().find("generalAnnotation/orbitList")
    for orbit in list(orbits)[6:]:  # the vectors end before the image does
        orbits.remove(orbit)
    tree.write(xml)
    with pytest.raises(SensorModelError, match="orbit covers only"):
        read_sensor_model(safe)


@pytest.mark.parametrize("key", PRODUCTS)
def test_read_where_sarpy_cannot(shared_data, key):
    """sarpy's reader wants each annotation's calibration and noise files, which these products lack."""
    sarpy_converter = pytest.importorskip("sarpy.io.complex.converter")
    with pytest.raises(FileNotFoundError, match="calibration"):
        sarpy_converter.open_complex(str(_safe(shared_data, key)))
    with open_product(_safe(shared_data, key)) as product:
        assert product.family == "Sentinel-1" and all(i.model.rows > 0 for i in product.images)
