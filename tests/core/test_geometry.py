"""Range/Doppler geometry: real UAVSAR data against isce3, and closed forms on designed flights.

Ordered as the geometry is built: orbit -> rdr2geo/geo2rdr -> DEM intersection -> stereo.
"""

import numpy as np
import pytest
from osgeo import gdal, osr

from sar_stereo_plugin.core import (
    GeometryError,
    SensorModel,
    ellipsoid,
    height_sensitivity,
    intersection_angle,
    read_sensor_model,
    triangulate,
)
from sar_stereo_plugin.core.dem import Dem
from sar_stereo_plugin.core.flight import level_flight_model
from sar_stereo_plugin.core.orbit import Orbit

CENTRE = dict(center_lon=10.8, center_lat=46.8, center_h=2500.0)
SCENE = dict(CENTRE, altitude_m=8000.0, rows=400, cols=400)


def _flight(incidence, heading=20.0, **kw):
    return level_flight_model(incidence_deg=incidence, heading_deg=heading, **{**SCENE, **kw})


def _with_doppler(model, hz):
    doc = model.to_dict()
    doc["doppler_centroid_hz"] = hz
    return SensorModel.from_json(doc, source=f"squinted {hz} Hz")


@pytest.fixture(scope="module")
def pairs(stereo_models):
    """Reference/secondary pairs: name -> (ref, sec, parallel tracks?)."""
    ref, sec = stereo_models
    return {
        "same side 35/55": (ref, sec, True),
        "opposite side, reverse heading": (ref, _flight(55.0, heading=200.0), True),
        "opposite side, left looking": (ref, _flight(40.0, look_side="left", range_spacing_m=2.0), True),
        "squinted 35/50": (_with_doppler(ref, 500.0), _with_doppler(_flight(50.0), -300.0), True),
        "crossing tracks": (ref, _flight(45.0, heading=110.0), False),
    }


def _scene_points(model, n=400, seed=0):
    """Reference pixels spread over the image with heights between 1500 and 3500 m."""
    rng = np.random.default_rng(seed)
    rows = rng.uniform(0, model.rows - 1, n)
    cols = rng.uniform(0, model.cols - 1, n)
    return rows, cols, rng.uniform(1500.0, 3500.0, n)


def _distance_m(lon1, lat1, h1, lon2, lat2, h2):
    return np.linalg.norm(ellipsoid.llh_to_ecef(lon1, lat1, h1) - ellipsoid.llh_to_ecef(lon2, lat2, h2), axis=-1)


# ---------------------------------------------------------------- orbit
def _circle(t, radius=7071e3, speed=7500.0, inclination=98.0):
    """A circular polar-ish orbit: exact positions and velocities."""
    w, inc = speed / radius, np.radians(inclination)
    a = w * t
    p = radius * np.stack([np.cos(a), np.sin(a) * np.cos(inc), np.sin(a) * np.sin(inc)], axis=-1)
    v = radius * w * np.stack([-np.sin(a), np.cos(a) * np.cos(inc), np.cos(a) * np.sin(inc)], axis=-1)
    return p, v


def _turn(t, radius=5000.0, speed=200.0, climb=5.0):
    """An aircraft in a climbing 5 km turn above Winnipeg (ECEF offsets from a local origin)."""
    w = speed / radius
    local = np.stack([radius * np.cos(w * t), radius * np.sin(w * t), 3000.0 + climb * t], axis=-1)
    dlocal = np.stack([-speed * np.sin(w * t), speed * np.cos(w * t), np.full_like(t, climb)], axis=-1)
    origin = ellipsoid.llh_to_ecef(-97.1, 49.9, 0.0)
    rot = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]  # any fixed rotation
    return origin + local @ rot.T, dlocal @ rot.T


