"""Elevation from matches: exactness from perfect matches over real Alpine relief, the gridding
statistics, hole filling, DEM evaluation figures and report, and bad inputs."""

import json

import numpy as np
import pytest
from osgeo import gdal
from pyproj import Transformer

from sar_stereo_plugin.core.elevation import (
    ElevationCanceled,
    ElevationSettings,
    fillable_gaps,
    generate_elevation,
    grid_points,
    nice_ceil,
    utm_crs,
)
from sar_stereo_plugin.core.errors import GeometryError, RasterError, SensorModelError
from sar_stereo_plugin.core.evaluate import dem_statistics, evaluate_dem, reference_on_grid
from sar_stereo_plugin.core.raster import write_geotiff


@pytest.fixture(scope="module")
def oetztal_truth(tmp_path_factory, shared_data):
    """Simulator ground truth (perfect matches) over the Oetztal SRTM DEM, 400 x 400 at 10 m."""
    from sar_stereo_plugin.core.flight import FlightDesign
    from sar_stereo_plugin.core.simulate import simulate_pair
    tmp = tmp_path_factory.mktemp("oetztal")
    dem = str(shared_data / "dem" / "oetztal_srtm3.tif")
    simulate_pair(dem, FlightDesign(rows=400, cols=400, pixel_spacing_m=10.0), seed=1,
                  ground_truth_output=str(tmp / "truth.tif"))
    return {"dem": dem, "truth": str(tmp / "truth.tif"), "tmp": tmp}


def _visible_area(truth_path, dem_path, reference_path):
    """DEM cells whose ground (on the reference DEM) the reference image sees neither in shadow
    nor in layover, and the secondary sees too (the simulator's validity): what stereo can map."""
    from sar_stereo_plugin.core.products import read_pair_models
    ref, _ = read_pair_models(truth_path)
    dem = gdal.Open(str(dem_path))
    heights = reference_on_grid(reference_path, dem)
    truth = gdal.Open(truth_path).ReadAsArray()
    gt = dem.GetGeoTransform()
    rows, cols = np.mgrid[0:dem.RasterYSize, 0:dem.RasterXSize]
    lon, lat = Transformer.from_crs(dem.GetProjection(), "EPSG:4326", always_xy=True).transform(
        gt[0] + (cols + 0.5) * gt[1], gt[3] + (rows + 0.5) * gt[5])
    r, c = (np.rint(a) for a in ref.geo2rdr(lon, lat, heights))
    inside = np.isfinite(r) & (r >= 0) & (r < ref.rows) & (c >= 0) & (c < ref.cols)
    area = np.zeros(inside.shape, bool)
    i, j = r[inside].astype(int), c[inside].astype(int)
    area[inside] = (truth[4][i, j] == 0) & (truth[5][i, j] == 0) & (truth[2][i, j] == 1)
    return area


def test_perfect_matches_reproduce_the_alpine_dem(oetztal_truth):
    """Only gridding error remains: median |error| <= 0.5 m, >= 95 % of the mappable area covered."""
    tmp = oetztal_truth["tmp"]
    result = generate_elevation(oetztal_truth["truth"], tmp / "dem.tif", count_output=tmp / "count.tif",
                                uncertainty_output=tmp / "unc.tif", reference_dem=oetztal_truth["dem"],
                                error_output=tmp / "err.tif", report=tmp / "report.json")
    assert result.crs == "EPSG:32632" and result.resolution_m == 20.0  # 10 m / sin(35 deg) -> 20 m
    report = json.loads((tmp / "report.json").read_text())
    assert report["median_abs_error_m"] <= 0.5
    assert report["fraction_within_m"]["5"] >= 0.97
    area = _visible_area(oetztal_truth["truth"], tmp / "dem.tif", oetztal_truth["dem"])
    dem = gdal.Open(str(tmp / "dem.tif")).ReadAsArray()
    assert area.sum() > 20000 and np.isfinite(dem[area]).mean() >= 0.95
    count = gdal.Open(str(tmp / "count.tif")).ReadAsArray()
    assert count.sum() == result.points and (count > 0).sum() == result.cells_with_points
    unc = gdal.Open(str(tmp / "unc.tif")).ReadAsArray()
    assert np.isfinite(unc[count > 0]).all() and np.nanmedian(unc) < 2.0
    error = gdal.Open(str(tmp / "err.tif")).ReadAsArray()
    assert np.nanmedian(np.abs(error)) == pytest.approx(report["median_abs_error_m"], abs=0.05)
    assert (tmp / "report.html").read_text().count("<img") == 1 and (tmp / "report.png").stat().st_size > 10000


