"""Reproduce the shipped light-matcher weights (sar_stereo_plugin/weights/light_sar.pth) from scratch.

Usage: .venv/bin/python scripts/train_light.py [--recipe alpine|broad] [--init WEIGHTS] [--work DIR]
       [--steps N] [--threads 1] [--resume]  (`make train-light` runs the chain that made the shipped weights)

Recipe ``alpine`` (the first weights, steps 1-5):

1. Simulates SAR stereo pairs (:func:`core.simulate.simulate_pair`, 4-look speckle) over the real
   DEMs in ../shared/data/dem: Ötztal, Hintereisferner and the Swiss Alps for training, each with
   seeded random flights (heading, look side, incidences 25-45 degrees for the reference and
   10-25 degrees more for the secondary, 5-10 m pixels).
2. Cuts a patch dataset per DEM with :func:`core.training.dataset.build_dataset` (the DEM as DSM;
   one extra pair per DEM as the validation split) and merges their manifests into one.
3. Fine-tunes the light matcher (pretrained XFeat + new TinyRoMa heads) with
   :func:`core.training.finetune.finetune` and writes its weights to ``--out``. A share
   (``--synthetic``, 0.3) of the training pairs is replaced by random speckled texture pairs
   (:func:`core.training.samples.synthetic_sample`): trained on the simulated scenes alone the
   matcher leaned on their terrain shading and failed on plain textured pairs that POC matches.
4. Simulates a pair over the withheld DEM, matches it with the new weights and with POC through
   the patch engine, and prints their accuracy at 1/3/5/10 px (``core.evaluate``).
5. 2000 steps on one thread, then ``--resume --steps 4000``, ``8000`` and ``12000`` on two threads.
   Each resume is a warm restart: the step count goes on, the learning rate returns to ``--lr`` and
   drops tenfold for the last 10 % of the new total (romatch's schedule).

Recipe ``broad`` (the shipped weights: the alpine weights as ``--init``, trained on far more ground):

* Terrain: the real DEMs Ötztal, Hintereisferner, the Swiss Alps and Pico (Azores, with sea), and
  ``--terrains`` procedural ones (:mod:`core.simulate.relief`: 25-60 m posts, median slopes 12-38
  degrees and up to 60, ridges, valleys, a third with flat water, anywhere on Earth).
* Flights, seeded per terrain: heading 0-360 degrees, either look side, same-side pairs at two
  incidences within 20-65 degrees at least 8 apart (either one the reference: the secondary may be
  the steeper view), altitude 3-15 km (at least 1.5 km above the terrain), pixels 3-10 m (finer where
  the swath would otherwise reach nearer than 10 degrees incidence), 1-8 looks; 768 x 768 pixels.
* Patches as the engine cuts them, with the simulator's exact truth (its ground-truth raster), and
  the terrain averaged over 0.3-2 km as the engine's prior DEM (a user's coarse DEM: the truth lies
  off the prior by the local relief, as in use). One pair per real DEM and per third procedural
  terrain is the validation split.
* Each epoch's model is kept; the shipped one is the best on validation within 3 px (then 1 px).

Never used by either recipe: South Glacier (Yukon: the withheld test pair), Alaska (a steep held-out
pair of ``make compare``) and Jacksboro (the demo). Everything is seeded: the same command gives the
same weights on the same machine (thread count included: float sums differ between thread counts).
``--resume`` continues an interrupted training, or a finished one to a larger ``--steps``; the data are
built once per ``--work`` (each simulation kept, so an interrupted build continues).
"""

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SARSTEREO_SHARED_DATA", ROOT.parent / "shared" / "data"))
TRAIN_DEMS = ("oetztal_srtm3.tif", "hintereisferner_srtm3.tif", "swiss_alps_46m.tif")
BROAD_DEMS = TRAIN_DEMS + ("pico_azores_srtm3.tif",)
TEST_DEM = "south_glacier_20m_utm7n.tif"
HELD_OUT_DEMS = (TEST_DEM, "alaska_rgi50-01.10299_100m.tif")
SIZE = 768  # image rows and columns
PATCH, OVERLAP, BLOCK = 256, 64, 4096  # one block per image: each pair goes wholly into one split
UNCERTAINTY_M = 600.0  # secondary windows as wide as a +-600 m height prior calls for
TEST_SETTINGS = dict(patch_size=256, overlap=32, height_uncertainty_m=800.0)  # constant prior: the median height
NEAR_EDGE_DEG, MIN_SPACING_M = 10.0, 1.5  # airborne swaths at low incidence are narrow: finer pixels there
TERRAIN_SEED0 = 1000  # procedural terrain k has seed TERRAIN_SEED0 + k


