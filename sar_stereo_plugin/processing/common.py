"""What every algorithm shares: core errors as Processing errors, sensor models from parameters,
names and help text, number formats, reports kept beyond the session."""

import html
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
)
from qgis.PyQt.QtGui import QIcon

from ..core.errors import SarStereoError

WEIGHTS_SETTING = "SARSTEREO_WEIGHTS_DIR"  # the provider's setting: a folder of matcher weights
PROVIDER_NAME = "SAR stereo radargrammetry"
ICONS = Path(__file__).resolve().parent / "icons"
# algorithm id -> display name: the one place both the Toolbox and the help texts take them from
TITLES = {"installdeps": "Install deep-learning matchers", "importproduct": "Import SAR product",
          "simulatepair": "Simulate SAR stereo pair",
          "inspectpair": "Inspect stereo pair", "refinepair": "Refine sensor models", "matchpair": "Match stereo pair",
          "evaluatematches": "Evaluate matches against ground truth", "generateelevation": "Generate elevation (DEM)",
          "evaluatedem": "Evaluate DEM against a reference DEM", "builddataset": "Build training dataset",
          "finetune": "Fine-tune a matcher"}
# Toolbox groups sort by name: numbered in the order of the work
GROUPS = {"setup": "0 Setup", "geometry": "1 Pair geometry", "matching": "2 Matching", "elevation": "3 Elevation",
          "workflows": "4 Complete workflow", "learning": "5 Learning", "simulation": "6 Simulation"}
MENU = f"Plugins > {PROVIDER_NAME} > {TITLES['installdeps']}"


def title(alg_id):
    """'Display name' (sarstereo:id): how help texts name another algorithm."""
    return f"'{TITLES[alg_id]}' (sarstereo:{alg_id})"


class Algorithm:
    """Mixin of the plugin's algorithms: name, group, icon and help from ALG_ID, GROUP_ID, HELP
    (paragraphs of plain text, escaped here) and ADVANCED (parameter key -> explanation)."""

    ALG_ID, GROUP_ID, HELP, ADVANCED = "", "", (), {}

    def name(self):
        return self.ALG_ID

    def displayName(self):  # noqa: N802 - QGIS API
        return TITLES[self.ALG_ID]

    def group(self):
        return GROUPS[self.GROUP_ID]

    def groupId(self):  # noqa: N802 - QGIS API
        return self.GROUP_ID

    def icon(self):
        return QIcon(self.svgIconPath())

    def svgIconPath(self):  # noqa: N802 - QGIS API
        return str(ICONS / f"{self.ALG_ID}.svg")

    def createInstance(self):  # noqa: N802 - QGIS API
        return type(self)()

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return help_html(self.HELP, {key: (self.parameterDefinition(key).description(), text)
                                     for key, text in self.ADVANCED.items() if self.parameterDefinition(key)})

    def validateInputCrs(self, parameters, context):  # noqa: N802 - QGIS API
        """Always true: slant-range images carry only a CRS from their GCPs, and every algorithm
        reprojects what it reads itself, so the dialog's "Unmatching CRS's" question would mislead."""
        return True

    def advanced(self, *params):
        """Add parameters in the dialog's Advanced section (each explained in ADVANCED)."""
        for param in params:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)

    # ---- a stereo pair: REFERENCE and SECONDARY images, each with an optional sensor-model file
    REFERENCE, SECONDARY = "REFERENCE", "SECONDARY"
    REFERENCE_MODEL, SECONDARY_MODEL = "REFERENCE_MODEL", "SECONDARY_MODEL"

    def add_pair(self, advanced_models=False):
        """The pair's parameters (the model files in the Advanced section if ``advanced_models``)."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, "Reference SAR image (slant range)"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.SECONDARY, "Secondary SAR image (slant range)"))
        models = [QgsProcessingParameterFile(key, f"Sensor model of the {role} image (JSON, instead of the one "
                                                  "found with the image)", extension="json", optional=True)
                  for key, role in ((self.REFERENCE_MODEL, "reference"), (self.SECONDARY_MODEL, "secondary"))]
        if advanced_models:
            self.advanced(*models)
        else:
            for param in models:
                self.addParameter(param)

    def pair_paths(self, parameters, context):
        """{REFERENCE: path, SECONDARY: path} of the pair's images."""
        return {key: layer_path(self.parameterAsRasterLayer(parameters, key, context))
                for key in (self.REFERENCE, self.SECONDARY)}

    def pair_models(self, parameters, context, paths):
        """Both sensor models: the files given, else those found with the images (call inside
        :func:`user_errors`)."""
        return [load_model(paths[key], self.parameterAsFile(parameters, model_key, context) or None)
                for key, model_key in ((self.REFERENCE, self.REFERENCE_MODEL), (self.SECONDARY, self.SECONDARY_MODEL))]


def help_html(paragraphs, advanced=None):
    """Help text as HTML: escaped paragraphs, then the advanced parameters explained."""
    parts = [f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs]
    if advanced:
        items = "".join(f"<li><i>{html.escape(label, quote=False)}</i>: {html.escape(text, quote=False)}</li>"
                        for label, text in advanced.values())
        parts.append(f"<p><b>Advanced parameters</b></p><ul>{items}</ul>")
    return "".join(parts)


def decimals(param, places):
    """The number parameter ``param`` with a spin box of ``places`` decimals (QGIS shows six)."""
    param.setMetadata({**param.metadata(), "widget_wrapper": {"decimals": places}})
    return param


