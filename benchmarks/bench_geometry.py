"""Geometry core at image scale: a million points through geo2rdr, rdr2geo and triangulate.

Scene: the synthetic airborne pair of the tests (X band, 8 km altitude, 35 and 55 degrees
incidence on the same side, 1000 x 1000 pixels of 1 m) over heights of 2000-3000 m, which every
slant range of the image reaches.
Inputs are built once, in the warm-up call, so the timed call measures the operation alone.
The project is imported inside the functions: run.py lists cases before it puts the project on
sys.path.
"""

import numpy as np

N = 1_000_000
_DATA = {}


def _scene():
    if not _DATA:
        from sar_stereo_plugin.core.flight import level_flight_model
        common = dict(center_lon=10.8, center_lat=46.8, center_h=2500.0, heading_deg=20.0,
                      altitude_m=8000.0, rows=1000, cols=1000)
        ref = level_flight_model(incidence_deg=35.0, **common)
        sec = level_flight_model(incidence_deg=55.0, **common)
        rng = np.random.default_rng(0)
        rows, cols = rng.uniform(0, 999, N), rng.uniform(0, 999, N)
        heights = rng.uniform(2000.0, 3000.0, N)  # every range reaches them
        lon, lat, h = ref.rdr2geo(rows, cols, height=heights)
        sec_rows, sec_cols = sec.geo2rdr(lon, lat, h)
        _DATA.update(ref=ref, sec=sec, rows=rows, cols=cols, heights=heights, lon=lon, lat=lat,
                     sec_rows=sec_rows, sec_cols=sec_cols)
    return _DATA


def geo2rdr(warmup):
    d = _scene()
    rows, cols = d["ref"].geo2rdr(d["lon"], d["lat"], d["heights"])
    if not warmup:
        err = max(np.nanmax(np.abs(rows - d["rows"])), np.nanmax(np.abs(cols - d["cols"])))
        return f"1M points; max |pixel error| {err:.1e} px vs rdr2geo; {np.isnan(rows).sum()} NaN"


def rdr2geo(warmup):
    d = _scene()
    lon, lat, h = d["ref"].rdr2geo(d["rows"], d["cols"], height=d["heights"])
    if not warmup:
        from sar_stereo_plugin.core import ellipsoid
        x = ellipsoid.llh_to_ecef(lon, lat, h)
        t = d["ref"].row_to_time(d["rows"])
        rng = np.linalg.norm(x - d["ref"].orbit.position(t), axis=-1)
        err = np.abs(rng - d["ref"].col_to_range(d["cols"])).max()
        return f"1M points at 2000-3000 m; max range misclosure {err:.1e} m; {np.isnan(h).sum()} NaN"


def triangulate_pair(warmup):
    from sar_stereo_plugin.core import ellipsoid, triangulate
    d = _scene()
    lon, lat, h, residual = triangulate(d["ref"], d["rows"], d["cols"], d["sec"], d["sec_rows"], d["sec_cols"])
    if not warmup:
        truth = ellipsoid.llh_to_ecef(d["lon"], d["lat"], d["heights"])
        dist = np.linalg.norm(ellipsoid.llh_to_ecef(lon, lat, h) - truth, axis=-1)
        return (f"1M matches 35/55 deg; max 3D error {np.nanmax(dist):.1e} m, max |dh| "
                f"{np.nanmax(np.abs(h - d['heights'])):.1e} m, max residual {np.nanmax(residual):.1e} m; "
                f"{np.isnan(h).sum()} NaN")


def cases():
    yield "geometry: geo2rdr 1M points", 2.0, geo2rdr
    yield "geometry: rdr2geo 1M points (given heights)", 2.0, rdr2geo
    yield "geometry: triangulate 1M correspondences", 3.0, triangulate_pair