def test_reference_in_another_crs_is_reprojected(oetztal_truth):
    tmp = oetztal_truth["tmp"]
    if not (tmp / "dem.tif").exists():
        generate_elevation(oetztal_truth["truth"], tmp / "dem.tif")
    utm = str(tmp / "reference_utm.tif")
    gdal.Warp(utm, oetztal_truth["dem"], dstSRS="EPSG:32632", xRes=10, yRes=10, resampleAlg="bilinear")
    geographic = evaluate_dem(tmp / "dem.tif", oetztal_truth["dem"])
    projected = evaluate_dem(tmp / "dem.tif", utm)
    # resampling a 90 m DEM into UTM changes its surface by ~0.5 m in steep terrain, without a shift
    assert projected["median_abs_error_m"] < geographic["median_abs_error_m"] + 0.6
    assert abs(projected["median_error_m"]) < 0.1
    assert projected["coverage"] == pytest.approx(geographic["coverage"], abs=0.02)


def test_grid_points_median_count_and_uncertainty():
    cell = np.array([0, 0, 0, 0, 2, 3, 3])
    h = np.array([10.0, 11.0, 12.0, 100.0, 5.0, 1.0, 3.0], np.float32)
    residual = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 0.1, 0.3], np.float32)
    dem, count, unc = grid_points(cell, h, residual, 5)
    np.testing.assert_allclose(dem, [11.5, np.nan, 5.0, 2.0, np.nan])  # the wild 100 m point does not move it
    np.testing.assert_array_equal(count, [4, 0, 1, 2, 0])
    assert unc[2] == pytest.approx(0.3)  # one point: its misclosure only
    # two points 2 m apart: IQR = 2 m -> s = 2 / 1.349, se = 1.2533 s / sqrt(2); misclosure 0.2 m
    assert unc[3] == pytest.approx(np.hypot(1.2533 * 2 / 1.349 / np.sqrt(2), 0.2), rel=1e-5)


def test_sloping_cells_are_not_biased_by_where_points_fall(tmp_path):
    """A plane sampled only in the north-east quarter of each cell still gives the plane's height
    at the centre (the median of raw heights would be 0.25 * cell * (slope_e + slope_n) too high)."""
    from sar_stereo_plugin.core.elevation import Grid
    grid = Grid(0.0, 100.0, 10.0, 10, 10, "")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 100, 20000), rng.uniform(0, 100, 20000)
    x, y = np.floor(x / 10) * 10 + 5 + (x % 5), np.floor(y / 10) * 10 + 5 + (y % 5)
    h = (0.3 * x + 0.5 * y).astype(np.float32)
    cell, east, north = grid.locate(x, y)
    raw = grid_points(cell, h, np.zeros_like(h), 100)[0].reshape(10, 10)
    cx, cy = np.meshgrid(np.arange(10) * 10 + 5.0, 100 - (np.arange(10) * 10 + 5.0))
    assert np.abs(raw - (0.3 * cx + 0.5 * cy)).mean() > 1.5
    slope_n, slope_e = (g.ravel() for g in np.gradient(raw.astype(np.float64), -10.0, 10.0))
    corrected = grid_points(cell, h - (slope_e[cell] * east + slope_n[cell] * north), np.zeros_like(h), 100)[0]
    off = np.abs(corrected.reshape(10, 10) - (0.3 * cx + 0.5 * cy))
    assert off.mean() < 0.05 and off.max() < 0.25  # what is left: the slope read off the noisy first grid


