"""A patch dataset for fine-tuning a matcher: SAR pairs plus a DSM in, npz samples out.

Samples are cut by the matching engine itself (:meth:`..matching.PatchPlan.strips`, the DSM as
its prior DEM), so a matcher trains on exactly what it is later given: a reference patch and the
secondary window the height uncertainty calls for.

Ground truth, per reference pixel: ground point X = ``ref.rdr2geo(row, col, dem=DSM)``, secondary
position = ``sec.geo2rdr(X)``. It is *valid* where all of these hold:

* the chain is finite, the reference pixel and the secondary pixel at X hold data, and X lands
  inside the secondary window;
* *both views see X, and nothing else at its range*: no DSM terrain nearer the sensor rises above
  the line of sight to X (shadow, occlusion), and no other DSM place along the view's
  zero-Doppler line lies at X's slant range (layover, within ``LAYOVER_TOLERANCE_PX`` range
  cells). This is decided per DSM post by walking the DSM along the ground trace of the post's
  zero-Doppler plane (:func:`_posts_seen_once`); X needs all four posts around it;
* forward-backward consistency: X's secondary pixel taken back to the DSM through the
  secondary model (``sec.rdr2geo(dem=DSM)``) and into the reference lands within
  ``FB_TOLERANCE_PX`` of the starting pixel.

Why the explicit visibility test: ``rdr2geo(dem=...)`` returns *a* crossing of the range circle
with the DSM, not necessarily the visible one, so forward-backward consistency alone keeps points
hidden from the secondary on steep terrain (docs/RESULTS.md).

Layout of a dataset folder: ``manifest.json`` (:data:`SCHEMA`) and ``<split>/NNNNNN.npz`` per
sample; see :func:`build_dataset`. Splits are spatially disjoint: the reference image is cut into
blocks of ``block_px``, each block drawn wholly into train/val/test by the fractions (seeded,
the same for the same reference image), and a patch spanning blocks of different splits is
dropped, so no reference pixel is in two splits.
"""

import json
import math
import os
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from .. import ellipsoid, pixels
from ..atomic import atomic_folder, check_outputs
from ..checks import dataset_files
from ..dem import height_bounds, open_dem
from ..errors import DatasetCanceled, DatasetError, GeometryError, located
from ..inputs import read_json, regular
from ..matching import MatchSettings, plan_pair
from ..products import read_sensor_model
from ..progress import Progress
from ..stereo import rdr2rdr

SCHEMA = "sarstereo.dataset/1"
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
FB_TOLERANCE_PX = 0.5
LAYOVER_TOLERANCE_PX = 0.25  # range cells between two places that count as different (as the simulator)
FOOTPRINT_STEP = 16  # reference pixels between footprint nodes
_SAMPLES_PER_BLOCK = 262_144  # DSM samples per block of the visibility walk (bounds memory)
_HOW_TO_BUILD = ("build one with sarstereo:builddataset (Processing Toolbox > SAR stereo radargrammetry > Learning) "
                 "or sar_stereo_plugin.core.training.dataset.build_dataset")


@dataclass
class DatasetResult:
    """What :func:`build_dataset` did; ``counts`` holds the samples per split."""

    path: str
    counts: dict
    patches: int  # patches planned over all pairs
    straddling: int  # dropped: spanning blocks of different splits
    sparse: int  # dropped: below min_valid_fraction valid pixels, or no data
    seconds: float

    def to_dict(self):
        return asdict(self)


