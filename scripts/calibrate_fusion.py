"""Calibrate the fused matcher on the validation pairs: each matcher's certainty -> probability within 3 px.

Usage: .venv/bin/python scripts/calibrate_fusion.py [--out build/calibrate_fusion]   (`make calibrate-fusion`)

On the validation pairs of ``scripts/compare_matchers.py`` (fresh flights over training DEMs; never the
test or held-out pairs), POC and the light matcher each match through the patch engine with the
fused matcher's patch geometry and each one's forward-backward check, as they do inside it. Over the
valid truth pixels each one answered, the share within 3 px as a function of its raw certainty: 16
bins of equal count, made non-decreasing (pool-adjacent-violators), a knot at each bin's median
certainty. Where both answered within 3 px of the truth and within ``AGREE_PX`` of each other, the
mean square error of each gives POC's weight in the mean of two agreeing answers (inverse variance).
Prints the knots as ``core/matchers/fused.py`` takes them (``CALIBRATION``, ``POC_WEIGHT``), then, per
pair, how often each is right where the two disagree and where POC alone answered (the fusion rule's
grounds), and how the fused matcher does with them on the same pairs, against each matcher alone
(within 1/3/10 px over the valid truth pixels, and matched share).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from osgeo import gdal

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
BINS = 16


def read(path, bands=3):
    ds = gdal.Open(str(path))
    return [ds.GetRasterBand(b + 1).ReadAsArray().astype(np.float64) for b in range(bands)]


def monotone(values, weights):
    """Pool-adjacent-violators: the non-decreasing sequence closest to ``values`` (weighted)."""
    blocks = []  # [mean, weight, count]
    for v, w in zip(values, weights):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, v) for v, _, n in blocks])


def knots(certainty, hit):
    """((raw certainty, probability within 3 px), ...) from answers' certainties and hits."""
    order = np.argsort(certainty, kind="stable")
    c, h = certainty[order], hit[order]
    parts = np.array_split(np.arange(c.size), BINS)
    x = np.array([np.median(c[p]) for p in parts])
    y = monotone(np.array([h[p].mean() for p in parts]), np.array([p.size for p in parts], float))
    x, keep = np.unique(np.round(x, 4), return_index=True)
    return tuple((float(a), round(float(b), 3)) for a, b in zip(x, y[keep]))


def scores(path, truth, valid):
    rows, cols, _ = read(path)
    err = np.hypot(rows - truth[0], cols - truth[1])[valid]
    err = np.where(np.isfinite(err), err, np.inf)
    return [float((err <= t).mean()) for t in (1, 3, 10)] + [float(np.isfinite(rows[valid]).mean())]


def disagreement(errors, valid, apart):
    """Shares within 3 px: of each matcher's answers where both answered more than ``AGREE_PX``
    apart, and of POC's where the light matcher has no answer."""
    both = valid & apart
    alone = valid & np.isfinite(errors["poc"]) & ~np.isfinite(errors["light"])
    return ({name: float(np.mean(e[both] <= 3.0)) if both.any() else np.nan for name, e in errors.items()},
            float(np.mean(errors["poc"][alone] <= 3.0)) if alone.any() else np.nan, int(both.sum()), int(alone.sum()))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "build" / "calibrate_fusion")
    a = p.parse_args()
    from compare_matchers import folder_name, scenes, simulate

    from sar_stereo_plugin.core.matchers import create_matcher, fused
    from sar_stereo_plugin.core.matching import MatchSettings, match_pair
    settings = MatchSettings(patch_size=fused.FusedMatcher.patch_size, overlap=fused.FusedMatcher.overlap,
                             height_uncertainty_m=300.0)
    parts = {"poc": create_matcher("poc"), "light": create_matcher("light")}
    pooled, runs, agreeing = {name: ([], []) for name in parts}, {}, {name: [] for name in parts}
    disagreeing = {}
    for scene, (dem, flight) in scenes("validation").items():
        folder = a.out / folder_name(scene)
        paths = simulate(folder, dem, flight, seed=4242)
        truth = read(paths["truth"])
        valid = truth[2] > 0.5
        runs[scene] = (paths, folder, truth, valid)
        found = {}
        for name, matcher in parts.items():
            out = folder / f"matches_{name}.tif"
            match_pair(paths["reference"], paths["secondary"], out, matcher, settings)
            r, c, cert = found[name] = read(out)
            ok = valid & np.isfinite(cert)
            pooled[name][0].append(cert[ok])
            pooled[name][1].append(np.hypot(r - truth[0], c - truth[1])[ok] <= 3.0)
        (pr, pc, _), (lr, lc, _) = found["poc"], found["light"]
        errors = {"poc": np.hypot(pr - truth[0], pc - truth[1]), "light": np.hypot(lr - truth[0], lc - truth[1])}
        with np.errstate(invalid="ignore"):
            apart = np.hypot(pr - lr, pc - lc) > fused.AGREE_PX
            both = valid & ~apart & (errors["poc"] <= 3) & (errors["light"] <= 3)
            disagreeing[scene] = disagreement(errors, valid, apart)
        for name in parts:
            agreeing[name].append(errors[name][both])
    table = {name: knots(np.concatenate(c), np.concatenate(h)) for name, (c, h) in pooled.items()}
    print("CALIBRATION = {")
    for name, k in table.items():
        rows = [", ".join(map(str, k[i:i + 5])) for i in range(0, len(k), 5)]
        print(f'    "{name}": (' + ",\n             ".join(rows) + "),")
    print("}")
    mse = {name: float(np.mean(np.concatenate(e) ** 2)) for name, e in agreeing.items()}
    weight = round(mse["light"] / (mse["poc"] + mse["light"]), 3)
    print(f"POC_WEIGHT = {weight}  # mean square errors where both agree: POC {mse['poc']:.3f}, light "
          f"{mse['light']:.3f} px^2")
    for scene, (shares, alone, n_apart, n_alone) in disagreeing.items():
        print(f"{scene}: where the two disagree ({n_apart} pixels) POC within 3 px {shares['poc']:.3f}, light "
              f"{shares['light']:.3f}; POC alone ({n_alone} pixels) {alone:.3f}")
    fused.CALIBRATION.update(table)
    fused.POC_WEIGHT = weight
    matcher = fused.FusedMatcher(poc=parts["poc"], light=parts["light"])
    print("within 1 / 3 / 10 px over the valid truth pixels, matched share:")
    for scene, (paths, folder, truth, valid) in runs.items():
        match_pair(paths["reference"], paths["secondary"], folder / "matches_fused.tif", matcher, settings)
        for name in ("poc", "light", "fused"):
            print(f"  {scene:30s} {name:6s}", " / ".join(f"{v:.3f}" for v in scores(folder / f"matches_{name}.tif",
                                                                                      truth, valid)))


if __name__ == "__main__":
    main()
