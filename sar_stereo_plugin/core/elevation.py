"""Matches -> 3D points -> DEM: triangulation, robust gridding, uncertainty and hole filling.

Every match that is finite and at least as certain as ``certainty_threshold`` (default: the
threshold the matcher recorded in the match raster, 0.05 for the light matcher, 0 for POC, RoMa
and a simulator ground truth) is triangulated with both sensor models
(:func:`.sensor.triangulate`: range/Doppler equations on the WGS84 ellipsoid), block by block of
match-raster rows. A point whose misclosure exceeds
``max_residual_m`` is dropped (an exact match closes to ~0 m; an azimuth mismatch of d metres
leaves about d / sqrt(2)). The rest are projected to the output CRS and binned into square cells:

* **DEM**: the median height of the cell's points (robust to wild matches), each point first
  carried to the cell centre along the local slope of a first median grid (so a sloping cell's
  value does not depend on where its points fall); metres above the WGS84 ellipsoid, NaN where
  unknown;
* **count**: points per cell (0 in filled holes and where nothing was matched);
* **uncertainty** (1 sigma, metres): sqrt(se^2 + r^2), with se = 1.2533 s / sqrt(n) the standard
  error of the median of n points whose robust spread is s (interquartile range / 1.349), and r
  the cell's mean triangulation misclosure (quartiles taken at the outer ranks, so two points
  already have a spread). A one-point cell has no spread: its uncertainty is
  its misclosure alone, a lower bound.

**Holes** -- connected nodata regions that do not touch the grid's border -- are filled by
GDAL's inverse-distance interpolation when every cell of the region lies within
``fill_distance_cells`` cells of a cell with data (default 3); larger holes and the area outside
the images stay nodata. Filled cells keep count 0 and an interpolated uncertainty.

Defaults: ``crs`` the UTM zone of the scene centre; ``resolution_m`` the coarsest ground sampling
of the two images (ground-range and azimuth spacing at the scene centre) rounded up to 1, 2, 2.5
or 5 x 10^k m; ``max_residual_m`` two pixels (the coarsest slant-range or azimuth spacing).

All points of a run are held as 12 bytes each (cell index, height, misclosure) until gridding,
so 10 million matches take about 120 MB; the match raster itself is streamed.
"""

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from scipy import ndimage

from .errors import GeometryError, RasterError, located
from .pair import _heading_and_incidence
from .products import read_pair_models
from .raster import MATCHING_ITEM, SECONDARY_SENSOR_ITEM, SENSOR_ITEM, open_raster, write_geotiff
from .sensor import triangulate

ELEVATION_ITEM = "SARSTEREO_ELEVATION"  # DEM metadata: source and settings (both sensor models beside)
BLOCK_ROWS = 256
MAX_CELLS = 400_000_000  # 1.6 GB a float32 band: beyond it the resolution is surely a mistake
_NICE = (1.0, 2.0, 2.5, 5.0, 10.0)


class ElevationCanceled(GeometryError):
    """The caller's ``is_canceled`` returned True; nothing was written."""


