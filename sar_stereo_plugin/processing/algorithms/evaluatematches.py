"""sarstereo:evaluatematches — matching accuracy against ground truth, as the method reports it."""

import json

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..common import Algorithm, decimals, layer_path, number, title, user_errors


class EvaluateMatches(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "evaluatematches", "matching"
    MATCHES = "MATCHES"
    GROUND_TRUTH = "GROUND_TRUTH"
    CERTAINTY_THRESHOLD = "CERTAINTY_THRESHOLD"
    REPORT = "REPORT"
    HELP = (
        f"Compares a match raster from {title('matchpair')} with ground truth in the reference geometry (the one "
        f"{title('simulatepair')} writes, or one built from a reference DSM): the end-point error of a pixel is "
        "the distance between its matched and true secondary positions.",
        "Over the valid ground-truth pixels the report gives the share matched within 1, 3, 5 and 10 pixels (an "
        "unmatched pixel counts as a miss), the same among matched pixels, the coverage (share matched with "
        "certainty at least the threshold) and the median end-point error.",
    )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer(self.MATCHES, "Match raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.GROUND_TRUTH, "Ground truth (bands: secondary "
                                                                               "row, col, validity)"))
        self.addParameter(decimals(QgsProcessingParameterNumber(
            self.CERTAINTY_THRESHOLD, "Certainty threshold (matches below it count as unmatched)",
            QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0, maxValue=1.0), 2))
        self.addParameter(QgsProcessingParameterFileDestination(self.REPORT, "Report (JSON)", "JSON files (*.json)"))
        self.addOutput(QgsProcessingOutputNumber("COVERAGE", "Coverage"))
        for t in (1, 3, 5, 10):
            self.addOutput(QgsProcessingOutputNumber(f"ACCURACY_{t}PX", f"Accuracy at {t} px"))
        self.addOutput(QgsProcessingOutputNumber("MEDIAN_EPE", "Median end-point error (px)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from ...core.atomic import atomic_file, check_outputs
        from ...core.evaluate import evaluate_matches
        paths = [layer_path(self.parameterAsRasterLayer(parameters, key, context))
                 for key in (self.MATCHES, self.GROUND_TRUTH)]
        report_path = self.parameterAsFileOutput(parameters, self.REPORT, context)
        with user_errors():
            check_outputs({self.REPORT: report_path}, {self.MATCHES: paths[0], self.GROUND_TRUTH: paths[1]})
            report = evaluate_matches(*paths, self.parameterAsDouble(parameters, self.CERTAINTY_THRESHOLD, context))
        within = report["accuracy_at_px"]
        feedback.pushInfo("share of valid pixels matched within 1 / 3 / 5 / 10 px: "
                          + " / ".join(number(within[t], 3) for t in ("1", "3", "5", "10"))
                          + f"; coverage {number(report['coverage'], 3)}; median end-point error "
                          + number(report["median_epe_px"], 2, "px"))
        with user_errors(), atomic_file(report_path) as tmp:
            tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
        return {self.REPORT: report_path, "COVERAGE": report["coverage"], "MEDIAN_EPE": report["median_epe_px"],
                **{f"ACCURACY_{t}PX": within[t] for t in ("1", "3", "5", "10")}}
