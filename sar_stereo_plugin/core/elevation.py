"""Matches -> 3D points -> DEM: triangulation, robust fusion, uncertainty, gap filling, quality.

Every match that is finite and at least as certain as ``certainty_threshold`` (default: the
threshold the matcher recorded in the match raster, 0.8 for the light matcher, 0.05 for POC, 0.5 for
the fused matcher, 0 for RoMa and a simulator ground truth) is triangulated with both sensor models
(:func:`.stereo.triangulate`: range/Doppler equations on the WGS84 ellipsoid), block by block of
match-raster rows. A point whose misclosure exceeds
``max_residual_m`` is dropped (an exact match closes to ~0 m; an azimuth mismatch of d metres
leaves about d / sqrt(2)). Matches that failed the matching step's forward-backward check are
absent from the match raster already (its fourth band says where).

**What the terrain rules out.** With a prior DEM (``prior_dem``, else the one the matching step
used, recorded in the match raster), the pixels in layover or shadow in either view are known
(:func:`.terrain.terrain_masks`): a match whose reference pixel or secondary position lies there
is dropped, as no single ground point answers it. A point further from that DEM than the prior's
height uncertainty (``height_uncertainty_m``, default the matching step's) is dropped: the matcher
was not asked to look there. (A constant height prior gates nothing: a patch's secondary window
spans the heights of all its pixels, so its answers reach well beyond the prior's uncertainty.)

The rest are projected to the output CRS and binned into square cells (**robust fusion**,
:mod:`.fusion`):

* **DEM**: the certainty-weighted median height of the cell's points (the plain median with
  ``weighted_median`` off), each point first carried to the cell centre along the local slope of a
  first median grid (so a sloping cell's value does not depend on where its points fall); then
  every point further from the robust plane through the cell heights around it (5 x 5 cells) than
  ``outlier_k`` robust standard deviations (the largest of those cells' roughness about that plane,
  the points' own scatter about their cells and the height of half a pixel of disparity) is dropped
  and the cells are fused again; metres above
  the WGS84 ellipsoid, NaN where unknown. ``outlier_k`` (default 2) was chosen on the validation
  pairs of ``scripts/compare_matchers.py`` (docs/RESULTS.md), never on the test pairs;
* **count**: points per cell (0 in filled gaps and where nothing was matched);
* **uncertainty** (1 sigma, metres): sqrt(se^2 + r^2), with se = 1.2533 s / sqrt(n) the standard
  error of the median of n points whose robust spread is s (interquartile range / 1.349), and r
  the cell's mean triangulation misclosure (quartiles taken at the outer ranks, so two points
  already have a spread). A one-point cell has no spread: its uncertainty is
  its misclosure alone, a lower bound;
* **quality** (:data:`.fusion.QUALITY`): measured (the cell holds points that passed every check),
  filled (interpolated), rejected as inconsistent (every point it had was dropped by the checks,
  or matches rejected by the forward-backward check see its ground), layover, shadow (its ground
  lies there in either view, from the prior DEM, else from this DEM), no data.

**Gaps** are filled by GDAL's inverse-distance interpolation: the nodata cells that no disk of
nodata with a radius of ``fill_distance_cells`` cells (default 3) covers (:func:`fillable_gaps`,
the morphological closing of the data mask). That takes holes, and stripes and bays up to
2 x ``fill_distance_cells`` + 1 cells wide even where they open onto the edge of the data, as
slopes facing the radar leave them (sampled more coarsely than the grid); wider nodata areas, the
area outside the images among them, stay nodata. Filled cells keep count 0 and an interpolated
uncertainty.

Defaults: ``crs`` the UTM zone of the scene centre; ``resolution_m`` the coarsest ground sampling
of the two images (ground-range and azimuth spacing at the scene centre) rounded up to 1, 2, 2.5
or 5 x 10^k m; ``max_residual_m`` two pixels (the coarsest slant-range or azimuth spacing).

All points of a run are held as 16 bytes each (cell index, height, misclosure, certainty) until
gridding, so 10 million matches take about 160 MB; the match raster itself is streamed.
"""

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from scipy import ndimage

from . import checks
from .atomic import atomic_file, atomic_outputs, check_outputs
from .dem import Dem, open_dem
from .errors import ElevationCanceled, GeometryError, RasterError, SettingsError, located
from .evaluate import MAX_CELLS, evaluate_dem
from .fusion import QUALITY, cell_medians, class_counts, classify, disagreeing
from .inputs import parse_json
from .products import read_pair_models
from .progress import Progress
from .raster import (
    MATCHING_ITEM,
    ROUND_TRIP_BAND,
    SECONDARY_SENSOR_ITEM,
    SENSOR_ITEM,
    gcp_height,
    open_raster,
    read_block,
    write_geotiff,
)
from .report import report_siblings
from .stereo import height_sensitivity, look_angles, misclosure_px, triangulate
from .terrain import terrain_masks

