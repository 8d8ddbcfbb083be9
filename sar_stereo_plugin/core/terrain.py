"""Layover and shadow fractions of an image from a DEM, without simulating it.

:func:`terrain_fractions` answers "how much of this image is layover, how much is shadow?" for
``sarstereo:inspectpair``. It is a cheaper, independent route to the numbers the simulator's
flags give (:mod:`.simulate`), and the two are tested against each other.

Method. The DEM is sampled on ground lines that follow the radar -- one line per block of
``rows / max_lines`` image rows, lying on the Doppler surface of its time, with samples one range
spacing apart on the ground (the simulator uses several facets per pixel and every row). Each
sample is placed at its slant range; consecutive samples form range *segments* of their line:

* a segment is *inside* when both ends land in the image and are lit by the beam (see
  :class:`.facets.FacetLines`); the image range a line sees is the union of its inside segments'
  range intervals (sorted, with a running maximum of their ends);
* *layover*: visible segments whose range decreases with ground range (the slope facing the
  sensor is steeper than the local incidence) -- the range interval they cover is reached at
  least twice; the union of these intervals is the line's layover range;
* *shadow*: a sample is hidden when the running maximum of ``tan(off-nadir angle)`` over the
  nearer samples of its line (terrain before the near edge included) exceeds its own; segments
  with hidden ends cover the shadowed range (a segment with one hidden end counts half).

Range, in range cells, times rows per line, is a number of pixels. Every fraction is a fraction
of the image pixels that see the DEM (the union above), the denominator of the simulator's
statistics too.

:func:`terrain_masks` walks the same lines and says, per pixel, which ones lie in layover or
shadow: a pixel is flagged where its range cell overlaps a layover or shadow range interval of its
line. The elevation step drops matches there and flags the ground on its quality layer.
"""

import math
from dataclasses import dataclass

import numpy as np

from . import pixels
from .dem import height_bounds, open_dem
from .facets import FacetLines


