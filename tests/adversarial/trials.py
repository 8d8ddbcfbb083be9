"""Concurrency and kill trials: jobs in processes of their own, through the Python API, as two
QGIS sessions or a script and a session would run them.

* Two jobs on one output path (matchpair, generateelevation, builddataset; the second starts a
  moment after the first, with settings that make its result different): afterwards the output
  is exactly one job's complete result -- a job that reported success -- or the later job failed
  cleanly; no temporary is left.
* A job killed (SIGKILL) at a random moment of its run: afterwards no output that looks valid
  remains (no file at an output path, no temporary in the folder, nothing new that GDAL, numpy or
  json would open), and the inputs are unchanged.

``python scripts/adversarial_trials.py`` runs many (the measurement); tests/adversarial/
test_trials.py a few (what CI affords).
"""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMP_MARKERS = (".partial", ".replaced", ".keeping")

_PRELUDE = """
import json, sys
from pathlib import Path
D = Path(sys.argv[1])
from sar_stereo_plugin.core.errors import SarStereoError
try:
    import sar_stereo_plugin.core as core
{body}
except SarStereoError as exc:
    print(json.dumps({{"error": str(exc)}}))
    sys.exit(2)
print(json.dumps({{"ok": True}}))
"""

# job -> (code using D, outputs relative to D, what makes the second job's result differ)
JOBS = {
    "simulatepair": ("""
    core.simulate_pair(str(D / "dem.tif"), core.FlightDesign(rows=256, cols=256), seed=SEED,
                       reference_output=D / "o_ref.tif", secondary_output=D / "o_sec.tif",
                       ground_truth_output=D / "o_gt.tif")""",
                     ["o_ref.tif", "o_ref.sensor.json", "o_sec.tif", "o_sec.sensor.json", "o_gt.tif"]),
    "matchpair": ("""
    core.match_pair(D / "ref.tif", D / "sec.tif", D / "o_matches.tif", core.create_matcher("poc"),
                    core.MatchSettings(patch_size=SIZE, overlap=16), prior_dem=D / "dem.tif")""",
                  ["o_matches.tif"]),
    "generateelevation": ("""
    core.generate_elevation(D / "matches.tif", D / "o_dem.tif", core.ElevationSettings(resolution_m=RES),
                            count_output=D / "o_count.tif", uncertainty_output=D / "o_unc.tif",
                            reference_dem=D / "dem.tif", error_output=D / "o_err.tif", report=D / "o_rep.json")""",
                          ["o_dem.tif", "o_count.tif", "o_unc.tif", "o_err.tif", "o_rep.json", "o_rep.png",
                           "o_rep.html"]),
    "evaluatedem": ("""
    core.evaluate_dem(D / "elev.tif", D / "dem.tif", D / "o_err.tif", D / "o_rep.json")""",
                    ["o_err.tif", "o_rep.json", "o_rep.png", "o_rep.html"]),
    "builddataset": ("""
    from sar_stereo_plugin.core.training.dataset import build_dataset
    build_dataset([(D / "ref.tif", D / "sec.tif")], D / "dem.tif", D / "o_dataset", patch_size=SIZE, overlap=0,
                  block_px=256)""", ["o_dataset"]),
    "refinepair": ("""
    from sar_stereo_plugin.core.refine_pair import refine_pair
    refine_pair(D / "ref.tif", D / "sec.tif", refined_reference_model=D / "o_r.json",
                refined_secondary_model=D / "o_s.json", tie_points_output=D / "o_ties.gpkg",
                report=D / "o_ref.json")""",
                   ["o_r.json", "o_s.json", "o_ties.gpkg", "o_ref.json", "o_ref.png", "o_ref.html"]),
    "importproduct": ("""
    from sar_stereo_plugin.core.products.importer import import_product
    import_product(D / "big.tif", D / "o_imp.tif", looks_azimuth=1, looks_range=1)""",
                      ["o_imp.tif", "o_imp.sensor.json"]),
    "finetune": ("""
    from sar_stereo_plugin.core.training.finetune import finetune
    finetune(D / "dataset", D / "o_run", steps=4, batch_size=2, device="cpu", val_samples=0,
             epoch_checkpoints=False)""", ["o_run/light_sar.pth"]),
}
VARIANTS = {"matchpair": [{"SIZE": 64}, {"SIZE": 48}], "generateelevation": [{"RES": 10.0}, {"RES": 20.0}],
            "builddataset": [{"SIZE": 64}, {"SIZE": 32}]}
DEFAULTS = {"SEED": 1, "SIZE": 64, "RES": 10.0}


def job_code(name, **values):
    body = JOBS[name][0]
    for key, value in {**DEFAULTS, **values}.items():
        body = body.replace(key, repr(value))
    return _PRELUDE.format(body=body)


