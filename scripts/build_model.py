"""Write the graphical model shipped with the plugin (processing/models/radargrammetry.model3).

Run by hand after changing the algorithms' parameters: `.venv/bin/python scripts/build_model.py`.
The model chains sarstereo:refinepair -> sarstereo:matchpair (with the refined sensor models) ->
sarstereo:generateelevation, which also evaluates the DEM where the optional reference DEM is given;
that DEM is also refinement's absolute control. Every parameter of both steps is written into the file,
those left at their defaults included: QGIS 3.22's modeler marks a step whose required parameters
are missing from the file as invalid. QGIS 3.22 lists a model's inputs by name, so their names sort
in the order of the work (image_reference, image_secondary, matcher, reference_dem).
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

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "sar_stereo_plugin" / "processing" / "models" / "radargrammetry.model3"
# child output -> (model output name, its label); one-word names: qgis_process calls them child:name
# (the refined models pass from step to step as temporary files)
OUTPUTS = {"refine": {"TIE_POINTS": ("TiePoints", "Tie points"),
                      "REPORT": ("RefinementReport", "Refinement report (JSON)")},
           "match": {"OUTPUT": ("Matches", "Matches")},
           "elevation": {"OUTPUT": ("DEM", "DEM"), "COUNT_OUTPUT": ("Count", "Points per cell"),
                         "UNCERTAINTY_OUTPUT": ("Uncertainty", "Height uncertainty"),
                         "QUALITY_OUTPUT": ("Quality", "DEM quality"),
                         "ERROR_OUTPUT": ("Error", "Error map (only with a reference DEM)"),
                         "REPORT": ("Report", "Accuracy report (JSON; only with a reference DEM)")}}


def build():
    from sar_stereo_plugin.core.matchers import MATCHERS
    from sar_stereo_plugin.processing.algorithms.matchpair import MATCHER_LABELS
    from sar_stereo_plugin.processing.common import GROUPS
    model = QgsProcessingModelAlgorithm("SAR radargrammetry (refine → match → elevation)", GROUPS["workflows"],
                                        "workflows")
    model.setHelpContent({"ALG_DESC": "Refines the sensor models of a SAR stereo pair from the images, matches the "
                                      "pair patch-wise in slant range with the refined models and triangulates the "
                                      "matches into a DEM (heights above the WGS84 ellipsoid), with its points per "
                                      "cell, height uncertainty and quality (measured, filled, rejected as "
                                      "inconsistent, layover, shadow). A reference DEM (SRTM, Copernicus DEM, ...) is "
                                      "refinement's absolute control and the DEM's evaluation: the error map and the "
                                      "accuracy report; without one (the usual case) they are not made. "
                                      "Right-click the model in the Toolbox and choose Edit Model… to open a copy "
                                      "in the Model Designer."})
    inputs = [QgsProcessingParameterRasterLayer("image_reference", "Reference SAR image (slant range)"),
              QgsProcessingParameterRasterLayer("image_secondary", "Secondary SAR image (slant range)"),
              QgsProcessingParameterEnum("matcher", "Matcher", options=[MATCHER_LABELS[m] for m in MATCHERS],
                                         defaultValue=0),
              QgsProcessingParameterRasterLayer("reference_dem", "Reference DEM (refinement control and "
                                                "evaluation; optional)", optional=True)]
    for i, definition in enumerate(inputs):
        param = QgsProcessingModelParameter(definition.name())
        param.setPosition(QPointF(140, 60 + 90 * i))
        model.addModelParameter(definition, param)

    par, out = QgsProcessingModelChildParameterSource.fromModelParameter, \
        QgsProcessingModelChildParameterSource.fromChildOutput
    child(model, "sarstereo:refinepair", "refine", "Refine sensor models", (460, 60),
          {"REFERENCE": par("image_reference"), "SECONDARY": par("image_secondary"),
           "REFERENCE_DEM": par("reference_dem")})
    child(model, "sarstereo:matchpair", "match", "Match stereo pair", (460, 250),
          {"REFERENCE": par("image_reference"), "SECONDARY": par("image_secondary"), "MATCHER": par("matcher"),
           "REFERENCE_MODEL": out("refine", "REFINED_REFERENCE_MODEL"),
           "SECONDARY_MODEL": out("refine", "REFINED_SECONDARY_MODEL")})
    child(model, "sarstereo:generateelevation", "elevation", "Generate elevation (DEM)", (460, 420),
          {"MATCHES": out("match", "OUTPUT"), "REFERENCE_DEM": par("reference_dem")})
    return model


def child(model, alg_id, child_id, description, position, sources):
    """Add step ``child_id``: ``sources`` for the parameters named there, the algorithm's defaults as
    static values for the others, and its OUTPUTS exposed as model outputs."""
    step = QgsProcessingModelChildAlgorithm(alg_id)
    step.setChildId(child_id)
    step.setDescription(description)
    step.setPosition(QPointF(*position))
    algorithm = QgsApplication.processingRegistry().algorithmById(alg_id)
    for definition in algorithm.parameterDefinitions():
        key = definition.name()
        if key in sources:
            step.addParameterSources(key, [sources[key]])
        elif not definition.isDestination() and definition.defaultValue() is not None:
            step.addParameterSources(key, [QgsProcessingModelChildParameterSource.fromStaticValue(
                definition.defaultValue())])
    exposed = {}
    for i, (output_key, (name, label)) in enumerate(OUTPUTS[child_id].items()):
        output = QgsProcessingModelOutput(name, label)
        output.setChildOutputName(output_key)
        output.setChildId(child_id)
        output.setPosition(QPointF(position[0] + 300, position[1] - 40 + 30 * i))
        exposed[name] = output
    step.setModelOutputs(exposed)
    model.addChildAlgorithm(step)


if __name__ == "__main__":
    app = QgsApplication([], False)
    app.initQgis()
    sys.path[:0] = [str(ROOT), "/usr/share/qgis/python/plugins"]
    from processing.core.Processing import Processing

    from sar_stereo_plugin.processing.provider import SarStereoProvider
    Processing.initialize()
    provider = SarStereoProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    TARGET.parent.mkdir(exist_ok=True)
    model = build()
    ok, issues = model.validate()
    if not ok:
        sys.exit("model invalid: " + "; ".join(issues))
    if not model.toFile(str(TARGET)):
        sys.exit(f"cannot write {TARGET}")
    print(TARGET)
    del model
    app.exitQgis()