@pytest.mark.parametrize("trajectory, step_s", [(_circle, 10.0), (_turn, 1.0)])
def test_hermite_orbit_reproduces_smooth_trajectory(trajectory, step_s):
    knots = np.arange(0.0, 200.0 + step_s / 2, step_s)
    orbit = Orbit(knots, *trajectory(knots))
    t = np.random.default_rng(0).uniform(0.0, 200.0, 5000)
    p_true, v_true = trajectory(t)
    assert np.linalg.norm(orbit.position(t) - p_true, axis=-1).max() < 1e-3  # < 1 mm
    assert np.linalg.norm(orbit.velocity(t) - v_true, axis=-1).max() < 1e-3  # < 1 mm/s
    assert np.abs(orbit.position(knots) - trajectory(knots)[0]).max() < 1e-6  # knots are honoured


def test_orbit_refuses_to_extrapolate():
    knots = np.arange(0.0, 101.0, 10.0)
    orbit = Orbit(knots, *_circle(knots))
    for t in (-1e-6, 100.0 + 1e-6, np.array([50.0, 150.0]), np.array([[10.0, -5.0]])):
        for method in (orbit.position, orbit.velocity, orbit.state):
            with pytest.raises(GeometryError, match="outside the orbit"):
                method(t)
    assert np.isfinite(orbit.position(np.array([0.0, 100.0]))).all()  # the ends themselves are fine
    assert np.isnan(orbit.position(np.array([np.nan, 5.0]))[0]).all()  # NaN passes through as NaN


def test_model_refuses_rows_beyond_its_orbit(stereo_models):
    model = stereo_models[0]
    lo, hi = model.orbit.span
    beyond = (hi + 1.0 - model.first_line_time_s) / model.line_interval_s
    with pytest.raises(GeometryError):
        model.rdr2geo([0.0, beyond], [10.0, 10.0], height=2500.0)
    # a ground point seen (zero Doppler) before the orbit starts has no image position
    ahead = model.rdr2geo(0.0, 200.0, height=2500.0)
    lon, lat = ahead[0] - 0.3 * np.sin(np.radians(20.0)), ahead[1] - 0.3 * np.cos(np.radians(20.0))
    rows, cols = model.geo2rdr(lon, lat, 2500.0)
    assert np.isnan(rows) and np.isnan(cols)


# ---------------------------------------------------------------- real data: UAVSAR Winnipeg
@pytest.fixture(scope="module")
def winnipeg_model(winnipeg):
    return read_sensor_model(winnipeg / "winnipeg.h5")


def test_rdr2geo_on_dem_matches_isce3_golden(winnipeg, winnipeg_model):
    golden = [np.fromfile(winnipeg / "topo_winnipeg" / f"{c}.rdr", "<f8").reshape(250, 250) for c in "xyz"]
    rows, cols = np.mgrid[0:250, 0:250]
    lon, lat, h = winnipeg_model.rdr2geo(rows, cols, dem=winnipeg / "winnipeg_dem.tif")
    assert np.isfinite(lon).all() and np.isfinite(h).all()  # every pixel lands on the DEM
    # isce3's own acceptance: mean |difference| <= 1e-5 degree and 0.15 m (we reach ~2e-6, 0.09 m)
    assert np.mean(np.abs(lon - golden[0])) <= 1e-5
    assert np.mean(np.abs(lat - golden[1])) <= 1e-5
    assert np.mean(np.abs(h - golden[2])) <= 0.15
    assert np.max(np.abs(lon - golden[0])) <= 1e-4 and np.max(np.abs(lat - golden[1])) <= 1e-4
    back = winnipeg_model.geo2rdr(lon, lat, h)
    assert np.abs(back[0] - rows).max() <= 1e-6 and np.abs(back[1] - cols).max() <= 1e-6


@pytest.mark.parametrize("height", [-100.0, 0.0, 250.0, 3000.0])
def test_winnipeg_geo2rdr_inverts_rdr2geo(winnipeg_model, height):
    rows, cols = np.mgrid[0:250:0.5, 0:250:0.5]  # the whole image, between pixel centres too
    lon, lat, h = winnipeg_model.rdr2geo(rows, cols, height=height)
    assert np.isfinite(lon).all() and np.all(h == height)
    back_rows, back_cols = winnipeg_model.geo2rdr(lon, lat, h)
    assert np.abs(back_rows - rows).max() <= 1e-6
    assert np.abs(back_cols - cols).max() <= 1e-6