ELEVATION_ITEM = "SARSTEREO_ELEVATION"  # DEM metadata: source and settings (both sensor models beside)
QUALITY_ITEM = "SARSTEREO_QUALITY"  # quality layer metadata: {value: class name} (JSON)
BLOCK_ROWS = 256
MISCLOSURE_SAMPLE = 20_000  # usable matches whose misclosure is measured
MAX_MISCLOSURE_PX = 0.5  # beyond this median misclosure the sensor models disagree
OUTLIER_K = 2.0  # robust standard deviations from the neighbourhood (chosen on the validation pairs)
FLOOR_PX = 0.5  # the neighbourhood's standard deviation is never taken below this much disparity, in height
ROUND_TRIP_SAMPLE = 200_000  # pixels rejected by the forward-backward check placed on the quality layer
TERRAIN_FILL_CELLS = 20  # how far this DEM is extended to tell layover and shadow without a prior DEM
TERRAIN_SMOOTH_CELLS = 2.0  # and how much it is smoothed first (Gaussian std, cells)
MAX_DROPPED = 0.2  # beyond this share of usable matches failing MAX_RESIDUAL, the run warns
_NICE = (1.0, 2.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ElevationSettings:
    """The tunables of :func:`generate_elevation` (what the QGIS algorithm exposes)."""

    certainty_threshold: float = None  # None: the matcher's own, recorded in the match raster (else 0)
    max_residual_m: float = None  # None: two pixels
    crs: str = None  # anything pyproj reads (EPSG:32632, WKT); None: UTM zone of the scene centre
    resolution_m: float = None  # None: from the ground sampling
    fill_distance_cells: int = 3
    outlier_k: float = OUTLIER_K  # drop points this many robust std from their neighbourhood (0: off)
    weighted_median: bool = True  # each cell's height: the certainty-weighted median (else the plain one)
    height_uncertainty_m: float = None  # prior gate; None: the matching step's (none without a record)
    terrain_check: bool = True  # with a prior DEM: drop matches in layover or shadow in either view

    def validate(self):
        if self.certainty_threshold is not None and not 0.0 <= self.certainty_threshold <= 1.0:
            raise GeometryError(located("elevation", "CERTAINTY_THRESHOLD",
                                        f"{self.certainty_threshold}; give a certainty between 0 and 1"))
        if self.max_residual_m is not None and not self.max_residual_m > 0:
            raise GeometryError(located("elevation", "MAX_RESIDUAL", f"{self.max_residual_m} m; give a positive "
                                                                     "misclosure in metres, or leave it empty"))
        if self.resolution_m is not None and not (math.isfinite(self.resolution_m) and self.resolution_m > 0):
            raise GeometryError(located("elevation", "RESOLUTION", f"{self.resolution_m} m; give a positive cell "
                                                                   "size in metres, or leave it empty for the "
                                                                   "ground sampling"))
        if not 0 <= int(self.fill_distance_cells) <= 100:
            raise GeometryError(located("elevation", "FILL_DISTANCE", f"{self.fill_distance_cells}; give 0..100 cells"))
        if not (self.outlier_k is not None and self.outlier_k >= 0):
            raise SettingsError(located("elevation", "OUTLIER_K", f"{self.outlier_k}; give a number of robust "
                                                                  "standard deviations >= 0 (0: no rejection)"))
        if self.height_uncertainty_m is not None and not self.height_uncertainty_m > 0:
            raise SettingsError(located("elevation", "HEIGHT_UNCERTAINTY", f"{self.height_uncertainty_m} m; give a "
                                                                           "positive height, or leave it empty"))


@dataclass
class ElevationResult:
    """What :func:`generate_elevation` made. Paths are None where no output was asked for."""

    path: str
    count_path: str
    uncertainty_path: str
    crs: str  # the DEM's CRS as "EPSG:n" or WKT
    resolution_m: float
    shape: tuple
    certainty_threshold: float  # the one used
    matches_used: int  # finite matches at or above the certainty threshold
    points: int  # triangulated within the misclosure limit and inside the grid
    cells_with_points: int
    filled_cells: int
    max_residual_m: float
    seconds: float
    median_misclosure_px: float = float("nan")  # of the usable matches, before the misclosure limit
    warnings: list = field(default_factory=list)
    quality_path: str = None
    prior_dem: str = None  # the DEM that told layover, shadow and the prior heights (None: none)
    # what the checks took out: matches in layover / shadow, points off the prior, points off their
    # neighbourhood; and the reference pixels whose match failed the forward-backward check
    rejected: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)  # cells per class of the quality layer

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class Grid:
    """A north-up grid of square cells: top-left corner (x0, y0), cell size, rows x cols, CRS WKT."""

    x0: float
    y0: float
    resolution: float
    rows: int
    cols: int
    wkt: str

    @property
    def geotransform(self):
        return (self.x0, self.resolution, 0.0, self.y0, 0.0, -self.resolution)

    @property
    def crs_name(self):
        """The CRS as "EPSG:n" where it has a code, else WKT."""
        return _crs_name(CRS.from_wkt(self.wkt))

    def locate(self, x, y):
        """Flat cell index of map points (-1 outside the grid), and their offsets (east, north,
        metres) from their cell's centre."""
        col_f, row_f = (x - self.x0) / self.resolution, (self.y0 - y) / self.resolution
        col, row = np.floor(col_f), np.floor(row_f)
        inside = (col >= 0) & (col < self.cols) & (row >= 0) & (row < self.rows)
        cell = np.where(inside, row * self.cols + col, -1).astype(np.int64)
        east = ((col_f - col - 0.5) * self.resolution).astype(np.float32)
        north = ((row + 0.5 - row_f) * self.resolution).astype(np.float32)
        return cell, east, north


