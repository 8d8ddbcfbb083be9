"""The SAR stereo simulator: closed forms on synthetic terrain, exact ground truth on real DEMs,
speckle statistics, reproducibility, and what bad input and cancel do.

Synthetic DEMs are planes, ramps and ridges in a local transverse Mercator (scale 1) centred on
9 E 46.5 N; the flight heads north and looks right, i.e. east, so "facing the sensor" means
facing west and "range" runs east.
"""

import json
import math

import numpy as np
import pytest
from osgeo import gdal, osr
from pyproj import Transformer

from sar_stereo_plugin.core import ellipsoid, triangulate
from sar_stereo_plugin.core.dem import Dem
from sar_stereo_plugin.core.errors import GeometryError, RasterError, SarStereoError, SimulationCanceled
from sar_stereo_plugin.core.flight import FlightDesign, level_flight_model
from sar_stereo_plugin.core.products import read_sensor_model
from sar_stereo_plugin.core.raster import SECONDARY_SENSOR_ITEM, SENSOR_ITEM
from sar_stereo_plugin.core.simulate import SimulationOptions, simulate_pair

TM = "+proj=tmerc +lat_0=46.5 +lon_0=9 +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
TO_LONLAT = Transformer.from_crs(TM, "EPSG:4326", always_xy=True)


def synthetic_dem(profile, half_m=1500.0, spacing_m=5.0):
    """Heights ``profile(east_m)`` constant along north, grid nodes on multiples of the spacing."""
    n = 2 * int(round(half_m / spacing_m)) + 1
    x = (np.arange(n) - n // 2) * spacing_m
    heights = np.broadcast_to(profile(x)[None, :], (n, n))
    gt = (x[0] - spacing_m / 2, spacing_m, 0.0, x[-1] + spacing_m / 2, 0.0, -spacing_m)
    return Dem.from_array(heights, gt, TM, "synthetic DEM")


def ramp(base, rise, start, length):
    """Flat at ``base`` west of ``start``, rising ``rise`` over ``length`` m eastward, then flat."""
    return lambda x: base + rise * np.clip((x - start) / length, 0.0, 1.0)


def line_in_image(model, east_m, height, rows):
    """Image column of the ground line x = east_m, h = height at the given rows (and its ECEF)."""
    north = np.linspace(-1200.0, 1200.0, 241)
    lon, lat = TO_LONLAT.transform(np.full_like(north, east_m), north)
    r, c = model.geo2rdr(lon, lat, np.full_like(north, height))
    return np.interp(rows, r, c), ellipsoid.llh_to_ecef(lon, lat, height), r


def simulate(dem, incidence=35.0, other=55.0, size=(120, 260), spacing=2.0, **kw):
    design = FlightDesign(reference_incidence_deg=incidence, secondary_incidence_deg=other,
                          pixel_spacing_m=spacing, rows=size[0], cols=size[1])
    return simulate_pair(dem, design, return_arrays=True, **kw)


def interior(shape, margin=10):
    return slice(margin, shape[0] - margin), slice(margin, shape[1] - margin)


# ============================================================== closed forms on synthetic terrain
@pytest.fixture(scope="module")
def tilted_plane():
    """A plane rising 20 degrees eastward (facing the sensor) seen at 35 degrees incidence."""
    alpha = math.radians(20.0)
    dem = synthetic_dem(lambda x: 1000.0 + math.tan(alpha) * x)
    return alpha, simulate(dem, size=(150, 150), options=SimulationOptions(texture_db=0.0))


def _local_incidence(result, alpha):
    """Per pixel: exact angle between the line of sight and the plane's normal (radians)."""
    model, lonlat = result.reference_model, result.arrays["ground_truth_lonlat"]
    rows = np.broadcast_to(np.arange(model.rows)[:, None], (model.rows, model.cols))
    x = ellipsoid.llh_to_ecef(lonlat[0], lonlat[1], result.arrays["ground_truth"][3])
    los = model.orbit.position(model.row_to_time(rows)) - x
    lon, lat = np.radians(lonlat[0]), np.radians(lonlat[1])
    east = np.stack([-np.sin(lon), np.cos(lon), np.zeros_like(lon)], -1)
    up = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)
    normal = (up - math.tan(alpha) * east) / math.hypot(1.0, math.tan(alpha))  # the plane rises eastward
    cos = np.einsum("...i,...i->...", normal, los) / np.linalg.norm(los, axis=-1)
    return np.arccos(cos), x


