"""Compare matchers as the method's paper does, on pairs the light matcher never saw in training.

Usage: .venv/bin/python scripts/compare_matchers.py [--matchers poc light fused] [--out build/compare]
       [--scenes test|steep|validation|all] [--steps new|old|both] [--baseline WEIGHTS] [--band PX]
       [--threshold C] [--results docs/RESULTS.md]   (`make compare`)

Scenes (``--scenes``): ``test``, the `make demo` pair (embedded Jacksboro DEM, default flight design)
and a pair over the South Glacier DEM (Yukon, 20 m, UTM, 35/50 degrees); ``steep``, the held-out steep-
relief set: South Glacier again at 25/55 degrees (28 % of its slopes above 35 degrees) and the Alaskan
glacier region (100 m, 15 %) at 28/58 degrees, incidences far apart and the nearer one steep (strong
foreshortening: the views differ most in scale); no training recipe uses either DEM. ``validation``: two
pairs with fresh flights over training DEMs (Swiss Alps, Hintereisferner), on which the defaults were
chosen (the light matcher's epipolar band and certainty threshold, the round-trip tolerances, the
fusion's calibration, the elevation step's outlier test), so the other pairs stay unseen by that choice;
``all`` (the default): every set.

For each matcher (``--matchers``: poc, light, fused, roma; ``light-baseline``, the light matcher with
``--baseline`` weights and their threshold 0.5), through the same patch engine and height prior
(+-300 m) with the matcher's own patch geometry (what a user gets by default;
``--patch-size``/``--overlap`` impose one on all): matching accuracy at 1/3/5/10 px and coverage
against the simulator's ground truth (`core.evaluate.evaluate_matches`), then the DEM made from the
matches (`core.elevation.generate_elevation`) against the DEM the pair was simulated from
(`core.evaluate.evaluate_dem`): share of cells within 1/2/5/10/20 m, median absolute error, NMAD,
RMSE, LE90, their ratios to the NMAD (a blunder-free DEM has RMSE ~ NMAD, LE90 ~ 1.65 NMAD), the
blunder share (cells more than 3 NMAD from the median error) and coverage, also as a share of the
**ceiling**: the coverage the simulator's perfect matches reach (its ground truth through the same
elevation step); the matching time and its ratio to POC's on the scene. ``--steps old`` (or ``both``)
also runs each matcher without the steps issue 16 added (no check, the plain median, no neighbourhood
test, the certainty thresholds the matchers had before it). Prints a Markdown table, writes it with
every figure to <out>/compare.json, and puts it in its own dated section of the results page
(``--results``; an empty value leaves the page alone). ``--band``: the epipolar band (pixels, 0:
none). ``--threshold``: the certainty threshold of the DEM step for every matcher (default: each
matcher's own).
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


MATCHERS = ("poc", "light", "fused")  # the default rows, each scene
BASELINE_THRESHOLD = 0.5  # the light matcher's certainty threshold with the alpine weights (--baseline)
# the matchers' certainty thresholds before issue 16
BEFORE_THRESHOLD = {"light": 0.05, "light-baseline": 0.05, "poc": 0.0, "roma": 0.0, "fused": 0.0}


SCENE_SETS = ("test", "steep", "validation")


def scenes(which):
    """{scene: (DEM path or None for the embedded one, FlightDesign)} of a set, or of all."""
    from sar_stereo_plugin.core.flight import FlightDesign
    common = dict(pixel_spacing_m=7.5, altitude_m=12000.0, rows=768, cols=768)
    if which == "all":
        return {k: v for name in SCENE_SETS for k, v in scenes(name).items()}
    if which == "validation":
        return {"Swiss Alps (validation)": (SHARED / "dem" / "swiss_alps_46m.tif", FlightDesign(
                    heading_deg=60.0, reference_incidence_deg=30.0, secondary_incidence_deg=48.0, **common)),
                "Hintereisferner (validation)": (SHARED / "dem" / "hintereisferner_srtm3.tif", FlightDesign(
                    heading_deg=200.0, look_side="left", reference_incidence_deg=33.0, secondary_incidence_deg=52.0,
                    **common))}
    if which == "steep":  # held out: DEMs no recipe trains on, at steep incidences far apart
        return {"South Glacier steep (held out)": (SHARED / "dem" / "south_glacier_20m_utm7n.tif", FlightDesign(
                    heading_deg=120.0, look_side="left", reference_incidence_deg=25.0, secondary_incidence_deg=55.0,
                    **common)),
                "Alaska steep (held out)": (SHARED / "dem" / "alaska_rgi50-01.10299_100m.tif", FlightDesign(
                    heading_deg=300.0, reference_incidence_deg=28.0, secondary_incidence_deg=58.0,
                    **dict(common, pixel_spacing_m=10.0)))}
    return {"Jacksboro (demo pair)": (None, FlightDesign()),
            "South Glacier (withheld)": (SHARED / "dem" / "south_glacier_20m_utm7n.tif", FlightDesign(
                heading_deg=30.0, reference_incidence_deg=35.0, secondary_incidence_deg=50.0, **common))}


def folder_name(scene):
    """A scene's folder under --out: its name without the parenthesis, lower case, underscores."""
    return "_".join(scene.split(" (")[0].lower().split())


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