def generate_elevation(matches, output, settings=None, *, count_output=None, uncertainty_output=None,
                       quality_output=None, prior_dem=None, reference_dem=None, error_output=None, report=None,
                       progress=None, is_canceled=None):
    """Triangulate a match raster (or a simulator ground truth) and grid it into a DEM.

    ``matches``: path of a raster with bands secondary row, secondary col, certainty (or
    validity) in the reference geometry, embedding both sensor models; an optional fourth band
    holds the forward-backward round-trip error. Writes ``output`` (DEM) and, where given,
    ``count_output``, ``uncertainty_output`` and ``quality_output``; see the module doc.
    ``prior_dem`` (path or :class:`Dem`): the terrain that tells layover, shadow and the prior
    heights; default the prior DEM the matching step recorded, where that file still exists. With a
    ``reference_dem`` the DEM is also evaluated (:func:`.evaluate.evaluate_dem`: ``error_output``,
    and the statistics in ``report``); it is never used to reject points. ``report`` (JSON path)
    also records this run.
    """
    start = time.perf_counter()
    settings = settings or ElevationSettings()
    settings.validate()
    error_output = error_output if reference_dem is not None else None
    pages = report_siblings(report) if report else (None, None)
    check_outputs({"OUTPUT": output, "COUNT_OUTPUT": count_output, "UNCERTAINTY_OUTPUT": uncertainty_output,
                   "QUALITY_OUTPUT": quality_output, "ERROR_OUTPUT": error_output, "REPORT": report,
                   "REPORT (its figure)": pages[0], "REPORT (its page)": pages[1]},
                  {"MATCHES": matches, "PRIOR_DEM": prior_dem, "REFERENCE_DEM": reference_dem})
    steps = Progress(progress, is_canceled, ElevationCanceled, "elevation: canceled; nothing was written")
    ds, ref, sec = _open_matches(matches)
    record = _matching_record(ds, matches)
    if settings.crs:  # a CRS that will not do, refused before the work
        height = record.get("height_prior_m")
        _output_crs(settings.crs, ref, sec, gcp_height(matches) or 0.0 if height is None else float(height))
    prior = _prior(ref, sec, prior_dem, settings, record)
    points = _triangulate_all(ds, ref, sec, settings, matches, record, prior, steps.part(0.0, 0.75))
    grid, (dem, count, uncertainty, filled), used, lost = _grid_dem(points, ref, sec, settings)
    steps.check()
    quality = _quality(grid, dem, count, filled, lost, points, prior, ref, sec) if quality_output or report else None
    steps.check()
    meta = {ELEVATION_ITEM: json.dumps({
        "matches": str(matches), "settings": {**asdict(settings), "certainty_threshold": points.threshold,
                                              "max_residual_m": points.max_residual,
                                              "resolution_m": grid.resolution, "crs": grid.crs_name,
                                              "height_uncertainty_m": prior.uncertainty},
        "prior_dem": prior.name, "vertical_datum": "WGS84 ellipsoid"}),
        SENSOR_ITEM: json.dumps(ref.to_dict()), SECONDARY_SENSOR_ITEM: json.dumps(sec.to_dict())}
    write = dict(geotransform=grid.geotransform, crs=grid.wkt, nodata=float("nan"), metadata=meta)
    # one group: DEM, count, uncertainty, quality, error map and report appear together or not at all
    with atomic_outputs(output, count_output, uncertainty_output, quality_output, error_output, report,
                        *pages) as temps:
        dem_tmp, count_tmp, uncertainty_tmp, quality_tmp, error_tmp, report_tmp = temps[:6]
        write_geotiff(dem_tmp, dem, band_names=("height_m",), **write)
        if count_tmp:
            write_geotiff(count_tmp, count, band_names=("points",), **{**write, "nodata": None})
        if uncertainty_tmp:
            write_geotiff(uncertainty_tmp, uncertainty, band_names=("uncertainty_m",), **write)
        if quality_tmp:
            classes = json.dumps({str(k): v for k, v in QUALITY.items()})
            write_geotiff(quality_tmp, quality, band_names=("quality",),
                          **{**write, "nodata": None, "metadata": {**meta, QUALITY_ITEM: classes}})
        result = ElevationResult(str(output), count_output and str(count_output),
                                 uncertainty_output and str(uncertainty_output), grid.crs_name, grid.resolution,
                                 (grid.rows, grid.cols), points.threshold, points.matches_used, used,
                                 int((count > 0).sum()), int(filled.sum()), points.max_residual,
                                 time.perf_counter() - start, points.misclosure_px, _warnings(points, ref, sec),
                                 quality_output and str(quality_output), prior.name, points.rejected,
                                 class_counts(quality) if quality is not None else {})
        _evaluate(result, dem_tmp, reference_dem, error_tmp, report_tmp)
    steps.done()
    return result


