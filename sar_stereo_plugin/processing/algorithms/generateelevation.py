"""sarstereo:generateelevation — matches to a DEM (triangulation and robust gridding), with its
point count, uncertainty and, against a reference DEM, error map and accuracy report."""

from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..common import layer_path, optional_number, user_errors
from ..styling import RunGroup, elevation_style, style_on_load


class GenerateElevation(QgsProcessingAlgorithm):
    MATCHES = "MATCHES"
    CERTAINTY_THRESHOLD = "CERTAINTY_THRESHOLD"
    MAX_RESIDUAL = "MAX_RESIDUAL"
    CRS = "CRS"
    RESOLUTION = "RESOLUTION"
    FILL_DISTANCE = "FILL_DISTANCE"
    REFERENCE_DEM = "REFERENCE_DEM"
    OUTPUT = "OUTPUT"
    COUNT_OUTPUT = "COUNT_OUTPUT"
    UNCERTAINTY_OUTPUT = "UNCERTAINTY_OUTPUT"
    ERROR_OUTPUT = "ERROR_OUTPUT"
    REPORT = "REPORT"

    def name(self):
        return "generateelevation"

    def displayName(self):  # noqa: N802 - QGIS API
        return "Generate elevation (DEM) from matches"

    def group(self):
        return "Elevation"

    def groupId(self):  # noqa: N802 - QGIS API
        return "elevation"

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return ("Triangulates every match of a match raster (or a simulator ground truth) with the range/Doppler "
                "equations of both sensors on the WGS84 ellipsoid, and grids the 3D points into a DEM: heights in "
                "metres above the ellipsoid, the median of each cell's points (each carried to the cell centre "
                "along the local slope). Matches below the certainty threshold (empty: the one the matcher "
                "recorded, 0.05 for the light matcher, whose certainty is the odds of a valid match; 0 for POC and "
                "RoMa), and points whose misclosure exceeds the maximum residual (empty: two pixels), are left "
                "out.\n\n"
                "CRS: empty for the UTM zone of the scene centre. Resolution: empty for the coarsest ground "
                "sampling of the two images, rounded up to 1, 2, 2.5 or 5 x 10^k m. Gaps narrower than twice the "
                "fill distance plus one cell are interpolated, also where they reach the edge of the data (slopes "
                "facing the radar are sampled more coarsely than the grid); wider nodata areas stay.\n\n"
                "Also writes the points per cell and the 1-sigma height uncertainty per cell (standard error of "
                "the median from the points' spread, combined with their misclosure). With a reference DEM (any "
                "CRS; reprojected): the error map (DEM minus reference) and a report (JSON, with an HTML page and "
                "a figure beside it) of median absolute error, RMSE, NMAD, LE90, coverage and the share of cells "
                "within 1, 2, 5, 10 and 20 m.")

    def createInstance(self):  # noqa: N802 - QGIS API
        return GenerateElevation()

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        number = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterRasterLayer(self.MATCHES, "Match raster (or simulator ground truth)"))
        self.addParameter(number(self.CERTAINTY_THRESHOLD, "Certainty threshold (empty: the matcher's own, 0.05 for "
                                 "light, 0 for POC and RoMa)", number.Double, optional=True, minValue=0.0,
                                 maxValue=1.0))
        self.addParameter(QgsProcessingParameterCrs(self.CRS, "Output CRS (empty: UTM zone of the scene centre)",
                                                    optional=True))
        self.addParameter(number(self.RESOLUTION, "Cell size in metres (empty: from the ground sampling)",
                                 number.Double, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE_DEM, "Reference DEM for evaluation (heights above the WGS84 ellipsoid)", optional=True))
        advanced = [number(self.MAX_RESIDUAL, "Maximum triangulation misclosure in metres (empty: two pixels)",
                           number.Double, optional=True, minValue=0.0),
                    number(self.FILL_DISTANCE, "Fill gaps up to 2 x this + 1 cells wide (0: no filling)",
                           number.Integer, defaultValue=3, minValue=0, maxValue=100)]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "DEM"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.COUNT_OUTPUT, "Points per cell",
                                                                  optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.UNCERTAINTY_OUTPUT, "Height uncertainty",
                                                                  optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.ERROR_OUTPUT, "Error map (DEM minus reference; needs a reference DEM)", optional=True,
            createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(self.REPORT, "Report", "JSON files (*.json)",
                                                                optional=True, createByDefault=True))
        for key, label in (("POINTS", "Points gridded"), ("RESOLUTION_M", "Cell size (m)"),
                           ("COVERAGE", "Coverage"), ("MEDIAN_ABS_ERROR", "Median absolute error (m)"),
                           ("NMAD", "NMAD (m)")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.elevation import ElevationSettings, generate_elevation
        matches = layer_path(self.parameterAsRasterLayer(parameters, self.MATCHES, context))
        reference = self.parameterAsRasterLayer(parameters, self.REFERENCE_DEM, context)
        crs = self.parameterAsCrs(parameters, self.CRS, context)
        settings = ElevationSettings(
            certainty_threshold=optional_number(self, parameters, self.CERTAINTY_THRESHOLD, context),
            max_residual_m=optional_number(self, parameters, self.MAX_RESIDUAL, context),
            crs=(crs.authid() or crs.toWkt()) if crs.isValid() else None,
            resolution_m=optional_number(self, parameters, self.RESOLUTION, context),
            fill_distance_cells=self.parameterAsInt(parameters, self.FILL_DISTANCE, context))
        outputs = {key: self.parameterAsOutputLayer(parameters, key, context) or None
                   for key in (self.OUTPUT, self.COUNT_OUTPUT, self.UNCERTAINTY_OUTPUT, self.ERROR_OUTPUT)}
        report = self.parameterAsFileOutput(parameters, self.REPORT, context) or None
        if not reference:
            outputs[self.ERROR_OUTPUT] = None
        with user_errors():
            result = generate_elevation(
                matches, outputs[self.OUTPUT], settings, count_output=outputs[self.COUNT_OUTPUT],
                uncertainty_output=outputs[self.UNCERTAINTY_OUTPUT],
                reference_dem=layer_path(reference) if reference else None,
                error_output=outputs[self.ERROR_OUTPUT], report=report,
                progress=lambda f: feedback.setProgress(100.0 * f), is_canceled=feedback.isCanceled)
        feedback.pushInfo(f"{result.points} points in {result.cells_with_points} cells of {result.resolution_m:g} m "
                          f"({result.crs}); {result.filled_cells} cells filled")
        group = RunGroup(f"{Path(outputs[self.OUTPUT]).stem} (SAR elevation)")
        for key, kind in ((self.OUTPUT, "dem"), (self.COUNT_OUTPUT, "count"),
                          (self.UNCERTAINTY_OUTPUT, "uncertainty"), (self.ERROR_OUTPUT, "error")):
            if outputs[key]:
                style_on_load(context, outputs[key], elevation_style(group, kind))
        stats = {}
        if report and reference:
            import json
            with open(report, encoding="utf-8") as fh:
                stats = json.load(fh)
            feedback.pushInfo(f"against the reference: median |error| {stats['median_abs_error_m']} m, "
                              f"coverage {stats['coverage']:.3f}; report {stats.get('html')}")
        return {**{key: value for key, value in outputs.items() if value}, self.REPORT: report,
                "POINTS": result.points, "RESOLUTION_M": result.resolution_m, "COVERAGE": stats.get("coverage"),
                "MEDIAN_ABS_ERROR": stats.get("median_abs_error_m"), "NMAD": stats.get("nmad_m")}
