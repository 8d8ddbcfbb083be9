"""Forward-backward consistency in the patch engine: deliberately wrong answers do not come back, so
they are rejected whatever the matcher; their round-trip error is the match raster's fourth band;
and they never reach the DEM, whose quality layer says where they were."""

import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core.elevation import generate_elevation
from sar_stereo_plugin.core.errors import SettingsError
from sar_stereo_plugin.core.evaluate import reference_on_grid
from sar_stereo_plugin.core.fusion import MEASURED, REJECTED
from sar_stereo_plugin.core.matchers import Matcher, PatchMatch
from sar_stereo_plugin.core.matchers.poc import PocMatcher
from sar_stereo_plugin.core.matching import MatchSettings, match_pair
from sar_stereo_plugin.core.products import read_pair_models

REGION = np.s_[110:190, 110:190]  # reference pixels whose forward answers are 20 px off
OFFSET_PX = 20.0


class Offsetting(Matcher):
    """POC, except that its forward answers (reference -> secondary) for the reference pixels in
    REGION land 20 px further in range; the way back (a secondary patch as reference) stays honest."""

    name, batch_size = "offsetting", 2
    patch_size, overlap = 128, 32

    def __init__(self, reference):
        self.poc = PocMatcher()
        self.image = gdal.Open(str(reference)).ReadAsArray().astype(np.float32)
        self.region = np.zeros(self.image.shape, bool)
        self.region[REGION] = True

    def describe(self):
        return "offsetting POC"

    def match(self, pairs):
        out = []
        for pair, found in zip(pairs, self.poc.match(pairs)):
            (r0, c0), (h, w) = pair.reference_origin, pair.reference.shape
            forward = np.array_equal(pair.reference, self.image[r0:r0 + h, c0:c0 + w], equal_nan=True)
            moved = self.region[r0:r0 + h, c0:c0 + w] if forward else np.zeros((h, w), bool)
            out.append(PatchMatch(found.rows, np.where(moved, found.cols + OFFSET_PX, found.cols), found.certainty))
        return out


@pytest.fixture(scope="module")
def offset_runs(alpine_pair, tmp_path_factory):
    """Matches and DEMs of the offsetting matcher, with the check (1 px) and without it."""
    paths, _ = alpine_pair
    tmp = tmp_path_factory.mktemp("offset")
    runs = {}
    for name, px in (("checked", 1.0), ("unchecked", 0.0)):
        matches, dem, quality = (tmp / f"{name}_{what}.tif" for what in ("matches", "dem", "quality"))
        result = match_pair(paths["reference"], paths["secondary"], matches, Offsetting(paths["reference"]),
                            MatchSettings(height_uncertainty_m=600.0, consistency_px=px))
        made = generate_elevation(matches, dem, quality_output=quality)
        runs[name] = dict(matches=matches, dem=dem, quality=quality, result=result, made=made)
    return paths, runs


def _region_cells(paths, dem_path):
    """(rows, cols) of the DEM cells where the ground of REGION's valid pixels lies."""
    truth = gdal.Open(paths["ground_truth"]).ReadAsArray()
    ref, _ = read_pair_models(paths["ground_truth"])
    rows, cols = np.nonzero((truth[2] == 1) & np.isin(np.arange(300), np.arange(300)[REGION[0]])[:, None]
                            & np.isin(np.arange(300), np.arange(300)[REGION[1]])[None, :])
    lon, lat, _ = ref.rdr2geo(rows.astype(float), cols.astype(float), height=truth[3][rows, cols])
    ds = gdal.Open(str(dem_path))
    from pyproj import Transformer
    x, y = Transformer.from_crs("EPSG:4326", ds.GetProjection(), always_xy=True).transform(lon, lat)
    gt = ds.GetGeoTransform()
    r, c = ((y - gt[3]) / gt[5]).astype(int), ((x - gt[0]) / gt[1]).astype(int)
    ok = (r >= 0) & (r < ds.RasterYSize) & (c >= 0) & (c < ds.RasterXSize)
    cells = np.unique(np.stack([r[ok], c[ok]]), axis=1)
    # the region's inner cells: away from its edges, where neighbouring honest pixels also see ground
    inner = (cells[0] > cells[0].min() + 2) & (cells[0] < cells[0].max() - 2) & (cells[1] > cells[1].min() + 2) \
        & (cells[1] < cells[1].max() - 2)
    return tuple(cells[:, inner])


