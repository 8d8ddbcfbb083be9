"""The layers algorithms load: styles (.qml files, their ramps stretched to the data where they are
stored on a normalised scale; a dB grey ramp for amplitudes), legends with sensible decimals, short
names, and one layer group per run, its members in a fixed order."""

import itertools
from pathlib import Path

from qgis.core import (
    QgsBasicNumericFormat,
    QgsColorRampLegendNodeSettings,
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
# top to bottom in a run's group: a DEM is multiplied over its hillshade, so nothing sits between them
ORDER = ("footprints", "tie_points", "matches", "truth", "reference", "secondary", "quality", "error", "uncertainty",
         "count", "dem", "hillshade")
# the others start unticked; the quality layer draws measured cells faintly, so the DEM shows through it
VISIBLE = ("footprints", "matches", "reference", "quality", "dem", "hillshade")
NAMES = {"dem": "DEM", "hillshade": "DEM hillshade", "count": "Points per cell",
         "uncertainty": "Height uncertainty (1σ)", "error": "Error (DEM − reference)", "quality": "DEM quality"}
# quality layer: class value -> colour (RGBA); the classes and their names are core.fusion.QUALITY's
QUALITY_COLOURS = {0: (0, 0, 0, 0), 1: (26, 150, 65, 40), 2: (255, 217, 47, 200), 3: (215, 25, 28, 220),
                   4: (123, 50, 148, 220), 5: (64, 64, 64, 220)}
# legend decimals and unit of the elevation products
LEGEND = {"dem": (0, " m"), "error": (1, " m"), "uncertainty": (1, " m"), "count": (0, "")}


class _Styler(QgsProcessingLayerPostProcessorInterface):
    """Calls apply(layer, context) when Processing loads an output. QGIS keeps only a raw pointer to
    a post-processor, so every instance is kept alive here."""

    _alive = []

    def __init__(self, apply):
        super().__init__()
        self._apply = apply

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        self._apply(layer, context)


def on_load(context, output_id, run, kind, name, style=None, visible=None):
    """When the output ``output_id`` loads into the project: style it (``style(layer)``, else the
    kind's .qml stretched to the data), name it ``name`` and put it into ``run``'s group; a DEM also
    gets its hillshade beneath it."""
    if not context.willLoadLayerOnCompletion(output_id):
        return

    def apply(layer, context):
        if style is not None:
            style(layer)
        elif kind in LEGEND:
            elevation_style(layer, kind)
        layer.setName(name)
        run.add(layer, kind, context, visible)
        if kind == "dem":
            shade = QgsRasterLayer(layer.source(), f"{name} hillshade")
            shade.loadNamedStyle(str(STYLES / "hillshade.qml"))
            if shade.crs().isGeographic():  # heights in metres over degrees: about 111 km a degree
                shade.renderer().setZFactor(1.0 / 111320.0)
            run.add(shade, "hillshade", context, visible)

    styler = _Styler(apply)
    _Styler._alive.append(styler)
    context.layerToLoadOnCompletionDetails(output_id).setPostProcessor(styler)


def qml(name):
    """A style applying styles/<name>.qml."""
    def apply(layer):
        layer.loadNamedStyle(str(STYLES / f"{name}.qml"))
        layer.triggerRepaint()
    return apply


def legend_format(ramp, digits, suffix="", low_label="", high_label=""):
    """The continuous legend of ``ramp`` (a QgsColorRampShader): ``digits`` decimals and ``suffix``,
    or explicit labels at its two ends."""
    settings = QgsColorRampLegendNodeSettings()
    fmt = QgsBasicNumericFormat()
    fmt.setNumberDecimalPlaces(digits)
    fmt.setShowTrailingZeros(True)
    settings.setNumericFormat(fmt)
    settings.setSuffix(suffix)
    settings.setMinimumLabel(low_label)
    settings.setMaximumLabel(high_label)
    ramp.setLegendSettings(settings)


def amplitude_db(low_db, high_db, steps=16):
    """A style drawing amplitude in grey on a dB scale between low_db and high_db (black to white).

    The ramp stops are equally spaced in dB, so the display is logarithmic in amplitude while the
    file keeps linear amplitude; the legend reads in dB.
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
        legend_format(ramp, 1, low_label=f"{low_db:.1f} dB", high_label=f"{high_db:.1f} dB")
        shader = QgsRasterShader()
        shader.setRasterShaderFunction(ramp)
        layer.setRenderer(QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader))
        layer.triggerRepaint()
    return apply


def tie_points(layer):
    """Tie points by whether refinement used them: used in green, rejected in red, with a legend."""
    from qgis.core import QgsCategorizedSymbolRenderer, QgsMarkerSymbol, QgsRendererCategory
    categories = []
    for value, colour, label in ((1, "#1a9641", "used"), (0, "#d7191c", "rejected as inconsistent")):
        symbol = QgsMarkerSymbol.createSimple({"name": "circle", "color": colour, "size": "1.6",
                                               "outline_style": "no"})
        categories.append(QgsRendererCategory(value, symbol, label))
    layer.setRenderer(QgsCategorizedSymbolRenderer("used", categories))
    layer.triggerRepaint()


def quality(layer):
    """The quality layer as classes with a legend: measured cells faint green (the DEM shows through),
    filled yellow, rejected as inconsistent red, layover purple, shadow dark grey, no data clear."""
    from qgis.core import QgsPalettedRasterRenderer

    from ..core.fusion import QUALITY
    classes = [QgsPalettedRasterRenderer.Class(value, QColor(*QUALITY_COLOURS[value]), name)
               for value, name in QUALITY.items() if value]
    classes.append(QgsPalettedRasterRenderer.Class(0, QColor(*QUALITY_COLOURS[0]), QUALITY[0]))
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


def certainty(layer):
    """Draw a match raster by its certainty (band 3), 0 to 1 on the viridis ramp."""
    ramp = QgsColorRampShader(0.0, 1.0, QgsStyle.defaultStyle().colorRamp("Viridis"))
    ramp.classifyColorRamp(11)
    legend_format(ramp, 1, low_label="certainty 0", high_label="1")
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


def elevation_style(layer, kind):
    """The kind's .qml (dem, error, uncertainty, count), its ramp stretched to the data."""
    layer.loadNamedStyle(str(STYLES / f"{kind}.qml"))
    stretch_ramp(layer, *LIMITS[kind](layer.source()), *LEGEND[kind])


def stretch_ramp(layer, low, high, digits=1, suffix=""):
    """Map the pseudocolour ramp of ``layer`` linearly onto low..high (labels and legend in data
    units, ``digits`` decimals)."""
    renderer = layer.renderer()
    ramp = renderer.shader().rasterShaderFunction()
    old_low, old_high = ramp.minimumValue(), ramp.maximumValue()
    scale = (high - low) / (old_high - old_low)
    items = [QgsColorRampShader.ColorRampItem(low + (i.value - old_low) * scale, i.color,
                                              f"{low + (i.value - old_low) * scale:.{digits}f}{suffix}")
             for i in ramp.colorRampItemList()]
    ramp.setColorRampItemList(items)
    ramp.setMinimumValue(low)
    ramp.setMaximumValue(high)
    legend_format(ramp, digits, suffix)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    layer.triggerRepaint()


_RUNS = {}
_RUN_IDS = itertools.count(1)


def run_group(context, subject, step):
    """The layer group of the run that ``context`` belongs to (a model's steps share one context, so
    they share one group), named after its subject and steps: 'reference × secondary — matches
    (POC), DEM'. A context is recognised by a property on its temporary layer store, an object
    that lives and dies with it."""
    store = context.temporaryLayerStore()
    run = _RUNS.get(store.property("sarstereo/run"))
    if run is None:
        key = next(_RUN_IDS)
        store.setProperty("sarstereo/run", key)
        run = _RUNS[key] = RunGroup(subject)
    if step not in run.steps:
        run.steps.append(step)
    return run


class RunGroup:
    """The layer-tree group of one run, created when its first layer loads, its members kept in
    ORDER whatever order they load in."""

    def __init__(self, subject):
        self.subject, self.steps, self.group = subject, [], None

    @property
    def title(self):
        return f"{self.subject} — {', '.join(self.steps)}" if self.steps else self.subject

    def add(self, layer, kind, context, visible=None):
        project = context.project() or QgsProject.instance()
        root = project.layerTreeRoot()
        if self.group is None:
            name, n = self.title, 1
            while root.findGroup(name):
                n += 1
                name = f"{self.title} ({n})"
            self.group = root.insertGroup(0, name)
        stray = root.findLayer(layer.id())  # where Processing put it (the tree's insertion point)
        if stray is None:
            project.addMapLayer(layer, False)
        order = ORDER.index(kind)
        children = self.group.children()
        # before the first member that belongs lower; nodes not placed yet (strays) do not count
        at = next((i for i, child in enumerate(children)
                   if child.customProperty("sarstereo/order") is not None
                   and int(child.customProperty("sarstereo/order")) > order), len(children))
        inserted = self.group.insertLayer(at, layer)
        inserted.setCustomProperty("sarstereo/order", order)
        inserted.setItemVisibilityChecked(kind in VISIBLE if visible is None else visible)
        if stray is not None:
            stray.parent().removeChildNode(stray)