# ---------------------------------------------------------------- designed flights
@pytest.mark.parametrize("which", ["same side 35/55", "opposite side, left looking", "squinted 35/50"])
def test_synthetic_geo2rdr_inverts_rdr2geo(pairs, which):
    for model in pairs[which][:2]:
        rows, cols = np.mgrid[0:400:7.5, 0:400:7.5]
        for height in (1500.0, 2500.0, 4000.0):
            lon, lat, h = model.rdr2geo(rows, cols, height=height)
            assert np.isfinite(lon).all()
            back_rows, back_cols = model.geo2rdr(lon, lat, h)
            assert np.abs(back_rows - rows).max() <= 1e-6
            assert np.abs(back_cols - cols).max() <= 1e-6


def test_spaceborne_geometry_round_trip():
    # 700 km up at 7.5 km/s, ranges of ~850 km: the same code must hold at satellite scale
    model = level_flight_model(10.8, 46.8, 500.0, -12.0, 700e3, 35.0, speed_m_s=7500.0,
                               range_spacing_m=5.0, azimuth_spacing_m=5.0, rows=400, cols=400)
    rows, cols = np.mgrid[0:400:10.0, 0:400:10.0]
    lon, lat, h = model.rdr2geo(rows, cols, height=500.0)
    back_rows, back_cols = model.geo2rdr(lon, lat, h)
    assert np.abs(back_rows - rows).max() <= 1e-6 and np.abs(back_cols - cols).max() <= 1e-6


def test_rdr2geo_point_satisfies_range_and_doppler(pairs):
    # independent check of the defining equations, squint included
    model = pairs["squinted 35/50"][0]
    rows, cols, heights = _scene_points(model, 200)
    lon, lat, h = model.rdr2geo(rows, cols, height=heights)
    x = ellipsoid.llh_to_ecef(lon, lat, h)
    t = model.row_to_time(rows)
    p, v = model.orbit.position(t), model.orbit.velocity(t)
    d = x - p
    rng = np.linalg.norm(d, axis=-1)
    assert np.abs(rng - model.col_to_range(cols)).max() < 1e-6
    doppler_hz = 2.0 * np.sum(v * d, axis=-1) / (model.wavelength_m * rng)
    assert np.abs(doppler_hz - 500.0).max() < 1e-6
    assert np.abs(ellipsoid.ecef_to_llh(x)[2] - heights).max() < 1e-6


def test_look_side_puts_the_scene_on_the_right_side(stereo_models):
    ref = stereo_models[0]  # heading 20 deg, right looking: the scene lies to the east-south-east
    left = _with_look_side(ref, "left")
    lon_r, lon_l = ref.rdr2geo(200, 200, 2500.0)[0], left.rdr2geo(200, 200, 2500.0)[0]
    track_lon = np.degrees(np.arctan2(*ref.orbit.position(ref.row_to_time(200))[[1, 0]]))
    assert lon_r > track_lon > lon_l


def _with_look_side(model, side):
    doc = model.to_dict()
    doc["look_side"] = side
    return SensorModel.from_json(doc)


# ---------------------------------------------------------------- DEM intersection
def _write_dem(path, lon0, lat0, nx, ny, step, heights_fn, nodata=None, hole=None):
    lon = lon0 + (np.arange(nx) + 0.5) * step
    lat = lat0 - (np.arange(ny) + 0.5) * step
    heights = heights_fn(lon[None, :], lat[:, None]).astype(np.float32)
    if hole is not None:
        heights[hole] = nodata
    ds = gdal.GetDriverByName("GTiff").Create(str(path), nx, ny, 1, gdal.GDT_Float32)
    ds.SetGeoTransform((lon0, step, 0.0, lat0, 0.0, -step))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    band.WriteArray(heights)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    ds = None
    return path


def _plane(lon, lat):
    """A tilted plane in (lon, lat): bilinear interpolation reproduces it exactly."""
    return 2500.0 + 3000.0 * (lon - 10.8) + 2000.0 * (lat - 46.8)