def test_foreshortening_on_tilted_plane_matches_closed_form(tilted_plane):
    """Ground extent per range cell on a plane: slant spacing / sin(local incidence), within 1 %."""
    alpha, result = tilted_plane
    model = result.reference_model
    theta_loc, x = _local_incidence(result, alpha)
    box = interior(theta_loc.shape)
    expected = model.sample_spacing_m / np.sin(theta_loc[box])  # along the slope, per range cell
    assert np.degrees(np.median(theta_loc[box])) == pytest.approx(15.0, abs=1.0)  # 35 - 20 degrees
    # (a) geometry of the ground truth: distance between the ground points of neighbouring columns,
    #     against the closed form halfway between them
    along_slope = np.linalg.norm(np.diff(x, axis=1), axis=-1)[box]
    per_cell = model.sample_spacing_m / np.sin(theta_loc)
    midway = 0.5 * (per_cell[:, :-1] + per_cell[:, 1:])[box]
    assert np.abs(along_slope / midway - 1.0).max() < 0.01
    horizontal = along_slope * math.cos(alpha)  # ground extent: delta_r cos(alpha) / sin(theta - alpha)
    assert np.abs(horizontal / (midway * math.cos(alpha)) - 1.0).max() < 0.01
    # (b) the rendering: facet surface area summed into each pixel / along-track ground spacing
    az_ground = np.median(np.linalg.norm(np.diff(x, axis=0), axis=-1))
    extent = result.arrays["reference"]["area_m2"][box] / az_ground
    assert np.mean(extent) / np.mean(expected) == pytest.approx(1.0, abs=0.01)
    # foreshortening brightens: beta0 of the plane over beta0 of flat ground at the same range
    assert np.all(result.arrays["reference"]["layover"] == 0)


@pytest.fixture(scope="module")
def ridge():
    """A ridge along track: 30-degree fore-slope, crest 200 m up at x = 0, 60-degree back slope."""
    def profile(x):
        return 1000.0 + np.where(x < 0, 200.0 * np.clip(1 + x * math.tan(math.radians(30)) / 200.0, 0, 1),
                                 200.0 * np.clip(1 - x * math.tan(math.radians(60)) / 200.0, 0, 1))
    dem = synthetic_dem(profile, spacing_m=2.5)
    return simulate(dem, incidence=55.0, other=35.0, size=(80, 300),
                    options=SimulationOptions(oversampling=4, texture_db=0.0))


def test_ridge_shadow_covers_exactly_the_analytic_cells(ridge):
    """Shadow from the crest's slant range to where the grazing ray through the crest meets the
    ground behind it: that ray stays in the crest's zero-Doppler plane, so the shadow is
    |E - Y| metres of range long (P, Y, E collinear)."""
    model = ridge.reference_model
    rows = np.arange(model.rows, dtype=float)
    col_crest, crest, crest_rows = line_in_image(model, 0.0, 1200.0, rows)
    sensor = model.orbit.position(model.row_to_time(crest_rows))
    ray = (crest - sensor) / np.linalg.norm(crest - sensor, axis=-1, keepdims=True)
    s = 200.0 / np.einsum("ij,ij->i", ray, -crest / np.linalg.norm(crest, axis=-1, keepdims=True))
    for _ in range(5):  # Newton on the height along the ray: where it meets the 1000 m ground
        h = ellipsoid.ecef_to_llh(crest + s[:, None] * ray)[2]
        s -= (h - 1000.0) / -np.cos(np.radians(55.0))
    col_end = col_crest + np.interp(rows, crest_rows, s) / model.sample_spacing_m
    cols = np.arange(model.cols)[None, :]
    inside = (cols > col_crest[:, None] + 0.3) & (cols < col_end[:, None] - 0.3)
    outside = (cols < col_crest[:, None] - 0.3) | (cols > col_end[:, None] + 0.3)
    shadow = ridge.arrays["reference"]["shadow"]
    assert inside.sum() > 150 * model.rows * 0.9  # a long shadow: ~ 200 m / cos(55 deg) / 2 m
    assert shadow[inside].all() and not shadow[outside].any()
    lengths = shadow.sum(axis=1)
    assert np.abs(lengths - (col_end - col_crest)).max() <= 1.0
    assert not ridge.arrays["reference"]["layover"].any()
    truth = ridge.arrays["ground_truth"]
    assert np.all(truth[5][inside] == 1) and np.all(truth[2][inside] == 0) and np.isnan(truth[3][inside]).all()


