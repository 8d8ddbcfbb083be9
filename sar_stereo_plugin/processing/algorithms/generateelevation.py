"""sarstereo:generateelevation — matches to a DEM (triangulation and robust gridding), with its
point count, uncertainty and, against a reference DEM, error map and accuracy report."""

import json

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ...core.elevation import OUTLIER_K
from ..common import (
    Algorithm,
    decimals,
    keep_report,
    layer_path,
    layer_title,
    number,
    optional_number,
    pair_title,
    skip_loading,
    title,
    user_errors,
)
from ..styling import NAMES, on_load, quality, run_group


class GenerateElevation(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "generateelevation", "elevation"
    MATCHES = "MATCHES"
    CERTAINTY_THRESHOLD = "CERTAINTY_THRESHOLD"
    MAX_RESIDUAL = "MAX_RESIDUAL"
    CRS = "CRS"
    RESOLUTION = "RESOLUTION"
    FILL_DISTANCE = "FILL_DISTANCE"
    OUTLIER_K = "OUTLIER_K"
    PRIOR_DEM = "PRIOR_DEM"
    HEIGHT_UNCERTAINTY = "HEIGHT_UNCERTAINTY"
    REFERENCE_DEM = "REFERENCE_DEM"
    OUTPUT = "OUTPUT"
    COUNT_OUTPUT = "COUNT_OUTPUT"
    UNCERTAINTY_OUTPUT = "UNCERTAINTY_OUTPUT"
    QUALITY_OUTPUT = "QUALITY_OUTPUT"
    ERROR_OUTPUT = "ERROR_OUTPUT"
    REPORT = "REPORT"
    HELP = (
        f"Triangulates every match of a match raster (from {title('matchpair')}, or a simulator's ground truth) "
        "with the range/Doppler equations of both sensors on the WGS84 ellipsoid, and grids the 3D points into a "
        "DEM: heights in metres above the ellipsoid, the certainty-weighted median of each cell's points (each "
        "carried to the cell centre along the local slope). Matches below the certainty threshold (empty: the one "
        "the matcher recorded: 0.8 for Light, whose certainty is the odds of a valid match; 0.05 for POC; 0.5 for "
        "Fused; 0 for RoMa) are left out, and so are points that disagree with the cells around them (see the "
        "advanced parameters).",
        "With a prior DEM (empty: the one the matching step used, where it still exists): matches in layover or "
        "shadow in either view are dropped (no single ground point answers them), and so are points further from "
        "that DEM than the prior's height uncertainty. The reference DEM below is for evaluation only and never "
        "rejects a point.",
        "The quality layer says per cell where the DEM can be trusted: measured (faint green), filled by "
        "interpolation (yellow), rejected as inconsistent (red: every point there failed a check, or matches "
        "there failed the forward-backward check of the matching step), layover (purple) and shadow (grey) in "
        "either view (from the prior DEM, else from this DEM), no data. The log and the report count each class.",
        "CRS: empty for the UTM zone of the scene centre. Cell size: empty for the coarsest ground sampling of the "
        "two images, rounded up to 1, 2, 2.5 or 5 x 10^k m.",
        "Also writes the points per cell and the 1-sigma height uncertainty per cell (standard error of the median "
        "from the points' spread, combined with their misclosure). Without a reference DEM (the usual case) that is "
        "all, and the error map is not made. With one (any CRS; reprojected): the error map (DEM minus reference) "
        "and an accuracy report (JSON, with an HTML page shown in the Results Viewer) of median absolute error, "
        "RMSE, NMAD, LE90, coverage and the share of cells within 1, 2, 5, 10 and 20 m. A report written to a "
        "temporary file is also kept in the plugin's reports folder of the QGIS profile, since QGIS deletes "
        "temporary files when it closes.",
    )
    ADVANCED = {
        MAX_RESIDUAL: "points whose triangulation misclosure exceeds this are left out; empty: two pixels.",
        FILL_DISTANCE: "gaps narrower than twice this plus one cell are interpolated, also where they reach the "
                       "edge of the data (slopes facing the radar are sampled more coarsely than the grid); wider "
                       "no-data areas stay.",
        OUTLIER_K: "a point further from the robust plane through the 5 x 5 cells around it than this many "
                   "robust standard deviations (the largest of those cells' roughness about the plane, the points' "
                   "own scatter and the height of half a pixel of disparity) is dropped; 0 keeps every point. The "
                   "default was chosen on validation pairs.",
        HEIGHT_UNCERTAINTY: "points further than this from the prior DEM are dropped; empty: the matching step's "
                            "height uncertainty.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterRasterLayer(self.MATCHES, "Match raster (or simulator ground truth)"))
        self.addParameter(decimals(num(self.CERTAINTY_THRESHOLD, "Certainty threshold (empty: the matcher's own, "
                                       "0.8 for Light, 0.05 for POC, 0.5 for Fused, 0 for RoMa)", num.Double,
                                       optional=True, minValue=0.0, maxValue=1.0), 2))
        self.addParameter(QgsProcessingParameterCrs(self.CRS, "Output CRS (empty: UTM zone of the scene centre)",
                                                    optional=True))
        self.addParameter(decimals(num(self.RESOLUTION, "Cell size in metres (empty: from the ground sampling)",
                                       num.Double, optional=True, minValue=0.0), 1))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.PRIOR_DEM, "Prior DEM: layover, shadow and height check (optional; empty: the matching step's)",
            optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE_DEM, "Reference DEM for evaluation (optional; heights above the WGS84 ellipsoid)",
            optional=True))
        self.advanced(decimals(num(self.MAX_RESIDUAL, "Maximum triangulation misclosure in metres (empty: two "
                                   "pixels)", num.Double, optional=True, minValue=0.0), 1),
                      num(self.FILL_DISTANCE, "Fill gaps up to 2 × this + 1 cells wide (0: no filling)", num.Integer,
                          defaultValue=3, minValue=0, maxValue=100),
                      decimals(num(self.OUTLIER_K, "Drop points this many robust standard deviations from their "
                                   "neighbourhood (0: none)", num.Double, defaultValue=OUTLIER_K, minValue=0.0), 1),
                      decimals(num(self.HEIGHT_UNCERTAINTY, "Height uncertainty of the prior DEM in metres (empty: "
                                   "the matching step's)", num.Double, optional=True, minValue=0.0), 1))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "DEM"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.COUNT_OUTPUT, "Points per cell",
                                                                  optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.UNCERTAINTY_OUTPUT, "Height uncertainty",
                                                                  optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.QUALITY_OUTPUT, "DEM quality",
                                                                  optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.ERROR_OUTPUT, "Error map (made only with a reference DEM)", optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(self.REPORT, "Report (JSON)", "JSON files (*.json)",
                                                                optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputHtml("REPORT_HTML", "Accuracy report"))
        for key, label in (("POINTS", "Points gridded"), ("RESOLUTION_M", "Cell size (m)"),
                           ("COVERAGE", "Coverage"), ("MEDIAN_ABS_ERROR", "Median absolute error (m)"),
                           ("NMAD", "NMAD (m)"), ("BLUNDER_SHARE", "Blunder share")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.elevation import ElevationSettings, generate_elevation
        matches_layer = self.parameterAsRasterLayer(parameters, self.MATCHES, context)
        matches = layer_path(matches_layer)
        reference = self.parameterAsRasterLayer(parameters, self.REFERENCE_DEM, context)
        prior = self.parameterAsRasterLayer(parameters, self.PRIOR_DEM, context)
        crs = self.parameterAsCrs(parameters, self.CRS, context)
        if parameters.get(self.CRS) not in (None, "") and not crs.isValid():
            raise QgsProcessingException(f"field 'CRS': {parameters[self.CRS]!r} is not a CRS QGIS knows; choose one "
                                         "(e.g. the UTM zone of the scene), or leave it empty for the automatic UTM "
                                         "zone")
        settings = ElevationSettings(
            certainty_threshold=optional_number(self, parameters, self.CERTAINTY_THRESHOLD, context),
            max_residual_m=optional_number(self, parameters, self.MAX_RESIDUAL, context),
            crs=(crs.authid() or crs.toWkt()) if crs.isValid() else None,
            resolution_m=optional_number(self, parameters, self.RESOLUTION, context),
            fill_distance_cells=self.parameterAsInt(parameters, self.FILL_DISTANCE, context),
            outlier_k=self.parameterAsDouble(parameters, self.OUTLIER_K, context),
            height_uncertainty_m=optional_number(self, parameters, self.HEIGHT_UNCERTAINTY, context))
        outputs = {key: self.parameterAsOutputLayer(parameters, key, context) or None
                   for key in (self.OUTPUT, self.COUNT_OUTPUT, self.UNCERTAINTY_OUTPUT, self.QUALITY_OUTPUT,
                               self.ERROR_OUTPUT)}
        report = self.parameterAsFileOutput(parameters, self.REPORT, context) or None
        if not reference:  # nothing to compare with: no error map, and nothing for QGIS to load
            skip_loading(context, outputs[self.ERROR_OUTPUT])
            outputs[self.ERROR_OUTPUT] = None
        with user_errors():
            result = generate_elevation(
                matches, outputs[self.OUTPUT], settings, count_output=outputs[self.COUNT_OUTPUT],
                uncertainty_output=outputs[self.UNCERTAINTY_OUTPUT], quality_output=outputs[self.QUALITY_OUTPUT],
                prior_dem=layer_path(prior) if prior else None,
                reference_dem=layer_path(reference) if reference else None,
                error_output=outputs[self.ERROR_OUTPUT], report=report,
                progress=lambda f: feedback.setProgress(100.0 * f), is_canceled=feedback.isCanceled)
        for warning in result.warnings:
            feedback.pushWarning(warning)
        feedback.pushInfo(f"{result.points} points in {result.cells_with_points} cells of {result.resolution_m:g} m "
                          f"({result.crs}); {result.filled_cells} cells filled")
        if result.rejected:
            feedback.pushInfo("rejected: " + ", ".join(f"{n} {what.replace('_', ' ')}"
                                                       for what, n in result.rejected.items()))
        if result.quality:
            feedback.pushInfo("DEM cells: " + ", ".join(f"{n} {name}" for name, n in result.quality.items()))
        subject = pair_title(matches, context, layer_title(matches_layer))
        run = run_group(context, subject, "DEM")
        for key, kind in ((self.OUTPUT, "dem"), (self.COUNT_OUTPUT, "count"),
                          (self.UNCERTAINTY_OUTPUT, "uncertainty"), (self.ERROR_OUTPUT, "error")):
            if outputs[key]:
                on_load(context, outputs[key], run, kind, NAMES[kind])
        if outputs[self.QUALITY_OUTPUT]:
            on_load(context, outputs[self.QUALITY_OUTPUT], run, "quality", NAMES["quality"], style=quality)
        stats, page = {}, None
        if reference is None:
            feedback.pushInfo("No reference DEM given: no error map or accuracy report (give one to evaluate).")
        elif report:
            with open(report, encoding="utf-8") as fh:
                stats = json.load(fh)
            page = keep_report(report, f"{subject} DEM evaluation")
            feedback.pushInfo(f"against the reference: median |error| {number(stats['median_abs_error_m'], 2, 'm')}, "
                              f"NMAD {number(stats['nmad_m'], 2, 'm')}, blunder share "
                              f"{number(stats['blunder_share'], 4)}, coverage {number(stats['coverage'], 3)}; "
                              f"report {page}")
        return {**{key: value for key, value in outputs.items() if value}, self.REPORT: report, "REPORT_HTML": page,
                "POINTS": result.points, "RESOLUTION_M": result.resolution_m, "COVERAGE": stats.get("coverage"),
                "MEDIAN_ABS_ERROR": stats.get("median_abs_error_m"), "NMAD": stats.get("nmad_m"),
                "BLUNDER_SHARE": stats.get("blunder_share")}