def test_rdr2geo_on_planar_dem_and_off_the_edge(tmp_path, stereo_models):
    model = stereo_models[0]
    rows, cols = np.mgrid[0:400:8.0, 0:400:8.0]
    lon_flat = model.rdr2geo(rows, cols, height=2500.0)[0]
    edge = float(np.median(lon_flat))  # the DEM ends halfway across the image
    nx = int(round((edge - 10.7) / 2e-4))
    dem = _write_dem(tmp_path / "plane.tif", 10.7, 46.9, nx, 1000, 2e-4, _plane)
    lon, lat, h = model.rdr2geo(rows, cols, dem=dem)
    on = np.isfinite(h)
    assert np.array_equal(on, np.isfinite(lon)) and np.array_equal(on, np.isfinite(lat))
    # lands on the surface (the outer half pixel of a DEM holds its edge value, not the plane)
    inner = on & (lon < 10.7 + (nx - 1) * 2e-4)
    assert np.abs(h[inner] - _plane(lon[inner], lat[inner])).max() <= 1e-3
    back_rows, back_cols = model.geo2rdr(lon[on], lat[on], h[on])
    assert np.abs(back_rows - rows[on]).max() <= 1e-6 and np.abs(back_cols - cols[on]).max() <= 1e-6
    # the plane differs from 2500 m by < 60 m here, moving points < 90 m in longitude: far from the
    # edge the outcome is certain
    margin = 90.0 / (111320.0 * np.cos(np.radians(46.8)))
    assert np.all(on[lon_flat < edge - margin]) and not np.any(on[lon_flat > edge + margin])
    assert 0.3 < on.mean() < 0.7
    same = model.rdr2geo(rows, cols, dem=Dem(dem))  # a loaded Dem works as well as a path
    np.testing.assert_array_equal(same[2], h)


def test_rdr2geo_nodata_gives_nan(tmp_path, stereo_models):
    model = stereo_models[0]
    dem = _write_dem(tmp_path / "hole.tif", 10.7, 46.9, 1000, 1000, 2e-4, lambda lo, la: 2500.0 + 0 * lo * la,
                     nodata=-9999.0, hole=(slice(None), slice(0, 500)))  # west half missing
    rows, cols = np.mgrid[0:400:20.0, 0:400:20.0]
    lon, lat, h = model.rdr2geo(rows, cols, dem=dem)
    flat_lon = model.rdr2geo(rows, cols, height=2500.0)[0]
    on = np.isfinite(h)
    west_edge = 10.7 + 500 * 2e-4
    assert not on[flat_lon < west_edge - 1e-3].any() and on[flat_lon > west_edge + 1e-3].all()
    assert np.abs(h[on] - 2500.0).max() <= 1e-3


@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 3, 4)])
def test_shapes_are_preserved(tmp_path, stereo_models, shape):
    ref, sec = stereo_models
    n = int(np.prod(shape))
    rng = np.random.default_rng(3)
    rows = rng.uniform(0, 399, n).reshape(shape)
    cols = rng.uniform(0, 399, n).reshape(shape)
    heights = rng.uniform(2000, 3000, n).reshape(shape)
    lon, lat, h = ref.rdr2geo(rows, cols, height=heights)
    assert np.shape(lon) == np.shape(lat) == np.shape(h) == shape
    flat = ref.rdr2geo(np.ravel(rows), np.ravel(cols), height=np.ravel(heights))
    np.testing.assert_array_equal(np.ravel(lon), flat[0])
    r2, c2 = sec.geo2rdr(lon, lat, h)
    assert np.shape(r2) == np.shape(c2) == shape
    out = triangulate(ref, rows, cols, sec, r2, c2)
    assert all(np.shape(o) == shape for o in out)
    np.testing.assert_allclose(out[2], heights, atol=1e-3)
    assert np.shape(intersection_angle(ref, sec, lon, lat, h)) == shape
    assert np.shape(height_sensitivity(ref, sec, lon, lat, h)) == shape
    dem = _write_dem(tmp_path / "flat.tif", 10.7, 46.9, 1000, 1000, 2e-4, lambda lo, la: 2500.0 + 0 * lo * la)
    assert all(np.shape(o) == shape for o in ref.rdr2geo(rows, cols, dem=dem))


