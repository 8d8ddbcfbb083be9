"""Styles for the layers algorithms load: static .qml files, and a dB grey ramp for amplitudes."""

from pathlib import Path

from qgis.core import (QgsColorRampShader, QgsProcessingLayerPostProcessorInterface, QgsRasterShader,
                       QgsSingleBandPseudoColorRenderer, QgsStyle)
from qgis.PyQt.QtGui import QColor

STYLES = Path(__file__).resolve().parent / "styles"


class _Styler(QgsProcessingLayerPostProcessorInterface):
    """Applies a style when Processing loads an output. QGIS keeps only a raw pointer to a
    post-processor, so every instance is kept alive here."""

    _alive = []

    def __init__(self, apply):
        super().__init__()
        self._apply = apply

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        self._apply(layer)


def style_on_load(context, output_id, apply):
    """Call apply(layer) when the output ``output_id`` is loaded into the project."""
    if context.willLoadLayerOnCompletion(output_id):
        styler = _Styler(apply)
        _Styler._alive.append(styler)
        context.layerToLoadOnCompletionDetails(output_id).setPostProcessor(styler)


def qml(name):
    """A styler applying styles/<name>.qml."""
    def apply(layer):
        layer.loadNamedStyle(str(STYLES / f"{name}.qml"))
        layer.triggerRepaint()
    return apply


def amplitude_db(low_db, high_db, steps=16):
    """A styler drawing amplitude in grey on a dB scale between low_db and high_db (black to white).

    The ramp stops are equally spaced in dB, so the display is logarithmic in amplitude while
    the file keeps linear amplitude; the legend reads in dB.
    """
    def apply(layer):
        items = []
        for i in range(steps + 1):
            db = low_db + (high_db - low_db) * i / steps
            grey = round(255 * i / steps)
            items.append(QgsColorRampShader.ColorRampItem(10 ** (db / 20.0), QColor(grey, grey, grey), f"{db:.1f} dB"))
        ramp = QgsColorRampShader(items[0].value, items[-1].value)
        ramp.setColorRampType(QgsColorRampShader.Interpolated)
        ramp.setColorRampItemList(items)
        shader = QgsRasterShader()
        shader.setRasterShaderFunction(ramp)
        layer.setRenderer(QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader))
        layer.triggerRepaint()
    return apply


def certainty(layer):
    """Draw a match raster by its certainty (band 3), 0 to 1 on the viridis ramp."""
    ramp = QgsColorRampShader(0.0, 1.0, QgsStyle.defaultStyle().colorRamp("Viridis"))
    ramp.classifyColorRamp(11)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    layer.setRenderer(QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 3, shader))
    layer.triggerRepaint()
