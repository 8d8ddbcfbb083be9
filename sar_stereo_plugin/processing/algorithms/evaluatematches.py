"""sarstereo:evaluatematches — matching accuracy against ground truth, as the method reports it."""

import json

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..common import layer_path, user_errors


class EvaluateMatches(QgsProcessingAlgorithm):
    MATCHES = "MATCHES"
    GROUND_TRUTH = "GROUND_TRUTH"
    CERTAINTY_THRESHOLD = "CERTAINTY_THRESHOLD"
    REPORT = "REPORT"

    def name(self):
        return "evaluatematches"

    def displayName(self):  # noqa: N802 - QGIS API
        return "Evaluate matches against ground truth"

    def group(self):
        return "Matching"

    def groupId(self):  # noqa: N802 - QGIS API
        return "matching"

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return ("Compares a match raster with ground truth in the reference geometry (a simulator's ground "
                "truth, or one built from a reference DSM): the end-point error of a pixel is the distance "
                "between its matched and true secondary positions.\n\n"
                "Over the valid ground-truth pixels the report gives accuracy_at_px (share matched within 1, "
                "3, 5 and 10 pixels; an unmatched pixel counts as a miss), accuracy_of_matched_at_px (the "
                "same among matched pixels), coverage (share matched with certainty at least the threshold) "
                "and the median end-point error.")

    def createInstance(self):  # noqa: N802 - QGIS API
        return EvaluateMatches()

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer(self.MATCHES, "Match raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.GROUND_TRUTH, "Ground truth (bands: secondary "
                                                                               "row, col, validity)"))
        self.addParameter(QgsProcessingParameterNumber(
            self.CERTAINTY_THRESHOLD, "Certainty threshold (matches below it count as unmatched)",
            QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterFileDestination(self.REPORT, "Report", "JSON files (*.json)"))
        self.addOutput(QgsProcessingOutputNumber("COVERAGE", "Coverage"))
        for t in (1, 3, 5, 10):
            self.addOutput(QgsProcessingOutputNumber(f"ACCURACY_{t}PX", f"Accuracy at {t} px"))
        self.addOutput(QgsProcessingOutputNumber("MEDIAN_EPE", "Median end-point error (px)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.evaluate import evaluate_matches
        paths = [layer_path(self.parameterAsRasterLayer(parameters, key, context))
                 for key in (self.MATCHES, self.GROUND_TRUTH)]
        with user_errors():
            report = evaluate_matches(*paths, self.parameterAsDouble(parameters, self.CERTAINTY_THRESHOLD, context))
        text = json.dumps(report, indent=2)
        feedback.pushInfo(text)
        report_path = self.parameterAsFileOutput(parameters, self.REPORT, context)
        with open(report_path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return {self.REPORT: report_path, "COVERAGE": report["coverage"], "MEDIAN_EPE": report["median_epe_px"],
                **{f"ACCURACY_{t}PX": report["accuracy_at_px"][t] for t in ("1", "3", "5", "10")}}