@pytest.mark.parametrize("slope_deg, steeper", [(42.27, True), (27.76, False)])
def test_fore_slopes_steeper_than_incidence_are_layover(slope_deg, steeper):
    """A ramp facing the sensor: steeper than the 35-degree incidence, its top comes back in range
    before its foot and every cell between is layover; gentler, nothing is."""
    length = 220.0 if steeper else 380.0  # 200 m rise over these lengths gives the slope
    assert math.degrees(math.atan(200.0 / length)) == pytest.approx(slope_deg, abs=0.01)
    dem = synthetic_dem(ramp(1000.0, 200.0, 0.0, length), spacing_m=2.5)
    result = simulate(dem, size=(80, 300), options=SimulationOptions(oversampling=4, texture_db=0.0))
    model = result.reference_model
    rows = np.arange(model.rows, dtype=float)
    col_foot = line_in_image(model, 0.0, 1000.0, rows)[0]
    col_top = line_in_image(model, length, 1200.0, rows)[0]
    layover = result.arrays["reference"]["layover"]
    if not steeper:
        assert (col_top > col_foot).all() and not layover.any()
        assert np.nanmean(result.arrays["ground_truth"][2]) > 0.5
        return
    cols = np.arange(model.cols)[None, :]
    inside = (cols > col_top[:, None] + 0.3) & (cols < col_foot[:, None] - 0.3)
    outside = (cols < col_top[:, None] - 0.3) | (cols > col_foot[:, None] + 0.3)
    assert inside.sum() > 15 * model.rows  # (220 sin 35 - 200 cos 35) m = 37 m of range
    assert layover[inside].all() and not layover[outside].any()
    assert np.abs(layover.sum(axis=1) - (col_foot - col_top)).max() <= 1.0
    assert np.all(result.arrays["ground_truth"][2][layover] == 0)


# ============================================================== ground truth is geometry
@pytest.fixture(scope="module")
def alpine_pairs(shared_data):
    dem = str(shared_data / "dem" / "hintereisferner_srtm3.tif")
    same = simulate_pair(dem, FlightDesign(pixel_spacing_m=5.0, rows=300, cols=300), return_arrays=True)
    opposite = simulate_pair(dem, FlightDesign(pixel_spacing_m=5.0, rows=300, cols=300, opposite_side=True,
                                               secondary_incidence_deg=40.0, heading_deg=30.0),
                             return_arrays=True)
    return {"same side 35/55": same, "opposite side 35/40": opposite}


@pytest.mark.parametrize("name", ["same side 35/55", "opposite side 35/40"])
def test_triangulating_the_ground_truth_reproduces_its_heights(alpine_pairs, name):
    result = alpine_pairs[name]
    truth = result.arrays["ground_truth"]
    valid = truth[2] == 1
    assert valid.mean() > 0.3
    rows, cols = np.nonzero(valid)
    lon, lat, h, residual = triangulate(result.reference_model, rows, cols, result.secondary_model,
                                        truth[0][valid], truth[1][valid])
    assert np.median(np.abs(h - truth[3][valid])) < 0.05
    assert np.percentile(np.abs(h - truth[3][valid]), 99) < 0.05
    assert np.median(residual) < 0.01
    # the truth points lie on the DEM, and project exactly into the secondary image
    lonlat, dem_h = result.arrays["ground_truth_lonlat"], result.arrays["dem_height_at_truth"]
    assert np.median(np.abs(dem_h[valid] - truth[3][valid])) < 0.05
    r2, c2 = result.secondary_model.geo2rdr(lonlat[0][valid], lonlat[1][valid], truth[3][valid].astype(float))
    assert np.median(np.hypot(r2 - truth[0][valid], c2 - truth[1][valid])) < 1e-3


