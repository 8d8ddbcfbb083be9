"""The matching engine: patch grid, geometry-guided pairing, mosaicking, in slant range.

:func:`match_pair` cuts the reference image into overlapping square patches. For each, both
sensor models and a height prior predict where it lands in the secondary image; the secondary
window is *cut* there (native pixels, never resampled) wide enough for every height within the
prior's uncertainty. A matcher (:mod:`.matchers`) answers per reference pixel; answers are mapped
back to full-image coordinates and, where patches overlap, the more certain answer wins. The
match raster (docs/ARCHITECTURE.md, "Data contracts") is written strip by strip through an atomic
writer, so memory stays at a few strips however large the images, and a failure or cancel leaves
nothing behind.

The prediction is computed on a coarse node grid (every ``PRIOR_STEP`` pixels) and interpolated
bilinearly: at a constant height the reference-to-secondary map is smooth to far below a pixel
over that distance.

**Forward-backward consistency** (``consistency_px`` > 0; by default the matcher's own: 2 pixels
for POC, 5 for the light matcher, whose answers scatter more both ways, 1 for RoMa): every patch is
matched back with the same matcher, roles swapped (:func:`reverse_pair`: the secondary patch
around where the answers landed, the reference window where that patch can land, the prior from
the models swapped), and a match is kept only where the way back returns within
``consistency_px`` reference pixels of where it started (:func:`round_trip_px`). A match held to
the epipolar line passes the triangulation's misclosure test whatever its height; a wrong one
rarely comes back. The round-trip error is the match raster's fourth band. :func:`check_patches`
does all of it for a batch of answers, for any matcher; the engine hands it to the matcher
(:meth:`.matchers.Matcher.match_checked`), so that a matcher made of several (:mod:`.matchers.fused`)
checks each one's answers, with its own tolerance, before it chooses.
"""

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from functools import partial

import numpy as np
from scipy.ndimage import map_coordinates

from . import checks, pixels
from .atomic import check_outputs
from .dem import height_bounds, open_dem
from .errors import GeometryError, MatchingCanceled, RasterError, SensorModelError, SettingsError, located
from .matchers import PatchMatch, PatchPair, keep_more_certain
from .progress import Progress
from .raster import (
    MATCHING_ITEM,
    REFERENCE_IMAGE_ITEM,
    ROUND_TRIP_BAND,
    SECONDARY_IMAGE_ITEM,
    SECONDARY_SENSOR_ITEM,
    SENSOR_ITEM,
    gcp_grid,
    gcp_height,
    geotiff_writer,
    open_raster,
    read_amplitude,
)
from .stereo import rdr2rdr

MATCH_BANDS = ("secondary_row", "secondary_col", "certainty", ROUND_TRIP_BAND)  # the 4th with the check
PRIOR_STEP = 16  # reference pixels between nodes of the predicted secondary position
WINDOW_MARGIN_PX = 8  # secondary pixels added around the predicted extent
MIN_PATCH = 16


