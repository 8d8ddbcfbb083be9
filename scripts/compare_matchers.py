"""Compare matchers as the method's paper does, on pairs the light matcher never saw in training.

Usage: .venv/bin/python scripts/compare_matchers.py [--matchers poc light] [--out build/compare]
       [--scenes test|validation] [--band PX] [--threshold C] [--results docs/RESULTS.md]   (`make compare`)

Scenes: the `make demo` pair (embedded Jacksboro DEM, default flight design) and a pair over the South
Glacier DEM (Yukon, 20 m, UTM), which `scripts/train_light.py` withholds from training. For each
matcher, through the same patch engine and height prior (+-300 m) with the matcher's own patch
geometry (what a user gets by default; ``--patch-size``/``--overlap`` impose one on all): matching
accuracy at 1/3/5/10 px and coverage against the simulator's ground truth
(`core.evaluate.evaluate_matches`), then the DEM made from the matches
(`core.elevation.generate_elevation`) against the DEM the pair was simulated from
(`core.evaluate.evaluate_dem`): share of cells within 1/2/5/10/20 m, median absolute error, RMSE
and coverage. Prints a Markdown table, writes it with every figure to <out>/compare.json, and puts it
in its own dated section of the results page (``--results``; an empty value leaves the page alone).

``--scenes validation``: two pairs with fresh flights over training DEMs (Swiss Alps, Hintereisferner),
on which the light matcher's defaults (epipolar band, certainty threshold) were chosen, so the test
pairs above stay unseen by that choice too. ``--band``: the epipolar band (pixels, 0: none).
``--threshold``: the certainty threshold of the DEM step for every matcher (default: each matcher's own).
"""

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SARSTEREO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def scenes(which):
    from sar_stereo_plugin.core.flight import FlightDesign
    common = dict(pixel_spacing_m=7.5, altitude_m=12000.0, rows=768, cols=768)
    if which == "validation":
        return {"Swiss Alps (validation)": (SHARED / "dem" / "swiss_alps_46m.tif", FlightDesign(
                    heading_deg=60.0, reference_incidence_deg=30.0, secondary_incidence_deg=48.0, **common)),
                "Hintereisferner (validation)": (SHARED / "dem" / "hintereisferner_srtm3.tif", FlightDesign(
                    heading_deg=200.0, look_side="left", reference_incidence_deg=33.0, secondary_incidence_deg=52.0,
                    **common))}
    return {"Jacksboro (demo pair)": (None, FlightDesign()),
            "South Glacier (withheld)": (SHARED / "dem" / "south_glacier_20m_utm7n.tif", FlightDesign(
                heading_deg=30.0, reference_incidence_deg=35.0, secondary_incidence_deg=50.0, **common))}


def simulate(folder, dem, flight, seed):
    from sar_stereo_plugin.core.dem import open_dem
    from sar_stereo_plugin.core.simulate import simulate_pair
    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / f"{key}.tif" for key in ("reference", "secondary", "truth", "source_dem")}
    if not all(p.exists() for p in paths.values()):
        simulate_pair(dem and str(dem), flight, seed=seed, reference_output=paths["reference"],
                      secondary_output=paths["secondary"], ground_truth_output=paths["truth"])
        open_dem(dem and str(dem)).write(paths["source_dem"])
    return paths


def evaluate(paths, folder, name, settings, threshold=None):
    from sar_stereo_plugin.core.elevation import ElevationSettings, generate_elevation
    from sar_stereo_plugin.core.evaluate import evaluate_dem, evaluate_matches
    from sar_stereo_plugin.core.matchers import create_matcher
    from sar_stereo_plugin.core.matching import match_pair
    matches, dem = folder / f"matches_{name}.tif", folder / f"dem_{name}.tif"
    matcher = create_matcher(name)
    start = time.perf_counter()
    done = match_pair(paths["reference"], paths["secondary"], matches, matcher, settings)
    seconds = time.perf_counter() - start
    matching = evaluate_matches(matches, paths["truth"])
    generate_elevation(matches, dem, ElevationSettings(certainty_threshold=threshold))
    elevation = evaluate_dem(dem, paths["source_dem"], report=folder / f"dem_{name}.json")
    return {"matching": matching, "elevation": elevation, "matching_seconds": seconds,
            "patches": f"{done.patch_size}/{done.overlap}", "matcher": matcher.describe()}


