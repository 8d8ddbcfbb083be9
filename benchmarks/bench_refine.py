"""Benchmark: sensor-model refinement of the `make demo` pair (`refine_pair`), target 30 s.

The demo pair (embedded Jacksboro DEM, default flight design, 2047 x 613 pixels; simulated once into
build/bench-data by bench_light's helper) with its secondary model made 6 lines late and 3 samples
far, refined with POC tie points and the source DEM at 300 m as absolute control, as `make demo`
does. The note gives the tie points used and the azimuth and range offsets recovered.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_light import PATHS  # noqa: E402

from sar_stereo_plugin.core.corrections import misplaced  # noqa: E402
from sar_stereo_plugin.core.products import read_sensor_model  # noqa: E402
from sar_stereo_plugin.core.refine_pair import refine_pair  # noqa: E402

DEM300 = PATHS["reference"].with_name("demo_dem300.tif")
_STATE = {}


def _run(warmup):
    if warmup:
        if not all(p.exists() for p in PATHS.values()):
            subprocess.run([sys.executable, str(Path(__file__).with_name("bench_light.py")), "--make-pair"],
                           check=True, stdout=sys.stderr)
        if not DEM300.exists():
            from sar_stereo_plugin.core.dem import load_default_dem
            source = DEM300.with_name("demo_source_dem.tif")
            load_default_dem().write(source)
            subprocess.run(["gdalwarp", "-q", "-overwrite", "-t_srs", "EPSG:32616", "-tr", "300", "300", "-r",
                            "average", str(source), str(DEM300)], check=True)
        _STATE["secondary"] = misplaced(read_sensor_model(PATHS["secondary"]), lines=6, samples=3)
        return None
    result = refine_pair(PATHS["reference"], PATHS["secondary"], secondary_model=_STATE["secondary"],
                         reference_dem=DEM300)
    found = result.corrections["secondary"]
    return (f"{result.tie_points_used} tie points; secondary azimuth {found['azimuth_offset']['px']:+.2f} px "
            f"(injected +6), range {found.get('range_offset', {}).get('px', 0.0):+.2f} px (injected +3)")


def cases():
    yield "refine_pair, demo pair, biased secondary", 30.0, _run
