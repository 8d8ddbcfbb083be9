"""Styles for the layers algorithms load: .qml files (ramps stretched to the data where they are
stored on a normalised scale), a dB grey ramp for amplitudes, and per-run layer groups."""

from pathlib import Path

from qgis.core import (
    QgsColorRampShader,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
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
        self._apply(layer, context)


def style_on_load(context, output_id, apply):
    """Call apply(layer, context) when the output ``output_id`` is loaded into the project."""
    if context.willLoadLayerOnCompletion(output_id):
        styler = _Styler(apply)
        _Styler._alive.append(styler)
        context.layerToLoadOnCompletionDetails(output_id).setPostProcessor(styler)


def qml(name):
    """A styler applying styles/<name>.qml."""
    def apply(layer, context=None):
        layer.loadNamedStyle(str(STYLES / f"{name}.qml"))
        layer.triggerRepaint()
    return apply


def amplitude_db(low_db, high_db, steps=16):
    """A styler drawing amplitude in grey on a dB scale between low_db and high_db (black to white).

    The ramp stops are equally spaced in dB, so the display is logarithmic in amplitude while
    the file keeps linear amplitude; the legend reads in dB.
    """
    def apply(layer, context=None):
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


def tie_points(layer, context=None):
    """Tie points by whether refinement used them: used in green, rejected in red, with a legend."""
    from qgis.core import QgsCategorizedSymbolRenderer, QgsMarkerSymbol, QgsRendererCategory
    categories = []
    for value, colour, label in ((1, "#1a9641", "used"), (0, "#d7191c", "rejected as inconsistent")):
        symbol = QgsMarkerSymbol.createSimple({"name": "circle", "color": colour, "size": "1.6",
                                               "outline_style": "no"})
        categories.append(QgsRendererCategory(value, symbol, label))
    layer.setRenderer(QgsCategorizedSymbolRenderer("used", categories))
    layer.triggerRepaint()


def certainty(layer, context=None):
    """Draw a match raster by its certainty (band 3), 0 to 1 on the viridis ramp."""
    ramp = QgsColorRampShader(0.0, 1.0, QgsStyle.defaultStyle().colorRamp("Viridis"))
    ramp.classifyColorRamp(11)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    layer.setRenderer(QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 3, shader))
    layer.triggerRepaint()


# Elevation products. Their .qml ramps are stored on 0..1 (-1..1 for the error) and stretched to
# each run's data, the error's symmetrically about zero.
def band_limits(path, percentiles, absolute=False):
    from ..core.raster import band_percentiles
    return band_percentiles(path, percentiles, absolute) or [0.0, 1.0]


def _symmetric(path):
    limit = max(band_limits(path, [98], absolute=True)[0], 1e-3)
    return -limit, limit


def _from_zero(path):
    return 0.0, max(band_limits(path, [98])[0], 1e-3)


LIMITS = {"error": _symmetric, "uncertainty": _from_zero, "count": _from_zero,
          "dem": lambda path: band_limits(path, [2, 98])}
ORDER = ("error", "uncertainty", "count", "dem", "hillshade")  # top to bottom in a run's group
VISIBLE = ("dem", "hillshade")  # the others start unticked


def stretch_ramp(layer, low, high):
    """Map the pseudocolour ramp of ``layer`` linearly onto low..high (labels in data units)."""
    renderer = layer.renderer()
    ramp = renderer.shader().rasterShaderFunction()
    old_low, old_high = ramp.minimumValue(), ramp.maximumValue()
    scale = (high - low) / (old_high - old_low)
    items = [QgsColorRampShader.ColorRampItem(low + (i.value - old_low) * scale, i.color,
                                              f"{low + (i.value - old_low) * scale:.4g}")
             for i in ramp.colorRampItemList()]
    ramp.setColorRampItemList(items)
    ramp.setMinimumValue(low)
    ramp.setMaximumValue(high)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    layer.triggerRepaint()


class RunGroup:
    """The layer-tree group of one algorithm run, created when its first layer loads; members are
    kept in their order, a DEM gets its hillshade beneath it."""

    def __init__(self, title):
        self.title, self.group = title, None

    def add(self, layer, kind, context):
        project = context.project() or QgsProject.instance()
        root = project.layerTreeRoot()
        if self.group is None:
            name, n = self.title, 1
            while root.findGroup(name):
                n += 1
                name = f"{self.title} ({n})"
            self.group = root.insertGroup(0, name)
        node = root.findLayer(layer.id())
        if node is None:
            project.addMapLayer(layer, False)
        order = ORDER.index(kind)
        at = sum(1 for child in self.group.children() if child.customProperty("sarstereo/order", 99) < order)
        inserted = self.group.insertLayer(at, layer)
        inserted.setCustomProperty("sarstereo/order", order)
        inserted.setItemVisibilityChecked(kind in VISIBLE)
        if node is not None:
            node.parent().removeChildNode(node)


def elevation_style(group, kind):
    """A styler for an elevation product of ``kind`` (dem, error, uncertainty, count): its .qml,
    stretched to the data, placed in the run's group; a DEM also gets a hillshade layer beneath."""
    def apply(layer, context):
        path = layer.source()
        layer.loadNamedStyle(str(STYLES / f"{kind}.qml"))
        stretch_ramp(layer, *LIMITS[kind](path))
        group.add(layer, kind, context)
        if kind == "dem":
            shade = QgsRasterLayer(path, f"{layer.name()} hillshade")
            shade.loadNamedStyle(str(STYLES / "hillshade.qml"))
            group.add(shade, "hillshade", context)
    return apply