def terrain_fractions(model, dem, max_lines=512):
    """Layover and shadow fractions of the image of ``model`` over ``dem`` (path or :class:`Dem`).

    Returns a dict: ``layover``, ``shadow`` (fractions of the pixels that see the DEM, 0..1),
    ``seen`` (fraction of all image pixels that see the DEM), and the pixel counts
    ``seen_pixels``, ``layover_pixels``, ``shadow_pixels``. ``max_lines`` bounds the work:
    lines are spread evenly over the image rows.
    """
    dem = open_dem(dem)
    h_lo, h_hi, h_ref = height_bounds(dem)
    rows_per_line = max(1, int(math.ceil(model.rows / max_lines)))
    view = FacetLines(model, dem, h_lo, h_hi, h_ref, rows_per_line, model.sample_spacing_m)
    n_cross = view.c_main.size
    step = max(1, 2_000_000 // n_cross)
    totals = np.zeros(3)
    for i0 in range(0, view.n_lines, step):
        totals += _line_extents(view, i0, min(i0 + step, view.n_lines))
    seen, layover, shadow = totals / model.sample_spacing_m * rows_per_line
    return {"layover": float(layover / seen) if seen > 0 else 0.0,
            "shadow": float(shadow / seen) if seen > 0 else 0.0,
            "seen": float(min(seen / (model.rows * model.cols), 1.0)),
            "seen_pixels": float(seen), "layover_pixels": float(layover), "shadow_pixels": float(shadow)}


def _line_segments(view, i0, i1):
    """Per line i0..i1-1 and segment between consecutive samples: the slant range of each sample
    (m, 0 where unknown), whether the segment is inside (both ends imaged and lit), facing the
    sensor (layover) and how many of its ends are hidden (shadow)."""
    m = view.model
    x = view.positions(view.main, view.c_main.size, i0, i1)[0]
    tau, rng, _ = view.doppler_time(x, i0, i1)
    row = view.line_rows[i0:i1, None] + tau / m.line_interval_s
    col = (rng - m.first_sample_range_m) / m.sample_spacing_m
    q = view.tan_off_nadir(x, i0, i1)
    lit = np.isfinite(q) & (q >= view.beam[0]) & (q <= view.beam[1])
    nearer = np.maximum.accumulate(np.where(lit, q, -np.inf), axis=1)
    horizon = np.maximum(np.concatenate([np.full((i1 - i0, 1), -np.inf), nearer[:, :-1]], axis=1),
                         view.prefix_horizon(i0, i1)[:, None])
    visible = lit & (q >= horizon)
    inside = lit & pixels.inside(row, col, (m.rows, m.cols))
    seg = inside[:, 1:] & inside[:, :-1]
    r_fill = np.nan_to_num(rng)
    d_range = np.where(seg, np.diff(r_fill, axis=1), 0.0)
    both_visible = visible[:, 1:] & visible[:, :-1]
    hidden_ends = (~visible[:, 1:]).astype(float) + (~visible[:, :-1])
    facing = seg & both_visible & (d_range < 0)  # slope towards the sensor steeper than the incidence
    return r_fill, seg, facing, hidden_ends


def _line_extents(view, i0, i1):
    """Slant range (m) seen, in layover and in shadow, summed over lines i0..i1-1."""
    r_fill, seg, facing, hidden_ends = _line_segments(view, i0, i1)
    d_range = np.where(seg, np.diff(r_fill, axis=1), 0.0)
    shadow = (d_range * hidden_ends).sum() / 2.0
    return np.array([_union_length(r_fill[:, :-1], r_fill[:, 1:], seg),
                     _union_length(r_fill[:, :-1], r_fill[:, 1:], facing), shadow])


@dataclass
class TerrainMasks:
    """Layover and shadow flags of an image's pixels (:func:`terrain_masks`), held per facet line:
    line ``m`` covers the rows ``(first_index + m) * rows_per_line - 0.5`` up to ``rows_per_line``
    rows further."""

    layover: np.ndarray  # (lines, cols) bool
    shadow: np.ndarray
    first_index: int
    rows_per_line: int

    def at(self, rows, cols):
        """(layover, shadow) flags at image points (nearest pixel; False outside the image or at NaN)."""
        rows, cols = np.broadcast_arrays(np.asarray(rows, np.float64), np.asarray(cols, np.float64))
        with np.errstate(invalid="ignore"):
            line = np.floor((rows + 0.5) / self.rows_per_line) - self.first_index
            col = np.floor(cols + 0.5)
            ok = (line >= 0) & (line < self.layover.shape[0]) & (col >= 0) & (col < self.layover.shape[1])
        index = (np.where(ok, line, 0).astype(np.int64), np.where(ok, col, 0).astype(np.int64))
        return ok & self.layover[index], ok & self.shadow[index]


def terrain_masks(model, dem, max_lines=1024):
    """Which pixels of the image of ``model`` over ``dem`` (path or :class:`Dem`) lie in layover
    or shadow (:class:`TerrainMasks`): those whose range cell overlaps the range a facing slope
    covers on their line (layover), or the range of ground hidden behind nearer terrain (shadow).
    ``max_lines`` bounds the work as in :func:`terrain_fractions`."""
    dem = open_dem(dem)
    h_lo, h_hi, h_ref = height_bounds(dem)
    rows_per_line = max(1, int(math.ceil(model.rows / max_lines)))
    view = FacetLines(model, dem, h_lo, h_hi, h_ref, rows_per_line, model.sample_spacing_m)
    masks = np.zeros((2, view.n_lines, model.cols), bool)
    step = max(1, 2_000_000 // view.c_main.size)
    for i0 in range(0, view.n_lines, step):
        i1 = min(i0 + step, view.n_lines)
        r_fill, seg, facing, hidden_ends = _line_segments(view, i0, i1)
        col = (r_fill - model.first_sample_range_m) / model.sample_spacing_m
        for mask, flagged in zip(masks, (facing, seg & (hidden_ends > 0))):
            mask[i0:i1] = _rasterize(col[:, :-1], col[:, 1:], flagged, model.cols)
    return TerrainMasks(masks[0], masks[1], int(view.index[0]), rows_per_line)


def _rasterize(start, end, keep, cols):
    """(lines, cols) bool: the pixels of each line whose extent overlaps one of its kept intervals
    [start, end] (column units, either order)."""
    lo, hi = np.minimum(start, end)[keep], np.maximum(start, end)[keep]
    line = np.broadcast_to(np.arange(start.shape[0])[:, None], start.shape)[keep]
    first = np.clip(np.floor(lo + 0.5), 0, cols).astype(np.int64)  # pixel c spans c - 0.5 .. c + 0.5
    past = np.clip(np.ceil(hi + 0.5), 0, cols).astype(np.int64)
    ok = past > first
    size = start.shape[0] * (cols + 1)
    steps = (np.bincount(line[ok] * (cols + 1) + first[ok], minlength=size)
             - np.bincount(line[ok] * (cols + 1) + past[ok], minlength=size))
    return np.cumsum(steps.reshape(start.shape[0], cols + 1), axis=1)[:, :cols] > 0


def _union_length(start, end, keep):
    """Total length of the union of the intervals [start, end] (either order) of each line."""
    lo, hi = np.minimum(start, end), np.maximum(start, end)
    line = np.broadcast_to(np.arange(lo.shape[0])[:, None], lo.shape)[keep]
    offset = line * (4.0 * max(float(np.abs(hi[keep]).max(initial=0.0)), 1.0))  # lines apart
    lo, hi = lo[keep] + offset, hi[keep] + offset
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    reach = np.maximum.accumulate(hi)  # furthest end so far (offsets keep lines apart)
    before = np.concatenate([[-np.inf], reach[:-1]])
    return float(np.maximum(hi - np.maximum(lo, before), 0.0).sum())