@dataclass(frozen=True)
class MatchSettings:
    """The tunables of :func:`match_pair` (what the QGIS algorithm exposes). ``patch_size`` and
    ``overlap`` left at None take the matcher's own (:meth:`for_matcher`)."""

    patch_size: int = None
    overlap: int = None
    height_prior: float = None  # metres above the ellipsoid; None: the reference's GCP height, else 0
    height_uncertainty_m: float = 300.0  # the truth lies within prior +- this
    # how far (secondary pixels) across the epipolar direction the truth may lie: the sensor models'
    # relative azimuth accuracy; the light matcher's global matching searches no further (None: no limit)
    epipolar_band_px: float = 12.0
    # keep a match only where matching back (roles swapped) returns within this many reference pixels
    # (0: no check; None: the matcher's own, Matcher.consistency_px)
    consistency_px: float = None

    def for_matcher(self, matcher):
        """These settings with the patch geometry the matcher was made for where none is given
        (POC and RoMa 512/64 pixels, light 256/64: the patch size it was trained on), and its
        round-trip tolerance (:attr:`.matchers.Matcher.consistency_px`)."""
        return replace(self, patch_size=matcher.patch_size if self.patch_size is None else self.patch_size,
                       overlap=matcher.overlap if self.overlap is None else self.overlap,
                       consistency_px=matcher.consistency_px if self.consistency_px is None else self.consistency_px)

    def validate(self):
        if self.patch_size is None or self.overlap is None:
            raise GeometryError(located("matching", "PATCH_SIZE", "no patch size or overlap: resolve the settings "
                                                                  "with MatchSettings.for_matcher first"))
        if not MIN_PATCH <= int(self.patch_size) <= 8192:
            raise GeometryError(located("matching", "PATCH_SIZE", f"{self.patch_size}; give {MIN_PATCH}..8192 pixels"))
        if not 0 <= int(self.overlap) < int(self.patch_size):
            raise GeometryError(located("matching", "OVERLAP", f"{self.overlap}; give 0 up to PATCH_SIZE - 1 pixels"))
        if self.height_prior is not None and not math.isfinite(self.height_prior):
            raise GeometryError(located("matching", "HEIGHT_PRIOR", f"{self.height_prior}; give a height in metres"))
        if not (self.height_uncertainty_m is not None and self.height_uncertainty_m >= 0):
            raise GeometryError(located("matching", "HEIGHT_UNCERTAINTY", "must be >= 0 metres"))
        if self.epipolar_band_px is not None and not self.epipolar_band_px > 0:
            raise GeometryError(located("matching", "EPIPOLAR_BAND", f"{self.epipolar_band_px}; give a positive "
                                                                     "number of pixels, or None for no limit"))
        if self.consistency_px is not None and not self.consistency_px >= 0:
            raise SettingsError(located("matching", "CONSISTENCY_PX", f"{self.consistency_px}; give a round-trip "
                                                                      "tolerance >= 0 pixels (0: no check)"))


@dataclass
class MatchResult:
    """What :func:`match_pair` did. Fractions are of the reference image's pixels."""

    path: str
    matcher: str
    patches: int
    matched_patches: int  # patches where the matcher found anything
    outside_patches: int  # secondary window entirely outside the secondary image
    nodata_patches: int  # reference patch or secondary window without any data
    matched_fraction: float
    seconds_total: float
    seconds_matching: float  # inside the matcher
    patch_size: int  # the patch geometry used (the matcher's own unless the settings gave one)
    overlap: int
    rejected_fraction: float = 0.0  # answered, but rejected by the forward-backward check
    warnings: list = dataclasses.field(default_factory=list)  # what a user must know that the raster does not show

    def to_dict(self):
        return asdict(self)


def patch_starts(n, size, stride, field="PATCH_SIZE", what="image"):
    """First pixels of patches of ``size`` every ``stride`` covering 0..n-1 (the last one flush
    with the end)."""
    if size > n:
        raise GeometryError(located("matching", field, f"{size} pixels is larger than the {what} ({n} pixels); "
                                                       f"give a patch size of at most {n}"))
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