def number(value, digits=2, unit=""):
    """A number for the log: rounded, with its unit; 'n/a' for None."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{' ' + unit if unit else ''}"


@contextmanager
def user_errors():
    """Turn core errors into QgsProcessingException with the same, actionable message; an error
    the core did not foresee (a file the system cannot read or write, GDAL failing, memory running
    out) into one naming what failed, never a raw traceback."""
    try:
        yield
    except SarStereoError as exc:
        raise QgsProcessingException(str(exc)) from exc
    except OSError as exc:
        what = f"{exc.filename}: " if exc.filename else ""
        raise QgsProcessingException(f"{what}{exc.strerror or exc} ({type(exc).__name__}); nothing was written: "
                                     "check the file, its folder's permissions and the free disk space") from exc
    except MemoryError as exc:
        raise QgsProcessingException("not enough memory for this run; nothing was written: use smaller images, "
                                     "patches or batches") from exc
    except RuntimeError as exc:  # GDAL and PyTorch report their failures so
        raise QgsProcessingException(f"{type(exc).__name__}: {exc}; nothing was written") from exc


def layer_path(layer):
    """File path (or GDAL dataset name, e.g. an HDF5 subdataset) behind a raster layer."""
    return layer.dataProvider().dataSourceUri() if layer.dataProvider() else layer.source()


def layer_title(layer):
    """What a user calls a layer: its name in the project, else its file name without extension."""
    if layer is None:
        return ""
    name = layer.name()
    stem = Path(layer.source().split("|")[0]).stem
    return name if name and name != layer.source() else stem


def load_model(image_path, model_path=None):
    """Sensor model from an explicit JSON file, else found with the image (see core.products)."""
    from ..core.products import read_sensor_model
    from ..core.sensor import SensorModel
    if model_path:
        return SensorModel.from_json(model_path)
    return read_sensor_model(image_path)


def processing_config():
    """(ProcessingConfig, Setting) of QGIS's Processing plugin, or None where a bare PyQGIS script
    runs without it (the provider then has no settings page)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:
        return None
    return ProcessingConfig, Setting


def weights_folder():
    """The weights folder set in the provider's settings, or None."""
    config = processing_config()
    return (config[0].getSetting(WEIGHTS_SETTING) or None) if config else None


def optional_number(algorithm, parameters, key, context):
    """A numeric parameter's value, or None where the user left it empty."""
    if parameters.get(key) in (None, ""):
        return None
    return algorithm.parameterAsDouble(parameters, key, context)


def plugin_data(*parts):
    """A folder of the plugin's under the QGIS profile (created)."""
    folder = Path(QgsApplication.qgisSettingsDirPath()).joinpath("sar_stereo_plugin", *parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def deps_folder():
    """The folder of the plugin's deep-learning packages: SARSTEREO_DEPS_DIR, else
    <QGIS profile>/python/sar_stereo_plugin_deps."""
    from ..deps import default_folder
    return os.environ.get("SARSTEREO_DEPS_DIR") or str(default_folder(QgsApplication.qgisSettingsDirPath()))


def is_temporary(path):
    """Whether ``path`` lies in Processing's temporary folder (deleted when QGIS closes)."""
    try:
        return Path(path).resolve().is_relative_to(Path(QgsProcessingUtils.tempFolder()).resolve())
    except (OSError, ValueError):
        return False


def keep_report(report_json, run_name):
    """The HTML page of a report (self-contained: its figure is embedded), copied with its JSON and
    figure into the plugin's reports folder where the report is a temporary output (QGIS deletes
    those on exit); else where it is."""
    source = Path(report_json)
    page = source.with_suffix(".html")
    if not is_temporary(source):
        return str(page)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')} {''.join(c if c.isalnum() or c in ' -_' else '_' for c in run_name)}"
    folder = plugin_data("reports")
    for suffix in (".json", ".html", ".png"):
        if source.with_suffix(suffix).exists():
            shutil.copy2(source.with_suffix(suffix), folder / f"{stem}{suffix}")
    return str(folder / f"{stem}.html")


def source_title(path, context):
    """What a user calls the raster at ``path``: the name of a project layer reading it, else its
    file name without extension."""
    project = context.project()
    if project is not None:
        for layer in project.mapLayers().values():
            if layer.source() == str(path) or (layer.dataProvider() and layer_path(layer) == str(path)):
                return layer.name()
    return Path(str(path).split("|")[0]).stem


def pair_title(matches_path, context, fallback):
    """'reference × secondary' of a match raster (the image paths it embeds), else ``fallback``."""
    from osgeo import gdal

    from ..core.raster import REFERENCE_IMAGE_ITEM, SECONDARY_IMAGE_ITEM
    ds = gdal.Open(str(matches_path))
    paths = [ds.GetMetadataItem(item) if ds else None for item in (REFERENCE_IMAGE_ITEM, SECONDARY_IMAGE_ITEM)]
    if not all(paths):
        return fallback
    return " × ".join(source_title(p, context) for p in paths)


def lasting_folder(kind):
    """A new folder path for this dialog's results under <QGIS profile>/sar_stereo_plugin/<kind>/, named
    by the time (a Processing default: temporary folders are deleted when QGIS closes)."""
    return str(Path(QgsApplication.qgisSettingsDirPath()) / "sar_stereo_plugin" / kind / time.strftime("%Y%m%d-%H%M%S"))


def skip_loading(context, output):
    """Take ``output`` off the layers Processing loads when the run ends (an output not written)."""
    layers = context.layersToLoadOnCompletion()
    if output in layers:
        del layers[output]
        context.setLayersToLoadOnCompletion(layers)
