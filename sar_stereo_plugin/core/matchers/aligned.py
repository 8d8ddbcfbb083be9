"""Prior alignment: a secondary window resampled onto its reference patch's grid along the prior.

Two SAR views of one patch differ by a smooth distortion the sensor models predict (the range
scale between incidences, the disparity at the prior height) plus a small unknown residual (the
height error, mostly along range). POC undoes the predicted part itself; a learned matcher that
compares images would have to learn it. :func:`align_pair` resamples the window (bilinear) at
the prior's position of every pixel of the patch grid widened by ``margin`` (the search radius)
on each side; beyond the patch the prior is continued by its affine fit. The matcher then sees two images on the same grid and looks only for the residual;
:class:`Alignment` maps its answers back to the window. :class:`AlignedMatcher` wraps any backend
this way, and :func:`align_sample` gives a training sample the same geometry, so a matcher learns
on exactly what it is later given.
"""

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from . import Matcher, PatchMatch, PatchPair

MAX_MARGIN = 128  # pixels on each side: a wider search is left to the height prior


@dataclass(frozen=True)
class Alignment:
    """Where each pixel of an aligned image lies in the window. An aligned image is the patch
    widened by ``margin`` a side; its pixel (r, c) is patch pixel u = (r - margin, c - margin),
    which the prior puts at ``affine`` @ (u, 1) + ``residual`` at u (the prior's departure from its
    affine fit, e.g. terrain relief under a DEM prior; held at the patch edge beyond it)."""

    affine: np.ndarray  # (2, 3)
    residual: np.ndarray  # (2, h, w), window pixels
    margin: int

    def to_window(self, rows, cols):
        """Window (row, col) of aligned-image positions (any shape)."""
        r, c = np.asarray(rows, np.float64) - self.margin, np.asarray(cols, np.float64) - self.margin
        h, w = self.residual.shape[1:]
        at = [np.clip(r, 0, h - 1).ravel(), np.clip(c, 0, w - 1).ravel()]
        bend = [map_coordinates(f, at, order=1).reshape(r.shape) for f in self.residual]
        a = self.affine
        return np.stack([a[0, 0] * r + a[0, 1] * c + a[0, 2] + bend[0], a[1, 0] * r + a[1, 1] * c + a[1, 2] + bend[1]])

    def to_aligned(self, rows, cols, iterations=8, step=0.5):
        """Aligned-image (row, col) of window positions: the inverse map, by Newton steps on a
        local (secant) Jacobian, from the affine's inverse."""
        target = np.stack([np.asarray(rows, np.float64), np.asarray(cols, np.float64)])
        inv = np.linalg.inv(self.affine[:, :2])
        v = np.tensordot(inv, target - self.affine[:, 2].reshape((2,) + (1,) * (target.ndim - 1)), axes=1)
        v += self.margin
        for _ in range(iterations):
            here = self.to_window(v[0], v[1])
            jr = (self.to_window(v[0] + step, v[1]) - here) / step
            jc = (self.to_window(v[0], v[1] + step) - here) / step
            det = jr[0] * jc[1] - jc[0] * jr[1]
            dr, dc = target - here
            v += np.stack([jc[1] * dr - jc[0] * dc, jr[0] * dc - jr[1] * dr]) / det
        return v


def fit_alignment(prior, search_px, step=4):
    """The :class:`Alignment` of a prior field (2, h, w) in window coordinates; None where fewer
    than 3 of its pixels are finite."""
    prior = np.asarray(prior, np.float64)
    sub = prior[:, ::step, ::step]
    rows, cols = np.mgrid[0:prior.shape[1]:step, 0:prior.shape[2]:step]
    ok = np.isfinite(sub).all(axis=0)
    if ok.sum() < 3:
        return None
    design = np.stack([rows[ok], cols[ok], np.ones(ok.sum())], axis=1)
    affine = np.linalg.lstsq(design, sub[:, ok].T, rcond=None)[0].T
    if abs(np.linalg.det(affine[:, :2])) < 1e-6:
        return None
    r, c = np.mgrid[0:prior.shape[1], 0:prior.shape[2]]
    residual = np.nan_to_num(prior - np.tensordot(affine, np.stack([r, c, np.ones_like(r)]), axes=1))
    margin = int(np.clip(np.ceil(search_px if np.isfinite(search_px) else 0.0) + 8, 8, MAX_MARGIN))
    return Alignment(affine, residual, margin)


def align_pair(pair):
    """(aligned :class:`PatchPair`, :class:`Alignment`); (pair, None) where the prior is unusable."""
    alignment = fit_alignment(pair.prior, pair.search_px)
    if alignment is None:
        return pair, None
    h, w = pair.reference.shape
    m = alignment.margin
    rows, cols = np.mgrid[0:h + 2 * m, 0:w + 2 * m].astype(np.float64)
    secondary = map_coordinates(np.asarray(pair.secondary, np.float32), alignment.to_window(rows, cols), order=1,
                                cval=np.nan)
    r, c = np.mgrid[0:h, 0:w].astype(np.float32)
    identity = np.stack([r + m, c + m])
    return PatchPair(pair.reference, secondary.astype(np.float32), identity, pair.search_px,
                     pair.reference_origin, pair.secondary_origin), alignment


class AlignedMatcher(Matcher):
    """Any backend, given prior-aligned pairs; its answers mapped back to the native windows."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.batch_size = inner.batch_size

    def describe(self):
        return f"{self.inner.describe()}, prior-aligned"

    def match(self, pairs):
        aligned = [align_pair(pair) for pair in pairs]
        answers = self.inner.match([a for a, _ in aligned])
        out = []
        for (_, alignment), answer in zip(aligned, answers):
            if alignment is None:
                out.append(answer)
                continue
            rows, cols = alignment.to_window(answer.rows, answer.cols)
            out.append(PatchMatch(rows.astype(np.float32), cols.astype(np.float32), answer.certainty))
        return out


def align_sample(sample):
    """A training sample (``reference``, ``secondary``, ``warp``, ``valid``, ``prior``,
    ``search_px``; see :mod:`..training.dataset`) in the aligned geometry: the secondary resampled
    as :func:`align_pair` does and ``warp`` in the aligned image's normalised coordinates (pixels
    whose truth leaves the aligned image become invalid). Unchanged where the prior is unusable."""
    pair = PatchPair(sample["reference"], sample["secondary"], sample["prior"], float(sample["search_px"]),
                     (0, 0), (0, 0))
    aligned, alignment = align_pair(pair)
    if alignment is None:
        return sample
    h2, w2 = sample["secondary"].shape
    warp = np.asarray(sample["warp"], np.float64)
    rows, cols = alignment.to_aligned((warp[..., 1] + 1.0) * h2 / 2.0 - 0.5, (warp[..., 0] + 1.0) * w2 / 2.0 - 0.5)
    ha, wa = aligned.secondary.shape
    new = np.stack([(2.0 * cols + 1.0) / wa - 1.0, (2.0 * rows + 1.0) / ha - 1.0], axis=-1)
    with np.errstate(invalid="ignore"):
        inside = (np.abs(new) <= 1.0).all(axis=-1)
    valid = (np.asarray(sample["valid"]) > 0) & inside
    return {**sample, "secondary": aligned.secondary, "warp": np.where(valid[..., None], new, np.nan).astype(np.float32),
            "valid": valid.astype(np.uint8), "prior": aligned.prior}
