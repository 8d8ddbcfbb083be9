"""Elevation at scale: 10 million matches triangulated and gridded into a DEM, its count and
uncertainty (target 60 s), and the gridding step against scipy's binned median.

Scene: a synthetic airborne pair (X band, 8 km altitude, 45 and 60 degrees incidence, same side),
3200 x 3200 reference pixels (1 m in slant range, 2 m in azimuth), each matched exactly to the secondary at a
smooth height field of 2300-2700 m. The match raster (with both sensor models embedded) is built
once into build/bench-data/ by the warm-up call. The project is imported inside the functions:
run.py lists cases before it puts the project on sys.path.
"""

import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "build" / "bench-data"
SIDE = 3200  # 10.24 M matches
MATCHES = DATA / f"matches_{SIDE}.tif"


def _models():
    from sar_stereo_plugin.core.flight import level_flight_model
    common = dict(center_lon=10.8, center_lat=46.8, center_h=2500.0, heading_deg=20.0, altitude_m=8000.0,
                  rows=SIDE, cols=SIDE, range_spacing_m=1.0, azimuth_spacing_m=2.0)
    return level_flight_model(incidence_deg=45.0, **common), level_flight_model(incidence_deg=60.0, **common)


def _heights(rows, cols):
    return 2500.0 + 200.0 * np.sin(rows / 300.0) * np.cos(cols / 400.0)


def _build():
    """The match raster, 256 rows at a time."""
    from sar_stereo_plugin.core.raster import SECONDARY_SENSOR_ITEM, SENSOR_ITEM, geotiff_writer
    if MATCHES.exists():
        return
    DATA.mkdir(parents=True, exist_ok=True)
    ref, sec = _models()
    meta = {SENSOR_ITEM: json.dumps(ref.to_dict()), SECONDARY_SENSOR_ITEM: json.dumps(sec.to_dict())}
    with geotiff_writer(MATCHES, SIDE, SIDE, 3, meta) as write:
        for row0 in range(0, SIDE, 256):
            rows, cols = np.mgrid[row0:min(row0 + 256, SIDE), 0:SIDE].astype(np.float64)
            lon, lat, h = ref.rdr2geo(rows, cols, height=_heights(rows, cols))
            r2, c2 = sec.geo2rdr(lon, lat, h)
            write(r2, row0, 1)
            write(c2, row0, 2)
            write(np.ones_like(r2), row0, 3)


def elevation_10m(warmup):
    from sar_stereo_plugin.core.elevation import generate_elevation
    _build()
    if warmup:
        return None
    out = DATA / "dem_bench"
    out.mkdir(exist_ok=True)
    result = generate_elevation(MATCHES, out / "dem.tif", count_output=out / "count.tif",
                                uncertainty_output=out / "unc.tif")
    return (f"{result.matches_used / 1e6:.2f} M matches -> {result.shape[0]} x {result.shape[1]} cells of "
            f"{result.resolution_m:g} m ({result.points / result.seconds / 1e6:.2f} M points/s)")


_POINTS = {}


def _points(n=2_000_000):
    if not _POINTS:
        rng = np.random.default_rng(0)
        x, y = rng.uniform(0, 2000, n), rng.uniform(0, 2000, n)
        _POINTS.update(x=x, y=y, h=(100 + 0.05 * x + rng.normal(0, 1, n)).astype(np.float32))
    return _POINTS


def gridding_vs_scipy(warmup):
    """Median per 4 m cell of 2 M points (250k cells): ours (one lexsort) against
    scipy.stats.binned_statistic_2d(statistic='median'), side by side on the same points."""
    from scipy.stats import binned_statistic_2d

    from sar_stereo_plugin.core.elevation import Grid, grid_points
    p = _points()
    if warmup:
        return None
    grid = Grid(0.0, 2000.0, 4.0, 500, 500, "")
    start = time.perf_counter()
    cell, _, _ = grid.locate(p["x"], p["y"])
    ours = grid_points(cell, p["h"], np.zeros_like(p["h"]), 500 * 500)[0].reshape(500, 500)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = binned_statistic_2d(p["y"], p["x"], p["h"], "median", bins=500, range=[[0, 2000], [0, 2000]]).statistic
    t_scipy = time.perf_counter() - start
    diff = np.nanmax(np.abs(ours - theirs[::-1]))  # scipy's rows run south to north
    return (f"ours {t_ours:.2f} s, scipy {t_scipy:.2f} s: {t_scipy / t_ours:.1f}x; max difference {diff:.1e} m")


def cases():
    yield "elevation: 10.24 M matches -> DEM, count, uncertainty", 60.0, elevation_10m
    yield "gridding 2 M points: median per cell, vs scipy", 30.0, gridding_vs_scipy