def test_height_broadcasts_against_pixels(stereo_models):
    model = stereo_models[0]
    lon, lat, h = model.rdr2geo(np.arange(4.0)[None, :], 100.0, height=np.array([[2000.0], [3000.0]]))
    assert lon.shape == (2, 4) and np.all(h[1] == 3000.0)


# ---------------------------------------------------------------- stereo
@pytest.mark.parametrize("name", ["same side 35/55", "opposite side, reverse heading",
                                  "opposite side, left looking", "squinted 35/50", "crossing tracks"])
def test_triangulate_recovers_exact_correspondences(pairs, name):
    ref, sec, _ = pairs[name]
    rows, cols, heights = _scene_points(ref)
    lon, lat, h = ref.rdr2geo(rows, cols, height=heights)
    sec_rows, sec_cols = sec.geo2rdr(lon, lat, h)
    seen = np.isfinite(sec_rows)
    assert seen.mean() > 0.5  # crossing tracks see only part of the scene at zero Doppler
    t_lon, t_lat, t_h, residual = triangulate(ref, rows, cols, sec, sec_rows, sec_cols)
    assert np.array_equal(np.isfinite(t_h), seen)  # unseen -> NaN, never a guess
    assert np.abs(t_h[seen] - heights[seen]).max() < 1e-3  # 1 mm
    assert _distance_m(t_lon[seen], t_lat[seen], t_h[seen], lon[seen], lat[seen], h[seen]).max() < 1e-3
    assert residual[seen].max() < 1e-3


@pytest.mark.parametrize("name", ["same side 35/55", "opposite side, reverse heading",
                                  "opposite side, left looking", "squinted 35/50"])
def test_azimuth_mismatch_raises_residual_by_closed_form(pairs, name):
    # Parallel tracks: the Doppler planes of both images are parallel; one pixel (1 m) of azimuth
    # mismatch puts them 1 m apart and the least-squares point sits halfway: two residuals of
    # 0.5 m, norm 1/sqrt(2) m. Range mismatch, by contrast, is absorbed as a height change.
    ref, sec, _ = pairs[name]
    rows, cols, heights = _scene_points(ref, 100)
    lon, lat, h = ref.rdr2geo(rows, cols, height=heights)
    sec_rows, sec_cols = sec.geo2rdr(lon, lat, h)
    spacing = sec.line_interval_s * np.linalg.norm(sec.orbit.velocity(sec.row_to_time(sec_rows)), axis=-1)
    bumped = sec_rows.copy()
    bumped[7] += 1.0  # one bad match among good ones
    res = triangulate(ref, rows, cols, sec, bumped, sec_cols)[3]
    np.testing.assert_allclose(res[7], spacing[7] / np.sqrt(2.0), rtol=0.01)
    assert np.delete(res, 7).max() < 1e-3  # the others are untouched
    res_all = triangulate(ref, rows, cols, sec, sec_rows + 1.0, sec_cols)[3]
    np.testing.assert_allclose(res_all, spacing / np.sqrt(2.0), rtol=0.01)


def test_azimuth_mismatch_on_crossing_tracks(pairs):
    ref, sec, _ = pairs["crossing tracks"]
    rows, cols, heights = _scene_points(ref, 100)
    lon, lat, h = ref.rdr2geo(rows, cols, height=heights)
    sec_rows, sec_cols = sec.geo2rdr(lon, lat, h)
    seen = np.isfinite(sec_rows)
    res = triangulate(ref, rows[seen], cols[seen], sec, sec_rows[seen] + 1.0, sec_cols[seen])[3]
    assert res.min() > 0.1  # 1 m of azimuth error shows as > 10 cm of misclosure


def test_range_mismatch_moves_height_by_the_sensitivity(pairs):
    ref, sec, _ = pairs["same side 35/55"]
    rows, cols, heights = _scene_points(ref, 100)
    lon, lat, h = ref.rdr2geo(rows, cols, height=heights)
    sec_rows, sec_cols = sec.geo2rdr(lon, lat, h)
    _, _, t_h, residual = triangulate(ref, rows, cols, sec, sec_rows, sec_cols + 1.0)
    assert residual.max() < 1e-3  # a range error cannot be seen as misclosure ...
    np.testing.assert_allclose(np.abs(t_h - heights), height_sensitivity(ref, sec, lon, lat, h), rtol=0.01)


