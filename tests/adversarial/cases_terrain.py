"""Attacks on sarstereo:generateelevation and sarstereo:evaluatedem."""

import json
import shutil

import numpy as np
import tools as t
from harness import case
from osgeo import gdal


def elevation(ctx, **params):
    base = {"MATCHES": ctx / "matches.tif", "OUTPUT": ctx / "out.tif", "COUNT_OUTPUT": ctx / "out_count.tif",
            "UNCERTAINTY_OUTPUT": ctx / "out_unc.tif", "ERROR_OUTPUT": ctx / "out_err.tif",
            "REPORT": ctx / "out.json"}
    return ctx.qgis("generateelevation", **{**base, **params})


def _dem(ctx, answer, name="out.tif"):
    ds = gdal.Open(str(ctx / name))
    if ds is None:
        return "no DEM written"
    heights = ds.ReadAsArray()
    heights = heights[np.isfinite(heights)]
    if not heights.size or not 0 < np.median(heights) < 2000:
        return f"DEM heights {heights.min() if heights.size else None}..{heights.max() if heights.size else None}"
    return None


def _nothing(*names):
    return lambda ctx, answer: None


def _matches_with(ctx, name, edit_models=None, bands=None):
    """A copy of the match raster, its embedded models edited by ``edit_models(ref_doc, sec_doc)``."""
    out = t.rewrite_image(ctx / "matches.tif", ctx / name,
                          bands=bands if bands is not None else list(gdal.Open(str(ctx / "matches.tif")).ReadAsArray()))
    if edit_models:
        docs = [json.loads(t.item(out, k)) for k in ("SARSTEREO_SENSOR", "SARSTEREO_SECONDARY_SENSOR")]
        docs = edit_models(*docs)
        for key, doc in zip(("SARSTEREO_SENSOR", "SARSTEREO_SECONDARY_SENSOR"), docs):
            t.set_item(out, key, json.dumps(doc))
    return out


# ---------------------------------------------------------------- generateelevation
@case("generateelevation", "matches to a DEM, evaluated against the source DEM", succeed=_dem)
def plain(ctx):
    return elevation(ctx, REFERENCE_DEM=ctx / "dem.tif")


@case("generateelevation", "the simulator's ground truth as matches", succeed=_dem)
def truth_as_matches(ctx):
    return elevation(ctx, MATCHES=ctx / "gt.tif")


@case("generateelevation", "OUTPUT is the match raster", refuse=r"OUTPUT.*MATCHES")
def output_is_matches(ctx):
    return elevation(ctx, OUTPUT=ctx / "matches.tif")


@case("generateelevation", "COUNT_OUTPUT is the match raster", refuse=r"COUNT_OUTPUT.*MATCHES")
def count_is_matches(ctx):
    return elevation(ctx, COUNT_OUTPUT=ctx / "matches.tif")


@case("generateelevation", "QUALITY_OUTPUT is the match raster", refuse=r"QUALITY_OUTPUT.*MATCHES")
def quality_is_matches(ctx):
    return elevation(ctx, QUALITY_OUTPUT=ctx / "matches.tif")


@case("generateelevation", "OUTPUT is the PRIOR_DEM", refuse=r"OUTPUT.*PRIOR_DEM")
def output_is_prior(ctx):
    return elevation(ctx, PRIOR_DEM=ctx / "dem.tif", OUTPUT=ctx / "dem.tif")


@case("generateelevation", "OUTPUT is the REFERENCE_DEM", refuse=r"OUTPUT.*REFERENCE_DEM")
def output_is_reference(ctx):
    return elevation(ctx, REFERENCE_DEM=ctx / "dem.tif", OUTPUT=ctx / "dem.tif")


@case("generateelevation", "ERROR_OUTPUT is the REFERENCE_DEM", refuse=r"ERROR_OUTPUT.*REFERENCE_DEM")
def error_is_reference(ctx):
    return elevation(ctx, REFERENCE_DEM=ctx / "dem.tif", ERROR_OUTPUT=ctx / "dem.tif")


@case("generateelevation", "REPORT is the match raster", refuse=r"REPORT.*MATCHES")
def report_is_matches(ctx):
    return elevation(ctx, REPORT=ctx / "matches.tif")