def design(rng):
    from sar_stereo_plugin.core.flight import FlightDesign
    ref = float(rng.uniform(25.0, 45.0))
    return FlightDesign(look_side=str(rng.choice(["left", "right"])), heading_deg=float(rng.uniform(0.0, 360.0)),
                        altitude_m=12000.0, reference_incidence_deg=ref,
                        secondary_incidence_deg=ref + float(rng.uniform(10.0, 25.0)),
                        pixel_spacing_m=float(rng.choice([5.0, 7.5, 10.0])), rows=SIZE, cols=SIZE)


def simulate(dem, flight, seed, folder, name, looks=4.0):
    from sar_stereo_plugin.core.simulate import simulate_pair
    paths = [folder / f"{name}_{kind}.tif" for kind in ("ref", "sec", "gt")]
    folder.mkdir(parents=True, exist_ok=True)
    if not all(p.exists() for p in paths):
        simulate_pair(str(dem), flight, looks=looks, seed=seed, reference_output=paths[0], secondary_output=paths[1],
                      ground_truth_output=paths[2])
    return paths


def geographic(dem, work):
    """The DEM in EPSG:4326: the dataset builder's footprint box turns NaN (nodes off the ellipsoid
    crossing) into +-inf through projected CRSs (Dem.lonlat_to_pixel), so projected DEMs are warped."""
    from osgeo import gdal, osr
    srs = osr.SpatialReference(wkt=gdal.Open(str(dem)).GetProjection())
    if srs.IsGeographic():
        return dem
    out = work / "dem" / f"{dem.stem}_wgs84.tif"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        gdal.Warp(str(out), str(dem), dstSRS="EPSG:4326", resampleAlg="bilinear")
    return out


