"""Drive the real QGIS desktop (started by `make gui-shots` under Xvfb with `--code` this file) as a
GIS analyst would, and take screenshots into $SARSTEREO_GUI_OUT (build/gui).

Steps ($SARSTEREO_GUI_STEPS, comma-separated):
  dialogs  open every algorithm's dialog, the model's and the Model Designer on the shipped model
  chain    the demo chain from the dialogs (the Run button's code path): simulate the demo pair, match
           it (POC), generate the DEM without and with the reference DEM, then the shipped model
           without and with it; the log of each dialog is checked for red lines
  install  the deep-learning installer's dialog (CPU build), timed, with the disk space it takes
  light    match the demo pair with MATCHER=Light (a new QGIS session: the packages come from the
           plugin's folder, put on sys.path when the plugin loads)
Each step writes <step>.json (ok, timings, groups, layer names) beside its screenshots; QGIS then quits.
"""

import json
import os
import time
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingModelAlgorithm, QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QTextEdit
from qgis.utils import iface

OUT = Path(os.environ.get("SARSTEREO_GUI_OUT", "build/gui"))
STEPS = os.environ.get("SARSTEREO_GUI_STEPS", "dialogs,chain").split(",")
POC, LIGHT = 2, 3


def wait(seconds):
    end = time.time() + seconds
    while time.time() < end:
        QgsApplication.processEvents()
        time.sleep(0.02)


def shot(widget, name):
    wait(0.5)
    widget.grab().save(str(OUT / f"{name}.png"))


def run_dialog(alg_id, params, name, timeout=1800):
    """Run from the algorithm's dialog as the Run button does; (results, seconds, red lines)."""
    import processing
    from processing.core.ProcessingConfig import ProcessingConfig
    ProcessingConfig.setSettingValue(ProcessingConfig.KEEP_DIALOG_OPEN, True)
    dialog = processing.createAlgorithmDialog(alg_id, params)
    dialog.show()
    shot(dialog, f"{name}-dialog")
    finished, started = [], time.time()
    dialog.algorithmFinished.connect(lambda ok, results: finished.append(results))
    dialog.runAlgorithm()
    log = dialog.findChild(QTextEdit, "txtLog")
    while time.time() - started < timeout and (QgsApplication.taskManager().countActiveTasks() or not finished):
        wait(0.1)
        if "Execution failed" in log.toPlainText() or "not correctly generated" in log.toPlainText():
            break
    seconds = time.time() - started
    wait(1)
    shot(dialog, f"{name}-log")
    html = log.toHtml().lower()
    red = [line for line in log.toPlainText().splitlines() if "error" in line.lower()] \
        if ("#ff0000" in html or "color:red" in html) else []
    dialog.close()
    return (finished[0] if finished else None), round(seconds, 1), red


def layer(name, group):
    node = QgsProject.instance().layerTreeRoot().findGroup(group)
    return next(n.layer() for n in node.findLayers() if n.layer().name() == name)


def groups():
    root = QgsProject.instance().layerTreeRoot()
    return {g.name(): [n.layer().name() for n in g.findLayers()] for g in root.findGroups()}


def show_map(extent_layer, name):
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(extent_layer.crs())
    canvas.setExtent(extent_layer.extent())
    canvas.refresh()
    canvas.waitWhileRendering()
    shot(iface.mainWindow(), name)


def model():
    provider = QgsApplication.processingRegistry().providerById("sarstereo")
    return next(a for a in provider.algorithms() if isinstance(a, QgsProcessingModelAlgorithm))


def step_dialogs(report):
    import processing

    from sar_stereo_plugin.processing.ui import edit_model
    provider = QgsApplication.processingRegistry().providerById("sarstereo")
    for alg in sorted(provider.algorithms(), key=lambda a: (a.group(), a.displayName())):
        dialog = processing.createAlgorithmDialog(alg.id(), {})
        dialog.resize(1200, 800)
        dialog.show()
        shot(dialog, f"dialog-{alg.name().replace(' ', '_')[:40]}")
        dialog.close()
    designer = edit_model(model())
    designer.resize(1400, 900)
    shot(designer, "model-designer")
    report["model_valid"] = designer.model().validate()[0]
    designer.close()
    shot(iface.mainWindow(), "main-window")