class PairPrior:
    """Predicted secondary (row, col) of reference pixels, at the prior height and at the two ends
    of its uncertainty, on a node grid every ``PRIOR_STEP`` reference pixels."""

    def __init__(self, ref_model, sec_model, height, uncertainty_m, dem=None):
        self.node_rows = _nodes(ref_model.rows)
        self.node_cols = _nodes(ref_model.cols)
        rr, cc = np.meshgrid(self.node_rows, self.node_cols, indexing="ij")
        h = np.full(rr.shape, float(height))
        if dem is not None:
            on_dem = ref_model.rdr2geo(rr, cc, dem=dem)[2]
            h = np.where(np.isfinite(on_dem), on_dem, h)
        self.fields = {}
        for key, dh in (("mid", 0.0), ("low", -uncertainty_m), ("high", uncertainty_m)):
            self.fields[key] = np.stack(rdr2rdr(ref_model, sec_model, rr, cc, height=h + dh))

    def at(self, rows, cols, key="mid"):
        """The prediction at arbitrary reference pixels (bilinear between nodes)."""
        ir = np.interp(rows, self.node_rows, np.arange(self.node_rows.size))
        ic = np.interp(cols, self.node_cols, np.arange(self.node_cols.size))
        return np.stack([map_coordinates(f, [ir, ic], order=1, mode="nearest") for f in self.fields[key]])

    def extent(self, r0, c0, size, width=None):
        """Bounding box (row_min, row_max, col_min, col_max) of where a reference patch (``size``
        rows, ``width`` columns, default square) can land, the half-span (pixels) of the disparity
        the height uncertainty allows, and the epipolar direction (unit (row, col) vector of rising
        height; None without an uncertainty); None where the prediction fails everywhere."""
        width = size if width is None else width
        inner_r = (self.node_rows > r0) & (self.node_rows < r0 + size - 1)
        inner_c = (self.node_cols > c0) & (self.node_cols < c0 + width - 1)
        rows = np.concatenate([r0 + np.array([0.0, size - 1.0]), self.node_rows[inner_r]])
        cols = np.concatenate([c0 + np.array([0.0, width - 1.0]), self.node_cols[inner_c]])
        rr, cc = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
        low, high, mid = (self.at(rr, cc, key) for key in ("low", "high", "mid"))
        pts = np.concatenate([low, high, mid], axis=1)
        pts = pts[:, np.all(np.isfinite(pts), axis=0)]
        if not pts.size:
            return None
        # from the prior height to either end of the uncertainty (one end may miss the ground)
        rises = np.concatenate([high - mid, mid - low], axis=1)
        rises = rises[:, np.all(np.isfinite(rises), axis=0)]
        reach = np.hypot(*rises)
        half_span = float(np.max(reach, initial=0.0))
        rise = np.median(rises[:, reach > 1e-6] / reach[reach > 1e-6], axis=1) if (reach > 1e-6).any() else None
        epipolar = None if rise is None else tuple(float(v) for v in rise / np.hypot(*rise))
        return (pts[0].min(), pts[0].max(), pts[1].min(), pts[1].max()), half_span, epipolar


def _nodes(n):
    nodes = np.arange(0.0, n - 1, PRIOR_STEP)
    return np.append(nodes, n - 1.0) if nodes[-1] != n - 1 else nodes


def _window(box, sec_rows, sec_cols):
    """Integer window (row0, col0, rows, cols) around a predicted extent, clipped to the image;
    None when it misses the image."""
    rmin, rmax, cmin, cmax = box
    r0 = max(int(np.floor(rmin)) - WINDOW_MARGIN_PX, 0)
    c0 = max(int(np.floor(cmin)) - WINDOW_MARGIN_PX, 0)
    r1 = min(int(np.ceil(rmax)) + WINDOW_MARGIN_PX, sec_rows - 1)
    c1 = min(int(np.ceil(cmax)) + WINDOW_MARGIN_PX, sec_cols - 1)
    if r1 - r0 < 1 or c1 - c0 < 1:
        return None
    return r0, c0, r1 - r0 + 1, c1 - c0 + 1


@dataclass(frozen=True)
class _Job:
    r0: int
    c0: int
    window: tuple  # secondary (row0, col0, rows, cols)
    search_px: float
    epipolar: tuple  # unit (row, col) of rising height in the secondary, or None


def plan_patches(ref_model, sec_model, settings, prior):
    """Every reference patch with its secondary window: (jobs, patches outside the secondary)."""
    size = int(settings.patch_size)
    stride = size - int(settings.overlap)
    if size > min(ref_model.rows, ref_model.cols):  # name the bound of both sides at once
        raise GeometryError(located("matching", "PATCH_SIZE", f"{size} pixels is larger than the reference image "
                                    f"({ref_model.rows} rows x {ref_model.cols} columns); give a patch size of at most "
                                    f"{min(ref_model.rows, ref_model.cols)}"))
    rows = patch_starts(ref_model.rows, size, stride, what="reference image's rows")
    cols = patch_starts(ref_model.cols, size, stride, what="reference image's columns")
    jobs, outside = [], 0
    for r0 in rows:
        for c0 in cols:
            found = prior.extent(r0, c0, size)
            window = found and _window(found[0], sec_model.rows, sec_model.cols)
            if window is None:
                outside += 1
            else:
                jobs.append(_Job(r0, c0, window, found[1], found[2]))
    return jobs, outside