def evaluate(paths, folder, name, settings, threshold=None, steps="new", baseline=None):
    """Match with one matcher and make and evaluate its DEM, with the steps of issue 16 ("new") or
    without them ("old"). ``light-baseline``: the light matcher with the ``baseline`` weights."""
    from sar_stereo_plugin.core.elevation import ElevationSettings, generate_elevation
    from sar_stereo_plugin.core.evaluate import evaluate_dem, evaluate_matches
    from sar_stereo_plugin.core.matchers import create_matcher
    from sar_stereo_plugin.core.matching import match_pair
    matches, dem = folder / f"matches_{name}_{steps}.tif", folder / f"dem_{name}_{steps}.tif"
    matcher = (create_matcher("light", weights=baseline) if name == "light-baseline" else create_matcher(name))
    if name == "light-baseline" and threshold is None:
        threshold = BASELINE_THRESHOLD  # the DEM step's default with those weights
    elevation = ElevationSettings(certainty_threshold=threshold)
    if steps == "old":
        settings = replace(settings, consistency_px=0.0)
        before = BEFORE_THRESHOLD[name] if threshold is None else threshold
        elevation = ElevationSettings(certainty_threshold=before, outlier_k=0.0, weighted_median=False)
    start = time.perf_counter()
    done = match_pair(paths["reference"], paths["secondary"], matches, matcher, settings)
    seconds = time.perf_counter() - start
    matching = evaluate_matches(matches, paths["truth"])
    made = generate_elevation(matches, dem, elevation)
    evaluated = evaluate_dem(dem, paths["source_dem"], report=folder / f"dem_{name}_{steps}.json")
    return {"matching": matching, "elevation": evaluated, "matching_seconds": seconds, "steps": steps,
            "patches": f"{done.patch_size}/{done.overlap}", "matcher": matcher.describe(),
            "rejected": made.rejected, "quality": made.quality}


def ceiling(paths, folder):
    """The DEM the simulator's perfect matches give (its ground truth through the elevation step)."""
    from sar_stereo_plugin.core.elevation import generate_elevation
    from sar_stereo_plugin.core.evaluate import evaluate_dem
    generate_elevation(paths["truth"], folder / "dem_perfect.tif")
    return evaluate_dem(folder / "dem_perfect.tif", paths["source_dem"])


