"""sarstereo:evaluatedem — a DEM against a reference DEM: error map and accuracy report."""

from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..common import layer_path, user_errors
from ..styling import RunGroup, elevation_style, style_on_load


class EvaluateDem(QgsProcessingAlgorithm):
    DEM = "DEM"
    REFERENCE_DEM = "REFERENCE_DEM"
    ERROR_OUTPUT = "ERROR_OUTPUT"
    REPORT = "REPORT"

    def name(self):
        return "evaluatedem"

    def displayName(self):  # noqa: N802 - QGIS API
        return "Evaluate DEM against a reference DEM"

    def group(self):
        return "Elevation"

    def groupId(self):  # noqa: N802 - QGIS API
        return "elevation"

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return ("Resamples the reference DEM (any CRS; bilinear) onto the DEM's grid and writes the error map "
                "(DEM minus reference). Both must hold heights above the same datum (this plugin's DEMs are "
                "above the WGS84 ellipsoid).\n\n"
                "The report (JSON, with an HTML page and a PNG figure of the same name beside it) gives, over the "
                "imaged area of a DEM made by sarstereo:generateelevation (the whole grid for other DEMs) where "
                "the reference has heights: coverage (share where the DEM has a height) and, over the cells "
                "where both have one, median_abs_error_m, rmse_m, nmad_m, le90_m and fraction_within_m (share of "
                "cells within 1, 2, 5, 10 and 20 m).")

    def createInstance(self):  # noqa: N802 - QGIS API
        return EvaluateDem()

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer(self.DEM, "DEM"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE_DEM, "Reference DEM"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.ERROR_OUTPUT, "Error map"))
        self.addParameter(QgsProcessingParameterFileDestination(self.REPORT, "Report", "JSON files (*.json)"))
        for key, label in (("COVERAGE", "Coverage"), ("MEDIAN_ABS_ERROR", "Median absolute error (m)"),
                           ("RMSE", "RMSE (m)"), ("NMAD", "NMAD (m)"), ("LE90", "LE90 (m)")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.evaluate import evaluate_dem
        dem, reference = (layer_path(self.parameterAsRasterLayer(parameters, key, context))
                          for key in (self.DEM, self.REFERENCE_DEM))
        error = self.parameterAsOutputLayer(parameters, self.ERROR_OUTPUT, context)
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        with user_errors():
            stats = evaluate_dem(dem, reference, error, report)
        feedback.pushInfo(f"median |error| {stats['median_abs_error_m']} m, NMAD {stats['nmad_m']} m, "
                          f"coverage {stats['coverage']:.3f}; report {stats['html']}")
        style_on_load(context, error, elevation_style(RunGroup(f"{Path(dem).stem} (DEM evaluation)"), "error"))
        return {self.ERROR_OUTPUT: error, self.REPORT: report, "COVERAGE": stats["coverage"],
                "MEDIAN_ABS_ERROR": stats["median_abs_error_m"], "RMSE": stats["rmse_m"], "NMAD": stats["nmad_m"],
                "LE90": stats["le90_m"]}