class _Mosaic:
    """Rows of the match raster still open to later patches; the most certain answer wins. With a
    fourth band, the round-trip error: the kept answer's, else the smallest of those rejected."""

    def __init__(self, cols, size, n_bands=3):
        self.row0 = 0
        self.matched = 0  # pixels written with a match
        self.rejected = 0  # pixels answered, but by no answer that came back (fourth band only)
        self.data = np.full((n_bands, size, cols), np.nan, np.float32)

    def merge(self, r0, c0, rows, cols, certainty, round_trip=None):
        sl = np.s_[r0 - self.row0:r0 - self.row0 + rows.shape[0], c0:c0 + rows.shape[1]]
        better = keep_more_certain(self.data[:3], sl, (rows, cols, certainty))
        if round_trip is not None:
            trip = self.data[3][sl]
            unkept = ~np.isfinite(self.data[2][sl])
            self.data[3][sl] = np.where(better, round_trip, np.where(unkept, np.fmin(trip, round_trip), trip))

    def flush(self, upto, write):
        """Write the rows before ``upto`` (no later patch reaches them) and slide the buffer."""
        n = upto - self.row0
        if n <= 0:
            return
        for band in range(self.data.shape[0]):
            write(self.data[band, :n], self.row0, band + 1)
        self.matched += int(np.isfinite(self.data[2, :n]).sum())
        if self.data.shape[0] > 3:
            self.rejected += int((np.isfinite(self.data[3, :n]) & ~np.isfinite(self.data[2, :n])).sum())
        self.data = np.roll(self.data, -n, axis=1)
        self.data[:, -n:] = np.nan
        self.row0 = upto


def _open_pair(reference, secondary, ref_model, sec_model):
    from .products import read_sensor_model
    ref_model = ref_model or read_sensor_model(reference)
    sec_model = sec_model or read_sensor_model(secondary)
    datasets = []
    for path, model, field in ((reference, ref_model, "REFERENCE"), (secondary, sec_model, "SECONDARY")):
        ds = open_raster(path, field)
        if (ds.RasterYSize, ds.RasterXSize) != (model.rows, model.cols):
            raise SensorModelError(located(path, "shape", f"the image is {ds.RasterYSize} x {ds.RasterXSize} pixels "
                                                          f"but its sensor model says {model.rows} x {model.cols}; "
                                                          "give the model that belongs to this image"))
        datasets.append(ds)
    return ref_model, sec_model, datasets


@dataclass
class PatchPlan:
    """What :func:`match_pair` settles before matching: both images and models, the prior, and
    every patch with its secondary window. :meth:`strips` cuts them; the dataset builder
    (:mod:`.training.dataset`) cuts its samples through the same plan."""

    reference: str
    secondary: str
    ref_model: object
    sec_model: object
    ref_ds: object
    sec_ds: object
    dem: object  # the prior DEM (a Dem) or None
    height: float  # the constant prior height (m), used where the prior DEM is missed
    prior: PairPrior
    jobs: list
    outside: int  # patches whose window misses the secondary image
    size: int
    band_px: float  # MatchSettings.epipolar_band_px (inf: no limit)
    uncertainty_m: float = 0.0  # MatchSettings.height_uncertainty_m
    warnings: list = dataclasses.field(default_factory=list)  # the prior's (checks.prior)
    _back: PairPrior = None

    def back_prior(self):
        """The prior of the way back (secondary -> reference: the models swapped), made on first use."""
        if self._back is None:
            self._back = PairPrior(self.sec_model, self.ref_model, self.height, self.uncertainty_m, self.dem)
        return self._back

    def strips(self, jobs=None):
        """Yield ``(r0, [(job, PatchPair or None), ...])`` strip by strip, in row order; None where
        either side holds no data. ``jobs``: a subset of :attr:`jobs` (default: all)."""
        jobs = self.jobs if jobs is None else jobs
        for r0 in sorted({job.r0 for job in jobs}):
            strip = read_amplitude(self.ref_ds, r0, 0, self.size, self.ref_model.cols)
            yield r0, [(job, _cut(job, strip, self.sec_ds, self.prior, self.size, self.band_px))
                       for job in jobs if job.r0 == r0]


