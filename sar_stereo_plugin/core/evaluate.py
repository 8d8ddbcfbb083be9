"""Accuracy of matches against ground truth, and of DEMs against a reference DEM.

Matches against ground truth (a simulator's, or one derived from a DSM):

The end-point error (EPE) of a reference pixel is the distance, in secondary pixels, between the
matched and the true secondary position. Statistics are over the *valid* ground-truth pixels
(band 3 = 1: one visible ground point, seen by both images). A pixel is *matched* when its
match is finite and its certainty reaches the threshold.

* ``accuracy_at_px[t]``: share of valid pixels matched with EPE <= t pixels (an unmatched valid
  pixel counts as a failure), for t = 1, 3, 5, 10. This is the method's matching accuracy.
* ``accuracy_of_matched_at_px[t]``: the same share among matched valid pixels only.
* ``coverage``: share of valid pixels matched; ``median_epe_px``: median EPE of matched valid pixels.

Both rasters are read in row blocks, so the evaluation of large images stays small in memory.
"""

import math

import numpy as np
from osgeo import gdal
from pyproj import CRS, Transformer

from . import checks, pixels
from .atomic import atomic_outputs, check_outputs, final_name
from .coregistration import dem_shift
from .errors import GeometryError, RasterError, located
from .products import read_pair_models
from .raster import SECONDARY_SENSOR_ITEM, SENSOR_ITEM, open_raster, read_block, write_geotiff
from .report import report_siblings, write_dem_report

THRESHOLDS_PX = (1, 3, 5, 10)
MAX_CELLS = 400_000_000  # 1.6 GB a float32 band: beyond it a grid is surely a mistake
BLOCK_ROWS = 1024


def evaluate_matches(matches, ground_truth, certainty_threshold=0.0):
    """The report dict described in the module doc, for two raster paths."""
    m_ds, g_ds = open_raster(matches, "MATCHES"), open_raster(ground_truth, "GROUND_TRUTH")
    if all(ds.GetMetadataItem(SENSOR_ITEM) and ds.GetMetadataItem(SECONDARY_SENSOR_ITEM) for ds in (m_ds, g_ds)):
        checks.same_pair(read_pair_models(matches), read_pair_models(ground_truth), matches, ground_truth,
                         "GROUND_TRUTH")
    if m_ds.RasterCount < 3:
        raise RasterError(f"{matches}: field 'bands': a match raster has 3 bands (secondary row, col, certainty), "
                          f"this one has {m_ds.RasterCount}")
    if g_ds.RasterCount < 3:
        raise RasterError(f"{ground_truth}: field 'bands': ground truth needs bands secondary row, col and validity, "
                          f"this raster has {g_ds.RasterCount}")
    shape = (m_ds.RasterYSize, m_ds.RasterXSize)
    if shape != (g_ds.RasterYSize, g_ds.RasterXSize):
        raise RasterError(f"{matches}: field 'size': {shape[0]} x {shape[1]} pixels, but the ground truth "
                          f"{ground_truth} has {g_ds.RasterYSize} x {g_ds.RasterXSize}; both must be in the "
                          "reference image's geometry")
    valid_count, errors = 0, []
    for row0 in range(0, shape[0], BLOCK_ROWS):
        n = min(BLOCK_ROWS, shape[0] - row0)
        m = [read_block(m_ds, b, 0, row0, shape[1], n) for b in (1, 2, 3)]
        g = [read_block(g_ds, b, 0, row0, shape[1], n) for b in (1, 2, 3)]
        valid = (g[2] == 1) & np.isfinite(g[0]) & np.isfinite(g[1])
        matched = valid & np.isfinite(m[0]) & np.isfinite(m[1]) & (m[2] >= certainty_threshold)
        valid_count += int(valid.sum())
        errors.append(np.hypot(m[0][matched] - g[0][matched], m[1][matched] - g[1][matched]).astype(np.float32))
    if not valid_count:
        raise RasterError(f"{ground_truth}: field 'validity': no valid ground-truth pixel to evaluate against")
    epe = np.concatenate(errors)
    return {
        "matches": str(matches), "ground_truth": str(ground_truth),
        "certainty_threshold": float(certainty_threshold),
        "valid_pixels": valid_count, "matched_pixels": int(epe.size),
        "coverage": epe.size / valid_count,
        "accuracy_at_px": {str(t): int((epe <= t).sum()) / valid_count for t in THRESHOLDS_PX},
        "accuracy_of_matched_at_px": {str(t): float((epe <= t).mean()) if epe.size else 0.0 for t in THRESHOLDS_PX},
        "median_epe_px": float(np.median(epe)) if epe.size else None,
    }