def _warnings(points, ref, sec):
    """What a user must know about the run that the outputs do not show."""
    blind = [f"{role} {name.replace('_', ' ')}" for role, model in (("reference", ref), ("secondary", sec))
             if model.corrections is not None for name in model.corrections.unobservable
             if name not in ("azimuth_offset", "azimuth_drift")]
    bias = [] if not blind else [
        "the sensor models were refined without absolute control, which could not see their " + ", ".join(blind)
        + ": every height may carry a common bias; refine with a REFERENCE_DEM or GCPS (sarstereo:refinepair)"]
    return bias + _match_warnings(points)


def _match_warnings(points):
    checked = sum(points.rejected[k] for k in ("layover", "shadow", "off_prior"))  # dropped by other checks
    dropped = 1.0 - (points.h.size + checked) / max(points.matches_used, 1)
    if points.misclosure_px > MAX_MISCLOSURE_PX:
        return [f"the sensor models disagree: the matches misclose by {points.misclosure_px:.2f} lines (median; "
                f"more than {MAX_MISCLOSURE_PX}), so {100 * dropped:.0f} % of them fail MAX_RESIDUAL and the heights "
                "may be biased; refine the models with sarstereo:refinepair and match again"]
    if dropped > MAX_DROPPED:
        return [f"{100 * dropped:.0f} % of the {points.matches_used} usable matches fail MAX_RESIDUAL "
                f"({points.max_residual:.3g} m) and are left out; check the matches and the sensor models "
                "(sarstereo:refinepair), or raise MAX_RESIDUAL"]
    return []


def _open_matches(matches):
    """(dataset, reference model, secondary model) of a match raster, checked."""
    ref, sec = read_pair_models(matches)
    ds = open_raster(matches, "MATCHES")
    checks.pair(ref, sec, gcp_height(matches) or 0.0)
    if ds.RasterCount < 3:
        raise RasterError(located(matches, "bands", f"{ds.RasterCount} band(s); a match raster has 3 (secondary "
                                                    "row, secondary col, certainty)"))
    if (ds.RasterYSize, ds.RasterXSize) != (ref.rows, ref.cols):
        raise RasterError(located(matches, "size", f"{ds.RasterYSize} x {ds.RasterXSize} pixels, but its reference "
                                                   f"sensor model describes {ref.rows} x {ref.cols}"))
    return ds, ref, sec


def _evaluate(result, dem, reference_dem, error_output, report):
    """Evaluate the DEM (``dem``: its temporary, in the outputs' group) against ``reference_dem``
    (the run fails as a whole: no DEM without the evaluation asked for), or record the run in
    ``report``."""
    if reference_dem is not None:
        evaluate_dem(dem, reference_dem, error_output, report, extra={"elevation": result.to_dict()})
    elif report:
        with atomic_file(report) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"elevation": result.to_dict()}, fh, indent=2)


@dataclass
class _Prior:
    """What the elevation step knows of the terrain before matching: a DEM (None: none), the
    constant prior height (None: none recorded), the gate's half-width (None: no gate), and the
    layover and shadow masks of both views on that DEM (None without one)."""

    dem: object
    height: float
    uncertainty: float
    masks: tuple

    @property
    def name(self):
        return None if self.dem is None else self.dem.path

    def heights(self, lon, lat):
        """Prior heights at points (degrees): the DEM's, else the constant; NaN where unknown."""
        constant = np.nan if self.height is None else float(self.height)
        if self.dem is None:
            return np.full(np.shape(lon), constant)
        found = self.dem.sample(lon, lat)
        return np.where(np.isfinite(found), found, constant)