@dataclass(frozen=True)
class ElevationSettings:
    """The tunables of :func:`generate_elevation` (what the QGIS algorithm exposes)."""

    certainty_threshold: float = None  # None: the matcher's own, recorded in the match raster (else 0)
    max_residual_m: float = None  # None: two pixels
    crs: str = None  # anything pyproj reads (EPSG:32632, WKT); None: UTM zone of the scene centre
    resolution_m: float = None  # None: from the ground sampling
    fill_distance_cells: int = 3

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
                       reference_dem=None, error_output=None, report=None, progress=None, is_canceled=None):
    """Triangulate a match raster (or a simulator ground truth) and grid it into a DEM.

    ``matches``: path of a raster with bands secondary row, secondary col, certainty (or
    validity) in the reference geometry, embedding both sensor models. Writes ``output`` (DEM)
    and, where given, ``count_output`` and ``uncertainty_output``; see the module doc. With a
    ``reference_dem`` the DEM is also evaluated (:func:`.evaluate.evaluate_dem`: ``error_output``,
    and the statistics in ``report``). ``report`` (JSON path) also records this run.
    """
    start = time.perf_counter()
    settings = settings or ElevationSettings()
    settings.validate()
    ref, sec = read_pair_models(matches)
    ds = open_raster(matches, "MATCHES")
    if ds.RasterCount < 3:
        raise RasterError(located(matches, "bands", f"{ds.RasterCount} band(s); a match raster has 3 (secondary "
                                                    "row, secondary col, certainty)"))
    if (ds.RasterYSize, ds.RasterXSize) != (ref.rows, ref.cols):
        raise RasterError(located(matches, "size", f"{ds.RasterYSize} x {ds.RasterXSize} pixels, but its reference "
                                                   f"sensor model describes {ref.rows} x {ref.cols}"))
    max_residual = settings.max_residual_m or 2.0 * max(_pixel_spacings(ref) + _pixel_spacings(sec))
    threshold = settings.certainty_threshold
    if threshold is None:
        threshold = float(json.loads(ds.GetMetadataItem(MATCHING_ITEM) or "{}").get("certainty_threshold", 0.0))
    (lon, lat, h, res), matches_used = _triangulate_all(ds, ref, sec, threshold, max_residual, progress,
                                                        is_canceled)
    if not matches_used:
        raise GeometryError(located(matches, "bands 1-3", "holds no match at or above the certainty threshold; "
                                                          "lower CERTAINTY_THRESHOLD or check the matching step"))
    if not h.size:
        raise GeometryError(located(matches, "bands 1-3", f"none of {matches_used} usable matches triangulates "
                                                          f"within {max_residual:.3g} m; check that the matches "
                                                          "belong to this pair, or raise MAX_RESIDUAL"))
    scene_h = float(np.median(h))
    crs = _output_crs(settings.crs, ref, sec, scene_h)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    del lon, lat
    resolution = settings.resolution_m or nice_ceil(max(_ground_sampling(ref, scene_h) + _ground_sampling(sec, scene_h)))
    grid = _grid_around(x, y, resolution, crs)
    cell, east, north = grid.locate(x, y)
    del x, y
    inside = cell >= 0
    cell, h, res, east, north = cell[inside], h[inside], res[inside], east[inside], north[inside]
    dem, count, uncertainty = grid_points(cell, h, res, grid.rows * grid.cols)
    # second pass: each point's height carried to its cell centre along the first DEM's slope,
    # so the median no longer depends on where in a sloping cell the points happen to fall
    slope_north, slope_east = (np.nan_to_num(g).ravel() for g in
                               np.gradient(dem.reshape(grid.rows, grid.cols).astype(np.float64), -resolution, resolution))
    h = h - (slope_east[cell] * east + slope_north[cell] * north)
    dem, count, uncertainty = grid_points(cell, h, res, grid.rows * grid.cols)
    dem, count, uncertainty = (a.reshape(grid.rows, grid.cols) for a in (dem, count, uncertainty))
    filled = fillable_gaps(dem, settings.fill_distance_cells)
    uncertainty = np.where(filled, _fill(uncertainty, settings.fill_distance_cells), uncertainty)
    dem = np.where(filled, _fill(dem, settings.fill_distance_cells), dem)
    _check(is_canceled)
    meta = {ELEVATION_ITEM: json.dumps({
        "matches": str(matches), "settings": {**asdict(settings), "certainty_threshold": threshold,
                                              "max_residual_m": max_residual,
                                              "resolution_m": resolution, "crs": _crs_name(crs)},
        "vertical_datum": "WGS84 ellipsoid"}),
        SENSOR_ITEM: json.dumps(ref.to_dict()), SECONDARY_SENSOR_ITEM: json.dumps(sec.to_dict())}
    write = dict(geotransform=grid.geotransform, crs=grid.wkt, nodata=float("nan"), metadata=meta)
    write_geotiff(output, dem, band_names=("height_m",), **write)
    if count_output:
        write_geotiff(count_output, count, band_names=("points",), **{**write, "nodata": None})
    if uncertainty_output:
        write_geotiff(uncertainty_output, uncertainty, band_names=("uncertainty_m",), **write)
    result = ElevationResult(str(output), count_output and str(count_output),
                             uncertainty_output and str(uncertainty_output), _crs_name(crs), resolution,
                             (grid.rows, grid.cols), threshold, matches_used, int(inside.sum()),
                             int((count > 0).sum()), int(filled.sum()), max_residual, time.perf_counter() - start)
    if reference_dem is not None:
        from .evaluate import evaluate_dem
        try:
            evaluate_dem(output, reference_dem, error_output, report, extra={"elevation": result.to_dict()})
        except Exception:  # a run fails as a whole: no DEM without the evaluation asked for
            for path in (output, count_output, uncertainty_output):
                if path:
                    Path(path).unlink(missing_ok=True)
            raise
    elif report:
        with open(report, "w", encoding="utf-8") as fh:
            json.dump({"elevation": result.to_dict()}, fh, indent=2)
    if progress:
        progress(1.0)
    return result


