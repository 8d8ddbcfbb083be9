"""The refinement stage: a pair (and optionally a DEM or ground control) in, corrected models out.

:func:`refine_pair` registers the pair coarsely, finds tie points with a matcher, solves the
corrections (:mod:`.refine`) and writes the refined sensor models (JSON files that ``matchpair``
takes), the tie points (a point GeoPackage with their residuals before and after) and a report
(JSON, with an HTML page and a figure beside it).
"""

import json
from pathlib import Path

import numpy as np

from . import refine
from .atomic import atomic_outputs, check_outputs
from .dem import height_bounds, open_dem
from .errors import GeometryError, RefinementCanceled, SensorModelError, SettingsError, located
from .matchers import create_matcher
from .products import read_sensor_model
from .progress import Progress
from .raster import gcp_height
from .tiepoints import coarse_offset, match_settings, tie_points

MIN_COARSE_PEAK = 0.02  # normalised phase-correlation peak below which the coarse registration found nothing
RANGE_TERMS = ("range_offset", "range_drift", "cross_track", "vertical")
CONSISTENT_PX = 1.0  # a tie point closes to within this many lines once the models are refined


def refine_pair(reference, secondary, *, reference_model=None, secondary_model=None, reference_dem=None, gcps=None,
                matcher=None, settings=None, refined_reference_model=None, refined_secondary_model=None,
                tie_points_output=None, report=None, progress=None, is_canceled=None):
    """Refine the sensor models of a pair; returns a :class:`.refine.RefineResult`.

    ``reference``/``secondary``: image paths; their models are found as ``read_sensor_model``
    finds them unless given (``reference_model``/``secondary_model``: SensorModel or JSON path).
    ``reference_dem``: absolute control (any CRS and resolution, heights above the ellipsoid);
    ``gcps``: (n, 3) longitude, latitude, height of ground control points. ``matcher``: the tie
    point matcher (default POC). Outputs (optional paths) are written together at the end; on
    error or cancel nothing is, and the input models are never changed.
    """
    elapsed = refine.timer()
    settings = settings or refine.RefineSettings()
    settings.validate()
    pages = (Path(report).with_suffix(".png"), Path(report).with_suffix(".html")) if report else (None, None)
    check_outputs({"REFINED_REFERENCE_MODEL": refined_reference_model, "REFINED_SECONDARY_MODEL":
                   refined_secondary_model, "TIE_POINTS": tie_points_output, "REPORT": report,
                   "REPORT (its figure)": pages[0], "REPORT (its page)": pages[1]},
                  {"REFERENCE": reference, "SECONDARY": secondary, "REFERENCE_MODEL": reference_model,
                   "SECONDARY_MODEL": secondary_model, "REFERENCE_DEM": reference_dem})
    steps = Progress(progress, is_canceled, RefinementCanceled, "refinement canceled; nothing was written")
    ref, sec = (_model(path, given) for path, given in ((reference, reference_model), (secondary, secondary_model)))
    dem = None if reference_dem is None else _covering_dem(reference_dem, ref)
    gcps = None if gcps is None else _checked_gcps(gcps)
    height = _height(settings, dem, gcps, reference)
    steps(0.02)
    offset = coarse_offset(reference, secondary, ref, sec, height, settings.coarse_search_px)
    warnings = []
    if offset.peak < MIN_COARSE_PEAK:
        warnings.append(f"the coarse registration found no clear offset (peak {offset.peak:.3f}); windows are cut "
                        "where the models put them")
        offset.rows = offset.cols = 0.0
    elif max(abs(offset.rows), abs(offset.cols)) > settings.coarse_search_px:
        warnings.append(f"the secondary sits {offset.rows:.0f} lines, {offset.cols:.0f} samples from its model, "
                        f"beyond COARSE_SEARCH ({settings.coarse_search_px} px)")
    matcher = matcher or create_matcher("poc")
    ties = tie_points(reference, secondary, ref, sec, matcher, match_settings(settings, height, matcher, ref),
                      settings.tie_step_px, settings.min_certainty, offset, steps.part(0.05, 0.75), steps.is_canceled)
    found = ties[0].size
    ties = tuple(a[ties[5]] for a in ties[:5])
    if ties[0].size < settings.min_tie_points:
        raise GeometryError(located(f"{reference} / {secondary}", "TIE_POINTS",
                                    f"{ties[0].size} tie points (at least {settings.min_tie_points} needed): the "
                                    "matcher finds too little in common (featureless or noise-only images?); try "
                                    "another MATCHER, a smaller TIE_STEP or a lower MIN_CERTAINTY"))
    obs = refine.Observations(*ties[:4], dem=dem, gcps=gcps, gcp_radius_m=2.0 * settings.tie_step_px *
                              max(ref.sample_spacing_m, ref.line_interval_s * refine.platform_speed(ref)),
                              dem_accuracy_m=settings.dem_accuracy_m)
    before = obs.residuals(ref, sec)
    steps(0.8)
    solution = refine.solve(ref, sec, obs, settings.max_iterations)
    refined = refine.refined_models(ref, sec, solution)
    after = obs.residuals(*refined)
    consistent = int((np.abs(after[0]) <= CONSISTENT_PX).sum())
    if consistent < max(settings.min_tie_points, 0.5 * ties[0].size):
        raise GeometryError(located(f"{reference} / {secondary}", "TIE_POINTS",
                                    f"only {consistent} of {ties[0].size} tie points close within {CONSISTENT_PX} "
                                    f"line after refinement (at least half and {settings.min_tie_points} needed): the "
                                    "matches are not of the same ground (featureless or noise-only images?); "
                                    "try another MATCHER"))
    steps.check()
    result = _result(refined, solution, offset, ties, before, after, warnings, dem, gcps)
    result.matches_on_grid = int(found)
    result.seconds = elapsed()
    _write(result, ties, obs, before, after, solution, refined_reference_model, refined_secondary_model,
           tie_points_output, report)
    steps.done()
    return result


