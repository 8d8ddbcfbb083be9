"""Training pairs: a dataset folder's samples by split, their augmentation (flips, synthetic
texture pairs) and a matcher's accuracy on a split."""

from pathlib import Path

import numpy as np

from ..errors import FinetuneError, located
from ..evaluate import THRESHOLDS_PX
from ..pixels import from_normalised, inside, to_normalised
from .dataset import epipolar_of, load_manifest, load_sample


class Samples:
    """A dataset folder's samples by split; ``load(entry)`` gives the checked arrays."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not (self.folder / "manifest.json").is_file():
            raise FinetuneError(located(self.folder, "DATASET", "no manifest.json here, so this is not a dataset "
                                                                "folder; build one first (sarstereo:builddataset)"))
        self.manifest = load_manifest(self.folder)
        entries = self.manifest.get("samples") or []
        self.splits = {s: [e for e in entries if e.get("split") == s] for s in ("train", "val", "test")}
        if not self.splits["train"]:
            raise FinetuneError(located(self.folder / "manifest.json", "samples",
                                        "no sample of split 'train'; build the dataset with a training split"))

    def load(self, entry):
        s = load_sample(self.folder, entry)
        p = s["reference"].shape
        where = self.folder / entry.get("file", "?")
        size = self.manifest.get("patch_size")
        if size and p != (size, size):  # a batch stacks its samples: one patch size per dataset
            raise FinetuneError(located(where, "reference", f"a {p} patch in a dataset of {size}-pixel patches; "
                                                            "rebuild the dataset (sarstereo:builddataset)"))
        if s["warp"].shape != p + (2,) or s["valid"].shape != p or s["secondary"].ndim != 2:
            raise FinetuneError(located(where, "warp", f"shapes {s['reference'].shape}, {s['secondary'].shape}, "
                                                       f"{s['warp'].shape}, {s['valid'].shape} do not fit together"))
        out = {k: np.asarray(s[k]) for k in ("reference", "secondary", "warp", "valid")}
        if "prior" in s:  # what the engine hands a matcher; used in validation only
            out.update(prior=np.asarray(s["prior"], np.float32), search_px=float(s.get("search_px", np.nan)),
                       epipolar=epipolar_of(s))
        return out


def flip_pair(sample, lr, ud):
    """The pair seen from the other side (lr) / flying the other way (ud): images and warp."""
    s = {k: v for k, v in sample.items() if k not in ("prior", "search_px", "epipolar")}  # training needs none
    for axis, on, comp in ((1, lr, 0), (0, ud, 1)):
        if on:
            for k in ("reference", "secondary", "valid", "warp"):
                s[k] = np.flip(s[k], axis)
            s["warp"] = s["warp"].copy()
            s["warp"][..., comp] *= -1.0  # normalised coordinates are symmetric about 0
    return {k: np.ascontiguousarray(v) for k, v in s.items()}


def synthetic_sample(rng, patch, window):
    """A random speckled texture pair with exact truth, shaped like a dataset sample: reference
    (patch, patch), secondary ``window`` (rows, cols). The ground is a log-normal texture (correlation
    0.7-4 px, 2-6 dB) over a smooth shading (0-3 dB); the window shows it at another scale (rows
    x0.85-1.18, columns x0.65-1.5, as range spacing changes with incidence) and offset, each image
    with its own speckle (1-8 looks). Mixed into training (``synthetic``), such pairs keep the
    matcher general: simulated scenes alone teach it to lean on their terrain shading."""
    from scipy.ndimage import gaussian_filter, map_coordinates
    h2, w2 = window
    sr, sc = np.exp(rng.uniform(np.log([0.85, 0.65]), np.log([1.18, 1.5])))
    span = np.array([h2 / sr, w2 / sc])  # ground extent of the window, reference pixels
    g0 = (patch - span) / 2 + rng.uniform(-1, 1, 2) * (np.abs(span - patch) / 2 + 0.25 * patch)
    lo = np.floor(np.minimum(0, g0)).astype(int) - 2
    shape = tuple(np.ceil(np.maximum(patch, g0 + span)).astype(int) + 2 - lo)
    g = gaussian_filter(rng.standard_normal(shape), rng.uniform(0.7, 4.0))
    shade = gaussian_filter(rng.standard_normal(shape), 25.0)
    log_t = g / g.std() * rng.uniform(2, 6) + shade / max(shade.std(), 1e-9) * rng.uniform(0, 3)
    tex = np.exp(log_t / 4.343)  # dB -> intensity

    def look(intensity):
        n = int(rng.choice([1, 2, 4, 8]))
        return np.sqrt(intensity * rng.gamma(n, 1.0 / n, intensity.shape)).astype(np.float32)

    ii, jj = np.mgrid[0:h2, 0:w2].astype(np.float64)
    sec = map_coordinates(tex, [g0[0] + ii / sr - lo[0], g0[1] + jj / sc - lo[1]], order=1)
    r, c = np.mgrid[0:patch, 0:patch].astype(np.float64)
    rows, cols = (r - g0[0]) * sr, (c - g0[1]) * sc  # window pixel of each reference pixel
    valid = inside(rows, cols, (h2, w2))
    warp = np.stack([to_normalised(cols, w2), to_normalised(rows, h2)], -1).astype(np.float32)
    warp[~valid] = np.nan
    return {"reference": look(tex[-lo[0]:-lo[0] + patch, -lo[1]:-lo[1] + patch]), "secondary": look(sec),
            "warp": warp, "valid": valid.astype(np.uint8)}


def evaluate_dataset(matcher, dataset_dir, split="val", limit=None, samples=None):
    """Accuracy of ``matcher`` on a dataset split: for each valid pixel the end-point error (secondary
    window pixels) of its match; an unmatched valid pixel counts as a failure. Returns
    {"accuracy_at_px": {"1": ..}, "median_epe_px", "coverage", "valid_pixels", "samples"}, or
    None when the split is empty."""
    from ..matchers import PatchPair
    data = samples or Samples(dataset_dir)
    entries = data.splits.get(split, [])[:limit]
    if not entries:
        return None
    hits, errors, valid_count = {t: 0 for t in THRESHOLDS_PX}, [], 0
    batch = max(1, int(getattr(matcher, "batch_size", 1)))
    for i in range(0, len(entries), batch):
        loaded = [data.load(e) for e in entries[i:i + batch]]
        pairs = [PatchPair(s["reference"], s["secondary"],
                           s.get("prior", np.full((2,) + s["reference"].shape, np.nan, np.float32)),
                           s.get("search_px", float("nan")), (0, 0), (0, 0), *s.get("epipolar", (None, np.inf)))
                 for s in loaded]
        for s, m in zip(loaded, matcher.match(pairs)):
            h2, w2 = s["secondary"].shape
            rows, cols = from_normalised(s["warp"][..., 1], h2), from_normalised(s["warp"][..., 0], w2)
            valid = (s["valid"] > 0) & np.isfinite(rows) & np.isfinite(cols)
            epe = np.hypot(m.rows - rows, m.cols - cols)[valid]
            epe = epe[np.isfinite(epe)]
            valid_count += int(valid.sum())
            errors.append(epe)
            for t in THRESHOLDS_PX:
                hits[t] += int((epe <= t).sum())
    epe = np.concatenate(errors)
    n = max(valid_count, 1)
    return {"accuracy_at_px": {str(t): hits[t] / n for t in THRESHOLDS_PX},
            "median_epe_px": float(np.median(epe)) if epe.size else None,
            "coverage": epe.size / n, "valid_pixels": valid_count, "samples": len(entries)}