def plan_pair(reference, secondary, settings, *, prior_dem=None, reference_model=None, secondary_model=None):
    """The :class:`PatchPlan` of a pair (arguments as :func:`match_pair`'s, the patch geometry
    given). Raises :class:`GeometryError` when no patch lands in the secondary image."""
    settings.validate()
    ref_model, sec_model, (ref_ds, sec_ds) = _open_pair(reference, secondary, reference_model, secondary_model)
    dem = None if prior_dem is None else open_dem(prior_dem)
    height = settings.height_prior
    if height is None:
        height = height_bounds(dem)[2] if dem is not None else gcp_height(reference)
    height, warnings = checks.matching_inputs(reference, secondary, ref_model, sec_model, height,
                                              float(settings.height_uncertainty_m), dem, int(settings.patch_size))
    prior = PairPrior(ref_model, sec_model, height, float(settings.height_uncertainty_m), dem)
    jobs, outside = plan_patches(ref_model, sec_model, settings, prior)
    if not jobs:
        raise GeometryError(located(f"{reference} / {secondary}", "overlap",
                                    f"no reference patch lands in the secondary image at heights {height:.0f} "
                                    f"+- {settings.height_uncertainty_m:.0f} m: the images do not overlap; check that "
                                    "they show the same ground, or give a better HEIGHT_PRIOR / PRIOR_DEM"))
    band = float("inf") if settings.epipolar_band_px is None else float(settings.epipolar_band_px)
    return PatchPlan(str(reference), str(secondary), ref_model, sec_model, ref_ds, sec_ds, dem, height, prior, jobs,
                     outside, int(settings.patch_size), band, float(settings.height_uncertainty_m), warnings)


def match_pair(reference, secondary, output, matcher, settings=None, *, prior_dem=None, reference_model=None,
               secondary_model=None, progress=None, is_canceled=None):
    """Match two slant-range images patch by patch and write the match raster to ``output``.

    ``reference``/``secondary``: image paths (any GDAL raster name, complex data taken as
    amplitude) whose sensor models are found as :func:`products.read_sensor_model` finds them,
    unless given. ``matcher``: a :class:`matchers.Matcher`. ``settings``: :class:`MatchSettings`.
    ``prior_dem``: optional coarse DEM (path or :class:`Dem`) giving the prior height per place;
    where its surface is missed the constant prior applies. ``progress(fraction)``,
    ``is_canceled()``: optional callables, checked per batch of patches. Raises
    :class:`MatchingCanceled` on cancel; nothing is written then, or on any error.
    """
    start = time.perf_counter()
    check_outputs({"OUTPUT": output}, {"REFERENCE": reference, "SECONDARY": secondary, "PRIOR_DEM": prior_dem,
                                       "REFERENCE_MODEL": reference_model, "SECONDARY_MODEL": secondary_model})
    report = Progress(progress, is_canceled, MatchingCanceled, "matching canceled; no output was written")
    tolerance = (settings or MatchSettings()).consistency_px  # None: each matcher checked with its own
    settings = (settings or MatchSettings()).for_matcher(matcher)
    plan = plan_pair(reference, secondary, settings, prior_dem=prior_dem, reference_model=reference_model,
                     secondary_model=secondary_model)
    ref_model, sec_model, jobs, dem, height, size = (plan.ref_model, plan.sec_model, plan.jobs, plan.dem,
                                                     plan.height, plan.size)
    meta = {SENSOR_ITEM: json.dumps(ref_model.to_dict()), SECONDARY_SENSOR_ITEM: json.dumps(sec_model.to_dict()),
            REFERENCE_IMAGE_ITEM: str(reference), SECONDARY_IMAGE_ITEM: str(secondary),
            MATCHING_ITEM: json.dumps({"matcher": matcher.describe(), "settings": asdict(settings),
                                       "certainty_threshold": float(matcher.certainty_threshold),
                                       "height_prior_m": height, "prior_dem": getattr(dem, "path", None)})}
    check = float(settings.consistency_px or 0.0) > 0
    n_bands = 4 if check else 3
    mosaic = _Mosaic(ref_model.cols, size, n_bands)
    counts = {"matched": 0, "nodata": 0}
    seconds_matching = 0.0
    strips = sorted({job.r0 for job in jobs})
    with geotiff_writer(output, ref_model.rows, ref_model.cols, n_bands, meta, MATCH_BANDS[:n_bands],
                        gcps=gcp_grid(ref_model, height=height)) as write:
        done = 0
        for i, (_r0, cut) in enumerate(plan.strips()):
            pairs = [pair for _, pair in cut if pair]
            counts["nodata"] += len(cut) - len(pairs)
            batch_size = max(1, int(matcher.batch_size))  # read per strip: RoMa halves it on out-of-memory
            for b in range(0, len(pairs), batch_size):
                report.check()
                batch = pairs[b:b + batch_size]
                t0 = time.perf_counter()
                if check:
                    answers, trips = matcher.match_checked(batch, partial(_checked, plan, batch, tolerance))
                    answers = _shaped(answers, batch)
                else:
                    answers, trips = _shaped(matcher.match(batch), batch), [None] * len(batch)
                seconds_matching += time.perf_counter() - t0
                for pair, answer, trip in zip(batch, answers, trips):
                    counts["matched"] += _merge(mosaic, pair, answer, sec_model, trip)
                done += len(batch)
                report(done / len(jobs))
            mosaic.flush(strips[i + 1] if i + 1 < len(strips) else ref_model.rows, write)
        if counts["nodata"] == len(jobs):
            raise RasterError(f"{reference} / {secondary}: field 'band 1': no data (all NaN or nodata) where the "
                              "images overlap; check the images' nodata values")
    pixels_total = float(ref_model.rows * ref_model.cols)
    return MatchResult(str(output), matcher.describe(), len(jobs) + plan.outside, counts["matched"], plan.outside,
                       counts["nodata"], mosaic.matched / pixels_total, time.perf_counter() - start, seconds_matching,
                       int(settings.patch_size), int(settings.overlap), mosaic.rejected / pixels_total, plan.warnings)