def _matching_record(ds, matches):
    """The matching step's record in the match raster (a dict; empty where there is none)."""
    record = parse_json(ds.GetMetadataItem(MATCHING_ITEM) or "{}", matches, MATCHING_ITEM, RasterError)
    return record if isinstance(record, dict) else {}


def _prior(ref, sec, prior_dem, settings, record):
    """The :class:`_Prior` of a run: ``prior_dem``, else the matching step's ``record``."""
    recorded = record.get("prior_dem")
    if prior_dem is None and recorded and Path(recorded).exists():
        prior_dem = recorded
    dem = None if prior_dem is None else open_dem(prior_dem)
    uncertainty = settings.height_uncertainty_m
    if uncertainty is None:
        uncertainty = record.get("settings", {}).get("height_uncertainty_m")
    height = record.get("height_prior_m")
    if dem is None:  # a constant prior is no gate: a patch's window spans the heights of all its pixels
        uncertainty = None
    masks = None
    zero_doppler = all(getattr(m, "kind", "zero_doppler") != "sicd" for m in (ref, sec))  # the facet walk's need
    if dem is not None and settings.terrain_check and zero_doppler:
        masks = (terrain_masks(ref, dem), terrain_masks(sec, dem))
    return _Prior(dem, height, uncertainty, masks)


@dataclass
class _Points:
    """Triangulated points that passed the checks, and what selected them."""

    lon: np.ndarray
    lat: np.ndarray
    h: np.ndarray
    residual: np.ndarray
    certainty: np.ndarray
    matches_used: int  # finite matches at or above the certainty threshold
    threshold: float
    max_residual: float
    misclosure_px: float  # median |misclosure| (secondary lines) of a sample of the usable matches
    rejected: dict  # what each check took out (module doc)
    round_trip: np.ndarray  # (2, n) a sample of the reference pixels rejected by the forward-backward check