@case("generateelevation", "REPORT's figure would overwrite the REFERENCE_DEM", refuse=r"REPORT.*REFERENCE_DEM")
def report_figure_is_reference(ctx):
    shutil.copy(ctx / "dem.tif", ctx / "ctrl.png")
    return elevation(ctx, REFERENCE_DEM=ctx / "ctrl.png", REPORT=ctx / "ctrl.json")


@case("generateelevation", "OUTPUT and COUNT_OUTPUT at one path", refuse=r"COUNT_OUTPUT.*also")
def same_outputs(ctx):
    return elevation(ctx, COUNT_OUTPUT=ctx / "out.tif")


@case("generateelevation", "UNCERTAINTY_OUTPUT is a folder (found before the work)",
      refuse=r"UNCERTAINTY_OUTPUT.*folder")
def uncertainty_folder(ctx):
    (ctx / "out_unc.tif").mkdir()
    return elevation(ctx)


@case("generateelevation", "REPORT in a folder that cannot be made (a file is in the way)", refuse=r"REPORT.*folder")
def report_folder_blocked(ctx):
    return elevation(ctx, REFERENCE_DEM=ctx / "dem.tif", REPORT=ctx / "ref.tif" / "report.json")


@case("generateelevation", "the disk fills up after the DEM is written",
      refuse=r"cannot be written|disk|File too large", timeout=120)
