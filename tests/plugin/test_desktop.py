"""The plugin as a GIS analyst meets it in QGIS: the demo chain run through the algorithm dialogs (the
code path of the desktop's Run button: AlgorithmDialog.runAlgorithm, a background task, then
Processing's loading of the results), with and without a reference DEM, and the shipped model."""

import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsHillshadeRenderer,
    QgsLayerTreeLayer,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsProcessingModelAlgorithm,
    QgsProcessingUtils,
    QgsProject,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage, QPainter
from qgis.PyQt.QtWidgets import QTextEdit

POC = 2  # index of POC in the MATCHER enum
PAIR = "Reference image × Secondary image"
ELEVATION_NAMES = ["DEM quality", "Error (DEM − reference)", "Height uncertainty (1σ)", "Points per cell", "DEM",
                   "DEM hillshade"]
WITHOUT_ERROR = [name for name in ELEVATION_NAMES if not name.startswith("Error")]  # no reference DEM


def run_dialog(alg_id, params, timeout=900):
    """Run ``alg_id`` from its dialog as the Run button does; (results, HTML of the dialog's log)."""
    import processing
    from processing.core.ProcessingConfig import ProcessingConfig
    ProcessingConfig.setSettingValue(ProcessingConfig.KEEP_DIALOG_OPEN, True)
    dialog = processing.createAlgorithmDialog(alg_id, params)
    finished = []
    dialog.algorithmFinished.connect(lambda ok, results: finished.append(results))
    manager = QgsApplication.taskManager()
    dialog.runAlgorithm()
    deadline = time.time() + timeout
    while time.time() < deadline and (manager.countActiveTasks() or not finished):
        QgsApplication.processEvents()
        time.sleep(0.02)
        log = dialog.findChild(QTextEdit, "txtLog").toPlainText()
        if "Execution failed" in log or "not correctly generated" in log:
            break
    log = dialog.findChild(QTextEdit, "txtLog").toHtml()
    dialog.close()
    assert finished, _plain(log)[-3000:]
    return finished[0], log


def _plain(html):
    from qgis.PyQt.QtGui import QTextDocument
    doc = QTextDocument()
    doc.setHtml(html)
    return doc.toPlainText()


def _no_red(log):
    """No error (red) line in a dialog's log: QGIS writes them as <span style="color:red">."""
    assert "#ff0000" not in log.lower() and "color:red" not in log.lower(), _plain(log)[-3000:]


def _groups():
    root = QgsProject.instance().layerTreeRoot()
    return {group.name(): [node.layer().name() for node in group.findLayers()] for group in root.findGroups()}


def _layer(name, group):
    group = QgsProject.instance().layerTreeRoot().findGroup(group)
    return next(node.layer() for node in group.findLayers() if node.layer().name() == name)


def desktop(iface):
    """pytest-qgis's stand-in for QGIS's interface, completed with what Processing's dialogs call."""
    from qgis.gui import QgsBrowserGuiModel
    from qgis.PyQt.QtCore import QSize as Size
    if not hasattr(iface, "browserModel"):
        model = QgsBrowserGuiModel()
        iface.browserModel = lambda: model
        iface.iconSize = lambda dockedToolbar=False: Size(24, 24)
        iface.removePluginMenu = lambda name, action: None
    return iface


@pytest.fixture(scope="module")
def chain(qgis_iface, qgis_processing):
    """The demo pair simulated, matched (POC) and turned into DEMs from the dialogs; then the shipped
    model without and with a reference DEM. Everything loads into the project, as in the desktop."""
    from processing.core.ProcessingResults import resultsList

    import sar_stereo_plugin
    plugin = sar_stereo_plugin.classFactory(desktop(qgis_iface))
    plugin.initProcessing()
    QgsProject.instance().clear()
    logs, results = {}, {}
    results["simulate"], logs["simulate"] = run_dialog("sarstereo:simulatepair", {"DEM_OUTPUT": "TEMPORARY_OUTPUT"})
    group = "Jacksboro DEM — simulated pair"
    ref, sec, dem = (_layer(name, group) for name in ("Reference image", "Secondary image", "Source DEM"))
    pair = {"REFERENCE": ref.id(), "SECONDARY": sec.id()}
    results["match"], logs["match"] = run_dialog("sarstereo:matchpair", {**pair, "MATCHER": POC})
    matches = _layer("Matches (POC)", f"{PAIR} — matches (POC)")
    results["dem"], logs["dem"] = run_dialog("sarstereo:generateelevation", {"MATCHES": matches.id()})
    results["dem_ref"], logs["dem_ref"] = run_dialog("sarstereo:generateelevation", {
        "MATCHES": matches.id(), "REFERENCE_DEM": dem.id()})
    model = next(a for a in QgsApplication.processingRegistry().providerById("sarstereo").algorithms()
                 if isinstance(a, QgsProcessingModelAlgorithm))
    inputs = {"image_reference": ref.id(), "image_secondary": sec.id(), "matcher": POC}
    results["model"], logs["model"] = run_dialog(model.id(), inputs)
    results["model_ref"], logs["model_ref"] = run_dialog(model.id(), {**inputs, "reference_dem": dem.id()})
    yield {"logs": logs, "results": results, "groups": _groups(), "source_dem": dem.source(),
           "viewer": [r.filename for r in resultsList.getResults()]}
    QgsProject.instance().clear()
    plugin.unload()


def test_no_red_message_from_any_dialog(chain):
    for log in chain["logs"].values():
        _no_red(log)
    assert "No reference DEM given" in _plain(chain["logs"]["dem"])


