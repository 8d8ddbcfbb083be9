"""Products: the SICD-kind projection model at image scale, and importing a large SICD.

Geometry: the airborne pair of bench_geometry (X band, 8 km altitude, 35/55 degrees incidence,
1000 x 1000 pixels of 1 m, heights 2000-3000 m) as SICD-kind models (RGZERO grids equivalent to the
zero-Doppler models, ARP polynomials fit to the orbits); a million points through geo2rdr and
triangulate. The zero-Doppler model's time for the same work is measured in the same process
(warm-up) and the note gives the ratio, held to 3 at most.

Import: an 8192 x 8192 SICD NITF (complex float32, 512 MiB) written through the simulator's SICD
writer (:func:`sar_stereo_plugin.core.products.sicd.write_sicd`: the designed level flight's model,
gamma speckle as amplitude) into build/bench-data/ by a separate process, so the peak memory
reported is the import's own; importproduct turns it into the amplitude GeoTIFF (Mpx/s in the note).
The project is imported inside the functions: run.py lists cases before it puts the project on
sys.path.
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "build" / "bench-data"
N = 1_000_000
SIDE = 8192
SICD = DATA / f"sicd_{SIDE}.nitf"
_DATA = {}


def _scene():
    """bench_geometry's pair and points, with both models also as SICD-kind models."""
    if "sref" not in _DATA:
        from bench_geometry import _scene as zero_doppler_scene

        from sar_stereo_plugin.core.sicd_model import SicdModel
        _DATA.update(zero_doppler_scene())
        _DATA.update(sref=SicdModel.from_zero_doppler(_DATA["ref"], 2500.0),
                     ssec=SicdModel.from_zero_doppler(_DATA["sec"], 2500.0))
    return _DATA


def _zero_doppler_seconds(key, func):
    """The zero-Doppler model's time for the same work, best of two, once per process."""
    if key not in _DATA:
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            func()
            seconds.append(time.perf_counter() - start)
        _DATA[key] = min(seconds)
    return _DATA[key]


def geo2rdr_sicd(warmup):
    d = _scene()
    base = _zero_doppler_seconds("geo2rdr_zd", lambda: d["ref"].geo2rdr(d["lon"], d["lat"], d["heights"]))
    start = time.perf_counter()
    rows, cols = d["sref"].geo2rdr(d["lon"], d["lat"], d["heights"])
    seconds = time.perf_counter() - start
    if not warmup:
        err = max(np.nanmax(np.abs(rows - d["rows"])), np.nanmax(np.abs(cols - d["cols"])))
        return (f"1M points; {seconds:.2f} s vs zero-Doppler {base:.2f} s: x{seconds / base:.2f} (<= 3); "
                f"max |pixel error| {err:.1e} px; {np.isnan(rows).sum()} NaN")


def triangulate_sicd(warmup):
    from sar_stereo_plugin.core import ellipsoid, triangulate
    d = _scene()
    args = (d["rows"], d["cols"]), (d["sec_rows"], d["sec_cols"])
    base = _zero_doppler_seconds("tri_zd", lambda: triangulate(d["ref"], *args[0], d["sec"], *args[1]))
    start = time.perf_counter()
    lon, lat, h, residual = triangulate(d["sref"], *args[0], d["ssec"], *args[1])
    seconds = time.perf_counter() - start
    if not warmup:
        truth = ellipsoid.llh_to_ecef(d["lon"], d["lat"], d["heights"])
        dist = np.linalg.norm(ellipsoid.llh_to_ecef(lon, lat, h) - truth, axis=-1)
        return (f"1M matches; {seconds:.2f} s vs zero-Doppler {base:.2f} s: x{seconds / base:.2f} (<= 3); "
                f"max 3D error {np.nanmax(dist):.1e} m; {np.isnan(h).sum()} NaN")


def build_sicd():
    """The 8k x 8k SICD, 512 rows at a time (run in its own process by the warm-up)."""
    from sar_stereo_plugin.core.flight import level_flight_model
    from sar_stereo_plugin.core.products.sicd import write_sicd
    from sar_stereo_plugin.core.sicd_model import SicdModel
    DATA.mkdir(parents=True, exist_ok=True)
    model = SicdModel.from_zero_doppler(level_flight_model(
        10.8, 46.8, 2500.0, 20.0, 8000.0, 40.0, rows=SIDE, cols=SIDE, range_spacing_m=0.5, azimuth_spacing_m=0.5),
        2500.0)
    rng = np.random.default_rng(1)

    def blocks():
        for row0 in range(0, SIDE, 512):
            yield row0, np.sqrt(rng.gamma(1.0, size=(512, SIDE))).astype(np.float32)
    write_sicd(SICD, model, blocks(), name="bench 8k")


def import_8k(warmup):
    from sar_stereo_plugin.core import import_product
    if not SICD.exists():
        subprocess.run([sys.executable, "-c", "import bench_products; bench_products.build_sicd()"],
                       cwd=Path(__file__).resolve().parent, check=True,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    if warmup:
        return None
    out = DATA / "imported_8k.tif"
    peak = {"RssAnon": 0.0, "RssFile": 0.0}

    def sample(_):  # per block: what the process holds, its own and the input file mapped by sarpy
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in peak:
                peak[key] = max(peak[key], int(line.split()[1]) / 1024.0)
    result = import_product(SICD, out, progress=sample)
    mpx = result.rows * result.cols / 1e6
    return (f"{result.rows} x {result.cols} SICD -> amplitude GeoTIFF: {mpx / result.seconds:.1f} Mpx/s "
            f"({SICD.stat().st_size / 2 ** 20:.0f} MiB in, {out.stat().st_size / 2 ** 20:.0f} MiB out); "
            f"resident while reading: {peak['RssAnon']:.0f} MiB anonymous + {peak['RssFile']:.0f} MiB of mapped "
            "files (sarpy maps the NITF)")


def cases():
    yield "products: geo2rdr 1M points, SICD-kind", 6.0, geo2rdr_sicd
    yield "products: triangulate 1M, SICD-kind", 9.0, triangulate_sicd
    yield "products: importproduct 8k x 8k SICD", 60.0, import_8k