def test_truth_bands_agree_with_the_flags(alpine_pairs):
    result = alpine_pairs["same side 35/55"]
    truth, ref = result.arrays["ground_truth"], result.arrays["reference"]
    valid = truth[2] == 1
    assert set(np.unique(truth[2])) <= {0.0, 1.0}
    assert np.isnan(truth[0][~valid]).all() and np.isfinite(truth[0][valid]).all()
    assert not (valid & ((truth[4] == 1) | (truth[5] == 1))).any()
    assert np.array_equal(np.isnan(truth[4]), ~ref["seen"])
    assert result.stats["valid_fraction"] == pytest.approx(valid.sum() / ref["seen"].sum())


# ============================================================== speckle
@pytest.fixture(scope="module")
def flat_pair():
    dem = synthetic_dem(lambda x: np.full_like(x, 500.0))
    return simulate(dem, size=(200, 200), looks=4, seed=3, options=SimulationOptions(texture_db=0.0))


def test_flat_uniform_ground_has_looks_look_speckle(flat_pair):
    looks = 4.0
    ref = flat_pair.arrays["reference"]
    # a strip 20 range cells wide: incidence (so sigma0) changes by under 2 % across it
    box = (slice(10, 190), slice(90, 110))
    intensity, expected = ref["amplitude"][box].astype(float) ** 2, ref["expected_intensity"][box]
    assert expected.std() / expected.mean() < 0.02
    assert intensity.mean() / expected.mean() == pytest.approx(1.0, abs=0.05)
    assert intensity.var() / intensity.mean() ** 2 == pytest.approx(1.0 / looks, rel=0.05)
    # the whole image, each pixel divided by its speckle-free value: mean 1, variance 1/L
    box = interior(ref["amplitude"].shape)
    ratio = ref["amplitude"][box].astype(float) ** 2 / ref["expected_intensity"][box]
    assert ratio.mean() == pytest.approx(1.0, abs=0.01) and ratio.var() == pytest.approx(1.0 / looks, rel=0.05)
    # flat ground reads beta0 = sigma0(theta) / sin(theta) of Muhleman's law, plus the noise floor
    theta = math.radians(35.0)
    sigma0 = 0.0133 * math.cos(theta) / (math.sin(theta) + 0.1 * math.cos(theta)) ** 3
    centre = ref["expected_intensity"][95:105, 95:105].mean()
    assert centre == pytest.approx(sigma0 / math.sin(theta) + 1e-3, rel=0.02)


def test_the_two_views_have_independent_speckle(flat_pair):
    truth = flat_pair.arrays["ground_truth"]
    ref, sec = flat_pair.arrays["reference"], flat_pair.arrays["secondary"]
    valid = truth[2] == 1
    r2 = np.clip(np.rint(truth[0][valid]).astype(int), 0, sec["amplitude"].shape[0] - 1)
    c2 = np.clip(np.rint(truth[1][valid]).astype(int), 0, sec["amplitude"].shape[1] - 1)
    s_ref = ref["amplitude"][valid].astype(float) ** 2 / ref["expected_intensity"][valid]
    s_sec = sec["amplitude"][r2, c2].astype(float) ** 2 / sec["expected_intensity"][r2, c2]
    assert valid.sum() > 10000
    assert abs(np.corrcoef(s_ref, s_sec)[0, 1]) < 0.03
    # while the ground texture is shared: with texture, the clean intensities correlate
    dem = synthetic_dem(lambda x: np.full_like(x, 500.0))
    textured = simulate(dem, size=(200, 200), seed=3)
    t_ref, t_sec = textured.arrays["reference"]["intensity"], textured.arrays["secondary"]["intensity"]
    assert np.corrcoef(t_ref[valid], t_sec[r2, c2])[0, 1] > 0.5