# ==================================================================== ground truth
class PairTruth:
    """Dense ground truth of a pair on a DSM (the validity rule is in the module doc).

    Construction walks the DSM posts under the reference footprint once per view; :meth:`at`
    then answers for any reference pixels. Raises :class:`GeometryError` where the DSM does not
    cover the reference image.
    """

    def __init__(self, ref_model, sec_model, dsm, source="reference image"):
        self.ref, self.sec = ref_model, sec_model
        self.dsm = dsm = open_dem(dsm)
        lo, hi, mid = height_bounds(dsm)
        rr, cc = np.meshgrid(_nodes(ref_model.rows), _nodes(ref_model.cols), indexing="ij")
        lon, lat, _ = ref_model.rdr2geo(rr, cc, height=mid)
        if not np.isfinite(dsm.sample(lon, lat)).any():
            box = (f"lon {np.nanmin(lon):.4f}..{np.nanmax(lon):.4f}, lat {np.nanmin(lat):.4f}..{np.nanmax(lat):.4f}"
                   if np.isfinite(lon).any() else "nowhere on the ground")
            raise GeometryError(located(dsm.path, "DSM", f"does not cover {source} (its footprint: {box}); give a "
                                                         "DSM that covers the pair"))
        # DSM posts under the footprint: ground points lie between the footprints at the lowest and highest heights
        r, c = zip(*(dsm.lonlat_to_pixel(*ref_model.rdr2geo(rr, cc, height=h)[:2]) for h in (lo, hi)))
        r, c = np.concatenate([np.ravel(a) for a in r]), np.concatenate([np.ravel(a) for a in c])
        n_rows, n_cols = dsm.shape
        self.box = (max(int(np.floor(np.nanmin(r))) - 2, 0), min(int(np.ceil(np.nanmax(r))) + 3, n_rows),
                    max(int(np.floor(np.nanmin(c))) - 2, 0), min(int(np.ceil(np.nanmax(c))) + 3, n_cols))
        self.seen = [_posts_seen_once(model, dsm, self.box, lo, hi) for model in (ref_model, sec_model)]

    def at(self, rows, cols):
        """(secondary rows, secondary cols, valid) of reference pixels; positions NaN where invalid."""
        lon, lat, h = self.ref.rdr2geo(rows, cols, dem=self.dsm)
        s_rows, s_cols = self.sec.geo2rdr(lon, lat, h)
        valid = pixels.inside(s_rows, s_cols, (self.sec.rows, self.sec.cols))
        d_rows, d_cols = self.dsm.lonlat_to_pixel(lon, lat)
        for seen in self.seen:
            valid &= _all_four(seen, self.box, d_rows, d_cols)
        back = rdr2rdr(self.sec, self.ref, s_rows[valid], s_cols[valid], dem=self.dsm)
        valid[valid] = np.hypot(back[0] - np.asarray(rows, float)[valid],
                                back[1] - np.asarray(cols, float)[valid]) <= FB_TOLERANCE_PX
        return np.where(valid, s_rows, np.nan), np.where(valid, s_cols, np.nan), valid


class RasterTruth:
    """The truth read from a simulator's ground-truth raster (bands 1-3: secondary row, col,
    validity; :func:`..simulate.simulate_pair`), answering as :meth:`PairTruth.at` does at integer
    reference pixels."""

    def __init__(self, path, ref_model):
        from osgeo import gdal
        try:
            ds = gdal.Open(str(path))
        except RuntimeError:
            ds = None
        if ds is None or ds.RasterCount < 3 or (ds.RasterYSize, ds.RasterXSize) != (ref_model.rows, ref_model.cols):
            shape = None if ds is None else (ds.RasterYSize, ds.RasterXSize, ds.RasterCount)
            raise GeometryError(located(path, "GROUND_TRUTH", f"{shape}: not a ground-truth raster of the reference "
                                                              f"({ref_model.rows} x {ref_model.cols}, >= 3 bands)"))
        self.bands = [ds.GetRasterBand(b).ReadAsArray().astype(np.float64) for b in (1, 2, 3)]

    def at(self, rows, cols):
        r, c = (np.asarray(a).astype(np.int64) for a in (rows, cols))
        s_rows, s_cols, flag = (band[r, c] for band in self.bands)
        valid = (flag > 0.5) & np.isfinite(s_rows) & np.isfinite(s_cols)
        return np.where(valid, s_rows, np.nan), np.where(valid, s_cols, np.nan), valid


