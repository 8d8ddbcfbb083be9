"""Tie points of a pair whose sensor models may be off by many pixels.

First a coarse global registration: both images strongly multilooked, the secondary resampled onto
the reference's grid through the models at the height prior, and one phase correlation of the
whole scene finds how far the secondary sits from where its model puts it (up to ``search_px``
secondary pixels). With that offset the matching engine (:mod:`.matching`) cuts its windows where
the secondary really is, and any matcher finds dense correspondences; tie points are those on a
coarse grid that the matcher is sure of. Correspondences are image to image: they do not depend
on the models used to find them.
"""

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from .corrections import Corrections
from .errors import GeometryError, located
from .matching import MatchSettings, match_pair
from .raster import open_raster, read_amplitude
from .stereo import rdr2rdr

COARSE_SIDE = 512  # the multilooked images are at most this many pixels along each axis
_NODES = 17  # nodes per axis of the model's reference -> secondary map during coarse registration


@dataclass
class CoarseOffset:
    """Where the secondary image sits against its model: ``rows``, ``cols`` in secondary pixels (the
    image content is found this far from where the model puts it); ``peak`` the normalised
    correlation peak (about 0 for unrelated images); ``looks`` the multilook factor."""

    rows: float
    cols: float
    peak: float
    looks: int

    def shifted(self, model):
        """``model`` with its azimuth time and slant range moved so that it puts the ground where the
        image shows it (for cutting windows): a later row means an earlier time offset."""
        old = Corrections.of(model)
        a0, a1 = old.azimuth_time_s
        r0, r1 = old.slant_range_m
        return model.with_corrections(Corrections(old.reference_time_s, (a0 - self.rows * model.line_interval_s, a1),
                                                  (r0 - self.cols * model.sample_spacing_m, r1), old.position_m))