def table(results):
    head = ("| scene | matcher | patch/overlap | acc 1 px | 3 px | 5 px | 10 px | match coverage | DEM within 1 m "
            "| 2 m | 5 m | 10 m | 20 m | median abs error | RMSE | DEM coverage | matching time |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for scene, by_matcher in results.items():
        for name, r in by_matcher.items():
            m, e = r["matching"], r["elevation"]
            lines.append(f"| {scene} | {name} | {r['patches']} | "
                         + " | ".join(f"{m['accuracy_at_px'][t]:.3f}" for t in "1 3 5 10".split())
                         + f" | {m['coverage']:.3f} | "
                         + " | ".join(f"{e['fraction_within_m'][t]:.3f}" for t in "1 2 5 10 20".split())
                         + f" | {e['median_abs_error_m']:.2f} m | {e['rmse_m']:.1f} m | {e['coverage']:.3f}"
                         + f" | {r['matching_seconds']:.0f} s |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--matchers", nargs="+", default=["poc", "light"])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "compare")
    parser.add_argument("--patch-size", type=int, help="for every matcher (default: each matcher's own)")
    parser.add_argument("--overlap", type=int, help="for every matcher (default: each matcher's own)")
    parser.add_argument("--scenes", choices=("test", "validation"), default="test")
    parser.add_argument("--band", type=float, help="epipolar band, pixels (0: none; default: MatchSettings')")
    parser.add_argument("--threshold", type=float, help="certainty threshold of the DEM step (default: the matcher's)")
    parser.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"),
                        help="results page to put the table on ('': none)")
    args = parser.parse_args()
    from sar_stereo_plugin.core.matching import MatchSettings
    settings = MatchSettings(patch_size=args.patch_size, overlap=args.overlap, height_uncertainty_m=300.0)
    if args.band is not None:
        settings = replace(settings, epipolar_band_px=args.band or None)
    results = {}
    for scene, (dem, flight) in scenes(args.scenes).items():
        folder = args.out / scene.split()[0].lower()
        paths = simulate(folder, dem, flight, seed=4242 if args.scenes == "validation" else 0)
        results[scene] = {name: evaluate(paths, folder, name, settings, args.threshold) for name in args.matchers}
    text = table(results)
    print(text)
    (args.out / "compare.json").write_text(json.dumps({"table": text, "results": results}, indent=2, default=str))
    print(f"figures: {args.out / 'compare.json'}")
    if args.results:
        from results_page import write_section
        print(f"results page: {write_section(command(args), title(args), text, args.results)}")


def command(args):
    """The command line that regenerates this table: ``make compare``, or the script with its options."""
    defaults = {"matchers": ["poc", "light"], "patch_size": None, "overlap": None, "scenes": "test", "band": None,
                "threshold": None}
    options = []
    for key, default in defaults.items():
        value = getattr(args, key)
        if value != default:
            options += [f"--{key.replace('_', '-')}", *(map(str, value) if isinstance(value, list) else [str(value)])]
    return ".venv/bin/python scripts/compare_matchers.py " + shlex.join(options) if options else "make compare"


def title(args):
    what = "validation pairs (fresh flights over training DEMs)" if args.scenes == "validation" else \
        "pairs the light matcher never saw in training"
    names = " and ".join(m.upper() if m == "poc" else m for m in args.matchers)
    return f"Matching and DEM accuracy, {names}, on {what}"


if __name__ == "__main__":
    main()
