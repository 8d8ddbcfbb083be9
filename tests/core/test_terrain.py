"""terrain_fractions: the cheap layover/shadow estimate agrees with the simulator's flags on real
Alpine DEMs, and with closed forms on synthetic ramps and ridges."""

import math
import time

import numpy as np
import pytest
from pyproj import Transformer

from sar_stereo_plugin.core.dem import Dem
from sar_stereo_plugin.core.flight import FlightDesign
from sar_stereo_plugin.core.simulate import simulate_pair
from sar_stereo_plugin.core.terrain import terrain_fractions

ALPINE = ["hintereisferner_srtm3.tif", "oetztal_srtm3.tif", "south_glacier_20m_utm7n.tif", "swiss_alps_46m.tif"]
TM = "+proj=tmerc +lat_0=46.5 +lon_0=9 +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
TO_LONLAT = Transformer.from_crs(TM, "EPSG:4326", always_xy=True)


def synthetic_dem(profile, half_m=1500.0, spacing_m=2.5):
    """Heights ``profile(east_m)`` constant along north (local transverse Mercator at 9 E 46.5 N)."""
    n = 2 * int(round(half_m / spacing_m)) + 1
    x = (np.arange(n) - n // 2) * spacing_m
    gt = (x[0] - spacing_m / 2, spacing_m, 0.0, x[-1] + spacing_m / 2, 0.0, -spacing_m)
    return Dem.from_array(np.broadcast_to(profile(x)[None, :], (n, n)), gt, TM, "synthetic DEM")


def column_of(model, east_m, height):
    """Mean image column of the ground line x = east_m at the given height."""
    north = np.linspace(-300.0, 300.0, 61)
    lon, lat = TO_LONLAT.transform(np.full_like(north, east_m), north)
    return float(np.mean(model.geo2rdr(lon, lat, np.full_like(north, height))[1]))


# ============================================================== against the simulator (must show)
@pytest.mark.parametrize("heading", [0.0, 60.0])
@pytest.mark.parametrize("name", ALPINE)
def test_fractions_agree_with_the_simulator_on_alpine_dems(shared_data, name, heading):
    """35 and 55 degrees incidence: layover and shadow fractions within 2 percentage points of the
    simulator's pixel flags, both as fractions of the pixels that see the DEM."""
    dem = str(shared_data / "dem" / name)
    design = FlightDesign(pixel_spacing_m=5.0, rows=400, cols=400, heading_deg=heading,
                          reference_incidence_deg=35.0, secondary_incidence_deg=55.0)
    sim = simulate_pair(dem, design)
    s = sim.stats
    for model, prefix in ((sim.reference_model, ""), (sim.secondary_model, "secondary_")):
        fractions = terrain_fractions(model, dem)
        assert fractions["layover"] == pytest.approx(s[prefix + "layover_fraction"], abs=0.02)
        assert fractions["shadow"] == pytest.approx(s[prefix + "shadow_fraction"], abs=0.02)
        assert fractions["seen_pixels"] == pytest.approx(s[prefix + "seen_pixels"], rel=0.02)
    if name == "swiss_alps_46m.tif":  # the steepest: plenty of layover at 35 degrees to compare
        assert s["layover_fraction"] > 0.1


def test_terrain_fractions_is_much_cheaper_than_simulating(shared_data):
    dem = str(shared_data / "dem" / "oetztal_srtm3.tif")
    design = FlightDesign(pixel_spacing_m=2.0, rows=800, cols=800)
    start = time.perf_counter()
    sim = simulate_pair(dem, design)
    simulating = time.perf_counter() - start
    start = time.perf_counter()
    terrain_fractions(sim.reference_model, dem)
    assert time.perf_counter() - start < simulating / 4


# ============================================================== closed forms
def test_flat_ground_has_neither_layover_nor_shadow():
    dem = synthetic_dem(lambda x: np.full_like(x, 800.0))
    model = FlightDesign(pixel_spacing_m=2.0, rows=100, cols=200).models(dem)[0]
    f = terrain_fractions(model, dem)
    assert f["layover"] == 0.0 and f["shadow"] == 0.0
    assert f["seen"] == pytest.approx(1.0, abs=0.01)


def test_layover_of_a_steep_ramp_is_its_range_reversal():
    """A 200 m ramp rising eastward over 220 m (42 degrees) seen at 35 degrees: the top comes
    back (foot - top) range cells before the foot, on every row."""
    dem = synthetic_dem(lambda x: 1000.0 + 200.0 * np.clip(x / 220.0, 0.0, 1.0))
    model = FlightDesign(pixel_spacing_m=2.0, rows=80, cols=300).models(dem)[0]
    f = terrain_fractions(model, dem)
    reversal = column_of(model, 0.0, 1000.0) - column_of(model, 220.0, 1200.0)
    assert reversal > 15
    assert f["layover_pixels"] == pytest.approx(reversal * model.rows, rel=0.02)
    assert f["shadow"] == 0.0


def test_shadow_behind_a_ridge_is_the_grazing_ray_length():
    """Crest 200 m above flat ground, 60-degree back slope, 55 degrees incidence: the shadow spans
    200 m / cos(incidence at the crest) of slant range on every row."""
    def profile(x):
        front = 200.0 * np.clip(1 + x * math.tan(math.radians(30)) / 200.0, 0, 1)
        back = 200.0 * np.clip(1 - x * math.tan(math.radians(60)) / 200.0, 0, 1)
        return 1000.0 + np.where(x < 0, front, back)
    dem = synthetic_dem(profile)
    model = FlightDesign(pixel_spacing_m=2.0, rows=80, cols=300, reference_incidence_deg=55.0,
                         secondary_incidence_deg=35.0).models(dem)[0]
    f = terrain_fractions(model, dem)
    lon, lat = TO_LONLAT.transform(0.0, 0.0)
    from sar_stereo_plugin.core import ellipsoid
    crest = ellipsoid.llh_to_ecef(lon, lat, 1200.0)
    row = model.geo2rdr(lon, lat, 1200.0)[0]
    sensor = model.orbit.position(model.row_to_time(row))
    up = ellipsoid.llh_to_ecef(lon, lat, 1.0) - ellipsoid.llh_to_ecef(lon, lat, 0.0)
    cos_incidence = np.dot(sensor - crest, up) / np.linalg.norm(sensor - crest)
    length = 200.0 / cos_incidence / model.sample_spacing_m  # flat-ground approximation, ~1e-4
    assert f["shadow_pixels"] == pytest.approx(length * model.rows, rel=0.02)
    assert f["layover"] == 0.0