# ---------------------------------------------------------------- DEM against a reference DEM
DEM_THRESHOLDS_M = (1, 2, 5, 10, 20)
BLUNDER_NMAD = 3.0  # a blunder: a cell whose error lies further than this many NMAD from the median error


def reference_on_grid(reference_dem, dem_ds, field="REFERENCE_DEM", grid=None):
    """The reference DEM resampled (bilinear) onto a DEM's grid, whatever its CRS; NaN outside it.
    ``grid``: (geotransform, rows, cols) of another grid in the DEM's CRS to resample onto.

    Heights are taken as they are: give the reference above the WGS84 ellipsoid, as the DEM is.
    """
    src = open_raster(reference_dem, field)
    if not src.GetProjection():
        raise RasterError(f"{reference_dem}: field '{field}': the reference DEM has no CRS; assign one "
                          "(gdal_edit.py -a_srs) and run again")
    gt, rows, cols = grid or (dem_ds.GetGeoTransform(), dem_ds.RasterYSize, dem_ds.RasterXSize)
    try:
        out = gdal.Warp("", src, format="MEM", outputType=gdal.GDT_Float32, resampleAlg="bilinear",
                        dstSRS=dem_ds.GetProjection(), width=cols, height=rows,
                        outputBounds=_bounds(gt, rows, cols), dstNodata=float("nan"),
                        errorThreshold=0.0)  # exact transforms: the same cell, the same height on any grid
    except RuntimeError as exc:
        raise RasterError(f"{reference_dem}: field '{field}': cannot be resampled onto the DEM's grid "
                          f"({exc})") from None
    heights = out.GetRasterBand(1).ReadAsArray()  # the source's nodata is honoured by the warp
    if not np.isfinite(heights).any():
        raise RasterError(f"{reference_dem}: field '{field}': does not overlap the DEM {dem_ds.GetDescription()}; "
                          "give a reference DEM covering the scene")
    return heights


def _bounds(gt, rows, cols):
    return (gt[0], gt[3] + rows * gt[5], gt[0] + cols * gt[1], gt[3])


def dem_statistics(error, area):
    """Accuracy figures of an error map (DEM minus reference) over ``area`` (cells where the
    reference is known and the scene was imaged). Figures other than coverage are over the
    cells of ``area`` where the DEM has a height; ``fraction_within_m[t]``: share of those with
    |error| <= t metres; ``blunder_share``: share of those that are blunders (:func:`blunders`)."""
    e = error[area & np.isfinite(error)].astype(np.float64)
    n_area = int(area.sum())
    if not e.size:
        return {"cells_evaluated": 0, "area_cells": n_area, "coverage": 0.0, "median_abs_error_m": None,
                "rmse_m": None, "nmad_m": None, "le90_m": None, "mean_error_m": None, "median_error_m": None,
                "blunder_share": None, "fraction_within_m": {str(t): 0.0 for t in DEM_THRESHOLDS_M}}
    a = np.abs(e)
    median = float(np.median(e))
    nmad = float(1.4826 * np.median(np.abs(e - median)))
    return {"cells_evaluated": int(e.size), "area_cells": n_area, "coverage": e.size / max(n_area, 1),
            "median_abs_error_m": float(np.median(a)), "rmse_m": float(np.sqrt(np.mean(e * e))),
            "nmad_m": nmad, "le90_m": float(np.percentile(a, 90)),
            "mean_error_m": float(e.mean()), "median_error_m": median,
            "blunder_share": float(blunders(e, median, nmad).mean()),
            "fraction_within_m": {str(t): float((a <= t).mean()) for t in DEM_THRESHOLDS_M}}


def blunders(error, median, nmad):
    """Where an error map holds blunders: errors further than ``BLUNDER_NMAD`` x NMAD from the median
    error (the DEM's bias, which a shift explains, is not a blunder). False at NaN."""
    with np.errstate(invalid="ignore"):
        return np.abs(error - median) > BLUNDER_NMAD * nmad