def _triangulate_all(ds, ref, sec, settings, matches, record, prior, steps):
    """The :class:`_Points` of a match raster (``record``: its matching step's), triangulated block by
    block of rows."""
    max_residual = settings.max_residual_m or 2.0 * max(_pixel_spacings(ref) + _pixel_spacings(sec))
    threshold = settings.certainty_threshold
    if threshold is None:
        threshold = float(record.get("certainty_threshold", 0.0))
    out, used, sample, bounced = [[], [], [], [], []], 0, [], []
    rejected = {"round_trip_pixels": 0, "layover": 0, "shadow": 0, "off_prior": 0, "off_neighbourhood": 0}
    stride = max(1, ref.rows * ref.cols // MISCLOSURE_SAMPLE)
    round_trip = ds.RasterCount > 3 and ds.GetRasterBand(4).GetDescription() == ROUND_TRIP_BAND
    bounce_stride = max(1, ref.rows * ref.cols // ROUND_TRIP_SAMPLE)
    for row0 in range(0, ref.rows, BLOCK_ROWS):
        steps.check()
        n = min(BLOCK_ROWS, ref.rows - row0)
        bands = [read_block(ds, b, 0, row0, ref.cols, n) for b in range(1, 4 + round_trip)]
        r2, c2, cert = bands[:3]
        with np.errstate(invalid="ignore"):
            rows, cols = np.nonzero(np.isfinite(r2) & np.isfinite(c2) & (cert >= threshold))
        if len(bands) > 3:  # answered, but the way back did not return: where on the quality layer
            lost = np.flatnonzero((np.isfinite(bands[3]) & ~np.isfinite(r2)).ravel())
            rejected["round_trip_pixels"] += lost.size
            lost = lost[(lost + row0 * ref.cols) % bounce_stride == 0]
            bounced.append(np.stack([lost // ref.cols + float(row0), lost % ref.cols]))
        used += rows.size
        r1, s_r, s_c, cert = rows + float(row0), r2[rows, cols], c2[rows, cols], cert[rows, cols]
        pick = slice(None, None, stride)
        sample.append(np.stack([r1[pick], cols[pick], s_r[pick], s_c[pick]]))
        keep = _clear_of_terrain(prior, rejected, r1, cols, s_r, s_c)
        lon, lat, h, res = triangulate(ref, r1[keep], cols[keep].astype(np.float64), sec, s_r[keep], s_c[keep])
        with np.errstate(invalid="ignore"):
            good = np.isfinite(h) & (res <= max_residual)
            if prior.uncertainty is not None:
                off = good & (np.abs(h - prior.heights(lon, lat)) > prior.uncertainty)
                rejected["off_prior"] += int(off.sum())
                good &= ~off
        for acc, values, dtype in zip(out, (lon, lat, h, res, cert[keep]),
                                      (np.float64, np.float64, np.float32, np.float32, np.float32)):
            acc.append(values[good].astype(dtype))
        steps((row0 + n) / ref.rows)
    misclosure = np.abs(misclosure_px(ref, sec, *np.concatenate(sample, axis=1)))
    misclosure = float(np.nanmedian(misclosure)) if np.isfinite(misclosure).any() else float("nan")
    bounced = np.concatenate(bounced, axis=1) if bounced else np.zeros((2, 0))
    points = _Points(*(np.concatenate(a) for a in out), used, threshold, max_residual, misclosure, rejected, bounced)
    if not used:
        raise GeometryError(located(matches, "bands 1-3", "holds no match at or above the certainty threshold; "
                                                          "lower CERTAINTY_THRESHOLD or check the matching step"))
    if not points.h.size:
        raise GeometryError(located(matches, "bands 1-3", f"none of {used} usable matches triangulates "
                                                          f"within {max_residual:.3g} m and passes the checks; "
                                                          "check that the matches belong to this pair, or raise "
                                                          "MAX_RESIDUAL"))
    return points


def _clear_of_terrain(prior, rejected, r1, c1, r2, c2):
    """Which matches see neither layover nor shadow in either view (all, without masks); counted."""
    if prior.masks is None:
        return np.ones(r1.shape, bool)
    (lay_1, sha_1), (lay_2, sha_2) = prior.masks[0].at(r1, c1), prior.masks[1].at(r2, c2)
    layover, shadow = lay_1 | lay_2, sha_1 | sha_2
    rejected["layover"] += int(layover.sum())
    rejected["shadow"] += int((shadow & ~layover).sum())
    return ~(layover | shadow)


def _grid_dem(points, ref, sec, settings):
    """(grid, (dem, count, uncertainty, filled), points gridded, cells whose points were all
    dropped): the points fused into the output grid (module doc), gaps filled."""
    scene_h = float(np.median(points.h))
    crs = _output_crs(settings.crs, ref, sec, scene_h)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(points.lon, points.lat)
    resolution = settings.resolution_m or nice_ceil(max(_ground_sampling(ref, scene_h)
                                                        + _ground_sampling(sec, scene_h)))
    grid = _grid_around(x, y, resolution, crs)
    cell, east, north = grid.locate(x, y)
    del x, y
    inside = cell >= 0
    cell, h, res, east, north = cell[inside], points.h[inside], points.residual[inside], east[inside], north[inside]
    weight = points.certainty[inside] if settings.weighted_median else None
    n_cells, shape = grid.rows * grid.cols, (grid.rows, grid.cols)
    dem = cell_heights(cell, h, weight, n_cells)
    # second pass: each point's height carried to its cell centre along the first DEM's slope,
    # so the median does not depend on where in a sloping cell the points happen to fall
    slope_north, slope_east = (np.nan_to_num(g).ravel() for g in _gradient(dem.reshape(shape), resolution))
    h = h - (slope_east[cell] * east + slope_north[cell] * north)
    had = np.zeros(n_cells, bool)
    had[cell] = True
    if settings.outlier_k:
        floor = FLOOR_PX * _height_per_pixel(ref, sec, points)
        keep = ~disagreeing(cell, h, cell_heights(cell, h, weight, n_cells), shape, resolution, settings.outlier_k,
                            floor)
        points.rejected["off_neighbourhood"] = int((~keep).sum())
        cell, h, res, weight = cell[keep], h[keep], res[keep], None if weight is None else weight[keep]
    dem, count, uncertainty = (a.reshape(shape) for a in grid_points(cell, h, res, n_cells, weight))
    filled = fillable_gaps(dem, settings.fill_distance_cells)
    uncertainty = np.where(filled, _fill(uncertainty, settings.fill_distance_cells), uncertainty)
    dem = np.where(filled, _fill(dem, settings.fill_distance_cells), dem)
    return grid, (dem, count, uncertainty, filled), int(cell.size), had.reshape(shape) & (count == 0)


def _height_per_pixel(ref, sec, points, samples=200):
    """The median height (m) one pixel of range disparity means, over a sample of the points."""
    pick = np.linspace(0, points.h.size - 1, min(samples, points.h.size)).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        found = height_sensitivity(ref, sec, points.lon[pick], points.lat[pick], points.h[pick].astype(np.float64))
    found = found[np.isfinite(found)]
    return float(np.median(found)) if found.size else 0.0


def cell_heights(cell, h, weight, n_cells):
    """Flat grid of each cell's (weighted) median height, NaN where a cell holds no point."""
    out = np.full(n_cells, np.nan)
    cells, median, *_ = cell_medians(cell, h, weight)
    out[cells] = median
    return out


def _own_terrain(dem, grid):
    """This DEM as the terrain of the quality layer's layover and shadow, None where it is empty:
    extended over its gaps (``TERRAIN_FILL_CELLS``) and smoothed (Gaussian, ``TERRAIN_SMOOTH_CELLS``),
    as its noise would fake slopes steeper than the incidence. Flags from it are approximate; a
    prior DEM gives exact ones."""
    finite = np.isfinite(dem)
    if not finite.any():
        return None
    reach = _fill(np.where(finite, 1.0, np.nan), TERRAIN_FILL_CELLS) > 0.5
    extended = np.where(finite, dem, np.where(reach, _fill(dem, TERRAIN_FILL_CELLS), np.nan))
    known = np.isfinite(extended)
    total = ndimage.gaussian_filter(np.where(known, extended, 0.0), TERRAIN_SMOOTH_CELLS)
    weight = ndimage.gaussian_filter(known.astype(np.float64), TERRAIN_SMOOTH_CELLS)
    smooth = np.where(known, total / np.maximum(weight, 1e-6), np.nan)
    return Dem.from_array(smooth, grid.geotransform, grid.wkt, "this DEM")


def _gradient(dem, resolution):
    """(d/dnorth, d/deast) of a grid's heights; zero along an axis too short to differentiate."""
    dem = dem.astype(np.float64)
    return tuple(np.gradient(dem, spacing, axis=axis) if dem.shape[axis] > 1 else np.zeros_like(dem)
                 for axis, spacing in ((0, -resolution), (1, resolution)))


def grid_points(cell, h, residual, n_cells, weights=None):
    """Per-cell median height (certainty-weighted with ``weights``), point count and uncertainty
    (see the module doc) of points given by flat cell index; NaN (count 0) where a cell holds no
    point."""
    cells, median, n, order, starts = cell_medians(cell, h, weights)
    hs = h[order].astype(np.float64)
    spread = (hs[starts + (3 * (n - 1) + 3) // 4] - hs[starts + (n - 1) // 4]) / 1.349  # outer quartile ranks
    mean_residual = np.bincount(cell, residual, minlength=n_cells)[cells] / n
    dem = np.full(n_cells, np.nan, np.float32)
    count = np.zeros(n_cells, np.float32)
    uncertainty = np.full(n_cells, np.nan, np.float32)
    dem[cells], count[cells] = median, n
    uncertainty[cells] = np.sqrt((1.2533 * spread) ** 2 / n + mean_residual ** 2)
    return dem, count, uncertainty


def _quality(grid, dem, count, filled, lost, points, prior, ref, sec):
    """The quality layer (module doc): layover and shadow from the prior DEM, else from this DEM
    extended over its gaps; the ground of the reference pixels rejected by the forward-backward
    check placed on that terrain."""
    shape = (grid.rows, grid.cols)
    terrain, masks = prior.dem or _own_terrain(dem, grid), prior.masks
    if terrain is None:
        return classify(count > 0, filled, lost, np.zeros(shape, bool), np.zeros(shape, bool))
    zero_doppler = all(getattr(m, "kind", "zero_doppler") != "sicd" for m in (ref, sec))
    if masks is None and zero_doppler:
        masks = (terrain_masks(ref, terrain), terrain_masks(sec, terrain))
    x = grid.x0 + (np.arange(grid.cols) + 0.5) * grid.resolution
    y = grid.y0 - (np.arange(grid.rows) + 0.5) * grid.resolution
    lon, lat = Transformer.from_crs(CRS.from_wkt(grid.wkt), "EPSG:4326", always_xy=True).transform(*np.meshgrid(x, y))
    heights = terrain.sample(lon, lat)
    layover, shadow = np.zeros(shape, bool), np.zeros(shape, bool)
    for model, mask in zip((ref, sec), masks or ()):
        lay, sha = mask.at(*model.geo2rdr(lon, lat, heights, look_side_only=True))
        layover |= lay
        shadow |= sha
    rejected = lost.copy()
    if points.round_trip.size:
        g_lon, g_lat, _ = ref.rdr2geo(points.round_trip[0], points.round_trip[1], dem=terrain)
        ok = np.isfinite(g_lon)
        gx, gy = Transformer.from_crs("EPSG:4326", CRS.from_wkt(grid.wkt), always_xy=True).transform(g_lon[ok],
                                                                                                    g_lat[ok])
        cell = grid.locate(gx, gy)[0]
        rejected.ravel()[cell[cell >= 0]] = True
    return classify(count > 0, filled, rejected, layover, shadow)


def fillable_gaps(dem, max_distance):
    """Mask of the nodata cells to fill: those that no disk of nodata with a radius of
    ``max_distance`` cells covers (the morphological closing of the data mask). Holes, and gaps,
    bays and stripes up to 2 x ``max_distance`` + 1 cells wide are filled whether or not they reach
    the edge of the data (slopes facing the radar are sampled more coarsely than the grid and leave
    such stripes); wider nodata areas, the area outside the images among them, stay."""
    hole = np.isnan(dem)
    d = int(max_distance)
    if not d or not hole.any() or hole.all():
        return np.zeros(dem.shape, bool)
    # closing by a disk through distance transforms: linear in the grid, at any radius (a 201-pixel
    # structuring element took minutes); beyond the grid: nodata
    near = ndimage.distance_transform_edt(~np.pad(~hole, d + 1)) <= d
    closed = ndimage.distance_transform_edt(near) > d
    return closed[d + 1:-d - 1, d + 1:-d - 1] & hole


def _fill(values, max_distance):
    """``values`` with NaN cells interpolated (GDAL FillNodata, inverse distance, no smoothing)."""
    rows, cols = values.shape
    mem = gdal.GetDriverByName("MEM").Create("", cols, rows, 2, gdal.GDT_Float32)
    band, mask = mem.GetRasterBand(1), mem.GetRasterBand(2)
    band.WriteArray(np.nan_to_num(values, nan=0.0))
    mask.WriteArray(np.isfinite(values).astype(np.float32))
    gdal.FillNodata(band, mask, float(max_distance) + 1.0, 0)
    return band.ReadAsArray()


def nice_ceil(value):
    """The smallest of 1, 2, 2.5, 5 x 10^k at least ``value``."""
    k = 10.0 ** math.floor(math.log10(value))
    return next(m * k for m in _NICE if m * k >= value * (1 - 1e-9))


def _centre(model, height):
    lon, lat, _ = model.rdr2geo((model.rows - 1) / 2.0, (model.cols - 1) / 2.0, height=height)
    return float(lon), float(lat)


def _pixel_spacings(model):
    """(slant-range spacing, azimuth spacing along the flight) in metres."""
    speed = np.linalg.norm(model.orbit.velocity(model.row_to_time(np.array([(model.rows - 1) / 2.0])))[0])
    return [model.sample_spacing_m, float(speed * model.line_interval_s)]


def _ground_sampling(model, height):
    """(ground-range spacing, azimuth spacing) at the image centre, metres."""
    lon, lat = _centre(model, height)
    _, incidence = look_angles(model, lon, lat, height)
    slant, azimuth = _pixel_spacings(model)
    return [slant / math.sin(math.radians(max(incidence, 5.0))), azimuth]


def utm_crs(lon, lat):
    """The WGS84 UTM zone CRS of a point (the regular 6-degree zones)."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _output_crs(user_crs, ref, sec, height):
    if not user_crs:
        return utm_crs(*_centre(ref, height))
    try:
        crs = CRS.from_user_input(user_crs)
    except CRSError as exc:
        raise GeometryError(located("elevation", "CRS", f"{user_crs!r} is not a CRS ({exc})")) from None
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if not crs.is_projected or unit not in ("metre", "meter"):
        raise GeometryError(located("elevation", "CRS", f"{_crs_name(crs)} is not a projected CRS in metres; "
                                                        "choose one (e.g. the UTM zone of the scene), or leave it "
                                                        "empty for the automatic UTM zone"))
    centre = _centre(ref, height)
    if np.isfinite(centre).all():  # (the scene height may be unknown yet: checked again with the points')
        checks.crs_distortion(crs, *centre)
    return crs


def _crs_name(crs):
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _grid_around(x, y, resolution, crs):
    """The grid over the points, snapped to multiples of the resolution; the 0.01 % outermost
    points on each side (wild matches far off the scene) are left outside."""
    lo_x, hi_x = np.percentile(x, [0.01, 99.99]) if x.size > 10_000 else (x.min(), x.max())
    lo_y, hi_y = np.percentile(y, [0.01, 99.99]) if y.size > 10_000 else (y.min(), y.max())
    x0, y0 = math.floor(lo_x / resolution) * resolution, math.ceil(hi_y / resolution) * resolution
    cols = max(1, int(math.floor((hi_x - x0) / resolution)) + 1)
    rows = max(1, int(math.floor((y0 - lo_y) / resolution)) + 1)
    if rows * cols > MAX_CELLS:
        raise GeometryError(located("elevation", "RESOLUTION", f"{resolution:g} m makes a {rows} x {cols} grid; "
                                                               "choose a coarser cell size"))
    return Grid(x0, y0, resolution, rows, cols, crs.to_wkt())
