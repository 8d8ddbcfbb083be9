"""Benchmark: simulate a 2048 x 2048 SAR stereo pair (35/55 degrees) over the Oetztal DEM.

Target: at most 60 s on the project's 2-core machine, outputs written (two amplitude GeoTIFFs and
the ground truth). Without ../shared/data the case says so and simulates over the embedded
Jacksboro DEM instead, so the table still has a row.
"""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sar_stereo_plugin.core.dem import open_dem
from sar_stereo_plugin.core.flight import FlightDesign
from sar_stereo_plugin.core.simulate import simulate_pair  # noqa: E402
from sar_stereo_plugin.core.terrain import terrain_fractions  # noqa: E402

SHARED = Path(os.environ.get("SARSTEREO_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEM = SHARED / "dem" / "oetztal_srtm3.tif"
SIZE = 2048
# 1 m pixels: 2048 range samples keep the 35-degree view clear of nadir at 8 km altitude
DESIGN = FlightDesign(pixel_spacing_m=1.0, rows=SIZE, cols=SIZE)


def _dem():
    return str(DEM) if DEM.exists() else None


def _simulate(warmup):
    design = FlightDesign(pixel_spacing_m=1.0, rows=128, cols=128) if warmup else DESIGN
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        result = simulate_pair(_dem(), design, looks=4, seed=0, reference_output=out / "ref.tif",
                               secondary_output=out / "sec.tif", ground_truth_output=out / "truth.tif")
    s = result.stats
    where = DEM.name if DEM.exists() else "Jacksboro (../shared/data absent)"
    return (f"{SIZE}x{SIZE} pair over {where}: layover {s['layover_fraction']:.1%}, "
            f"shadow {s['shadow_fraction']:.1%}, valid {s['valid_fraction']:.0%}")


def _terrain(warmup):
    model = DESIGN.models(_open())[0] if not warmup else FlightDesign(rows=128, cols=128).models(_open())[0]
    f = terrain_fractions(model, _open())
    return f"{model.rows}x{model.cols} image: layover {f['layover']:.1%}, shadow {f['shadow']:.1%}"


def _open():
    return open_dem(_dem())


def cases():
    yield "simulate_pair 2048x2048 (oetztal, 35/55 deg)", 60.0, _simulate
    yield "terrain_fractions 2048x2048 (oetztal, 35 deg)", 10.0, _terrain