def evaluate_dem(dem, reference_dem, error_output=None, report=None, extra=None):
    """Compare a DEM with a reference DEM (any CRS, resampled onto the DEM's grid).

    The evaluated area is where the reference has heights and, for a DEM made by
    :func:`.elevation.generate_elevation` (it embeds both sensor models), where the reference's
    ground falls inside both images, all of it: such a DEM is judged on its grid extended over
    the imaged ground (:func:`footprint_grid`). ``coverage`` is the share of the area
    where the DEM has a height. Writes ``error_output`` (DEM minus reference, float32, on that
    grid) and ``report`` (JSON, plus an HTML page and a PNG figure beside it) where given.
    Returns the statistics (:func:`dem_statistics`) with the paths.
    """
    pages = report_siblings(report) if report else (None, None)
    check_outputs({"ERROR_OUTPUT": error_output, "REPORT": report, "REPORT (its figure)": pages[0],
                   "REPORT (its page)": pages[1]}, {"DEM": dem, "REFERENCE_DEM": reference_dem})
    ds = open_raster(dem, "DEM")
    if not ds.GetProjection():
        raise RasterError(f"{final_name(dem)}: field 'DEM': has no CRS; give a georeferenced DEM")
    band = ds.GetRasterBand(1)
    heights = read_block(ds, 1).astype(np.float32)
    if band.GetNoDataValue() is not None and np.isfinite(band.GetNoDataValue()):
        heights[heights == band.GetNoDataValue()] = np.nan
    models, gt, wkt = dem_pair_models(ds), ds.GetGeoTransform(), ds.GetProjection()
    if models:
        checks.pair(*models, float(np.nanmedian(heights)) if np.isfinite(heights).any() else 0.0)
        gt, rows, cols, row0, col0 = footprint_grid(models, gt, wkt, heights.shape, heights)
        heights = np.pad(heights, ((row0, rows - row0 - heights.shape[0]), (col0, cols - col0 - heights.shape[1])),
                         constant_values=np.nan)
    reference = reference_on_grid(reference_dem, ds, grid=(gt, *heights.shape))
    checks.terrain_heights(reference, reference_dem, "REFERENCE_DEM")
    area = imaged_area(models, gt, wkt, reference) if models else np.isfinite(reference)
    error = heights - reference
    if not area.any() and np.isfinite(error).any():
        raise GeometryError(located(final_name(dem), "SARSTEREO_SENSOR",
                                    "the sensor models the DEM embeds see none of the reference DEM's ground, where "
                                    "the DEM has heights: the models are wrong (look_side?); evaluate a DEM made "
                                    "from this pair"))
    stats = {"dem": str(final_name(dem)), "reference_dem": str(reference_dem),
             **dem_statistics(error, area), "shift_m": _shift(heights, reference, area, gt, wkt)}
    with atomic_outputs(error_output, report, *pages) as (error_tmp, report_tmp, *_):  # all or nothing
        if error_output:
            write_geotiff(error_tmp, error, band_names=("error_m",), nodata=float("nan"), geotransform=gt, crs=wkt)
            stats["error_output"] = str(final_name(error_output))
        if report:
            stats.update(write_dem_report(report_tmp, {**stats, **(extra or {})}, heights, error, area,
                                          _blunder_map(error, area, stats)))
    return stats


def _blunder_map(error, area, stats):
    """-1 / +1 where a cell of the area is a blunder below / above the reference, 0 where it is
    not, NaN where it has no error."""
    if stats["median_error_m"] is None:
        return np.full(error.shape, np.nan, np.float32)
    flagged = blunders(error, stats["median_error_m"], stats["nmad_m"])
    out = np.where(flagged, np.sign(error - stats["median_error_m"]), 0.0)
    return np.where(area & np.isfinite(error), out, np.nan).astype(np.float32)


def _shift(heights, reference, area, gt, wkt):
    """The DEM's residual shift against the reference (:func:`.coregistration.dem_shift`) as
    {dx, dy, dz, iterations} in metres, on a grid in metres; None where it cannot be told."""
    crs = CRS.from_wkt(wkt)
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if not crs.is_projected or unit not in ("metre", "meter") or abs(abs(gt[5]) - gt[1]) > 1e-6 * gt[1]:
        return None
    found = dem_shift(np.where(area, heights, np.nan), reference, gt[1])
    return None if found is None else dict(zip(("dx", "dy", "dz", "iterations"), found))


# ---------------------------------------------------------------- the ground a pair images
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
        area &= pixels.inside(r, c, (model.rows, model.cols))
    return area
