"""Write the graphical model shipped with the plugin (processing/models/radargrammetry.model3).

Run by hand after changing the algorithms' parameters: `.venv/bin/python scripts/build_model.py`.
The model chains sarstereo:matchpair -> sarstereo:generateelevation -> sarstereo:evaluatedem; open
it in the graphical modeler to see or edit it.
"""

import sys
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterEnum,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtCore import QPointF

TARGET = Path(__file__).resolve().parents[1] / "sar_stereo_plugin" / "processing" / "models" / "radargrammetry.model3"


def build():
    from sar_stereo_plugin.core.matchers import MATCHERS
    model = QgsProcessingModelAlgorithm("SAR radargrammetry (match → elevation → evaluate)", "Workflows",
                                        "workflows")
    model.setHelpContent({"ALG_DESC": "Matches a SAR stereo pair patch-wise in slant range, triangulates the "
                                      "matches into a DEM (heights above the WGS84 ellipsoid) and evaluates it "
                                      "against a reference DEM: error map and accuracy report."})
    inputs = [QgsProcessingParameterRasterLayer("reference", "Reference SAR image"),
              QgsProcessingParameterRasterLayer("secondary", "Secondary SAR image"),
              QgsProcessingParameterEnum("matcher", "Matcher", options=list(MATCHERS), defaultValue=0),
              QgsProcessingParameterRasterLayer("reference_dem", "Reference DEM (for the evaluation)")]
    for i, definition in enumerate(inputs):
        param = QgsProcessingModelParameter(definition.name())
        param.setPosition(QPointF(120, 60 + 90 * i))
        model.addModelParameter(definition, param)

    def child(alg_id, child_id, position, sources, outputs):
        step = QgsProcessingModelChildAlgorithm(alg_id)
        step.setChildId(child_id)
        step.setDescription(child_id)
        step.setPosition(QPointF(*position))
        for key, source in sources.items():
            step.addParameterSources(key, [source])
        exposed = {}
        for output_key, label in outputs.values():  # one-word labels: qgis_process names them child:label
            out = QgsProcessingModelOutput(label)
            out.setChildOutputName(output_key)
            out.setChildId(child_id)
            exposed[label] = out
        step.setModelOutputs(exposed)
        model.addChildAlgorithm(step)

    par, out = QgsProcessingModelChildParameterSource.fromModelParameter, \
        QgsProcessingModelChildParameterSource.fromChildOutput
    child("sarstereo:matchpair", "match", (420, 100),
          {"REFERENCE": par("reference"), "SECONDARY": par("secondary"), "MATCHER": par("matcher")},
          {"matches": ("OUTPUT", "Matches")})
    child("sarstereo:generateelevation", "elevation", (420, 250), {"MATCHES": out("match", "OUTPUT")},
          {"dem": ("OUTPUT", "DEM"), "count": ("COUNT_OUTPUT", "Count"),
           "uncertainty": ("UNCERTAINTY_OUTPUT", "Uncertainty")})
    child("sarstereo:evaluatedem", "evaluate", (420, 400),
          {"DEM": out("elevation", "OUTPUT"), "REFERENCE_DEM": par("reference_dem")},
          {"error": ("ERROR_OUTPUT", "Error"), "report": ("REPORT", "Report")})
    return model


if __name__ == "__main__":
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, str(TARGET.parents[3]))
    TARGET.parent.mkdir(exist_ok=True)
    model = build()
    if not model.toFile(str(TARGET)):
        sys.exit(f"cannot write {TARGET}")
    print(TARGET)
    del model
    app.exitQgis()
