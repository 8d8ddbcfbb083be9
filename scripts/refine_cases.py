"""Sensor-model refinement on simulated pairs with injected model errors (`make refine-cases`).

For each pair (the demo pair over the embedded Jacksboro DEM, and pairs over real DEMs of
../shared/data/dem) the true models are known. Each case injects errors into either or both models
(azimuth offsets and drifts, slant-range offsets, a cross-track trajectory offset), refines them with
absolute control (the scene's DEM resampled to 300 m, the coarse DEM any user has; and the scene's DEM
itself, as a Copernicus 30 m DEM would be; or none), and reports:

* how far the refined models put the ground from where the true models do (max over the image,
  pixels), per model;
* the DEM made from matches with the refined models (light matcher where installed, else POC)
  against the source DEM: median absolute error and coverage, beside the true models' DEM.

Usage: .venv/bin/python scripts/refine_cases.py [--out build/refine-cases] [--pairs demo alpine]
       [--controls 300m source none]   (`make refine-cases`)
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
SHARED = Path(os.environ.get("SARSTEREO_SHARED_DATA", ROOT.parent / "shared" / "data"))

# name -> per role: (azimuth lines, range samples, azimuth drift lines over the image, cross-track m)
CASES = {
    "none": {},
    "secondary 3 lines": {"secondary": (3, 0, 0, 0)},
    "secondary 2 samples": {"secondary": (0, 2, 0, 0)},
    "secondary 6 lines, 3 samples": {"secondary": (6, 3, 0, 0)},
    "secondary -30 lines, +10 samples": {"secondary": (-30, 10, 0, 0)},
    "both: +20/-15 lines, -5/+8 samples": {"reference": (20, -5, 0, 0), "secondary": (-15, 8, 0, 0)},
    "drifts: 5 lines / -3 lines over the image": {"reference": (0, 0, -3, 0), "secondary": (4, 0, 5, 0)},
    "secondary 5 m cross-track (airborne)": {"secondary": (0, 0, 0, 5.0)},
}


def pairs():
    from sar_stereo_plugin.core.flight import FlightDesign
    return {"demo": (None, FlightDesign()),
            "alpine": (SHARED / "dem" / "swiss_alps_46m.tif",
                       FlightDesign(heading_deg=60.0, reference_incidence_deg=30.0, secondary_incidence_deg=48.0,
                                    pixel_spacing_m=7.5, altitude_m=12000.0, rows=768, cols=768))}


def simulate(folder, dem, flight):
    from sar_stereo_plugin.core.dem import open_dem
    from sar_stereo_plugin.core.simulate import simulate_pair
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / f"{k}.tif" for k in ("reference", "secondary", "truth", "source_dem")}
    if not all(p.exists() for p in paths.values()):
        simulate_pair(dem and str(dem), flight, seed=7, reference_output=paths["reference"],
                      secondary_output=paths["secondary"], ground_truth_output=paths["truth"])
        open_dem(dem and str(dem)).write(paths["source_dem"])
    paths["dem300"] = folder / "dem300.tif"
    if not paths["dem300"].exists():  # the source DEM at 300 m: the coarse absolute control a user has
        from sar_stereo_plugin.core.elevation import utm_crs
        zone = utm_crs(*open_dem(paths["source_dem"]).center_lonlat()).to_epsg()
        subprocess.run(["gdalwarp", "-q", "-overwrite", "-tr", "300", "300", "-t_srs", f"EPSG:{zone}", "-r",
                        "average", str(paths["source_dem"]), str(paths["dem300"])], check=True)
    return paths


def inject(model, errors):
    """``model`` as metadata with the given errors would describe it (see CASES)."""
    from sar_stereo_plugin.core.corrections import misplaced
    return misplaced(model, *errors) if errors else model


def dem_accuracy(paths, folder, name, ref, sec, matcher):
    from sar_stereo_plugin.core.elevation import generate_elevation
    from sar_stereo_plugin.core.evaluate import evaluate_dem
    from sar_stereo_plugin.core.matching import match_pair
    matches, dem = folder / f"matches_{name}.tif", folder / f"dem_{name}.tif"
    match_pair(paths["reference"], paths["secondary"], matches, matcher, reference_model=ref, secondary_model=sec)
    generate_elevation(matches, dem)
    stats = evaluate_dem(dem, paths["source_dem"])
    return {"median_abs_error_m": stats["median_abs_error_m"], "coverage": stats["coverage"]}


CONTROLS = {"300m": ("dem300", "DEM 300 m"), "source": ("source_dem", "scene DEM"), "none": (None, "none")}


def run_pair(label, dem_path, flight, out, matcher, controls):
    from sar_stereo_plugin.core.dem import open_dem
    from sar_stereo_plugin.core.products import read_sensor_model
    from sar_stereo_plugin.core.refine import disagreement_px
    from sar_stereo_plugin.core.refine_pair import refine_pair
    folder = out / label
    paths = simulate(folder, dem_path, flight)
    true = [read_sensor_model(paths[k]) for k in ("reference", "secondary")]
    source = open_dem(paths["source_dem"])
    rows = [{"pair": label, "case": "true models", **dem_accuracy(paths, folder, "true", *true, matcher)}]
    for control, (case, errors) in ((c, item) for c in controls for item in CASES.items()):
        models = [inject(m, errors.get(role)) for m, role in zip(true, ("reference", "secondary"))]
        key, name = CONTROLS[control]
        start = time.perf_counter()
        result = refine_pair(paths["reference"], paths["secondary"], reference_model=models[0],
                             secondary_model=models[1], reference_dem=key and paths[key])
        seconds = time.perf_counter() - start
        refined = (result.reference_model, result.secondary_model)
        row = {"pair": label, "case": case, "control": name,
               "image_error_px": [disagreement_px(t, r, source) for t, r in zip(true, refined)],
               "misclosure_after_px": result.misclosure_px["after"]["median_abs"],
               "unobservable": result.unobservable, "warnings": result.warnings, "seconds": seconds,
               "tie_points": result.tie_points_used}
        row.update(dem_accuracy(paths, folder, f"{control}_{case.replace(' ', '_').replace('/', '-')}", *refined,
                                matcher))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows):
    lines = ["| pair | case | control | image error ref / sec (px) | DEM median abs error | coverage | time |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        err = " / ".join(f"{e:.3f}" for e in r["image_error_px"]) if "image_error_px" in r else "-"
        lines.append(f"| {r['pair']} | {r['case']} | {r.get('control', '-')} | {err} | {r['median_abs_error_m']:.2f} m "
                     f"| {r['coverage']:.3f} | {r.get('seconds', 0):.1f} s |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "build" / "refine-cases"))
    p.add_argument("--pairs", nargs="+", default=["demo", "alpine"])
    p.add_argument("--matcher", default="auto")
    p.add_argument("--controls", nargs="+", choices=sorted(CONTROLS), default=["300m", "source"],
                   help="absolute control of each run: the scene's DEM at 300 m, the scene's DEM, or none")
    p.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"), help="results page ('': none)")
    a = p.parse_args()
    from sar_stereo_plugin.core.matchers import create_matcher
    matcher = create_matcher(a.matcher)
    out = Path(a.out)
    rows = []
    for label in a.pairs:
        dem, flight = pairs()[label]
        rows += run_pair(label, dem, flight, out, matcher, a.controls)
    (out / "refine_cases.json").write_text(json.dumps(rows, indent=1))
    text = table(rows)
    print(text)
    if a.results:
        from results_page import write_section
        title = ("Sensor-model refinement on pairs with injected model errors (control: the scene's DEM at 300 m, "
                 "or at its own resolution; image error: the largest distance, over the image, between where the "
                 "refined and the true model put the ground)")
        print(f"results page: {write_section('make refine-cases', title, text, a.results)}")


if __name__ == "__main__":
    main()