def test_gaps_narrower_than_the_fill_distance_are_filled_wide_nodata_stays():
    dem = np.ones((40, 40), np.float32)
    dem[5:7, 5:7] = np.nan  # 2 x 2 hole: every cell 1 cell from data
    dem[20:32, 20:32] = np.nan  # 12 x 12 hole: a disk of radius 3 fits, only its corners are filled
    dem[:, :3] = np.nan  # outside the scene (touches the border): stays
    dem[10:12, 3:15] = np.nan  # a stripe 2 cells wide reaching in from the outside: filled (bar its mouth)
    fill = fillable_gaps(dem, 3)
    assert fill[5:7, 5:7].all() and fill[10:12, 4:15].all() and not fill[:, :4].any()
    assert not fill[23:29, 23:29].any() and fill[20, 20] and fill[31, 31]
    assert not fill[np.isfinite(dem)].any()
    assert not fillable_gaps(dem, 0).any()
    # a stripe as wide as a disk of radius 3 (7 cells) is left alone
    wide = np.ones((40, 40), np.float32)
    wide[:, :3], wide[10:17, 3:15] = np.nan, np.nan
    assert not fillable_gaps(wide, 3)[10:17, 3:12].any()


def test_coverage_is_judged_on_all_the_imaged_ground_not_the_dem_grid(oetztal_truth, tmp_path):
    """A DEM cut to its western half keeps the same evaluated area, so its coverage halves; its
    error map covers the imaged ground, the cut DEM's cells in place."""
    tmp = oetztal_truth["tmp"]
    if not (tmp / "dem.tif").exists():
        generate_elevation(oetztal_truth["truth"], tmp / "dem.tif")
    full = evaluate_dem(tmp / "dem.tif", oetztal_truth["dem"], error_output=tmp_path / "err_full.tif")
    src = gdal.Open(str(tmp / "dem.tif"))
    gdal.Translate(str(tmp_path / "half.tif"), src, srcWin=[0, 0, src.RasterXSize // 2, src.RasterYSize])
    half = evaluate_dem(tmp_path / "half.tif", oetztal_truth["dem"], error_output=tmp_path / "err_half.tif")
    assert half["area_cells"] == full["area_cells"] > 20000
    assert 0.3 < half["coverage"] / full["coverage"] < 0.7, (half["coverage"], full["coverage"])
    err_full, err_half = (gdal.Open(str(tmp_path / f)) for f in ("err_full.tif", "err_half.tif"))
    (gf, gh), cell = (e.GetGeoTransform() for e in (err_full, err_half)), src.GetGeoTransform()[1]
    dc, dr = (gh[0] - gf[0]) / cell, (gf[3] - gh[3]) / cell
    assert dc == int(dc) and dr == int(dr)  # the same cells, on grids extended alike
    b = err_half.ReadAsArray()
    a = np.full(b.shape, np.nan, np.float32)
    full_err = err_full.ReadAsArray()
    rows, cols = np.nonzero(np.isfinite(b))
    a[rows, cols] = full_err[rows + int(dr), cols + int(dc)]
    assert rows.size > 0.3 * np.isfinite(full_err).sum() and np.array_equal(a[rows, cols], b[rows, cols])


def test_the_ground_across_the_track_is_not_imaged(oetztal_truth):
    """The range/Doppler equations map the ground mirrored across the track into the image too;
    geo2rdr(look_side_only=True) refuses it."""
    from sar_stereo_plugin.core import ellipsoid
    from sar_stereo_plugin.core.products import read_pair_models
    ref, _ = read_pair_models(oetztal_truth["truth"])
    lon, lat, h = ref.rdr2geo(np.array([200.0]), np.array([200.0]), height=2000.0)
    p = ellipsoid.llh_to_ecef(lon, lat, h)[0]
    t = ref.row_to_time(np.array([200.0]))
    s, v = ref.orbit.position(t)[0], ref.orbit.velocity(t)[0]
    n = np.cross(v, s) / np.linalg.norm(np.cross(v, s))  # normal of the plane of the track and the vertical
    mirrored = ellipsoid.ecef_to_llh(p - 2.0 * np.dot(p - s, n) * n)
    assert np.hypot(*(np.subtract(mirrored[:2], (lon[0], lat[0])))) > 0.05  # kilometres away
    r, c = ref.geo2rdr(*mirrored)
    assert abs(r - 200.0) < 0.01 and abs(c - 200.0) < 0.01  # seen at the same pixel
    assert np.isnan(ref.geo2rdr(*mirrored, look_side_only=True)).all()
    r, c = ref.geo2rdr(lon, lat, h, look_side_only=True)
    assert abs(r[0] - 200.0) < 0.01 and abs(c[0] - 200.0) < 0.01


def test_nice_resolution_and_utm_zone():
    assert [nice_ceil(v) for v in (0.7, 1.0, 2.3, 4.9, 8.72, 17.4, 26.0, 130.0)] == [1, 1, 2.5, 5, 10, 20, 50, 200]
    assert utm_crs(10.8, 46.8).to_epsg() == 32632 and utm_crs(-84.2, 36.4).to_epsg() == 32616
    assert utm_crs(-70.0, -33.0).to_epsg() == 32719


def test_dem_statistics_figures():
    error = np.array([[-3.0, -1.0, 0.5, 1.5], [2.5, 6.0, np.nan, 30.0]])
    area = np.ones_like(error, bool)
    area[0, 0] = False  # outside the imaged area: not counted at all
    stats = dem_statistics(error, area)
    e = np.array([-1.0, 0.5, 1.5, 2.5, 6.0, 30.0])
    assert stats["cells_evaluated"] == 6 and stats["area_cells"] == 7
    assert stats["coverage"] == pytest.approx(6 / 7)
    assert stats["median_abs_error_m"] == pytest.approx(2.0)
    assert stats["rmse_m"] == pytest.approx(np.sqrt(np.mean(e ** 2)))
    assert stats["nmad_m"] == pytest.approx(1.4826 * np.median(np.abs(e - 2.0)))
    assert stats["le90_m"] == pytest.approx(np.percentile(np.abs(e), 90))
    assert stats["fraction_within_m"] == {"1": 2 / 6, "2": 3 / 6, "5": 4 / 6, "10": 5 / 6, "20": 5 / 6}
    # blunders: further than 3 NMAD (3 x 1.4826 x 1.5 = 6.67 m) from the median error (2 m): only the 30 m
    assert stats["blunder_share"] == pytest.approx(1 / 6)


def test_certainty_weighted_median_per_cell():
    """Each cell's height is the median of its points weighted by certainty; equal weights give
    the plain median (the mean of the middle two for an even count)."""
    cell = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    h = np.array([10.0, 50.0, 11.0, 1.0, 2.0, 3.0, 4.0, 7.0])
    plain = grid_points(cell, h, np.zeros(8), 3)[0]
    assert list(plain) == [11.0, 2.5, 7.0]
    assert list(grid_points(cell, h, np.zeros(8), 3, np.ones(8))[0]) == [11.0, 2.5, 7.0]
    # one confident point outweighs two doubtful ones; in cell 1 the weights put the median on 4
    weights = np.array([0.1, 0.9, 0.1, 0.05, 0.05, 0.05, 0.9, 1.0])
    assert list(grid_points(cell, h, np.zeros(8), 3, weights)[0]) == [50.0, 4.0, 7.0]
    rng = np.random.default_rng(1)
    cell, h, w = rng.integers(0, 50, 5000), rng.normal(size=5000), rng.uniform(0.05, 1.0, 5000)
    fused = grid_points(cell, h, np.zeros(5000), 50, w)[0]
    for c in range(0, 50, 7):  # against the definition: the first height where half the weight is reached
        order = np.argsort(h[cell == c])
        hs, ws = h[cell == c][order], w[cell == c][order]
        assert fused[c] == pytest.approx(hs[np.searchsorted(np.cumsum(ws), 0.5 * ws.sum())], abs=1e-6)


def test_points_off_their_neighbourhood_are_found():
    """On a tilted plane with 1 m noise, a 40 m spike and a 3 x 3 cluster of cells 60 m off are
    flagged; the plane's own points are not, however steep (the plane's relief is not an outlier)."""
    from sar_stereo_plugin.core.fusion import disagreeing, window_plane
    rng = np.random.default_rng(2)
    rows, cols, res = 30, 40, 10.0
    rr, cc = np.mgrid[0:rows, 0:cols]
    plane = 1000.0 + 8.0 * cc - 3.0 * rr  # 0.8 and 0.3 m per metre
    cell = np.repeat(np.arange(rows * cols), 4)
    h = plane.ravel()[cell] + rng.normal(0.0, 1.0, cell.size)
    wrong = np.zeros(cell.size, bool)
    wrong[cell == 5 * cols + 5] = True  # a whole cell 40 m off
    cluster = ((rr >= 15) & (rr < 18) & (cc >= 20) & (cc < 23)).ravel()[cell]
    h = np.where(wrong, h + 40.0, np.where(cluster, h - 60.0, h))
    heights = grid_points(cell, h, np.zeros(cell.size), rows * cols)[0]
    fitted, spread = window_plane(np.asarray(heights, np.float64).reshape(rows, cols), res, 2)
    assert np.nanmedian(np.abs(fitted - plane)[3:-3, 3:-3]) < 1.0  # the robust plane follows the tilt
    assert np.nanmedian(spread[3:-3, 3:-3]) < 2.0  # roughness about it, not the 400 m of relief
    flagged = disagreeing(cell, h, np.asarray(heights, np.float64), (rows, cols), res, 4.0)
    assert flagged[wrong].all() and flagged[cluster].all()
    assert flagged[~wrong & ~cluster].mean() < 0.01


@pytest.fixture(scope="module")
def steep_pair(tmp_path_factory, shared_data):
    """A 256 x 256 pair over the Swiss Alps at 30/48 degrees: layover and shadow aplenty."""
    from sar_stereo_plugin.core.flight import FlightDesign
    from sar_stereo_plugin.core.simulate import simulate_pair
    tmp = tmp_path_factory.mktemp("steep_pair")
    paths = {"dem": str(shared_data / "dem" / "swiss_alps_46m.tif"), "reference": str(tmp / "ref.tif"),
             "secondary": str(tmp / "sec.tif"), "ground_truth": str(tmp / "gt.tif")}
    simulate_pair(paths["dem"], FlightDesign(heading_deg=60.0, reference_incidence_deg=30.0,
                                             secondary_incidence_deg=48.0, pixel_spacing_m=7.5, altitude_m=12000.0,
                                             rows=256, cols=256), seed=5, reference_output=paths["reference"],
                  secondary_output=paths["secondary"], ground_truth_output=paths["ground_truth"])
    return paths


def test_quality_classes_and_layover_masks(steep_pair, tmp_path):
    """POC matches over a steep pair, with the source DEM as prior DEM: matches in layover or shadow
    (known from the sensor models and that DEM) are dropped and counted, and the quality layer's
    classes are the ones named in fusion.QUALITY, counted in the result."""
    from sar_stereo_plugin.core.fusion import LAYOVER, MEASURED, QUALITY, SHADOW
    from sar_stereo_plugin.core.matchers.poc import PocMatcher
    from sar_stereo_plugin.core.matching import MatchSettings, match_pair
    from sar_stereo_plugin.core.products import read_pair_models
    from sar_stereo_plugin.core.terrain import terrain_masks
    paths = steep_pair
    matches = tmp_path / "matches.tif"
    match_pair(paths["reference"], paths["secondary"], matches, PocMatcher(),
               MatchSettings(128, 32, height_uncertainty_m=600.0, consistency_px=0.0))
    with_prior = generate_elevation(matches, tmp_path / "dem.tif", quality_output=tmp_path / "q.tif",
                                    count_output=tmp_path / "c.tif", prior_dem=paths["dem"])
    without = generate_elevation(matches, tmp_path / "dem0.tif")
    ref, sec = read_pair_models(matches)
    masks = terrain_masks(ref, paths["dem"]), terrain_masks(sec, paths["dem"])
    bands = gdal.Open(str(matches)).ReadAsArray()
    rows, cols = np.nonzero(np.isfinite(bands[0]) & (bands[2] >= PocMatcher.certainty_threshold))
    (lay_1, sha_1), (lay_2, sha_2) = masks[0].at(rows, cols), masks[1].at(bands[0][rows, cols],
                                                                          bands[1][rows, cols])
    assert with_prior.rejected["layover"] == int((lay_1 | lay_2).sum()) > 0
    assert with_prior.rejected["shadow"] == int(((sha_1 | sha_2) & ~(lay_1 | lay_2)).sum())
    assert with_prior.prior_dem == paths["dem"] and without.prior_dem is None
    assert without.rejected["layover"] == without.rejected["shadow"] == 0
    quality, count = (gdal.Open(str(tmp_path / name)).ReadAsArray() for name in ("q.tif", "c.tif"))
    assert ((quality == MEASURED) == (count > 0)).all()
    assert set(np.unique(quality)) <= set(QUALITY) and {LAYOVER, SHADOW} & set(np.unique(quality))
    assert with_prior.quality == {name: int((quality == value).sum()) for value, name in QUALITY.items()}
    # against the simulator: the masks hold its layover and shadow pixels, and few of the valid ones
    truth = gdal.Open(paths["ground_truth"]).ReadAsArray()
    rr, cc = np.mgrid[0:256, 0:256]
    layover, shadow = masks[0].at(rr, cc)
    assert layover[truth[4] == 1].mean() > 0.95 and shadow[truth[5] == 1].mean() > 0.9
    assert (layover | shadow)[truth[2] == 1].mean() < 0.01


# ---------------------------------------------------------------- bad inputs
def test_match_raster_without_sensor_models(tmp_path):
    path = tmp_path / "plain.tif"
    write_geotiff(path, np.zeros((3, 8, 8)))
    with pytest.raises(SensorModelError, match="plain.tif.*SARSTEREO_SENSOR.*sarstereo:matchpair"):
        generate_elevation(path, tmp_path / "dem.tif")
    assert not (tmp_path / "dem.tif").exists()


def test_resolution_zero_and_geographic_crs_are_refused(oetztal_truth, tmp_path):
    with pytest.raises(GeometryError, match="RESOLUTION.*positive"):
        generate_elevation(oetztal_truth["truth"], tmp_path / "dem.tif", ElevationSettings(resolution_m=0.0))
    with pytest.raises(GeometryError, match="CRS.*EPSG:4326.*not a projected CRS in metres"):
        generate_elevation(oetztal_truth["truth"], tmp_path / "dem.tif", ElevationSettings(crs="EPSG:4326"))
    with pytest.raises(GeometryError, match="RESOLUTION.*coarser"):
        generate_elevation(oetztal_truth["truth"], tmp_path / "dem.tif", ElevationSettings(resolution_m=0.001))
    assert not list(tmp_path.iterdir())


def test_reference_dem_that_does_not_overlap(oetztal_truth, tmp_path):
    far = tmp_path / "far.tif"
    write_geotiff(far, np.full((10, 10), 500.0), geotransform=(100.0, 0.01, 0, 10.0, 0, -0.01),
                  crs=gdal.Open(oetztal_truth["dem"]).GetProjection())
    with pytest.raises(RasterError, match="far.tif.*REFERENCE_DEM.*does not overlap"):
        generate_elevation(oetztal_truth["truth"], tmp_path / "dem.tif", reference_dem=far,
                           error_output=tmp_path / "err.tif")
    assert not (tmp_path / "err.tif").exists()


def test_cancel_writes_nothing(oetztal_truth, tmp_path):
    with pytest.raises(ElevationCanceled):
        generate_elevation(oetztal_truth["truth"], tmp_path / "dem.tif", count_output=tmp_path / "count.tif",
                           is_canceled=lambda: True)
    assert not list(tmp_path.iterdir())


def test_certainty_threshold_defaults_to_the_matchers_own(alpine_pair, oracle, tmp_path):
    """A matcher's certainty_threshold travels in its match raster and is the elevation step's
    default (the light matcher's is 0.8); a given threshold wins; a ground truth records none (0)."""
    from sar_stereo_plugin.core.matchers.light import LightMatcher
    from sar_stereo_plugin.core.matching import MatchSettings, match_pair
    paths, _ = alpine_pair
    matcher = oracle(paths["ground_truth"], certainty=lambda pair: 0.3 if pair.reference_origin[1] else 0.9)
    matcher.certainty_threshold = 0.5
    matches = tmp_path / "matches.tif"
    match_pair(paths["reference"], paths["secondary"], matches, matcher,
               MatchSettings(patch_size=100, overlap=0, height_uncertainty_m=1500.0, consistency_px=0.0))
    certainty = gdal.Open(str(matches)).ReadAsArray()[2]
    own = generate_elevation(matches, tmp_path / "own.tif")
    given = generate_elevation(matches, tmp_path / "given.tif", ElevationSettings(certainty_threshold=0.0))
    assert own.certainty_threshold == 0.5 and own.matches_used == int((certainty >= 0.5).sum())
    assert given.certainty_threshold == 0.0 and given.matches_used == int(np.isfinite(certainty).sum())
    assert 0.2 < own.matches_used / given.matches_used < 0.5  # the first column of patches, of three
    assert generate_elevation(paths["ground_truth"], tmp_path / "truth.tif").certainty_threshold == 0.0
    assert LightMatcher.certainty_threshold == 0.8