def _check(is_canceled):
    if is_canceled and is_canceled():
        raise ElevationCanceled("elevation: canceled; nothing was written")


def _triangulate_all(ds, ref, sec, threshold, max_residual, progress, is_canceled):
    """((lon, lat, h, misclosure) of the points within the misclosure limit, number of usable
    matches), triangulated block by block of rows."""
    out, used = [[], [], [], []], 0
    for row0 in range(0, ref.rows, BLOCK_ROWS):
        _check(is_canceled)
        n = min(BLOCK_ROWS, ref.rows - row0)
        r2, c2, cert = (ds.GetRasterBand(b).ReadAsArray(0, row0, ref.cols, n) for b in (1, 2, 3))
        with np.errstate(invalid="ignore"):
            rows, cols = np.nonzero(np.isfinite(r2) & np.isfinite(c2) & (cert >= threshold))
        used += rows.size
        lon, lat, h, res = triangulate(ref, rows + float(row0), cols.astype(np.float64), sec,
                                       r2[rows, cols], c2[rows, cols])
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(h) & (res <= max_residual)
        for acc, a, dtype in zip(out, (lon, lat, h, res), (np.float64, np.float64, np.float32, np.float32)):
            acc.append(a[keep].astype(dtype))
        if progress:
            progress(0.8 * (row0 + n) / ref.rows)
    return tuple(np.concatenate(a) for a in out), used


