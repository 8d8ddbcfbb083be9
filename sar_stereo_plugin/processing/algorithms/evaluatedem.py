"""sarstereo:evaluatedem — a DEM against a reference DEM: error map and accuracy report."""

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..common import Algorithm, keep_report, layer_path, layer_title, number, title, user_errors
from ..styling import NAMES, on_load, run_group


class EvaluateDem(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "evaluatedem", "elevation"
    DEM = "DEM"
    REFERENCE_DEM = "REFERENCE_DEM"
    ERROR_OUTPUT = "ERROR_OUTPUT"
    REPORT = "REPORT"
    HELP = (
        "Resamples the reference DEM (any CRS; bilinear) onto the DEM's grid and writes the error map (DEM minus "
        "reference). Both must hold heights above the same datum (this plugin's DEMs are above the WGS84 "
        "ellipsoid).",
        f"The report (JSON, with an HTML page and a PNG figure of the same name beside it; the page is shown in the "
        f"Results Viewer) gives, over the imaged area of a DEM made by {title('generateelevation')} (the whole grid "
        "for other DEMs) where the reference has heights: coverage (share where the DEM has a height) and, over "
        "the cells where both have one, median absolute error, RMSE, NMAD, LE90, the share of blunders (cells whose "
        "error lies more than 3 NMAD from the median error; the page maps them) and the share of cells within 1, "
        "2, 5, 10 and 20 m. A report written to a temporary file is also kept in the plugin's reports folder of "
        "the QGIS profile, since QGIS deletes temporary files when it closes.",
    )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer(self.DEM, "DEM"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE_DEM, "Reference DEM"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.ERROR_OUTPUT, "Error map"))
        self.addParameter(QgsProcessingParameterFileDestination(self.REPORT, "Report (JSON)", "JSON files (*.json)"))
        self.addOutput(QgsProcessingOutputHtml("REPORT_HTML", "Accuracy report"))
        for key, label in (("COVERAGE", "Coverage"), ("MEDIAN_ABS_ERROR", "Median absolute error (m)"),
                           ("RMSE", "RMSE (m)"), ("NMAD", "NMAD (m)"), ("LE90", "LE90 (m)"),
                           ("BLUNDER_SHARE", "Blunder share")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.evaluate import evaluate_dem
        layers = [self.parameterAsRasterLayer(parameters, key, context) for key in (self.DEM, self.REFERENCE_DEM)]
        error = self.parameterAsOutputLayer(parameters, self.ERROR_OUTPUT, context)
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        with user_errors():
            stats = evaluate_dem(*(layer_path(layer) for layer in layers), error, report)
        subject = f"{layer_title(layers[0])} vs {layer_title(layers[1])}"
        page = keep_report(report, f"{subject} evaluation")
        feedback.pushInfo(f"median |error| {number(stats['median_abs_error_m'], 2, 'm')}, NMAD "
                          f"{number(stats['nmad_m'], 2, 'm')}, RMSE {number(stats['rmse_m'], 2, 'm')}, LE90 "
                          f"{number(stats['le90_m'], 2, 'm')}, blunder share {number(stats['blunder_share'], 4)}, "
                          f"coverage {number(stats['coverage'], 3)}; report {page}")
        on_load(context, error, run_group(context, subject, "evaluation"), "error", NAMES["error"], visible=True)
        return {self.ERROR_OUTPUT: error, self.REPORT: report, "REPORT_HTML": page, "COVERAGE": stats["coverage"],
                "MEDIAN_ABS_ERROR": stats["median_abs_error_m"], "RMSE": stats["rmse_m"], "NMAD": stats["nmad_m"],
                "LE90": stats["le90_m"], "BLUNDER_SHARE": stats["blunder_share"]}