def table(results, ceilings):
    head = ("| scene | matcher | steps | acc 1 px | 3 px | 10 px | match coverage | DEM within 1 m | 2 m | 5 m | 10 m "
            "| 20 m | median abs error | NMAD | RMSE | LE90 | RMSE/NMAD | LE90/NMAD | blunder share | DEM coverage "
            "| coverage / ceiling | matching time | time / POC's |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for scene, by_matcher in results.items():
        top = ceilings[scene]
        poc = next((r["matching_seconds"] for k, r in by_matcher.items() if k.startswith("poc ")), None)
        lines.append(f"| {scene} | perfect matches (ceiling) | | | | | | "
                     + " | ".join(f"{top['fraction_within_m'][t]:.3f}" for t in "1 2 5 10 20".split())
                     + f" | {top['median_abs_error_m']:.2f} m | {top['nmad_m']:.2f} m | {top['rmse_m']:.2f} m "
                     + f"| {top['le90_m']:.2f} m | | | {top['blunder_share']:.4f} | {top['coverage']:.3f} | 1 | | |")
        for label, r in by_matcher.items():
            m, e = r["matching"], r["elevation"]
            name, steps = label.rsplit(" ", 1)
            lines.append(f"| {scene} | {name} | {steps} | "
                         + " | ".join(f"{m['accuracy_at_px'][t]:.3f}" for t in "1 3 10".split())
                         + f" | {m['coverage']:.3f} | "
                         + " | ".join(f"{e['fraction_within_m'][t]:.3f}" for t in "1 2 5 10 20".split())
                         + f" | {e['median_abs_error_m']:.2f} m | {e['nmad_m']:.2f} m | {e['rmse_m']:.1f} m "
                         + f"| {e['le90_m']:.1f} m | {e['rmse_m'] / e['nmad_m']:.2f} | {e['le90_m'] / e['nmad_m']:.2f} "
                         + f"| {e['blunder_share']:.4f} | {e['coverage']:.3f} | {e['coverage'] / top['coverage']:.2f} "
                         + f"| {r['matching_seconds']:.1f} s "
                         + (f"| {r['matching_seconds'] / poc:.2f} |" if poc else "| |"))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--matchers", nargs="+", default=list(MATCHERS),
                        help="poc, light, fused, roma, light-baseline (the light matcher with --baseline weights)")
    parser.add_argument("--baseline", type=Path, help="light weights to compare with (matcher light-baseline)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "compare")
    parser.add_argument("--patch-size", type=int, help="for every matcher (default: each matcher's own)")
    parser.add_argument("--overlap", type=int, help="for every matcher (default: each matcher's own)")
    parser.add_argument("--scenes", choices=SCENE_SETS + ("all",), default="all")
    parser.add_argument("--steps", choices=("both", "new", "old"), default="new",
                        help="with the steps of issue 16, without them, or both (one row each)")
    parser.add_argument("--band", type=float, help="epipolar band, pixels (0: none; default: MatchSettings')")
    parser.add_argument("--threshold", type=float, help="certainty threshold of the DEM step (default: the matcher's)")
    parser.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"),
                        help="results page to put the table on ('': none)")
    args = parser.parse_args()
    from sar_stereo_plugin.core.matching import MatchSettings
    settings = MatchSettings(patch_size=args.patch_size, overlap=args.overlap, height_uncertainty_m=300.0)
    if args.band is not None:
        settings = replace(settings, epipolar_band_px=args.band or None)
    results, ceilings = {}, {}
    validation = scenes("validation")
    steps = ("old", "new") if args.steps == "both" else (args.steps,)
    for scene, (dem, flight) in scenes(args.scenes).items():
        folder = args.out / folder_name(scene)
        paths = simulate(folder, dem, flight, seed=4242 if scene in validation else 0)
        ceilings[scene] = ceiling(paths, folder)
        results[scene] = {f"{name} {step}": evaluate(paths, folder, name, settings, args.threshold, step,
                                                     args.baseline)
                          for name in args.matchers for step in steps}
    text = table(results, ceilings)
    print(text)
    (args.out / "compare.json").write_text(json.dumps({"table": text, "results": results, "ceilings": ceilings},
                                                      indent=2, default=str))
    print(f"figures: {args.out / 'compare.json'}")
    if args.results:
        from results_page import write_section
        print(f"results page: {write_section(command(args), title(args), text, args.results)}")


def command(args):
    """The command line that regenerates this table: ``make compare``, or the script with its options."""
    defaults = {"matchers": list(MATCHERS), "patch_size": None, "overlap": None, "scenes": "all", "steps": "new",
                "baseline": None, "band": None, "threshold": None}
    options = []
    for key, default in defaults.items():
        value = getattr(args, key, default)
        if value != default:
            options += [f"--{key.replace('_', '-')}", *(map(str, value) if isinstance(value, list) else [str(value)])]
    return ".venv/bin/python scripts/compare_matchers.py " + shlex.join(options) if options else "make compare"


def title(args):
    what = {"validation": "validation pairs (fresh flights over training DEMs)",
            "steep": "steep held-out pairs (DEMs never trained on, steep incidences far apart)",
            "all": "the test pairs, the steep held-out pairs and the validation pairs"}.get(
        args.scenes, "pairs the light matcher never saw in training")
    names = " and ".join(m.upper() if m == "poc" else m for m in args.matchers)
    return f"Matching and DEM accuracy, {names}, on {what}"


if __name__ == "__main__":
    main()