def demo_pair(report):
    results, seconds, red = run_dialog("sarstereo:simulatepair", {"DEM_OUTPUT": "TEMPORARY_OUTPUT"}, "1-simulate")
    report["runs"]["simulate"] = {"seconds": seconds, "red": red, "ok": results is not None}
    group = "Jacksboro DEM — simulated pair"
    return [layer(name, group) for name in ("Reference image", "Secondary image", "Source DEM")]


def step_chain(report):
    ref, sec, dem = demo_pair(report)
    pair = {"REFERENCE": ref.id(), "SECONDARY": sec.id()}
    runs = [("2-match-poc", "sarstereo:matchpair", {**pair, "MATCHER": POC})]
    for name, alg_id, params in runs:
        results, seconds, red = run_dialog(alg_id, params, name)
        report["runs"][name] = {"seconds": seconds, "red": red, "ok": results is not None}
    matches = layer("Matches (POC)", "Reference image × Secondary image — matches (POC)")
    inputs = {"image_reference": ref.id(), "image_secondary": sec.id(), "matcher": POC}
    for name, alg_id, params in (
            ("3-elevation-no-reference", "sarstereo:generateelevation", {"MATCHES": matches.id()}),
            ("4-elevation-reference", "sarstereo:generateelevation", {"MATCHES": matches.id(),
                                                                      "REFERENCE_DEM": dem.id()}),
            ("5-model-no-reference", model().id(), inputs),
            ("6-model-reference", model().id(), {**inputs, "reference_dem": dem.id()})):
        results, seconds, red = run_dialog(alg_id, params, name)
        report["runs"][name] = {"seconds": seconds, "red": red, "ok": results is not None,
                                "median_abs_error_m": (results or {}).get("MEDIAN_ABS_ERROR")}
        show_map(dem, f"{name}-map")
    report["groups"] = groups()
    from processing.core.ProcessingResults import resultsList
    report["results_viewer"] = [r.name for r in resultsList.getResults()]


def step_install(report):
    from sar_stereo_plugin import deps
    from sar_stereo_plugin.processing.common import deps_folder
    results, seconds, red = run_dialog("sarstereo:installdeps", {"ACTION": 0, "TORCH_BUILD": 0}, "install")
    report["runs"]["install"] = {"seconds": seconds, "red": red, "ok": results is not None, "results": results}
    report["megabytes"] = round(deps.folder_size(deps_folder()) / 1e6)


def step_light(report):
    import sys
    ref, sec, _ = demo_pair(report)
    results, seconds, red = run_dialog("sarstereo:matchpair", {"REFERENCE": ref.id(), "SECONDARY": sec.id(),
                                                               "MATCHER": LIGHT}, "light-match")
    torch = sys.modules.get("torch")
    report["runs"]["light"] = {"seconds": seconds, "red": red, "ok": results is not None,
                               "matched_fraction": (results or {}).get("MATCHED_FRACTION"),
                               "torch_from": torch.__file__ if torch else None}
    show_map(layer("Matches (light)", "Reference image × Secondary image — matches (light)"), "light-map")


def main():
    iface.mainWindow().resize(1600, 1000)
    for step in STEPS:
        report = {"step": step, "runs": {}}
        try:
            globals()[f"step_{step}"](report)
            report["ok"] = all(r["ok"] and not r["red"] for r in report["runs"].values())
        except Exception:  # the report says what broke; QGIS must still quit
            report.update(ok=False, error=traceback.format_exc())
        (OUT / f"{step}.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    QgsProject.instance().setDirty(False)
    os._exit(0)  # no "save the project?" question, no slow teardown


OUT.mkdir(parents=True, exist_ok=True)
QTimer.singleShot(3000, main)