def test_one_group_per_run_named_after_it_every_layer_named(chain):
    groups = chain["groups"]
    assert groups == {
        "Jacksboro DEM — simulated pair": ["Ground truth (valid pixels)", "Reference image", "Secondary image",
                                           "Source DEM", "Source DEM hillshade"],
        f"{PAIR} — matches (POC)": ["Matches (POC)"],
        f"{PAIR} — DEM": WITHOUT_ERROR,
        f"{PAIR} — DEM (2)": ELEVATION_NAMES,
        f"{PAIR} — refined models, matches (POC), DEM": ["Tie points", "Matches (POC)"] + WITHOUT_ERROR,
        f"{PAIR} — refined models, matches (POC), DEM (2)": ["Tie points", "Matches (POC)"] + ELEVATION_NAMES,
    }, groups
    root = QgsProject.instance().layerTreeRoot()
    assert all(not isinstance(node, QgsLayerTreeLayer) for node in root.children())  # nothing loose


def test_accuracy_report_reaches_results_viewer_and_outlives_the_session(chain):
    for key in ("dem_ref", "model_ref"):
        page = chain["results"][key].get("REPORT_HTML") or chain["results"][key].get("elevation:REPORT_HTML")
        if key == "dem_ref":
            assert page in chain["viewer"]
            assert Path(page).is_file() and "<img" in Path(page).read_text()
            temp = Path(QgsProcessingUtils.tempFolder()).resolve()
            assert not Path(page).resolve().is_relative_to(temp)
    assert chain["results"]["dem_ref"]["MEDIAN_ABS_ERROR"] < 6.0
    assert chain["results"]["dem"]["MEDIAN_ABS_ERROR"] is None


def test_hillshade_renders_like_gdaldem(chain, tmp_path):
    """The DEM's hillshade as QGIS draws it, zoomed in 3x, against `gdaldem hillshade` of the same
    DEM resampled onto the same pixels: the same picture. The style used to resample nearest
    after shading, a hatch pattern (0.80 on an Alpine DEM); it now resamples bilinearly at the
    provider (0.997 there)."""
    shade = _layer("DEM hillshade", f"{PAIR} — DEM (2)")
    assert isinstance(shade.renderer(), QgsHillshadeRenderer) and not shade.renderer().multiDirectional()
    assert shade.dataProvider().isProviderResamplingEnabled()
    corr = hillshade_correlation(shade, tmp_path)
    shade.dataProvider().enableProviderResampling(False)  # the old style: nearest, after shading
    shade.setResamplingStage(Qgis.RasterResamplingStage.ResampleFilter)
    old = hillshade_correlation(shade, tmp_path)
    print(f"\nhillshade vs gdaldem hillshade: correlation {corr:.3f} (nearest after shading: {old:.3f})")
    assert corr >= 0.95 and old < corr


def hillshade_correlation(shade, tmp_path, zoom=3):
    """Correlation of a rendered hillshade layer with gdaldem's of its DEM, over its central part."""
    ds = gdal.Open(shade.source())
    extent = shade.extent()
    width, height = ds.RasterXSize * zoom // 2, ds.RasterYSize * zoom // 2
    centre = extent.center()
    extent.scale(0.5, centre)
    settings = QgsMapSettings()
    settings.setLayers([shade])
    settings.setDestinationCrs(shade.crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor(255, 255, 255))
    image = QImage(settings.outputSize(), QImage.Format_ARGB32)
    image.fill(QColor(255, 255, 255))
    painter = QPainter(image)
    job = QgsMapRendererCustomPainterJob(settings, painter)
    job.start()
    job.waitForFinished()
    painter.end()
    ptr = image.constBits()
    ptr.setsize(image.byteCount())
    rendered = np.frombuffer(ptr, np.uint8).reshape(height, image.bytesPerLine() // 4, 4)[:, :width, 1].astype(float)
    reference = tmp_path / "gdaldem.tif"
    gdal.DEMProcessing(str(reference), shade.source(), "hillshade", computeEdges=True)  # 315°, 45°, as the style
    visible = settings.visibleExtent()
    warped = gdal.Warp("", str(reference), format="MEM", outputBounds=(visible.xMinimum(), visible.yMinimum(),
                                                                      visible.xMaximum(), visible.yMaximum()),
                       width=width, height=height, resampleAlg="bilinear")
    expected = warped.ReadAsArray().astype(float)
    ok = (expected > 0) & np.isfinite(expected)
    ok[:zoom * 2], ok[-zoom * 2:], ok[:, :zoom * 2], ok[:, -zoom * 2:] = False, False, False, False
    return float(np.corrcoef(rendered[ok], expected[ok])[0, 1])


def test_dem_legend_reads_in_metres_without_six_decimals(chain):
    dem = _layer("DEM", f"{PAIR} — DEM")
    ramp = dem.renderer().shader().rasterShaderFunction()
    legend = ramp.legendSettings()
    assert legend.numericFormat().numberDecimalPlaces() == 0 and legend.suffix() == " m"
    assert all(item.label.endswith(" m") and "." not in item.label for item in ramp.colorRampItemList())
    image = _layer("Reference image", "Jacksboro DEM — simulated pair")
    legend = image.renderer().shader().rasterShaderFunction().legendSettings()
    assert legend.minimumLabel().endswith(" dB") and legend.maximumLabel().endswith(" dB")
    source = _layer("Source DEM", "Jacksboro DEM — simulated pair")
    assert source.renderer().type() == "singlebandpseudocolor"  # styled like the DEMs made from the pair
