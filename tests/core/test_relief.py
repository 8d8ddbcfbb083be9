"""Procedural terrain (core/simulate/relief.py): the slope distribution asked for, seeded
determinism, flat water, and a DEM the simulator takes."""

import numpy as np
import pytest

from sar_stereo_plugin.core.errors import SettingsError
from sar_stereo_plugin.core.simulate.relief import TerrainDesign, slope_deg, synthetic_terrain

SMALL = dict(rows=160, cols=192, pixel_m=40.0, feature_m=3000.0)


@pytest.mark.parametrize("median, ridges", [(18.0, 0.2), (34.0, 0.9)])
def test_the_land_has_the_median_slope_asked_for_and_none_above_the_cap(median, ridges):
    design = TerrainDesign(**SMALL, median_slope_deg=median, ridges=ridges, base_m=300.0)
    dem = synthetic_terrain(design, seed=3)
    slopes = slope_deg(dem.heights, design.pixel_m)
    assert np.median(slopes) == pytest.approx(median, abs=0.3)
    assert slopes.max() <= 60.05  # the cap, to the solver's 0.1 % on the tangent
    steep = (slopes > 45.0).mean()
    assert (steep > 0.05) if median > 30 else (steep < 0.05)  # a tail towards the cap on steep ground only
    assert dem.pixel_size_m() == pytest.approx((40.0, 40.0), rel=1e-3)
    assert dem.crs.to_epsg() == 4326 and np.isfinite(dem.heights).all()


def test_the_same_seed_gives_the_same_terrain_and_another_seed_another():
    design = TerrainDesign(**SMALL)
    a, b, c = (synthetic_terrain(design, seed=s).heights for s in (7, 7, 8))
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 50.0


def test_water_is_one_flat_surface_at_the_base_height_and_covers_the_share_asked_for():
    design = TerrainDesign(**SMALL, water_fraction=0.3, base_m=0.0, median_slope_deg=25.0)
    heights = synthetic_terrain(design, seed=5).heights
    water = heights == 0.0
    assert water.mean() == pytest.approx(0.3, abs=0.005)
    assert (heights[~water] > 0.0).all()  # the land rises from the water
    inner = water[1:-1, 1:-1] & water[:-2, 1:-1] & water[2:, 1:-1] & water[1:-1, :-2] & water[1:-1, 2:]
    assert inner.sum() > 0.6 * water.sum()  # mostly open water, not specks between hills
    assert slope_deg(heights, 40.0)[1:-1, 1:-1][inner].max() == 0.0
    assert np.median(slope_deg(heights, 40.0)[~water]) == pytest.approx(25.0, abs=0.3)


def test_bad_designs_name_the_field():
    with pytest.raises(SettingsError, match="median_slope_deg"):
        synthetic_terrain(TerrainDesign(median_slope_deg=70.0))
    with pytest.raises(SettingsError, match="water_fraction"):
        synthetic_terrain(TerrainDesign(water_fraction=0.95))


def test_the_simulator_images_generated_terrain_with_valid_truth():
    from sar_stereo_plugin.core.flight import FlightDesign
    from sar_stereo_plugin.core.simulate import simulate_pair
    dem = synthetic_terrain(TerrainDesign(**SMALL, median_slope_deg=22.0, base_m=800.0), seed=11)
    flight = FlightDesign(heading_deg=40.0, altitude_m=8000.0, reference_incidence_deg=35.0,
                          secondary_incidence_deg=50.0, pixel_spacing_m=10.0, rows=160, cols=160)
    stats = simulate_pair(dem, flight, seed=1).stats
    assert stats["valid_fraction"] > 0.5
    assert stats["layover_fraction"] + stats["shadow_fraction"] > 0.005  # relief a radar notices