def multilook(ds, looks):
    """Band 1 of a raster averaged (in intensity) over ``looks`` x ``looks`` blocks; NaN where a block
    holds no data. Read in strips, so memory stays at one strip of the full image."""
    rows, cols = ds.RasterYSize // looks, ds.RasterXSize // looks
    out = np.full((rows, cols), np.nan, np.float32)
    strip = max(1, 2048 // looks)
    for r0 in range(0, rows, strip):
        n = min(strip, rows - r0)
        amp = read_amplitude(ds, r0 * looks, 0, n * looks, cols * looks).astype(np.float64)
        blocks = (amp * amp).reshape(n, looks, cols, looks)
        with np.errstate(invalid="ignore"):
            out[r0:r0 + n] = np.nanmean(blocks, axis=(1, 3))
    return out


def coarse_offset(reference, secondary, ref_model, sec_model, height, search_px=64):
    """The :class:`CoarseOffset` of a pair (image paths and their models) at the height prior."""
    ref_ds, sec_ds = open_raster(reference, "REFERENCE"), open_raster(secondary, "SECONDARY")
    looks = max(2, math.ceil(max(ref_model.rows, ref_model.cols, sec_model.rows, sec_model.cols) / COARSE_SIDE))
    ref = _log(multilook(ref_ds, looks))
    sec = _log(multilook(sec_ds, looks))
    # reference grid cell centres in full-image pixels, and where the model puts them in the secondary
    rows = (np.arange(ref.shape[0]) + 0.5) * looks - 0.5
    cols = (np.arange(ref.shape[1]) + 0.5) * looks - 0.5
    node_r, node_c = np.linspace(rows[0], rows[-1], _NODES), np.linspace(cols[0], cols[-1], _NODES)
    nr, nc = np.meshgrid(node_r, node_c, indexing="ij")
    pred = np.stack(rdr2rdr(ref_model, sec_model, nr, nc, height=height))
    if not np.isfinite(pred).any():
        raise GeometryError(located(f"{reference} / {secondary}", "overlap", "no part of the reference image "
                                    f"lands in the secondary image at {height:.0f} m; check the models"))
    pred = _fill_nan(pred)
    ir = np.interp(rows, node_r, np.arange(_NODES))
    ic = np.interp(cols, node_c, np.arange(_NODES))
    grid = np.meshgrid(ir, ic, indexing="ij")
    pos = np.stack([map_coordinates(p, grid, order=1, mode="nearest") for p in pred])
    warped = map_coordinates(np.nan_to_num(sec, nan=np.nanmean(sec) if np.isfinite(sec).any() else 0.0),
                             [(pos[0] + 0.5) / looks - 0.5, (pos[1] + 0.5) / looks - 0.5], order=1,
                             mode="constant", cval=np.nan)
    shift, peak = _phase_correlation(ref, warped, search_px / looks + 2)
    # the secondary's content at model position P(x) + d shows reference pixel x: the warped image
    # is the reference moved by J^-1 d, J the local Jacobian of P (full-image pixels)
    d = _jacobian(pred, node_r, node_c) @ (shift * looks)
    return CoarseOffset(float(d[0]), float(d[1]), float(peak), int(looks))


def tie_points(reference, secondary, ref_model, sec_model, matcher, settings, step_px, min_certainty=None,
               offset=None, progress=None, is_canceled=None):
    """Correspondences (reference row, col, secondary row, col, certainty, certain), each (n,), on a
    grid every ``step_px`` reference pixels: the dense matches of ``matcher`` (windows cut with the
    secondary model moved by the :class:`CoarseOffset` ``offset``) at or above the matcher's own
    threshold. ``certain`` marks those at or above ``min_certainty``, by default the more certain half:
    a matcher's least certain answers, in layover, shadow and low texture, are also its biased ones
    (the others still sample the terrain evenly, which comparing heights with a DEM needs)."""
    cut_model = offset.shifted(sec_model) if offset is not None else sec_model
    with tempfile.TemporaryDirectory(prefix="sarstereo-ties-") as folder:
        path = Path(folder) / "matches.tif"
        match_pair(reference, secondary, path, matcher, settings, reference_model=ref_model,
                   secondary_model=cut_model, progress=progress, is_canceled=is_canceled)
        ds = open_raster(path, "MATCHES")
        r1 = np.arange(step_px // 2, ref_model.rows, step_px)
        c1 = np.arange(step_px // 2, ref_model.cols, step_px)
        bands = [ds.GetRasterBand(b).ReadAsArray()[np.ix_(r1, c1)] for b in (1, 2, 3)]
        ds = None
    rr, cc = np.meshgrid(r1.astype(np.float64), c1.astype(np.float64), indexing="ij")
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(bands[0]) & np.isfinite(bands[1]) & (bands[2] >= matcher.chance_certainty)
    certainty = bands[2][keep]
    threshold = min_certainty
    if threshold is None:
        threshold = float(np.median(certainty)) if certainty.size else 0.0
    certain = (certainty >= threshold) & (certainty > matcher.chance_certainty)  # never answers at chance
    return rr[keep], cc[keep], bands[0][keep].astype(np.float64), bands[1][keep].astype(np.float64), certainty, certain


def match_settings(settings, height, matcher, model):
    """The :class:`MatchSettings` tie points are matched with: the matcher's patches (or the
    settings'), no larger than the reference image."""
    size = min(settings.patch_size or matcher.patch_size, model.rows, model.cols)
    overlap = min(matcher.overlap if settings.overlap is None else settings.overlap, size // 2)
    return MatchSettings(patch_size=size, overlap=overlap, height_prior=height,
                         height_uncertainty_m=settings.height_uncertainty_m, epipolar_band_px=None,
                         consistency_px=0.0)  # the solver rejects inconsistent tie points itself


# ---------------------------------------------------------------- helpers
def _log(intensity):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(intensity)
    out[~np.isfinite(out)] = np.nan
    return out


def _fill_nan(fields):
    """NaN nodes of each (rows, cols) field replaced by the nearest finite node."""
    from scipy.ndimage import distance_transform_edt
    out = fields.copy()
    for f in out:
        bad = ~np.isfinite(f)
        if bad.any():
            idx = distance_transform_edt(bad, return_distances=False, return_indices=True)
            f[...] = f[tuple(idx)]
    return out


def _jacobian(pred, node_r, node_c):
    """d(secondary row, col) / d(reference row, col) at the middle node of a prediction grid."""
    i = j = _NODES // 2
    dr, dc = node_r[1] - node_r[0], node_c[1] - node_c[0]
    d_row = (pred[:, i + 1, j] - pred[:, i - 1, j]) / (2 * dr)  # (secondary row, col) per reference row
    d_col = (pred[:, i, j + 1] - pred[:, i, j - 1]) / (2 * dc)
    return np.stack([d_row, d_col], axis=1)


def _phase_correlation(a, b, reach):
    """Shift s (rows, cols) such that b(x) = a(x - s), within ``reach`` pixels, and its normalised
    peak; NaN-free by filling no-data with each image's mean before windowing."""
    mask = np.isfinite(a) & np.isfinite(b)
    if mask.sum() < 64:
        return np.zeros(2), 0.0
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1])) * mask
    fa, fb = (np.fft.rfft2(np.where(mask, x - x[mask].mean(), 0.0) * win) for x in (a, b))
    cross = np.conj(fa) * fb
    cross /= np.maximum(np.abs(cross), 1e-12)
    surf = np.fft.irfft2(cross, s=a.shape)
    n_r, n_c = a.shape
    dr = np.fft.fftfreq(n_r, 1.0 / n_r)[:, None]
    dc = np.fft.fftfreq(n_c, 1.0 / n_c)[None, :]
    surf = np.where((np.abs(dr) <= reach) & (np.abs(dc) <= reach), surf, -np.inf)
    i, j = np.unravel_index(np.argmax(surf), surf.shape)
    peak = float(surf[i, j])
    offsets = []
    for axis, (k, n) in enumerate(((i, n_r), (j, n_c))):
        lo = surf[(i - 1) % n_r, j] if axis == 0 else surf[i, (j - 1) % n_c]
        hi = surf[(i + 1) % n_r, j] if axis == 0 else surf[i, (j + 1) % n_c]
        curv = lo - 2 * peak + hi
        sub = 0.5 * (lo - hi) / curv if np.isfinite(curv) and curv < 0 else 0.0
        offsets.append(((k + n // 2) % n - n // 2) + float(np.clip(sub, -0.5, 0.5)))
    return np.array(offsets), peak
