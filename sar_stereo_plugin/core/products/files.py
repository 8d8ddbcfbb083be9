"""Sensor models beside and inside our own images: the sidecar, the embedded copy, the writers."""

import json
from contextlib import contextmanager
from pathlib import Path

from ..atomic import atomic_file, atomic_outputs
from ..errors import RasterError, SensorModelError
from ..inputs import parse_json
from ..raster import SECONDARY_SENSOR_ITEM, SENSOR_ITEM, gcp_grid, geotiff_writer, open_raster
from ..sensor import SensorModel


def sidecar_path(image_path):
    return Path(image_path).with_suffix(".sensor.json")


def model_from_text(text, source):
    """A sensor model (either kind) from its JSON text; errors name ``source``."""
    return SensorModel.from_json(parse_json(text, source), source=source)


def write_sensor_model(image_path, model):
    """Embed the model into an existing GeoTIFF and write its sidecar JSON."""
    from osgeo import gdal
    try:
        ds = gdal.OpenEx(str(image_path), gdal.OF_RASTER | gdal.OF_UPDATE)
    except RuntimeError as exc:
        raise RasterError(f"{image_path}: cannot be opened for update to embed the sensor model ({exc})") from None
    ds.SetMetadataItem(SENSOR_ITEM, json.dumps(model.to_dict()))
    ds = None
    with atomic_file(sidecar_path(image_path)) as tmp:
        tmp.write_text(model.to_json(), encoding="utf-8")


@contextmanager
def image_writer(path, model, metadata=None, gcps=None, sidecar=None):
    """Yield ``write(amplitude_rows, row0)`` filling a float32 amplitude GeoTIFF of the model's
    size, with the model embedded, GCPs (``raster.gcp_grid`` at height 0 unless given) and its
    sidecar (at ``sidecar``, default :func:`sidecar_path`); both appear together once the image is
    complete."""
    meta = {SENSOR_ITEM: json.dumps(model.to_dict()), **(metadata or {})}
    with atomic_outputs(path, sidecar or sidecar_path(path)) as (image, sidecar):
        with geotiff_writer(image, model.rows, model.cols, metadata=meta, band_names=("amplitude",),
                            gcps=gcp_grid(model) if gcps is None else gcps) as write:
            yield write
        sidecar.write_text(model.to_json(), encoding="utf-8")


def write_image(path, amplitude, model, metadata=None, gcps=None, sidecar=None):
    """Write a whole amplitude image; see :func:`image_writer`."""
    with image_writer(path, model, metadata, gcps, sidecar) as write:
        write(amplitude)


def read_pair_models(path):
    """(reference, secondary) sensor models embedded in a match raster or a simulator ground
    truth, with a message naming the missing item otherwise."""
    ds = open_raster(path, "MATCHES")
    models = []
    for item in (SENSOR_ITEM, SECONDARY_SENSOR_ITEM):
        text = ds.GetMetadataItem(item)
        if not text:
            raise SensorModelError(f"{path}: field '{item}': the raster does not embed both sensor models; "
                                   "give a match raster written by sarstereo:matchpair or a simulator ground truth")
        models.append(model_from_text(text, f"{path} (metadata {item})"))
    return tuple(models)