def grid_points(cell, h, residual, n_cells):
    """Per-cell median height, point count and uncertainty (see the module doc) of points given
    by flat cell index; NaN (count 0) where a cell holds no point."""
    order = np.lexsort((h, cell))
    cell, hs = cell[order], h[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    n = np.diff(np.r_[starts, cell.size])
    median = 0.5 * (hs[starts + (n - 1) // 2] + hs[starts + n // 2])
    spread = (hs[starts + (3 * (n - 1) + 3) // 4] - hs[starts + (n - 1) // 4]) / 1.349  # outer quartile ranks
    cells = cell[starts]
    mean_residual = np.bincount(cell, residual[order], minlength=n_cells)[cells] / n
    dem = np.full(n_cells, np.nan, np.float32)
    count = np.zeros(n_cells, np.float32)
    uncertainty = np.full(n_cells, np.nan, np.float32)
    dem[cells], count[cells] = median, n
    uncertainty[cells] = np.sqrt((1.2533 * spread) ** 2 / n + mean_residual ** 2)
    return dem, count, uncertainty


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
    disk = np.hypot(*np.mgrid[-d:d + 1, -d:d + 1]) <= d
    closed = ndimage.binary_closing(np.pad(~hole, d + 1), structure=disk)  # beyond the grid: nodata
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
    _, incidence = _heading_and_incidence(model, lon, lat, height)
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


def dem_pair_models(dem_ds):
    """(reference, secondary) sensor models embedded in a DEM made here; None for other DEMs."""
    if not dem_ds.GetMetadataItem(SENSOR_ITEM) or not dem_ds.GetMetadataItem(SECONDARY_SENSOR_ITEM):
        return None
    return read_pair_models(dem_ds.GetDescription())


def footprint_grid(models, geotransform, wkt, shape, heights):
    """(geotransform, rows, cols, row0, col0): a north-up grid extended, cell for cell, until it
    covers the ground both images of a pair see (the intersection of their bounding boxes: every
    image border pixel at the low and the high end of ``heights``, their 0.5 and 99.5
    percentiles, one cell beyond), and where the given grid starts in it. A DEM's coverage is
    judged on it, so that a DEM whose grid stops short of the imaged ground is not spared the
    cells it left out."""
    res_x, res_y = geotransform[1], -geotransform[5]
    finite = heights[np.isfinite(heights)]
    finite = np.percentile(finite, [0.5, 99.5]) if finite.size else np.zeros(1)
    to_map = Transformer.from_crs("EPSG:4326", CRS.from_wkt(wkt), always_xy=True)
    seen = []  # each image's bounding box on the ground; the pair sees their intersection
    for model in models:
        edge_r = np.r_[np.arange(0, model.rows, 16), model.rows - 1].astype(np.float64)
        edge_c = np.r_[np.arange(0, model.cols, 16), model.cols - 1].astype(np.float64)
        rows = np.r_[edge_r, edge_r, np.zeros_like(edge_c), np.full_like(edge_c, model.rows - 1)]
        cols = np.r_[np.zeros_like(edge_r), np.full_like(edge_r, model.cols - 1), edge_c, edge_c]
        lon, lat, _ = model.rdr2geo(np.tile(rows, finite.size), np.tile(cols, finite.size),
                                    height=np.repeat(finite, rows.size))
        x, y = to_map.transform(lon, lat)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            seen.append(([x[ok].min(), y[ok].min()], [x[ok].max(), y[ok].max()]))
    lows = np.minimum(np.max([lo for lo, _ in seen], 0) if seen else np.inf,
                      [geotransform[0], geotransform[3] - shape[0] * res_y])
    highs = np.maximum(np.min([hi for _, hi in seen], 0) if seen else -np.inf,
                       [geotransform[0] + shape[1] * res_x, geotransform[3]])
    col0 = int(math.ceil((geotransform[0] - lows[0]) / res_x - 1e-9)) + 1
    row0 = int(math.ceil((highs[1] - geotransform[3]) / res_y - 1e-9)) + 1
    cols = col0 + int(math.ceil((highs[0] - geotransform[0]) / res_x - 1e-9)) + 1
    rows = row0 + int(math.ceil((geotransform[3] - lows[1]) / res_y - 1e-9)) + 1
    if rows * cols > MAX_CELLS:
        raise GeometryError(located("evaluation", "DEM", f"the imaged ground needs a {rows} x {cols} grid at "
                                                         f"{res_x:g} m; evaluate a coarser DEM"))
    gt = (geotransform[0] - col0 * res_x, res_x, 0.0, geotransform[3] + row0 * res_y, 0.0, -res_y)
    return gt, rows, cols, row0, col0


def imaged_area(models, geotransform, wkt, heights):
    """Cells of a north-up grid whose ground point (at ``heights``, e.g. a reference DEM on that
    grid) falls inside both images of a pair (``models``: reference and secondary)."""
    rows, cols = heights.shape
    x = geotransform[0] + (np.arange(cols) + 0.5) * geotransform[1]
    y = geotransform[3] + (np.arange(rows) + 0.5) * geotransform[5]
    lon, lat = Transformer.from_crs(CRS.from_wkt(wkt), "EPSG:4326", always_xy=True).transform(*np.meshgrid(x, y))
    area = np.isfinite(heights)
    for model in models:
        r, c = model.geo2rdr(lon, lat, heights, look_side_only=True)
        with np.errstate(invalid="ignore"):
            area &= (r >= -0.5) & (r <= model.rows - 0.5) & (c >= -0.5) & (c <= model.cols - 0.5)
    return area