def _read(path):
    ds = gdal.Open(str(path))
    return ds.ReadAsArray(), ds.GetMetadata()


def _outputs(folder):
    folder.mkdir(exist_ok=True)
    return dict(reference_output=folder / "ref.tif", secondary_output=folder / "sec.tif",
                ground_truth_output=folder / "truth.tif")


def test_same_seed_gives_bit_identical_outputs(tmp_path):
    dem = synthetic_dem(ramp(1000.0, 150.0, -50.0, 200.0))
    design = FlightDesign(pixel_spacing_m=3.0, rows=64, cols=96)
    runs = [simulate_pair(dem, design, seed=seed, **_outputs(tmp_path / name))
            for name, seed in (("a", 11), ("b", 11), ("c", 12))]
    for key in ("ref.tif", "sec.tif", "truth.tif"):
        a, b, c = (_read(tmp_path / name / key)[0] for name in "abc")
        assert a.dtype == np.float32
        assert np.array_equal(a, b, equal_nan=True)
        if key != "truth.tif":
            assert not np.array_equal(a, c)
    assert runs[0].stats == runs[1].stats


# ============================================================== outputs, inputs, defaults
def test_outputs_carry_models_gcps_and_truth_metadata(tmp_path):
    """The default DEM (Jacksboro) with an automatic image size capped at 200 pixels."""
    out = _outputs(tmp_path)
    result = simulate_pair(None, FlightDesign(max_size=200), seed=1, **out)
    for model in (result.reference_model, result.secondary_model):
        assert model.rows <= 200 and model.cols <= 200 and model.rows % 2 == 1 and model.cols % 2 == 1
    for key, model in (("reference_output", result.reference_model), ("secondary_output", result.secondary_model)):
        assert read_sensor_model(out[key]).to_dict() == model.to_dict()
        assert out[key].with_suffix(".sensor.json").is_file()
        ds = gdal.Open(str(out[key]))
        assert ds.GetGCPCount() > 0 and ds.GetRasterBand(1).DataType == gdal.GDT_Float32
    bands, meta = _read(out["ground_truth_output"])
    assert bands.shape == (6, result.reference_model.rows, result.reference_model.cols)
    assert json.loads(meta[SENSOR_ITEM]) == result.reference_model.to_dict()
    assert json.loads(meta[SECONDARY_SENSOR_ITEM]) == result.secondary_model.to_dict()
    assert meta["SARSTEREO_REFERENCE_IMAGE"] == str(out["reference_output"])
    assert json.loads(meta["SARSTEREO_SIMULATION"])["seed"] == 1
    assert result.stats["valid_fraction"] > 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.sensor.json", "ref.tif", "sec.sensor.json",
                                                          "sec.tif", "truth.tif"]


def test_sensor_model_files_replace_the_flight_design(tmp_path):
    dem = synthetic_dem(ramp(1000.0, 150.0, -50.0, 200.0))
    design = FlightDesign(pixel_spacing_m=3.0, rows=64, cols=96, opposite_side=True)
    ref, sec = design.models(dem)
    (tmp_path / "ref.json").write_text(ref.to_json())
    (tmp_path / "sec.json").write_text(sec.to_json())
    by_design = simulate_pair(dem, design, seed=5, return_arrays=True)
    by_files = simulate_pair(dem, reference=str(tmp_path / "ref.json"), secondary=str(tmp_path / "sec.json"),
                             seed=5, return_arrays=True)
    assert np.array_equal(by_design.arrays["reference"]["amplitude"], by_files.arrays["reference"]["amplitude"])
    assert np.array_equal(by_design.arrays["ground_truth"], by_files.arrays["ground_truth"], equal_nan=True)