def _cut(job, strip, sec_ds, prior, size, band_px):
    """The PatchPair of a job, or None when either side holds no data."""
    ref = strip[:, job.c0:job.c0 + size]
    if not np.isfinite(ref).any():
        return None
    w_r0, w_c0, w_rows, w_cols = job.window
    sec = read_amplitude(sec_ds, w_r0, w_c0, w_rows, w_cols)
    if not np.isfinite(sec).any():
        return None
    rr, cc = np.meshgrid(np.arange(job.r0, job.r0 + size, dtype=np.float64),
                         np.arange(job.c0, job.c0 + size, dtype=np.float64), indexing="ij")
    pred = prior.at(rr.ravel(), cc.ravel()).reshape(2, size, size)
    pred -= np.array([w_r0, w_c0], np.float64)[:, None, None]
    return PatchPair(np.ascontiguousarray(ref), sec, pred.astype(np.float32), job.search_px,
                     (job.r0, job.c0), (w_r0, w_c0), job.epipolar, band_px)


def _shaped(answers, pairs):
    """A matcher's answers, refused unless there is one per patch, each the patch's shape."""
    if len(answers) != len(pairs):
        raise RasterError(f"matcher: field 'rows': {len(answers)} answers for {len(pairs)} patches")
    for answer, pair in zip(answers, pairs):
        for name in ("rows", "cols", "certainty"):
            shape = np.shape(getattr(answer, name))
            if shape != pair.reference.shape:
                raise RasterError(f"matcher: field '{name}': answered a {shape} array for a "
                                  f"{pair.reference.shape} patch")
    return answers