def _nodes(n):
    return np.unique(np.append(np.arange(0.0, n - 1, FOOTPRINT_STEP), n - 1.0))


def _posts_seen_once(model, dsm, box, lo, hi):
    """Per DSM post of ``box`` (row0, row1, col0, col1; ends exclusive): whether the view sees it
    and nothing else at its slant range.

    Each post is walked through along the ground trace of its zero-Doppler plane (the line from
    the sensor's nadir through the post), one DSM pixel a step, from where terrain could still
    rise into its line of sight to where terrain could still fold over its range. A sample is
    visible when its off-nadir angle is at least that of every nearer sample.
    """
    r0, r1, c0, c1 = box
    size_r, size_c = dsm.pixel_size_m()
    step = min(size_r, size_c)
    rows, cols = (a.ravel().astype(np.float64) for a in np.mgrid[r0:r1, c0:c1])
    h = dsm.heights[r0:r1, c0:c1].ravel()
    lon, lat = dsm.lonlat(*dsm.pixel_to_xy(rows, cols))
    t = model.contour(*model.geo2rdr(lon, lat, h))[0]
    known = np.isfinite(t) & np.isfinite(h)
    sensor = model.orbit.position(np.where(known, t, model.orbit.span[0]))
    n_lon, n_lat, n_h = ellipsoid.ecef_to_llh(sensor)
    n_rows, n_cols = dsm.lonlat_to_pixel(n_lon, n_lat)
    away = np.stack([(rows - n_rows) * size_r, (cols - n_cols) * size_c])  # metres, from nadir past the post
    dist = np.hypot(*away)
    known &= dist > 0
    if not known.any():
        return np.zeros((r1 - r0, c1 - c0), bool)
    tan_off = dist[known] / (n_h[known] - h[known])
    k = np.arange(-int(math.ceil((hi - lo) * tan_off.max() / step)) - 1,
                  int(math.ceil((hi - lo) / max(tan_off.min(), 0.1) / step)) + 2)
    k0 = int(np.flatnonzero(k == 0)[0])
    unit = away / np.where(dist > 0, dist, 1.0) * step / np.array([[size_r], [size_c]])  # DSM pixels per step
    # grids of the region the walks reach, interpolated along them
    margin = int(np.abs(k).max()) + 2
    g_r0, g_c0 = max(r0 - margin, 0), max(c0 - margin, 0)
    g_rows, g_cols = np.mgrid[g_r0:min(r1 + margin, dsm.shape[0]), g_c0:min(c1 + margin, dsm.shape[1])]
    grids = (dsm.heights[g_rows, g_cols], *dsm.lonlat(*dsm.pixel_to_xy(g_rows, g_cols)))
    up = np.stack(ellipsoid.normal(np.radians(n_lon), np.radians(n_lat)), axis=-1)
    ok = np.zeros(rows.size, bool)
    todo = np.flatnonzero(known)
    per_block = max(1, _SAMPLES_PER_BLOCK // k.size)
    for start in range(0, todo.size, per_block):
        i = todo[start:start + per_block]
        pr = rows[i, None] + k * unit[0, i, None] - g_r0
        pc = cols[i, None] + k * unit[1, i, None] - g_c0
        z, s_lon, s_lat = (map_coordinates(g, [pr.ravel(), pc.ravel()], order=1, mode="constant", cval=np.nan)
                           .reshape(pr.shape) for g in grids)
        x = np.stack(ellipsoid.llh_to_xyz(np.radians(s_lon), np.radians(s_lat), z), axis=-1) - sensor[i, None]
        rng = np.sqrt(np.einsum("nkc,nkc->nk", x, x))
        cos_off = -np.einsum("nkc,nc->nk", x, up[i]) / rng
        cos_off = np.where(np.isfinite(cos_off), cos_off, np.inf)  # off the DSM: hides nothing
        nearer = np.minimum.accumulate(np.concatenate([np.full((i.size, 1), np.inf), cos_off[:, :-1]], 1), 1)
        visible = cos_off <= nearer + 1e-12  # no nearer sample has a larger off-nadir angle
        tol = LAYOVER_TOLERANCE_PX * model.sample_spacing_m
        own = rng[:, k0:k0 + 1]
        folded = visible & (((k < 0) & (rng > own + tol)) | ((k > 0) & (rng < own - tol)))
        ok[i] = visible[:, k0] & np.isfinite(own[:, 0]) & ~folded.any(axis=1)
    return ok.reshape(r1 - r0, c1 - c0)


def _all_four(flags, box, rows, cols):
    """Whether the four DSM posts around each point are all flagged (False off the box)."""
    padded = np.pad(flags, 1, constant_values=False)
    ir = np.floor(np.nan_to_num(rows - box[0], nan=-9.0)).astype(np.int64) + 1
    ic = np.floor(np.nan_to_num(cols - box[2], nan=-9.0)).astype(np.int64) + 1
    ir, ic = np.clip(ir, 0, padded.shape[0] - 2), np.clip(ic, 0, padded.shape[1] - 2)
    return padded[ir, ic] & padded[ir + 1, ic] & padded[ir, ic + 1] & padded[ir + 1, ic + 1]


# ==================================================================== splits
def block_splits(shape, block_px, fractions, seed, key=0):
    """Split index (0 train, 1 val, 2 test) of each ``block_px`` block of an image of ``shape``:
    the blocks, shuffled (seeded), are dealt out in proportion to the fractions (largest
    remainders; a split asked for gets at least one block while another has two to spare)."""
    blocks = (-(-int(shape[0]) // block_px), -(-int(shape[1]) // block_px))
    n = blocks[0] * blocks[1]
    want = np.asarray(fractions, np.float64) * n
    count = np.floor(want).astype(np.int64)
    count[np.argsort(count - want, kind="stable")[:n - count.sum()]] += 1
    for empty in np.flatnonzero((want > 0) & (count == 0)):
        donor = int(np.argmax(count))
        if count[donor] > 1:
            count[donor] -= 1
            count[empty] += 1
    order = np.random.default_rng([int(seed), int(key)]).permutation(n)
    split = np.empty(n, np.int64)
    split[order] = np.repeat(np.arange(len(SPLITS)), count)
    return split.reshape(blocks)


def _patch_split(splits, r0, c0, size, block_px):
    """The split of a patch, or None when it spans blocks of different splits."""
    found = np.unique(splits[r0 // block_px:(r0 + size - 1) // block_px + 1,
                             c0 // block_px:(c0 + size - 1) // block_px + 1])
    return int(found[0]) if found.size == 1 else None


def _image_key(path):
    """The same number for the same image however it is named, so its blocks keep their splits."""
    path = str(path)
    return zlib.crc32(os.path.realpath(path).encode() if os.path.exists(path) else path.encode())


def _check(patch_size, overlap, block_px, split, height_uncertainty_m, min_valid_fraction, seed):
    settings = MatchSettings(int(patch_size), int(overlap), None, float(height_uncertainty_m))
    settings.validate()
    if not int(block_px) >= 1:
        raise GeometryError(located("dataset", "BLOCK_SIZE", f"{block_px}; give at least 1 pixel"))
    split = tuple(float(f) for f in split)
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
        raise GeometryError(located("dataset", "VALIDATION_FRACTION + TEST_FRACTION",
                                    f"train/val/test fractions {split}; each must be >= 0 and they must add up to 1"))
    if not 0.0 <= float(min_valid_fraction) <= 1.0:
        raise GeometryError(located("dataset", "MIN_VALID_FRACTION", f"{min_valid_fraction}; give 0..1"))
    if not (isinstance(seed, (int, np.integer)) and seed >= 0):
        raise GeometryError(located("dataset", "SEED", f"{seed!r}; give an integer >= 0"))
    return settings, split


# ==================================================================== building
def build_dataset(pairs, dsm, output_dir, *, patch_size=256, overlap=32, block_px=1024, split=(0.7, 0.15, 0.15),
                  height_uncertainty_m=300.0, min_valid_fraction=0.2, seed=0, ground_truth=None, prior_dem=None,
                  progress=None, is_canceled=None):
    """Cut training samples from SAR pairs with ground truth from a DSM; returns a
    :class:`DatasetResult`.

    ``pairs``: (reference, secondary) image paths whose sensor models
    :func:`..products.read_sensor_model` finds. ``dsm``: path or :class:`..dem.Dem`, heights above
    the WGS84 ellipsoid; it is also the engine's prior DEM. ``patch_size``, ``overlap``,
    ``height_uncertainty_m``: as :class:`..matching.MatchSettings`. ``block_px``, ``split``
    (train, val, test fractions), ``seed``: the spatial split (module doc). Samples with fewer
    than ``min_valid_fraction`` valid pixels are skipped.

    ``ground_truth``: optional, one simulator ground-truth raster per pair (:class:`RasterTruth`),
    the truth instead of the DSM's projection (the same correspondences, far cheaper).
    ``prior_dem``: the engine's prior DEM when it should not be the DSM: given the exact DSM as its
    prior, a matcher always finds the truth at the centre of its search range, which it never does
    in use (a coarse or constant prior).

    Each ``<split>/NNNNNN.npz`` holds ``reference`` float32 (P, P) and ``secondary`` float32
    (Hs, Ws) amplitudes (NaN: no data); ``warp`` float32 (P, P, 2), the true secondary position
    in the window's normalised coordinates, x then y in [-1, 1] (pixel centre c of a window w
    wide at (2c + 1) / w - 1), NaN where invalid; ``valid`` uint8 (P, P); ``secondary_rc``
    float32 (2, P, P), the truth as full secondary image (row, col), NaN where invalid;
    ``prior`` float32 (2, P, P) and ``search_px``, what the engine hands a matcher (window
    coordinates), with ``epipolar`` (unit row, col direction; NaN where unknown) and ``band_px``;
    ``reference_origin``, ``secondary_origin`` (row, col of the first pixels).
    ``manifest.json`` is written last and the folder appears only when complete; on error or
    cancel (:class:`DatasetCanceled`) nothing is left. ``output_dir`` must be new, empty, or a
    dataset this function built (replaced; anything else a user put in it is kept).
    """
    start = time.perf_counter()
    settings, split = _check(patch_size, overlap, block_px, split, height_uncertainty_m, min_valid_fraction, seed)
    pairs = [(str(a), str(b)) for a, b in pairs]
    if not pairs:
        raise GeometryError(located("dataset", "REFERENCES", "no image pair given; give at least one reference "
                                                             "and its secondary"))
    check_outputs({"OUTPUT": output_dir}, {"REFERENCES": [p[0] for p in pairs], "SECONDARIES": [p[1] for p in pairs],
                                           "DSM": dsm}, folders=("OUTPUT",))
    dsm = open_dem(dsm)
    truths = [None] * len(pairs) if ground_truth is None else [str(t) for t in ground_truth]
    if len(truths) != len(pairs):
        raise GeometryError(located("dataset", "GROUND_TRUTH", f"{len(truths)} ground-truth rasters for {len(pairs)} "
                                                               "pairs; give one per pair, or none"))
    prior = dsm if prior_dem is None else open_dem(prior_dem)
    out = Path(output_dir).resolve()
    _check_destination(out)
    manifest = {"schema": SCHEMA, "patch_size": int(patch_size), "overlap": int(overlap), "block_px": int(block_px),
                "seed": int(seed), "split": list(split), "height_uncertainty_m": float(height_uncertainty_m),
                "min_valid_fraction": float(min_valid_fraction),
                "pairs": [{"reference": ref, "secondary": sec, "dsm": dsm.path} | ({"ground_truth": t} if t else {})
                          for (ref, sec), t in zip(pairs, truths)],
                "prior_dem": prior.path,
                "samples": [], "counts": {name: 0 for name in SPLITS}}
    tally = {"patches": 0, "straddling": 0, "sparse": 0}
    steps = Progress(progress, is_canceled, DatasetCanceled, "dataset building canceled; nothing was written")
    with atomic_folder(out, keep_foreign=True, accept=_check_destination) as tmp:  # a user's files there are kept
        for name in SPLITS:
            (tmp / name).mkdir(parents=True)
        for index, (ref, sec) in enumerate(pairs):
            _add_pair(index, ref, sec, (dsm, truths[index], prior), settings, int(block_px), split, int(seed),
                      float(min_valid_fraction), tmp, manifest, tally,
                      steps.part(index / len(pairs), (index + 1) / len(pairs)))
        if not manifest["samples"]:
            raise DatasetError(located("dataset", "MIN_VALID_FRACTION",
                                       f"no sample: of {tally['patches']} patches, {tally['straddling']} span blocks "
                                       f"of different splits and {tally['sparse']} have too few valid pixels; give a "
                                       "larger BLOCK_SIZE, a smaller PATCH_SIZE, or a DSM covering the pairs"))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    steps.done()
    return DatasetResult(str(out), dict(manifest["counts"]), tally["patches"], tally["straddling"], tally["sparse"],
                         time.perf_counter() - start)


def _add_pair(index, reference, secondary, sources, settings, block_px, split, seed, min_valid, tmp, manifest, tally,
              report):
    report(0.0)
    dsm, truth_raster, prior = sources
    models = read_sensor_model(reference), read_sensor_model(secondary)
    if truth_raster is None:  # first: it checks the DSM's cover
        truth = PairTruth(*models, dsm, source=f"the reference image {reference}")
    else:
        truth = RasterTruth(truth_raster, models[0])
    plan = plan_pair(reference, secondary, settings, prior_dem=prior, reference_model=models[0],
                     secondary_model=models[1])
    splits = block_splits((plan.ref_model.rows, plan.ref_model.cols), block_px, split, seed, _image_key(reference))
    size = plan.size
    kept = [(job, _patch_split(splits, job.r0, job.c0, size, block_px)) for job in plan.jobs]
    kept = {(job.r0, job.c0): s for job, s in kept if s is not None}
    tally["patches"] += len(plan.jobs) + plan.outside
    tally["straddling"] += len(plan.jobs) - len(kept)
    done = 0
    for _, cut in plan.strips([job for job in plan.jobs if (job.r0, job.c0) in kept]):
        for job, pair in cut:
            report(done / max(len(kept), 1))
            done += 1
            sample = pair and _sample(pair, truth)
            if sample is None or sample["valid"].mean() < max(min_valid, 1e-12):
                tally["sparse"] += 1
                continue
            name = SPLITS[kept[(job.r0, job.c0)]]
            file = f"{name}/{manifest['counts'][name]:06d}.npz"
            np.savez(tmp / file, **sample)
            manifest["counts"][name] += 1
            manifest["samples"].append({
                "file": file, "split": name, "pair": index, "reference_origin": [job.r0, job.c0],
                "secondary_origin": [int(v) for v in pair.secondary_origin],
                "secondary_shape": list(pair.secondary.shape), "valid_fraction": float(sample["valid"].mean())})


def _sample(pair, truth):
    """The stored arrays of one PatchPair (see :func:`build_dataset`)."""
    size = pair.reference.shape[0]
    (r0, c0), (w_r0, w_c0), (h2, w2) = pair.reference_origin, pair.secondary_origin, pair.secondary.shape
    rows, cols = np.meshgrid(np.arange(r0, r0 + size, dtype=np.float64),
                             np.arange(c0, c0 + size, dtype=np.float64), indexing="ij")
    s_rows, s_cols, valid = truth.at(rows, cols)
    wr, wc = s_rows - w_r0, s_cols - w_c0
    valid &= pixels.inside(wr, wc, (h2, w2)) & np.isfinite(pair.reference)
    valid &= np.isfinite(pair.secondary[pixels.nearest(wr, wc, (h2, w2))])
    warp = np.stack([pixels.to_normalised(wc, w2), pixels.to_normalised(wr, h2)], axis=-1)
    return {"reference": pair.reference.astype(np.float32), "secondary": pair.secondary.astype(np.float32),
            "warp": np.where(valid[..., None], warp, np.nan).astype(np.float32), "valid": valid.astype(np.uint8),
            "secondary_rc": np.where(valid, np.stack([s_rows, s_cols]), np.nan).astype(np.float32),
            "prior": pair.prior.astype(np.float32), "search_px": np.float32(pair.search_px),
            "epipolar": np.array(pair.epipolar or (np.nan, np.nan), np.float32), "band_px": np.float32(pair.band_px),
            "reference_origin": np.array([r0, c0], np.int64), "secondary_origin": np.array([w_r0, w_c0], np.int64)}


def _check_destination(out):
    """``out`` may be new, an empty folder, or a dataset (replaced); anything else is refused."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if out.is_dir() and (out / MANIFEST).is_file():
        try:
            if read_json(out / MANIFEST, MANIFEST, DatasetError).get("schema") == SCHEMA:
                return
        except (DatasetError, AttributeError):
            pass
    raise DatasetError(located(out, "OUTPUT", "exists and is not empty (nor a dataset to replace); give a new or "
                                              "empty folder"))


# ==================================================================== reading
def load_manifest(folder):
    """The manifest (dict) of a dataset folder; :class:`DatasetError` where it is missing or broken."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DatasetError(located(folder, MANIFEST, f"the folder is not a dataset built by sarstereo:builddataset; "
                                                     f"{_HOW_TO_BUILD}"))
    manifest = read_json(path, MANIFEST, DatasetError)
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise DatasetError(located(folder, MANIFEST, f"schema {found!r} is not {SCHEMA!r}: the folder is not a "
                                                     f"dataset built by sarstereo:builddataset; {_HOW_TO_BUILD}"))
    samples = manifest.get("samples")
    if not isinstance(samples, list) or not all(isinstance(s, dict) and "file" in s and s.get("split") in SPLITS
                                                for s in samples):
        raise DatasetError(located(folder, f"{MANIFEST}: samples", f"missing or malformed; {_HOW_TO_BUILD}"))
    dataset_files(folder, samples)
    return manifest


def load_sample(folder, entry):
    """The arrays of one sample (a dict; see :func:`build_dataset`) from its manifest ``entry``."""
    path = Path(folder) / entry["file"]
    regular(path, "file", DatasetError)  # np.load would wait forever on a FIFO
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(located(path, "file", f"sample cannot be read ({exc}); the dataset is damaged: "
                                                 f"{_HOW_TO_BUILD}")) from None


def as_patch_pair(sample):
    """A loaded sample as the :class:`..matchers.PatchPair` the engine hands a matcher."""
    from ..matchers import PatchPair
    return PatchPair(sample["reference"], sample["secondary"], sample["prior"], float(sample["search_px"]),
                     tuple(int(v) for v in sample["reference_origin"]),
                     tuple(int(v) for v in sample["secondary_origin"]), *epipolar_of(sample))


def epipolar_of(sample):
    """(epipolar direction or None, band_px) of a loaded sample; datasets built before the band
    was stored have neither (no limit then)."""
    direction = np.asarray(sample.get("epipolar", (np.nan, np.nan)), np.float64)
    band = float(sample.get("band_px", np.inf))
    return (tuple(direction.tolist()) if np.isfinite(direction).all() else None), band