def test_progress_runs_to_one_and_cancel_writes_nothing(tmp_path):
    dem = synthetic_dem(ramp(1000.0, 150.0, -50.0, 200.0))
    design = FlightDesign(pixel_spacing_m=2.0, rows=200, cols=200)
    seen = []
    simulate_pair(dem, design, progress=seen.append, **_outputs(tmp_path / "done"))
    assert seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:])) and len(seen) > 3
    calls = []
    with pytest.raises(SimulationCanceled, match="cancel"):
        simulate_pair(dem, design, is_canceled=lambda: calls.append(1) or len(calls) > 3,
                      **_outputs(tmp_path / "canceled"))
    assert list((tmp_path / "canceled").iterdir()) == []


# ============================================================== bad input
def _geotiff(path, array, georeferenced=True):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[1], array.shape[0], 1, gdal.GDT_Float32)
    ds.GetRasterBand(1).WriteArray(array)
    if georeferenced:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(4326)
        ds.SetProjection(srs.ExportToWkt())
        ds.SetGeoTransform((10.8, 0.001, 0, 46.9, 0, -0.001))
    ds = None
    return str(path)


def _assert_actionable(error, *words):
    text = str(error.value)
    assert "field '" in text, text
    for word in words:
        assert word in text, text


def test_unreadable_dem_names_the_file(tmp_path):
    bad = tmp_path / "not_a_dem.tif"
    bad.write_text("hello")
    with pytest.raises(RasterError) as error:
        simulate_pair(str(bad), FlightDesign(rows=32, cols=32))
    _assert_actionable(error, str(bad), "give")


def test_dem_without_georeferencing_is_refused(tmp_path):
    path = _geotiff(tmp_path / "bare.tif", np.full((20, 20), 100.0, np.float32), georeferenced=False)
    with pytest.raises(RasterError) as error:
        simulate_pair(path, FlightDesign(rows=32, cols=32))
    _assert_actionable(error, path, "not georeferenced", "assign")


def test_all_nan_dem_is_refused(tmp_path):
    path = _geotiff(tmp_path / "nan.tif", np.full((20, 20), np.nan, np.float32))
    with pytest.raises(RasterError) as error:
        simulate_pair(path, FlightDesign(rows=32, cols=32))
    _assert_actionable(error, path, "no valid height")


def test_implausible_heights_are_refused(tmp_path):
    path = _geotiff(tmp_path / "feet.tif", np.full((20, 20), 32767.0, np.float32))
    with pytest.raises(RasterError) as error:
        simulate_pair(path, FlightDesign(rows=32, cols=32))
    _assert_actionable(error, path, "nodata")


def test_flight_that_misses_the_dem_is_refused(tmp_path):
    dem = synthetic_dem(ramp(1000.0, 150.0, -50.0, 200.0))
    far = dict(center_lon=12.0, center_lat=46.5, center_h=1000.0, heading_deg=0.0, altitude_m=8000.0,
               rows=64, cols=64)
    ref, sec = level_flight_model(incidence_deg=35.0, **far), level_flight_model(incidence_deg=55.0, **far)
    (tmp_path / "far.json").write_text(ref.to_json())
    with pytest.raises(GeometryError) as error:
        simulate_pair(dem, reference=str(tmp_path / "far.json"), secondary=sec)
    _assert_actionable(error, "far.json", "does not overlap the DEM", "synthetic DEM")


@pytest.mark.parametrize("field, value, words", [
    ("reference_incidence_deg", 85.0, ("85.0 degrees", "choose")),
    ("secondary_incidence_deg", 5.0, ("5.0 degrees", "choose")),
    ("altitude_m", 1050.0, ("highest terrain", "fly")),
    ("look_side", "up", ("'left' or 'right'",)),
])
def test_bad_flight_design_names_the_field(field, value, words):
    dem = synthetic_dem(ramp(1000.0, 150.0, -50.0, 200.0))
    with pytest.raises(GeometryError) as error:
        simulate_pair(dem, FlightDesign(rows=32, cols=32, **{field: value}))
    _assert_actionable(error, f"field '{field}'", *words)


def test_errors_share_the_root_exception():
    assert issubclass(SimulationCanceled, SarStereoError) and issubclass(GeometryError, ValueError)