def _merge(mosaic, pair, answer, sec_model, round_trip=None):
    """Map a matcher's answer to full-image coordinates and merge it; 1 if it matched anything."""
    rows = np.asarray(answer.rows, np.float32) + np.float32(pair.secondary_origin[0])
    cols = np.asarray(answer.cols, np.float32) + np.float32(pair.secondary_origin[1])
    cert = np.asarray(answer.certainty, np.float32)
    keep = (np.isfinite(rows) & np.isfinite(cols) & np.isfinite(cert) & np.isfinite(pair.reference)
            & pixels.inside(rows, cols, (sec_model.rows, sec_model.cols)))
    cert = np.where(keep, np.clip(cert, 0.0, 1.0), np.nan).astype(np.float32)
    if round_trip is not None:
        round_trip = np.where(np.isfinite(pair.reference), round_trip, np.nan).astype(np.float32)
    mosaic.merge(pair.reference_origin[0], pair.reference_origin[1], rows, cols, cert, round_trip)
    return int(keep.any())


# ---------------------------------------------------------------- forward-backward consistency
BACK_MARGIN_PX = 2  # secondary pixels around the answers in the patch matched back
BACK_SPREAD = (0.1, 99.9)  # percentiles of the answers that patch covers: stray answers do not widen it
MIN_BACK_WEIGHT = 0.25  # bilinear weight of finite back answers a round trip needs (one neighbour's least)