def test_answers_that_do_not_come_back_are_rejected(offset_runs):
    paths, runs = offset_runs
    truth = gdal.Open(paths["ground_truth"]).ReadAsArray()
    valid = truth[2] == 1
    in_region = np.zeros(valid.shape, bool)
    in_region[REGION] = True
    checked, unchecked = (gdal.Open(str(runs[k]["matches"])).ReadAsArray() for k in ("checked", "unchecked"))
    assert checked.shape[0] == 4 and unchecked.shape[0] == 3  # the round trip is the fourth band
    ds = gdal.Open(str(runs["checked"]["matches"]))
    assert ds.GetRasterBand(4).GetDescription() == "round_trip_px"
    # without the check the offset answers are in the raster, 20 px off
    epe = np.hypot(unchecked[0] - truth[0], unchecked[1] - truth[1])
    assert np.isfinite(epe[valid & in_region]).mean() > 0.8
    assert np.nanmedian(epe[valid & in_region]) == pytest.approx(OFFSET_PX, abs=1.0)
    # with it, they are gone, and the fourth band says how far their round trips missed
    kept = np.isfinite(checked[0])
    assert kept[valid & in_region].mean() < 0.01
    trip = checked[3][valid & in_region & np.isfinite(checked[3])]
    assert trip.size > 0.8 * (valid & in_region).sum() and np.median(trip) > 10.0
    # elsewhere the honest answers stay, and every kept one came back within a pixel
    assert kept[valid & ~in_region].mean() > 0.85
    assert np.nanmax(checked[3][kept]) <= 1.0
    assert np.nanmedian(np.hypot(checked[0] - truth[0], checked[1] - truth[1])[valid & ~in_region]) < 0.75
    result = runs["checked"]["result"]
    assert result.rejected_fraction == pytest.approx((np.isfinite(checked[3]) & ~kept).mean())
    assert result.rejected_fraction > (valid & in_region).mean() * 0.9


def test_rejected_answers_are_absent_from_the_dem(offset_runs):
    paths, runs = offset_runs
    cells = _region_cells(paths, runs["checked"]["dem"])
    assert cells[0].size > 100
    errors = {}
    for name in ("checked", "unchecked"):
        ds = gdal.Open(str(runs[name]["dem"]))
        reference = reference_on_grid(paths["dem"], ds)
        errors[name] = (ds.ReadAsArray() - reference)[cells]
    # without the check the region is gridded from answers 20 px off: heights far off the ground
    assert np.nanmedian(np.abs(errors["unchecked"])) > 50.0
    # with it, not one of them: the region holds no measured cell with such an error
    quality = gdal.Open(str(runs["checked"]["quality"])).ReadAsArray()[cells]
    measured = quality == MEASURED
    assert not (measured & (np.abs(errors["checked"]) > 25.0)).any()
    # and the quality layer says why the region is empty
    assert (quality == REJECTED).mean() > 0.6
    made = runs["checked"]["made"]
    assert made.rejected["round_trip_pixels"] > 0.9 * 80 * 80 * 0.5 and made.quality["rejected as inconsistent"] > 0


def test_consistency_tolerance_is_checked():
    with pytest.raises(SettingsError, match="CONSISTENCY_PX"):
        MatchSettings(patch_size=64, overlap=0, consistency_px=-1.0).validate()
    assert MatchSettings().consistency_px is None  # the matcher's own
    assert MatchSettings().for_matcher(PocMatcher()).consistency_px == 2.0  # chosen on validation pairs
    assert MatchSettings().for_matcher(Matcher()).consistency_px == 1.0
    assert MatchSettings(consistency_px=0.0).for_matcher(PocMatcher()).consistency_px == 0.0
