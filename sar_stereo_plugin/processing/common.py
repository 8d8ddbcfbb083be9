"""What every algorithm shares: core errors as Processing errors, sensor models from parameters."""

from contextlib import contextmanager

from qgis.core import QgsProcessingException

from ..core.errors import SarStereoError

WEIGHTS_SETTING = "SARSTEREO_WEIGHTS_DIR"  # the provider's setting: a folder of matcher weights


@contextmanager
def user_errors():
    """Turn core errors into QgsProcessingException with the same, actionable message."""
    try:
        yield
    except SarStereoError as exc:
        raise QgsProcessingException(str(exc)) from exc


def layer_path(layer):
    """File path (or GDAL dataset name, e.g. an HDF5 subdataset) behind a raster layer."""
    return layer.dataProvider().dataSourceUri() if layer.dataProvider() else layer.source()


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