# ---------------------------------------------------------------- inputs
def _model(image, given):
    from .sensor import SensorModel
    if given is None:
        model = read_sensor_model(image)
    else:
        model = given if isinstance(given, SensorModel) else SensorModel.from_json(str(given))
    if not hasattr(model, "with_corrections"):
        raise SensorModelError(located(str(given or image), "schema", "a SICD sensor model (sarstereo.sensor/2) "
                                                                     "cannot carry corrections yet; its geometry is "
                                                                     "the product's own (to a fraction of a pixel "
                                                                     "for the vendors read): match the pair as it is"))
    return model


def _covering_dem(dem, ref):
    dem = open_dem(dem)
    rows, cols = np.meshgrid(np.linspace(0, ref.rows - 1, 9), np.linspace(0, ref.cols - 1, 9), indexing="ij")
    lon, lat, _ = ref.rdr2geo(rows, cols, height=height_bounds(dem)[2])
    inside = np.isfinite(dem.sample(lon, lat))
    if inside.mean() < 0.5:
        raise GeometryError(located(dem.path, "REFERENCE_DEM", f"covers {100 * inside.mean():.0f} % of the "
                                                               "reference image's ground; give a DEM that covers "
                                                               "the pair (SRTM, Copernicus DEM, ...)"))
    return dem


def _checked_gcps(gcps):
    gcps = np.asarray(gcps, np.float64)
    if gcps.ndim != 2 or gcps.shape[1] != 3 or not len(gcps):
        raise SettingsError(located("refinement", "GCPS", f"expected (n, 3) longitude, latitude, height, got shape "
                                                          f"{gcps.shape}"))
    finite = np.isfinite(gcps).all(axis=1)
    if not finite.any():
        raise SettingsError(located("refinement", "GCPS", "no ground control point has a finite position and "
                                                          "height; check GCP_HEIGHT_FIELD"))
    return gcps[finite]


def _height(settings, dem, gcps, reference):
    if settings.height_prior is not None:
        return float(settings.height_prior)
    if dem is not None:
        return height_bounds(dem)[2]
    if gcps is not None:
        return float(np.median(gcps[:, 2]))
    return gcp_height(reference) or 0.0


