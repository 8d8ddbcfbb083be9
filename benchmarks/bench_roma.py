"""Benchmark: what the patch engine costs around RoMa.

Engine overhead = (match_pair's seconds_total - RoMa's forward_seconds) / forward_seconds, target
at most 10 %: cutting windows, the geometric prior, the stretch, resizing, sampling the warp,
mosaicking and writing must stay small beside the network. Randomly initialised weights (same
architecture and cost as the real ones), CPU, coarse resolution 224 without upsampling, a
512 x 512 simulated pair over the embedded DEM in 256-pixel patches. On a GPU the forward is
far shorter, so the note also gives the overhead per patch in milliseconds.
"""

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sar_stereo_plugin.core.dem import height_bounds, open_dem
from sar_stereo_plugin.core.flight import FlightDesign
from sar_stereo_plugin.core.matchers import (
    PatchPair,  # noqa: E402
    roma,  # noqa: E402
)
from sar_stereo_plugin.core.matching import MatchSettings, match_pair  # noqa: E402
from sar_stereo_plugin.core.simulate import simulate_pair  # noqa: E402

SIZE, PATCH, OVERLAP, COARSE = 512, 256, 32, 224
_STATE = {}


def _setup():
    """Pair, matcher and settings, made once per process (the warm-up call pays for them)."""
    if not _STATE:
        tmp = Path(tempfile.mkdtemp(prefix="bench_roma_"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        paths = {k: tmp / f"{k}.tif" for k in ("reference", "secondary", "truth")}
        simulate_pair(None, FlightDesign(rows=SIZE, cols=SIZE), reference_output=paths["reference"],
                      secondary_output=paths["secondary"], ground_truth_output=paths["truth"])
        roma_state, dinov2_state = roma.random_state_dicts(seed=0)
        matcher = roma.RomaMatcher(weights=roma_state, dinov2_weights=dinov2_state, device="cpu", coarse_res=COARSE,
                                   upsample_res=None, batch_size=1)
        lo, hi, _ = height_bounds(open_dem(None))
        settings = MatchSettings(patch_size=PATCH, overlap=OVERLAP, height_prior=(lo + hi) / 2,
                                 height_uncertainty_m=(hi - lo) / 2)
        _STATE.update(tmp=tmp, paths=paths, matcher=matcher, settings=settings)
    return _STATE


def _overhead(warmup):
    s = _setup()
    matcher = s["matcher"]
    if warmup:  # first forward pays torch's one-off costs
        import numpy as np
        ref = np.ones((PATCH, PATCH), np.float32)
        matcher.match([PatchPair(ref, ref, np.zeros((2, PATCH, PATCH), np.float32), 1.0, (0, 0), (0, 0))])
        return None
    before = matcher.forward_seconds
    r = match_pair(s["paths"]["reference"], s["paths"]["secondary"], s["tmp"] / "match.tif", matcher, s["settings"])
    forward = matcher.forward_seconds - before
    overhead = r.seconds_total - forward
    return (f"overhead {overhead / forward:.1%} (target <= 10%): total {r.seconds_total:.1f} s, RoMa forward "
            f"{forward:.1f} s, {r.patches} patches, {1000 * overhead / r.patches:.0f} ms/patch outside RoMa")


def cases():
    yield f"match_pair + RoMa {SIZE}x{SIZE} (cpu, {COARSE}, random wts)", 60.0, _overhead
