"""Training data written directly in the dataset builder's format (small and fast), for the
fine-tuning, light-matcher and plugin tests."""

import json
from pathlib import Path

import numpy as np


def scene(rng, shape, corr=1.5, db=4.0):
    """Ground reflectivity: a log-normal texture, correlation ``corr`` pixels, ``db`` dB spread."""
    from scipy.ndimage import gaussian_filter
    g = gaussian_filter(rng.standard_normal(shape), corr)
    return np.exp(g / g.std() * db / 4.343)


def speckle(rng, tex):
    return np.sqrt(tex * rng.gamma(4.0, 0.25, tex.shape)).astype(np.float32)


def write_dataset(folder, n_files=4, patch=32, margin=8, seed=0, splits=("train", "train", "train", "val"),
                  entries=None):
    """A dataset folder in the builder's format: reference (P, P), a larger secondary window
    (not square) showing the same ground with its own speckle, the exact warp. ``entries``: list
    that many samples, cycling over the files (a fixed dataset of any length)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n_files):
        size = patch + 5 * margin
        tex = scene(rng, (size, size))
        hs, ws = patch + 2 * margin, patch + 3 * margin
        r0, c0 = 2 * margin, 2 * margin + 1
        r1, c1 = (int(rng.integers(0, size - n + 1)) for n in (hs, ws))
        rows = np.broadcast_to(r0 + np.arange(patch)[:, None] - r1, (patch, patch))
        cols = np.broadcast_to(c0 + np.arange(patch)[None] - c1, (patch, patch))
        valid = (rows >= 0) & (rows < hs) & (cols >= 0) & (cols < ws)
        warp = np.stack([(2.0 * cols + 1) / ws - 1, (2.0 * rows + 1) / hs - 1], -1).astype(np.float32)
        warp[~valid] = np.nan
        split = splits[i % len(splits)]
        name = f"{split}/{i:06d}.npz"
        (folder / split).mkdir(parents=True, exist_ok=True)
        np.savez(folder / name, reference=speckle(rng, tex)[r0:r0 + patch, c0:c0 + patch],
                 secondary=speckle(rng, tex)[r1:r1 + hs, c1:c1 + ws], warp=warp, valid=valid.astype(np.uint8))
        samples.append({"file": name, "split": split})
    if entries:
        samples = [dict(samples[i % n_files]) for i in range(entries)]
    counts = {s: sum(e["split"] == s for e in samples) for s in ("train", "val", "test")}
    (folder / "manifest.json").write_text(json.dumps({"schema": "sarstereo.dataset/1", "patch_size": patch,
                                                       "samples": samples, "counts": counts}))
    return folder