def test_triangulate_nan_and_out_of_orbit_matches_give_nan(stereo_models):
    ref, sec = stereo_models
    out = triangulate(ref, [10.0, np.nan, 10.0, 200.0], [10.0, 5.0, 10.0, 200.0],
                      sec, [10.0, 10.0, 1e6, np.nan], [10.0, 10.0, 10.0, 200.0])
    assert np.isfinite([o[0] for o in out]).all()
    assert np.isnan(np.stack(out)[:, 1:]).all()


def _incidence(model, lon, lat, h):
    """Incidence angle (rad) and unit line of sight, from the ellipsoid normal at the target."""
    x = ellipsoid.llh_to_ecef(lon, lat, h)
    los = model.orbit.position(model.ecef_to_time_range(x)[0]) - x
    los /= np.linalg.norm(los, axis=-1, keepdims=True)
    lo, la = np.radians(lon), np.radians(lat)
    normal = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)
    return np.arccos(np.sum(los * normal, axis=-1)), los


def test_intersection_angle_closed_form(pairs):
    ref, same, _ = pairs["same side 35/55"]
    opposite = pairs["opposite side, reverse heading"][1]
    lon, lat, h = CENTRE["center_lon"], CENTRE["center_lat"], CENTRE["center_h"]
    # both flights were designed for 35 and 55 degrees incidence at the scene centre
    assert intersection_angle(ref, same, lon, lat, h) == pytest.approx(20.0, abs=1e-6)
    assert intersection_angle(ref, opposite, lon, lat, h) == pytest.approx(90.0, abs=1e-6)
    # everywhere: parallel tracks see a point in one vertical plane, so the convergence angle is
    # the difference (same side) or the sum (opposite sides) of the two incidence angles
    rows, cols, heights = _scene_points(ref, 200)
    lon, lat, h = ref.rdr2geo(rows, cols, height=heights)
    theta1 = _incidence(ref, lon, lat, h)[0]
    for sec, combine in ((same, lambda a, b: b - a), (opposite, lambda a, b: a + b)):
        expected = np.degrees(np.abs(combine(theta1, _incidence(sec, lon, lat, h)[0])))
        np.testing.assert_allclose(intersection_angle(ref, sec, lon, lat, h), expected, atol=1e-6)


def test_height_sensitivity_closed_form(pairs):
    # Hold the reference pixel; the target slides along the reference range circle, i.e. at
    # right angles to line of sight 1. Raising it by dh moves it ds = dh / sin(theta1) along that
    # tangent, which changes range 2 by ds * sin(convergence angle), convergence = theta2 - theta1
    # on the same side, theta1 + theta2 on opposite sides. So
    #     dh / (pixel of secondary range) = spacing2 * sin(theta1) / sin(convergence).
    # At the centre, 35/55 on one side and 1 m pixels: sin 35 / sin 20 = 1.6770 m per pixel.
    ref, same, _ = pairs["same side 35/55"]
    centre = CENTRE["center_lon"], CENTRE["center_lat"], CENTRE["center_h"]
    assert height_sensitivity(ref, same, *centre) == pytest.approx(
        np.sin(np.radians(35.0)) / np.sin(np.radians(20.0)), rel=1e-4)
    rows, cols, heights = _scene_points(ref, 200)
    lon, lat, h = ref.rdr2geo(rows, cols, height=heights)
    theta1 = _incidence(ref, lon, lat, h)[0]
    for name in ("same side 35/55", "opposite side, reverse heading", "opposite side, left looking"):
        sec = pairs[name][1]
        theta2 = _incidence(sec, lon, lat, h)[0]
        convergence = np.abs(theta2 - theta1) if name.startswith("same") else theta1 + theta2
        expected = sec.sample_spacing_m * np.sin(theta1) / np.sin(convergence)
        np.testing.assert_allclose(height_sensitivity(ref, sec, lon, lat, h), expected, rtol=1e-3)