def disk_full(ctx):
    limit = (ctx / "elev.tif").stat().st_size + 2048  # the DEM fits, the report's figure does not
    return ctx.isolated(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from sar_stereo_plugin.core import generate_elevation
        return generate_elevation(D / "matches.tif", D / "out.tif", count_output=D / "out_count.tif",
                                  uncertainty_output=D / "out_unc.tif", reference_dem=D / "dem.tif",
                                  error_output=D / "out_err.tif", report=D / "out.json")""")


@case("generateelevation", "REPORT in a read-only folder (run as another user): no DEM either",
      refuse=r"REPORT.*(writable|permission|denied)", timeout=120)
def report_read_only(ctx):
    _read_only_folder(ctx)
    return ctx.isolated("""
        from sar_stereo_plugin.core import generate_elevation
        return generate_elevation(D / "matches.tif", D / "out.tif", count_output=D / "out_count.tif",
                                  reference_dem=D / "dem.tif", error_output=D / "out_err.tif",
                                  report=D / "ro" / "out.json")""", nobody=True)


@case("generateelevation", "RESOLUTION of 10 000 km", either=r"RESOLUTION", check=lambda ctx, a: None)
def resolution_huge(ctx):
    return elevation(ctx, RESOLUTION=1e7)


@case("generateelevation", "RESOLUTION of 1 mm", refuse=r"RESOLUTION")
def resolution_tiny(ctx):
    return elevation(ctx, RESOLUTION=0.001)


@case("generateelevation", "a match raster holding a single match", either=r"match", check=lambda ctx, a: None)
def single_match(ctx):
    bands = gdal.Open(str(ctx / "gt.tif")).ReadAsArray()[:3].astype(np.float64)
    r, c = np.argwhere(bands[2] == 1)[len(np.argwhere(bands[2] == 1)) // 2]
    one = np.full(bands.shape, np.nan)
    one[:, r, c] = bands[:, r, c]
    return elevation(ctx, MATCHES=_matches_with(ctx, "one.tif", bands=list(one)))


@case("generateelevation", "matches whose two models are the same view", refuse=r"same direction")
def identical_models(ctx):
    return elevation(ctx, MATCHES=_matches_with(ctx, "same.tif", lambda r, s: (r, r)))


@case("generateelevation", "CRS EPSG:999999 (no such CRS)", refuse=r"CRS")
def crs_invalid(ctx):
    return elevation(ctx, CRS="EPSG:999999")


@case("generateelevation", "CRS EPSG:3857 (Web Mercator's scale distortion)", refuse=r"CRS.*(stretch|distort)")
def crs_web_mercator(ctx):
    return elevation(ctx, CRS="EPSG:3857")


@case("generateelevation", "CRS EPSG:4326 (degrees)", refuse=r"CRS.*projected")
def crs_geographic(ctx):
    return elevation(ctx, CRS="EPSG:4326")


@case("generateelevation", "a UTM zone next to the scene's", succeed=_dem)
def crs_neighbour_zone(ctx):
    return elevation(ctx, CRS="EPSG:32617")


@case("generateelevation", "the secondary model 3 lines off: most matches fail the misclosure test",
      warn=r"MAX_RESIDUAL|disagree")
def timing_error(ctx):
    def edit(ref, sec):
        sec["azimuth"]["first_line_time_s"] += 3 * sec["azimuth"]["line_interval_s"]
        return ref, sec
    return elevation(ctx, MATCHES=_matches_with(ctx, "late.tif", edit))


@case("generateelevation", "a match raster without embedded models", refuse=r"SARSTEREO_SENSOR|both sensor models")
def no_models(ctx):
    t.raster(ctx / "plain.tif", gdal.Open(str(ctx / "matches.tif")).ReadAsArray())
    return elevation(ctx, MATCHES=ctx / "plain.tif")


@case("generateelevation", "an embedded model that is not JSON", refuse=r"SARSTEREO_SECONDARY_SENSOR.*JSON")
def model_not_json(ctx):
    out = _matches_with(ctx, "badjson.tif")
    t.set_item(out, "SARSTEREO_SECONDARY_SENSOR", '{"schema": ')
    return elevation(ctx, MATCHES=out)


@case("generateelevation", "a matching record (SARSTEREO_MATCHING) that is not JSON", refuse=r"SARSTEREO_MATCHING")
def matching_item_broken(ctx):
    out = _matches_with(ctx, "badrecord.tif")
    t.set_item(out, "SARSTEREO_MATCHING", "[[[")
    return elevation(ctx, MATCHES=out)


@case("generateelevation", "a two-band raster with both models", refuse=r"bands")
def two_bands(ctx):
    bands = list(gdal.Open(str(ctx / "matches.tif")).ReadAsArray()[:2])
    return elevation(ctx, MATCHES=_matches_with(ctx, "two.tif", bands=bands))


@case("generateelevation", "CERTAINTY_THRESHOLD above every match's", refuse=r"certainty|CERTAINTY_THRESHOLD")
def threshold_too_high(ctx):
    bands = gdal.Open(str(ctx / "matches.tif")).ReadAsArray().astype(np.float64)
    bands[2] = np.minimum(bands[2], 0.5)
    return elevation(ctx, MATCHES=_matches_with(ctx, "half.tif", bands=list(bands)), CERTAINTY_THRESHOLD=0.9)


@case("generateelevation", "MAX_RESIDUAL of a nanometre", refuse=r"MAX_RESIDUAL")
def residual_tiny(ctx):
    return elevation(ctx, MAX_RESIDUAL=1e-9)


@case("generateelevation", "a REFERENCE_DEM far from the scene: nothing written", refuse=r"REFERENCE_DEM.*overlap")
def reference_elsewhere(ctx):
    return elevation(ctx, REFERENCE_DEM=t.crop_dem(ctx / "dem.tif", ctx / "far.tif", shift_deg=5.0))


@case("generateelevation", "a REFERENCE_DEM without a CRS: nothing written", refuse=r"nocrs\.tif.*CRS")
def reference_without_crs(ctx):
    t.raster(ctx / "nocrs.tif", gdal.Open(str(ctx / "dem.tif")).ReadAsArray())
    return elevation(ctx, REFERENCE_DEM=ctx / "nocrs.tif")


@case("generateelevation", "the embedded secondary model looks the wrong way", refuse=r"look_side")
def look_side(ctx):
    return elevation(ctx, MATCHES=_matches_with(ctx, "side.tif", lambda r, s: (r, t.opposite_look(s))))


@case("generateelevation", "velocities of the embedded reference model in km/s", refuse=r"velocity")
def velocity(ctx):
    def edit(ref, sec):
        ref["orbit"]["velocity_m_s"] = (np.array(ref["orbit"]["velocity_m_s"]) / 1000).tolist()
        return ref, sec
    return elevation(ctx, MATCHES=_matches_with(ctx, "kms.tif", edit))


@case("generateelevation", "a truncated match raster", refuse=r"cut\.tif")
def truncated(ctx):
    shutil.copy(ctx / "matches.tif", ctx / "cut.tif")
    t.truncate(ctx / "cut.tif", 0.5)
    return elevation(ctx, MATCHES=ctx / "cut.tif")


@case("generateelevation", "a match raster whose reference model has another size", refuse=r"size|pixels")
def model_size(ctx):
    def edit(ref, sec):
        ref["shape"]["rows"] += 7
        return ref, sec
    return elevation(ctx, MATCHES=_matches_with(ctx, "size.tif", edit))


@case("generateelevation", "outputs replace an earlier DEM", succeed=_dem,
      changes=("out.tif", "out_count.tif", "out_unc.tif"))
def replaces_previous(ctx):
    for a, b in (("elev", "out"), ("count", "out_count"), ("unc", "out_unc")):
        shutil.copy(ctx / f"{a}.tif", ctx / f"{b}.tif")
    return elevation(ctx)


@case("generateelevation", "no gap filling at all, and the widest", succeed=_dem)
def fill_extremes(ctx):
    first = elevation(ctx, FILL_DISTANCE=0)
    return first if not first.ok else elevation(ctx, FILL_DISTANCE=100, OUTPUT=ctx / "wide.tif",
                                                COUNT_OUTPUT=ctx / "wide_c.tif", UNCERTAINTY_OUTPUT=ctx / "wide_u.tif",
                                                REPORT=ctx / "wide.json")


# ---------------------------------------------------------------- evaluatedem
def evaluate(ctx, **params):
    base = {"DEM": ctx / "elev.tif", "REFERENCE_DEM": ctx / "dem.tif", "ERROR_OUTPUT": ctx / "err.tif",
            "REPORT": ctx / "rep.json"}
    return ctx.qgis("evaluatedem", **{**base, **params})


def _report(ctx, answer):
    doc = json.loads((ctx / "rep.json").read_text())
    if not (doc["coverage"] > 0.3 and doc["median_abs_error_m"] is not None and doc["median_abs_error_m"] < 50):
        return f"coverage {doc['coverage']}, median |error| {doc['median_abs_error_m']}"
    return None if (ctx / "err.tif").exists() and (ctx / "rep.html").exists() else "outputs missing"


@case("evaluatedem", "the DEM against its source", succeed=_report)
def plain(ctx):
    return evaluate(ctx)


@case("evaluatedem", "ERROR_OUTPUT is the DEM", refuse=r"ERROR_OUTPUT.*DEM")
def error_is_dem(ctx):
    return evaluate(ctx, ERROR_OUTPUT=ctx / "elev.tif")


@case("evaluatedem", "ERROR_OUTPUT is the REFERENCE_DEM", refuse=r"ERROR_OUTPUT.*REFERENCE_DEM")
def error_is_reference(ctx):
    return evaluate(ctx, ERROR_OUTPUT=ctx / "dem.tif")


@case("evaluatedem", "REPORT is the DEM", refuse=r"REPORT.*DEM")
def report_is_dem(ctx):
    return evaluate(ctx, REPORT=ctx / "elev.tif")


@case("evaluatedem", "REPORT's figure would overwrite the DEM", refuse=r"REPORT.*DEM")
def report_figure_is_dem(ctx):
    shutil.copy(ctx / "elev.tif", ctx / "mine.png")
    return evaluate(ctx, DEM=ctx / "mine.png", REPORT=ctx / "mine.json")


@case("evaluatedem", "ERROR_OUTPUT is where the REPORT's figure goes", refuse=r"also")
def error_is_figure(ctx):
    return evaluate(ctx, ERROR_OUTPUT=ctx / "rep.png")


@case("evaluatedem", "ERROR_OUTPUT is a folder", refuse=r"ERROR_OUTPUT.*folder")
def error_folder(ctx):
    (ctx / "err.tif").mkdir()
    return evaluate(ctx)


@case("evaluatedem", "REPORT in a folder that cannot be made: no error map either", refuse=r"REPORT.*folder")
def report_folder_blocked(ctx):
    return evaluate(ctx, REPORT=ctx / "ref.tif" / "rep.json")


def _read_only_folder(ctx):
    """A folder the user nobody cannot write into (and one for the rest he can)."""
    import os
    os.chmod(ctx.d, 0o777)
    (ctx / "ro").mkdir(mode=0o755)
    return ctx / "ro"


@case("evaluatedem", "REPORT in a read-only folder (run as another user): no error map either",
      refuse=r"REPORT.*(writable|permission|denied)", timeout=120)
def report_read_only(ctx):
    _read_only_folder(ctx)
    return ctx.isolated("""
        from sar_stereo_plugin.core import evaluate_dem
        return evaluate_dem(D / "elev.tif", D / "dem.tif", D / "err.tif", D / "ro" / "rep.json")""", nobody=True)


@case("evaluatedem", "the disk fills up between the error map and the report", refuse=r"cannot be written|disk|large",
      timeout=120)
def disk_full(ctx):
    return ctx.isolated("""
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))
        from sar_stereo_plugin.core import evaluate_dem
        return evaluate_dem(D / "elev.tif", D / "dem.tif", D / "err.tif", D / "rep.json")""")


@case("evaluatedem", "a DEM without a CRS", refuse=r"CRS")
def dem_without_crs(ctx):
    t.raster(ctx / "nocrs.tif", gdal.Open(str(ctx / "elev.tif")).ReadAsArray())
    return evaluate(ctx, DEM=ctx / "nocrs.tif")


@case("evaluatedem", "a reference DEM far away", refuse=r"REFERENCE_DEM.*overlap")
def reference_elsewhere(ctx):
    return evaluate(ctx, REFERENCE_DEM=t.crop_dem(ctx / "dem.tif", ctx / "far.tif", shift_deg=5.0))


@case("evaluatedem", "a DEM whose embedded secondary model looks the wrong way", refuse=r"look_side")
def dem_wrong_look_side(ctx):
    out = t.copy_raster(ctx / "elev.tif", ctx / "side.tif")
    doc = json.loads(t.item(out, "SARSTEREO_SECONDARY_SENSOR"))
    t.set_item(out, "SARSTEREO_SECONDARY_SENSOR", json.dumps(t.opposite_look(doc)))
    return evaluate(ctx, DEM=out)


@case("evaluatedem", "the reference DEM against itself", succeed=lambda ctx, a: None if json.loads(
    (ctx / "rep.json").read_text())["median_abs_error_m"] == 0 else "a DEM differs from itself")
def against_itself(ctx):
    return evaluate(ctx, DEM=ctx / "dem.tif")


@case("evaluatedem", "a DEM holding no height", either=r"no (valid )?height|nodata|NaN",
      check=lambda ctx, a: None if json.loads((ctx / "rep.json").read_text())["coverage"] == 0 else "coverage > 0")
def dem_all_nan(ctx):
    out = t.copy_raster(ctx / "elev.tif", ctx / "nan.tif")
    ds = gdal.OpenEx(str(out), gdal.OF_UPDATE)
    ds.GetRasterBand(1).WriteArray(np.full((ds.RasterYSize, ds.RasterXSize), np.nan))
    ds = None
    return evaluate(ctx, DEM=out)


@case("evaluatedem", "a truncated DEM", refuse=r"cut\.tif")
def truncated(ctx):
    shutil.copy(ctx / "elev.tif", ctx / "cut.tif")
    t.truncate(ctx / "cut.tif", 0.4)
    return evaluate(ctx, DEM=ctx / "cut.tif")


@case("evaluatedem", "a reference DEM with -32768 voids and no nodata set", refuse=r"voids\.tif.*(nodata|metres)")
def reference_voids(ctx):
    ds = gdal.Open(str(ctx / "dem.tif"))
    heights = ds.ReadAsArray().astype(np.float64)
    rows, cols = heights.shape
    heights[rows // 2 - 20:rows // 2 + 20, cols // 2 - 20:cols // 2 + 20] = -32768  # under the scene
    t.raster(ctx / "voids.tif", heights, ds.GetGeoTransform(), ds.GetProjection())
    return evaluate(ctx, REFERENCE_DEM=ctx / "voids.tif")


@case("evaluatedem", "outputs replace an earlier evaluation", succeed=_report, changes=("err.tif",))
def replaces_previous(ctx):
    return evaluate(ctx)


@case("evaluatedem", "a reference DEM in a projected CRS (UTM)", succeed=_report)
def reference_utm(ctx):
    gdal.Warp(str(ctx / "utm.tif"), str(ctx / "dem.tif"), dstSRS="EPSG:32616", xRes=90, yRes=90)
    return evaluate(ctx, REFERENCE_DEM=ctx / "utm.tif")