# ---------------------------------------------------------------- results
def _result(refined, solution, offset, ties, before, after, warnings, dem, gcps):
    used = _used(solution)
    unobservable = dict(solution.unobservable)
    range_blind = [u for u, why in unobservable.items() if u.split(".")[1] in RANGE_TERMS and "control" in why]
    if range_blind and dem is None and gcps is None:
        warnings.append("slant-range terms cannot be determined from tie points alone (" + ", ".join(range_blind)
                        + "): a range error shifts every height of the DEM; give a REFERENCE_DEM or GCPS")
    if "control" in unobservable.get("reference.azimuth_offset", "") and dem is None:
        warnings.append("a common azimuth shift of both images cannot be determined without a REFERENCE_DEM: "
                        "the DEM may be displaced along the track")
    gz = None if gcps is None else {"before": refine.summary(before[2]), "after": refine.summary(after[2])}
    dem_used = None if dem is None else solution.weights[1] > 0
    dz = None if dem is None else {"before": refine.summary(before[1], dem_used),
                                   "after": refine.summary(after[1], dem_used)}
    return refine.RefineResult(
        refined[0], refined[1], refine.describe(solution), unobservable,
        {"rows": offset.rows, "cols": offset.cols, "peak": offset.peak, "looks": offset.looks},
        int(ties[0].size), int(used.sum()),
        {"before": refine.summary(before[0], solution.weights[0] > 0),
         "after": refine.summary(after[0], solution.weights[0] > 0)}, dz, gz,
        solution.iterations, warnings, 0.0)


def _used(solution):
    """Tie points that weigh in the solution: through their misclosure or their height."""
    used = solution.weights[0] > 0
    return used | (solution.weights[1] > 0) if solution.weights[1] is not None else used


def _write(result, ties, obs, before, after, solution, ref_path, sec_path, ties_path, report):
    figure = page = None
    if report:
        figure, page = Path(report).with_suffix(".png"), Path(report).with_suffix(".html")
    paths = {k: str(v) for k, v in (("reference_model", ref_path), ("secondary_model", sec_path),
                                    ("tie_points", ties_path), ("report", report), ("figure", figure),
                                    ("html", page)) if v}
    result.paths = paths
    with atomic_outputs(ref_path, sec_path, ties_path, report, figure, page) as temps:
        for tmp, model in zip(temps[:2], (result.reference_model, result.secondary_model)):
            if tmp:
                tmp.write_text(model.to_json(), encoding="utf-8")
        if temps[2]:
            lon, lat, _, _ = _triangulated(result, ties)
            _write_tie_points(temps[2], ties, lon, lat, before, after, _used(solution))
        if report:
            from .refine_report import write_figure, write_page
            write_figure(temps[4], ties, before, after, _used(solution))
            write_page(temps[5], result, figure, temps[4])
            temps[3].write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")


def _triangulated(result, ties):
    from .stereo import triangulate
    return triangulate(result.reference_model, ties[0], ties[1], result.secondary_model, ties[2], ties[3])


def _write_tie_points(path, ties, lon, lat, before, after, used):
    """A GeoPackage of points (EPSG:4326) at the triangulated tie points, with their residuals."""
    from osgeo import ogr, osr
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("tie_points", srs, ogr.wkbPoint)
    fields = [("reference_row", ties[0]), ("reference_col", ties[1]), ("secondary_row", ties[2]),
              ("secondary_col", ties[3]), ("certainty", ties[4]), ("misclosure_before_px", before[0]),
              ("misclosure_after_px", after[0])]
    if before[1] is not None:
        fields += [("dem_difference_before_m", before[1]), ("dem_difference_after_m", after[1])]
    for name, _ in fields:
        layer.CreateField(ogr.FieldDefn(name, ogr.OFTReal))
    layer.CreateField(ogr.FieldDefn("used", ogr.OFTInteger))
    layer.StartTransaction()
    for i in np.flatnonzero(np.isfinite(lon) & np.isfinite(lat)):
        feature = ogr.Feature(layer.GetLayerDefn())
        for name, values in fields:
            value = float(values[i])
            if np.isfinite(value):
                feature.SetField(name, value)
        feature.SetField("used", int(used[i]))
        feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({lon[i]:.9f} {lat[i]:.9f})"))
        layer.CreateFeature(feature)
    layer.CommitTransaction()
    ds = None