def build(work, pairs_per_dem, seed):
    """Simulate and cut the training/validation dataset; returns its folder."""
    from sar_stereo_plugin.core.training.dataset import build_dataset
    data = work / "data"
    if (data / "manifest.json").is_file():
        return data
    samples, counts = [], {"train": 0, "val": 0, "test": 0}
    for d, name in enumerate(TRAIN_DEMS):
        dem = geographic(SHARED / "dem" / name, work)
        rng = np.random.default_rng([seed, d])
        pairs = [simulate(dem, design(rng), 1000 * d + k, work / "sim", f"{dem.stem}_{k}")[:2]
                 for k in range(pairs_per_dem + 1)]
        for split, chosen, fractions in (("train", pairs[:-1], (1, 0, 0)), ("val", pairs[-1:], (0, 1, 0))):
            sub = f"{dem.stem}_{split}"
            result = build_dataset(chosen, dem, data / sub, patch_size=PATCH, overlap=OVERLAP, block_px=BLOCK,
                                   split=fractions, height_uncertainty_m=UNCERTAINTY_M, seed=seed)
            print(f"{sub}: {result.counts[split]} samples from {len(chosen)} pairs ({result.seconds:.0f} s)")
            entries = json.loads((data / sub / "manifest.json").read_text())["samples"]
            samples += [dict(e, file=f"{sub}/{e['file']}", dem=name) for e in entries]
            counts[split] += len(entries)
    manifest = {"schema": "sarstereo.dataset/1", "patch_size": PATCH, "samples": samples, "counts": counts,
                "note": "merged by scripts/train_light.py from one dataset per DEM and split"}
    (data / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return data


# --- the broad recipe -----------------------------------------------------------------------------

def terrain_design(rng):
    """A random procedural :class:`TerrainDesign` (module doc, recipe broad)."""
    from sar_stereo_plugin.core.simulate.relief import TerrainDesign
    water = 0.0 if rng.random() < 0.67 else float(rng.uniform(0.05, 0.4))
    return TerrainDesign(rows=448, cols=448, pixel_m=float(rng.uniform(25.0, 60.0)),
                         median_slope_deg=float(rng.uniform(12.0, 38.0)), max_slope_deg=60.0,
                         ridges=float(rng.uniform(0.0, 1.0)), valleys=float(rng.uniform(1.0, 2.5)),
                         beta=float(rng.uniform(3.6, 4.4)), feature_m=float(rng.uniform(3000.0, 10000.0)),
                         warp_m=float(rng.uniform(0.0, 1000.0)), water_fraction=water,
                         base_m=float(rng.uniform(0.0, 2500.0)), center_lon=float(rng.uniform(-180.0, 180.0)),
                         center_lat=float(rng.uniform(-60.0, 65.0)))


def broad_design(rng, top_m):
    """A random same-side :class:`FlightDesign` over terrain reaching ``top_m`` (module doc)."""
    from sar_stereo_plugin.core.flight import FlightDesign
    while True:
        ref, sec = (float(v) for v in rng.uniform(20.0, 65.0, 2))
        if abs(ref - sec) >= 8.0:
            break
    altitude = float(rng.uniform(max(3000.0, top_m + 1500.0), 15000.0))
    spacing = float(rng.uniform(3.0, 10.0))
    for _ in range(20):  # the swath's near edge beyond NEAR_EDGE_DEG: finer pixels, else a higher flight
        limit = min(altitude * (math.tan(math.radians(inc)) - math.tan(math.radians(NEAR_EDGE_DEG)))
                    * math.sin(math.radians(inc)) / (SIZE / 2.0) for inc in (ref, sec))
        if limit >= MIN_SPACING_M or altitude >= 15000.0:
            break
        altitude = min(altitude * 1.25, 15000.0)
    return FlightDesign(look_side=str(rng.choice(["left", "right"])), heading_deg=float(rng.uniform(0.0, 360.0)),
                        altitude_m=altitude, reference_incidence_deg=ref, secondary_incidence_deg=sec,
                        pixel_spacing_m=round(max(min(spacing, limit), 1.0), 2), rows=SIZE, cols=SIZE)


def terrains(work, count, seed):
    """[(name, DEM path, rng)]: the real training DEMs, then ``count`` procedural ones (written once)."""
    from sar_stereo_plugin.core.simulate.relief import synthetic_terrain
    out = [(Path(name).stem, geographic(SHARED / "dem" / name, work), np.random.default_rng([seed, d]))
           for d, name in enumerate(BROAD_DEMS)]
    for k in range(count):
        path = work / "dem" / f"generated_{k:03d}.tif"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            synthetic_terrain(terrain_design(np.random.default_rng([seed, 100, k])), seed=TERRAIN_SEED0 + k,
                              name=path.stem).write(path)
        out.append((path.stem, path, np.random.default_rng([seed, 200, k])))
    return out


def prior_dem(dem_path, rng, work):
    """The terrain averaged over 0.3-2 km (NaN filled with its median): the engine's prior DEM."""
    from scipy.ndimage import uniform_filter

    from sar_stereo_plugin.core.dem import Dem, open_dem
    out = work / "dem" / f"{Path(dem_path).stem}_prior.tif"
    metres = float(rng.uniform(300.0, 2000.0))
    if not out.exists():
        dem = open_dem(str(dem_path))
        size = [max(1, int(round(metres / s))) for s in dem.pixel_size_m()]
        heights = np.where(np.isfinite(dem.heights), dem.heights, np.nanmedian(dem.heights))
        out.parent.mkdir(parents=True, exist_ok=True)
        Dem.from_array(uniform_filter(heights, size, mode="nearest"), dem.geotransform, dem.crs.to_wkt(),
                       out.stem).write(out)
    return out


def build_broad(work, pairs_real, pairs_generated, count, seed):
    """Simulate and cut the broad recipe's training/validation dataset; returns its folder."""
    from sar_stereo_plugin.core.dem import height_bounds, open_dem
    from sar_stereo_plugin.core.training.dataset import build_dataset
    data = work / "data"
    if (data / "manifest.json").is_file():
        return data
    samples, val = [], []
    for t, (name, dem, rng) in enumerate(terrains(work, count, seed)):
        generated = name.startswith("generated")
        n = pairs_generated if generated else pairs_real
        with_val = not generated or int(name.split("_")[1]) % 3 == 0
        top = height_bounds(open_dem(str(dem)))[1]
        flights = [(broad_design(rng, top), int(rng.choice([1, 2, 3, 4, 6, 8]))) for _ in range(n + with_val)]
        prior = prior_dem(dem, rng, work)
        start = time.perf_counter()
        pairs = [simulate(dem, flight, 10_000 * (t + 1) + k, work / "sim", f"{name}_{k}", float(looks))
                 for k, (flight, looks) in enumerate(flights)]
        simulated = time.perf_counter() - start
        chosen = [("train", pairs[:n], (1, 0, 0))] + ([("val", pairs[n:], (0, 1, 0))] if with_val else [])
        for split, group, fractions in chosen:
            sub = f"{name}_{split}"
            if not (data / sub / "manifest.json").is_file():
                result = build_dataset([p[:2] for p in group], str(dem), data / sub, patch_size=PATCH,
                                       overlap=OVERLAP, block_px=BLOCK, split=fractions,
                                       height_uncertainty_m=UNCERTAINTY_M, seed=seed,
                                       ground_truth=[p[2] for p in group], prior_dem=str(prior))
                print(f"{sub}: {result.counts[split]} samples from {len(group)} pairs ({simulated:.0f} s simulating, "
                      f"{result.seconds:.0f} s cutting)", flush=True)
            entries = json.loads((data / sub / "manifest.json").read_text())["samples"]
            (val if split == "val" else samples).extend(dict(e, file=f"{sub}/{e['file']}", dem=name)
                                                        for e in entries)
    # validation interleaved over its pairs, so that the first --val-samples see every one
    val.sort(key=lambda e: (e["reference_origin"][0] // PATCH, e["reference_origin"][1] // PATCH, e["file"]))
    samples += val
    counts = {s: sum(e["split"] == s for e in samples) for s in ("train", "val", "test")}
    manifest = {"schema": "sarstereo.dataset/1", "patch_size": PATCH, "samples": samples, "counts": counts,
                "note": "merged by scripts/train_light.py from one dataset per terrain and split"}
    (data / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"dataset: {counts['train']} training and {counts['val']} validation samples", flush=True)
    return data


def ship(run, out, result):
    """The epoch snapshot with the best validation within 3 px (ties: 1 px) as the weights file; the
    final model where no snapshot did better. Returns which one it is."""
    import torch

    from sar_stereo_plugin.core.matchers.light import build_light_model, save_light_weights

    def key(v):
        return (v["accuracy_at_px"]["3"], v["accuracy_at_px"]["1"]) if v else (-1.0, -1.0)
    best = None
    for path in sorted(run.glob("epoch_*.pth")):
        snapshot = torch.load(path, map_location="cpu", weights_only=True)
        if best is None or key(snapshot.get("validation")) > key(best[1].get("validation")):
            best = (path, snapshot)
    if best is None or key(result.validation) >= key(best[1].get("validation")):
        shutil.copyfile(result.weights, out)
        return f"the final model (step {result.steps})"
    path, snapshot = best
    model = build_light_model(snapshot["model"], "cpu", source=str(path))
    save_light_weights(model, out, {"step": snapshot["step"], "config": snapshot["config"],
                                    "validation": snapshot["validation"]})
    return f"{path.name} (step {snapshot['step']})"


def evaluate(weights, work, threads):
    """Light vs POC on a pair simulated over the withheld DEM (accuracy over valid truth pixels)."""
    from sar_stereo_plugin.core.evaluate import evaluate_matches
    from sar_stereo_plugin.core.flight import FlightDesign
    from sar_stereo_plugin.core.matchers import create_matcher
    from sar_stereo_plugin.core.matching import MatchSettings, match_pair
    flight = FlightDesign(heading_deg=30.0, altitude_m=12000.0, reference_incidence_deg=35.0,
                          secondary_incidence_deg=50.0, pixel_spacing_m=5.0, rows=SIZE, cols=SIZE)
    ref, sec, gt = simulate(SHARED / "dem" / TEST_DEM, flight, 777, work / "test", "south_glacier")
    report = {}
    for name, options in (("light", {"weights": weights, "device": "cpu"}), ("poc", {})):
        matcher = create_matcher(name, **options)
        out = work / "test" / f"matches_{name}.tif"
        result = match_pair(ref, sec, out, matcher, MatchSettings(**TEST_SETTINGS))
        report[name] = evaluate_matches(out, gt) | {"seconds_matching": result.seconds_matching,
                                                     "matcher": matcher.describe()}
    print(f"held-out pair over {TEST_DEM} ({SIZE}x{SIZE}, {threads} thread(s)); accuracy at 1/3/5/10 px, "
          "median end-point error, matching time:")
    for name, r in report.items():
        acc = " / ".join(f"{100 * r['accuracy_at_px'][t]:5.1f}" for t in ("1", "3", "5", "10"))
        print(f"  {name:6s} {acc} %   median {r['median_epe_px']:.2f} px   {r['seconds_matching']:.1f} s")
    (work / "test" / "report.json").write_text(json.dumps(report, indent=1))
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", choices=("alpine", "broad"), default="broad", help="module doc")
    p.add_argument("--work", type=Path, help="scratch folder (default: build/train_light[_broad])")
    p.add_argument("--out", type=Path, default=ROOT / "sar_stereo_plugin" / "weights" / "light_sar.pth")
    p.add_argument("--init", type=Path, help="broad: the weights to start from (the alpine recipe's)")
    p.add_argument("--pairs-per-dem", type=int, default=6, help="alpine: training pairs per DEM")
    p.add_argument("--terrains", type=int, default=24, help="broad: procedural terrains")
    p.add_argument("--pairs-real", type=int, default=4, help="broad: training pairs per real DEM")
    p.add_argument("--pairs-generated", type=int, default=2, help="broad: training pairs per procedural terrain")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (broad: 1500 made the shipped weights)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4,
                   help="heads and backbone (recipe: 1e-4 x batch / 8; new heads learn faster at 5e-4)")
    p.add_argument("--synthetic", type=float, default=0.3, help="share of synthetic texture pairs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the training in --work")
    p.add_argument("--skip-eval", action="store_true")
    a = p.parse_args()
    broad = a.recipe == "broad"
    a.work = a.work or ROOT / "build" / ("train_light_broad" if broad else "train_light")
    missing = [n for n in (BROAD_DEMS if broad else TRAIN_DEMS) + HELD_OUT_DEMS if not (SHARED / "dem" / n).is_file()]
    if missing:
        sys.exit(f"{', '.join(missing)} not in {SHARED / 'dem'}: set SARSTEREO_SHARED_DATA")
    if broad and not a.resume and not (a.init and a.init.is_file()):
        sys.exit(f"--init {a.init}: no weights to start the broad recipe from; give the alpine recipe's "
                 "(make train-light runs both)")
    import torch
    torch.set_num_threads(a.threads)
    from sar_stereo_plugin.core.training.finetune import finetune
    from sar_stereo_plugin.core.training.settings import FinetuneSettings
    start = time.perf_counter()
    a.work.mkdir(parents=True, exist_ok=True)
    data = (build_broad(a.work, a.pairs_real, a.pairs_generated, a.terrains, a.seed) if broad
            else build(a.work, a.pairs_per_dem, a.seed))
    built = time.perf_counter()
    print(f"dataset: {data} ({built - start:.0f} s)", flush=True)
    run = a.work / "run"
    if run.exists() and not a.resume:
        shutil.rmtree(run)
    settings = FinetuneSettings(model="light", steps=a.steps, batch_size=a.batch_size, lr=a.lr, device="cpu",
                                seed=a.seed, save_every=100, log_every=25, val_samples=64 if broad else 24,
                                resume=a.resume, epoch_checkpoints=broad, synthetic=a.synthetic,
                                weights=str(a.init) if broad else None)
    result = finetune(data, run, settings, report=lambda line: print(line, flush=True))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if broad:
        shipped = ship(run, a.out, result)
    else:
        shutil.copyfile(result.weights, a.out)
        shipped = "the final model"
    trained = time.perf_counter()
    print(f"weights: {a.out}, {shipped} ({a.out.stat().st_size / 2**20:.1f} MiB); training {trained - built:.0f} s, "
          f"{result.steps_per_second:.2f} steps/s, {a.threads} thread(s)")
    if not a.skip_eval:
        evaluate(a.out, a.work, a.threads)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