def start(name, folder, **values):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", job_code(name, **values), str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    clean = proc.returncode in (0, 2) and bool(lines) and lines[-1].startswith("{") and "Traceback" not in err
    return {"code": proc.returncode, "clean": clean, "said": lines[-1] if lines else err.strip()[-300:]}


# ---------------------------------------------------------------- the trial set
def make_set(folder, big=True):
    """A 256 x 256 pair over the embedded DEM and what the jobs read: dem.tif, ref.tif, sec.tif,
    matches.tif, elev.tif, dataset/ (64-pixel patches), with ``big`` big.tif (4096 x 4096, for the
    import)."""
    import numpy as np

    from sar_stereo_plugin.core import (
        FlightDesign,
        MatchSettings,
        create_matcher,
        generate_elevation,
        match_pair,
        simulate_pair,
    )
    from sar_stereo_plugin.core.dem import load_default_dem
    from sar_stereo_plugin.core.products import read_sensor_model, write_image
    from sar_stereo_plugin.core.training.dataset import build_dataset
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    load_default_dem().write(folder / "dem.tif")
    simulate_pair(str(folder / "dem.tif"), FlightDesign(rows=256, cols=256), seed=1,
                  reference_output=folder / "ref.tif", secondary_output=folder / "sec.tif")
    match_pair(folder / "ref.tif", folder / "sec.tif", folder / "matches.tif", create_matcher("poc"),
               MatchSettings(patch_size=64, overlap=16), prior_dem=folder / "dem.tif")
    generate_elevation(folder / "matches.tif", folder / "elev.tif")
    build_dataset([(folder / "ref.tif", folder / "sec.tif")], folder / "dem.tif", folder / "dataset", patch_size=64,
                  overlap=0, block_px=256)
    if not big:
        return folder
    model = read_sensor_model(folder / "ref.tif")
    n = 4096
    from dataclasses import replace
    big = replace(model, rows=n, cols=n, line_interval_s=model.line_interval_s * model.rows / n)
    rng = np.random.default_rng(0)
    write_image(folder / "big.tif", rng.rayleigh(1.0, (n, n)).astype(np.float32), big)
    return folder


def copy_set(base, scratch, name):
    """A fresh copy of the set at one path per job (outputs record their inputs' paths, so results
    are compared between runs in the same folder)."""
    folder = Path(scratch) / f"work-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base, folder)
    return folder


def snapshot(folder):
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def temporaries(folder):
    """Temporaries anywhere under ``folder`` (a guardian may be removing them meanwhile)."""
    found = []
    for root, dirs, files in os.walk(folder, onerror=lambda exc: None):
        found += [os.path.relpath(os.path.join(root, n), folder) for n in dirs + files
                  if n.startswith(".") and any(m in n for m in TEMP_MARKERS)]
    return sorted(found)


# ---------------------------------------------------------------- concurrency
def outputs_of(name, folder):
    """What a job wrote, comparable between runs: file hashes; for a dataset its manifest and the
    shapes of its samples (npz files carry their write time)."""
    folder = Path(folder)
    if name == "builddataset":
        import numpy as np
        manifest_path = folder / "o_dataset" / "manifest.json"
        if not manifest_path.is_file():
            return None
        manifest = json.loads(manifest_path.read_text())
        shapes = []
        for entry in manifest["samples"]:
            with np.load(folder / "o_dataset" / entry["file"]) as data:
                shapes.append((entry["file"], data["reference"].shape))
        files = sorted(str(p.relative_to(folder / "o_dataset")) for p in (folder / "o_dataset").rglob("*.npz"))
        return {"manifest": hashlib.sha1(manifest_path.read_bytes()).hexdigest(), "shapes": shapes, "files": files}
    found = {}
    for rel in JOBS[name][1]:
        path = folder / rel
        if not path.is_file():
            found[rel] = None
        elif path.suffix == ".pth":  # training is not bitwise repeatable: whole, or not
            found[rel] = "whole" if _opens(path) else "damaged"
        elif path.suffix == ".json":  # a report records how long the run took
            found[rel] = json.dumps(_timeless(json.loads(path.read_text())), sort_keys=True)
        else:
            found[rel] = hashlib.sha1(path.read_bytes()).hexdigest()
    return found


def _timeless(doc):
    if isinstance(doc, dict):
        return {k: _timeless(v) for k, v in doc.items() if k not in ("seconds", "steps_per_second")}
    if isinstance(doc, list):
        return [_timeless(v) for v in doc]
    return doc


def reference_outputs(name, base, scratch):
    """Each variant's outputs run alone: what a complete result of that job is."""
    results = []
    for values in VARIANTS[name]:
        folder = copy_set(base, scratch, name)
        answer = finish(start(name, folder, **values))
        if answer["code"] != 0:
            raise RuntimeError(f"{name} variant {values} failed alone: {answer['said']}")
        results.append(outputs_of(name, folder))
        shutil.rmtree(folder)
    return results


def concurrency_trial(name, base, scratch, expected, delay):
    """Two jobs on one output path, the second started ``delay`` s after the first: (ok, detail)."""
    folder = copy_set(base, scratch, name)
    before = snapshot(folder)
    first = start(name, folder, **VARIANTS[name][0])
    time.sleep(delay)
    second = start(name, folder, **VARIANTS[name][1])
    answers = [finish(first), finish(second)]
    time.sleep(0.3)  # a guardian's clean-up, should there be one to do
    found = outputs_of(name, folder)
    litter = temporaries(folder)
    changed = [p for p, h in before.items() if snapshot(folder).get(p) != h]
    winners = [i for i, e in enumerate(expected) if found == e]
    problems = []
    if not all(a["clean"] for a in answers):
        problems.append(f"a job did not end cleanly: {answers}")
    if len(winners) != 1 or answers[winners[0]]["code"] != 0:
        problems.append(f"the output is no single successful job's complete result (matches {winners})")
    if litter:
        problems.append(f"temporaries left: {litter}")
    if changed:
        problems.append(f"inputs changed: {changed}")
    shutil.rmtree(folder, ignore_errors=True)
    detail = f"output of job {winners[0] + 1 if winners else '?'}; exits {[a['code'] for a in answers]}"
    return not problems, "; ".join(problems) or detail


# ---------------------------------------------------------------- kill -9
RESUMABLE = {"finetune": ("o_run/last.pth", "o_run/log.json")}  # a killed run's state to resume from, by design


def duration(name, base, scratch):
    """(seconds, outputs) of the job run to its end: how long a kill may wait, what complete is."""
    folder = copy_set(base, scratch, name)
    t0 = time.perf_counter()
    answer = finish(start(name, folder))
    seconds = time.perf_counter() - t0
    complete = outputs_of(name, folder)
    shutil.rmtree(folder)
    if answer["code"] != 0:
        raise RuntimeError(f"{name} failed: {answer['said']}")
    return seconds, complete


def kill_trial(name, base, scratch, at, complete=None):
    """Kill the job ``at`` seconds after its start: (ok, detail, whether it was still running).
    Afterwards its outputs are all absent, or all there and whole: never a part of the group, never
    a temporary or another file that opens."""
    folder = copy_set(base, scratch, name)
    before = snapshot(folder)
    proc = start(name, folder)
    time.sleep(at)
    running = proc.poll() is None
    if running:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.time() + 3.0
    while time.time() < deadline and temporaries(folder):  # the guardian removes them at once
        time.sleep(0.05)
    after = snapshot(folder)
    problems = []
    present = [rel for rel in JOBS[name][1] if (folder / rel).exists()]
    written = bool(present)
    if present and len(present) < len(JOBS[name][1]):
        problems.append(f"a part of the group after the kill: {present}")
    elif present:  # all there: each whole (a dataset: its manifest's samples all load)
        damaged = [rel for rel in present if not (_dataset_whole(folder / rel) if rel == "o_dataset"
                                                  else _opens(folder / rel))]
        if damaged:
            problems.append(f"damaged outputs after the kill: {damaged}")
    outputs = set(JOBS[name][1]) | set(RESUMABLE.get(name, ()))
    new = [p for p in after if p not in before and not any(p == o or p.startswith(o + "/") for o in outputs)]
    looking_valid = [p for p in new if _opens(folder / p)]
    if looking_valid:
        problems.append(f"files that look valid: {looking_valid[:5]}")
    litter = temporaries(folder)
    if litter:
        problems.append(f"temporaries left: {litter[:5]}")
    changed = [p for p, h in before.items() if after.get(p) != h]
    if changed:
        problems.append(f"inputs changed or gone: {changed[:5]}")
    shutil.rmtree(folder, ignore_errors=True)
    state = ("killed after its outputs were in place" if written else "killed before any output") if running \
        else "had finished"
    return not problems, "; ".join(problems) or state, running


def _dataset_whole(folder):
    try:
        return outputs_of("builddataset", folder.parent) is not None
    except Exception:  # noqa: BLE001 - a sample that does not load
        return False


def _opens(path):
    """Whether a file opens as what it claims to be (a raster, an archive, JSON)."""
    from osgeo import gdal
    try:
        if path.suffix in (".json",):
            json.loads(path.read_text())
            return True
        if path.suffix in (".npz", ".pth"):
            import zipfile
            with zipfile.ZipFile(path) as z:
                return z.testzip() is None
        if path.suffix == ".html":
            return path.read_text(errors="replace").rstrip().endswith("</html>")
        gdal.UseExceptions()
        return gdal.OpenEx(str(path), gdal.OF_RASTER | gdal.OF_VECTOR) is not None
    except Exception:  # noqa: BLE001 - any failure: it does not look valid
        return False


def random_moment(rng, seconds):
    return rng.uniform(0.0, seconds)


__all__ = ["JOBS", "VARIANTS", "make_set", "concurrency_trial", "kill_trial", "duration", "reference_outputs",
           "random", "random_moment"]