def reverse_pair(plan, pair, answer):
    """The :class:`PatchPair` that matches ``pair`` back with the roles swapped: as its reference,
    the part of ``pair``'s secondary window where ``answer`` (a :class:`PatchMatch`) put the
    reference pixels (``BACK_SPREAD`` of them, ``BACK_MARGIN_PX`` around); as its secondary, the
    window of the reference image where that part can land at every height of the prior, with the
    prior, the search radius and the epipolar direction of the models swapped (``plan``: the pair's
    :class:`PatchPlan`). None where nothing was answered or that part holds no data or cannot land
    in the reference image."""
    rows, cols = np.asarray(answer.rows, np.float64), np.asarray(answer.cols, np.float64)
    ok = np.isfinite(rows) & np.isfinite(cols)
    if not ok.any():
        return None
    box = []
    for values, n in ((rows[ok], pair.secondary.shape[0]), (cols[ok], pair.secondary.shape[1])):
        lo, hi = np.percentile(values, BACK_SPREAD)
        lo, hi = max(int(np.floor(lo)) - BACK_MARGIN_PX, 0), min(int(np.ceil(hi)) + BACK_MARGIN_PX, n - 1)
        need = min(MIN_PATCH, n)  # a patch of at least MIN_PATCH pixels
        if hi - lo + 1 < need:
            lo = max(min(lo - (need - (hi - lo + 1)) // 2, n - need), 0)
            hi = lo + need - 1
        box.append((lo, hi + 1))
    (r0, r1), (c0, c1) = box
    reference = pair.secondary[r0:r1, c0:c1]
    if not np.isfinite(reference).any():
        return None
    origin = (int(pair.secondary_origin[0]) + r0, int(pair.secondary_origin[1]) + c0)
    back = plan.back_prior()
    found = back.extent(origin[0], origin[1], r1 - r0, c1 - c0)
    window = found and _window(found[0], plan.ref_model.rows, plan.ref_model.cols)
    if window is None:
        return None
    w_r0, w_c0, w_rows, w_cols = window
    secondary = read_amplitude(plan.ref_ds, w_r0, w_c0, w_rows, w_cols)
    if not np.isfinite(secondary).any():
        return None
    rr, cc = np.meshgrid(np.arange(origin[0], origin[0] + r1 - r0, dtype=np.float64),
                         np.arange(origin[1], origin[1] + c1 - c0, dtype=np.float64), indexing="ij")
    prior = back.at(rr.ravel(), cc.ravel()).reshape((2,) + rr.shape) - np.array([w_r0, w_c0], np.float64)[:, None, None]
    return PatchPair(np.ascontiguousarray(reference), secondary, prior.astype(np.float32), found[1], origin,
                     (w_r0, w_c0), found[2], plan.band_px)


def round_trip_px(pair, answer, back, back_answer):
    """Per reference pixel of ``pair``: the distance (reference pixels) from where it started to
    where matching back (``back`` from :func:`reverse_pair`, and the matcher's ``back_answer``)
    takes the place ``answer`` matched it to; the answers back are interpolated bilinearly over
    their finite neighbours. NaN where either way has no answer."""
    h, w = pair.reference.shape
    at_r = np.asarray(answer.rows, np.float64) + (pair.secondary_origin[0] - back.reference_origin[0])
    at_c = np.asarray(answer.cols, np.float64) + (pair.secondary_origin[1] - back.reference_origin[1])
    field = np.stack([np.asarray(back_answer.rows, np.float64) + back.secondary_origin[0],
                      np.asarray(back_answer.cols, np.float64) + back.secondary_origin[1]])
    r1, c1 = _sample_finite(field, at_r, at_c)
    rows = np.arange(h, dtype=np.float64)[:, None] + pair.reference_origin[0]
    cols = np.arange(w, dtype=np.float64)[None, :] + pair.reference_origin[1]
    return np.hypot(r1 - rows, c1 - cols).astype(np.float32)


def _sample_finite(field, rows, cols):
    """``field`` (k, H, W) at (rows, cols), bilinear over the finite neighbours (their weights
    renormalised); NaN outside, or where those neighbours weigh less than ``MIN_BACK_WEIGHT``."""
    _, n_rows, n_cols = field.shape
    ok = pixels.inside(rows, cols, (n_rows, n_cols))
    r = np.clip(np.where(ok, rows, 0.0), 0.0, n_rows - 1.0)
    c = np.clip(np.where(ok, cols, 0.0), 0.0, n_cols - 1.0)
    r0 = np.minimum(np.floor(r).astype(np.int64), max(n_rows - 2, 0))
    c0 = np.minimum(np.floor(c).astype(np.int64), max(n_cols - 2, 0))
    fr, fc = r - r0, c - c0
    r1, c1 = np.minimum(r0 + 1, n_rows - 1), np.minimum(c0 + 1, n_cols - 1)
    total, weight = np.zeros((field.shape[0],) + r.shape), np.zeros(r.shape)
    for rr, cc, wgt in ((r0, c0, (1 - fr) * (1 - fc)), (r0, c1, (1 - fr) * fc), (r1, c0, fr * (1 - fc)),
                        (r1, c1, fr * fc)):
        values = field[:, rr, cc]
        good = np.all(np.isfinite(values), axis=0)
        total += np.where(good, values, 0.0) * np.where(good, wgt, 0.0)
        weight += np.where(good, wgt, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok & (weight >= MIN_BACK_WEIGHT), total / weight, np.nan)


def _checked(plan, pairs, tolerance, matcher, answers):
    """:func:`check_patches` of one matcher's answers with ``tolerance``, or that matcher's own
    (:attr:`.matchers.Matcher.consistency_px`) where None: the ``check`` of
    :meth:`.matchers.Matcher.match_checked`."""
    answers = _shaped(answers, pairs)
    return check_patches(matcher, plan, pairs, answers, matcher.consistency_px if tolerance is None else tolerance)


def check_patches(matcher, plan, pairs, answers, consistency_px):
    """Forward-backward consistency of a batch: match every pair back with ``matcher``
    (:func:`reverse_pair`, in the matcher's batch size) and keep each answer only where its round
    trip (:func:`round_trip_px`) closes within ``consistency_px`` reference pixels. Returns (the
    answers, NaN where rejected; the round-trip errors, float32 per reference pixel, NaN where no
    answer went out or none came back)."""
    backs = [reverse_pair(plan, pair, found) for pair, found in zip(pairs, answers)]
    todo = [back for back in backs if back is not None]
    step = max(1, int(matcher.batch_size))
    came_back = iter([found for b in range(0, len(todo), step) for found in matcher.match_back(todo[b:b + step])])
    kept, trips = [], []
    for pair, found, back in zip(pairs, answers, backs):
        trip = (np.full(pair.reference.shape, np.nan, np.float32) if back is None
                else round_trip_px(pair, found, back, next(came_back)))
        trip = np.where(np.isfinite(found.rows) & np.isfinite(found.cols), trip, np.nan).astype(np.float32)
        drop = ~(trip <= consistency_px)
        kept.append(PatchMatch(*(np.where(drop, np.nan, a).astype(np.float32)
                                 for a in (found.rows, found.cols, found.certainty))))
        trips.append(trip)
    return kept, trips
