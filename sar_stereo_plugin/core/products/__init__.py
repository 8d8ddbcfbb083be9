"""Where sensor models and images come from and go to.

A model is found, in this order: in a NISAR RSLC HDF5 product, embedded in a GeoTIFF (metadata item
``SARSTEREO_SENSOR``), in a sidecar ``<image stem>.sensor.json``, in a sensor-model JSON file, or in
a SAR product a reader here understands (:data:`.base.SUPPORTED_FORMATS`: SICD NITF, Capella,
TerraSAR-X, COSMO-SkyMed, RADARSAT-2, RCM, ICEYE, Sentinel-1, NISAR), one module per family. Every
product gives its images in our pixel convention (rows azimuth, cols range) with their models;
:func:`.importer.import_product` turns one into a GeoTIFF the rest of the plugin reads. Writing a
model embeds the JSON and writes the sidecar.
"""

from pathlib import Path

from ..errors import RasterError, SensorModelError, located
from ..inputs import read_text, regular
from ..raster import SENSOR_ITEM, read_metadata_item
from ..sensor import SCHEMA
from .base import SPEED_OF_LIGHT, SUPPORTED_FORMATS, Product, ProductImage, supported
from .files import image_writer, model_from_text, read_pair_models, sidecar_path, write_image, write_sensor_model
from .nisar import HDF5_SUBDATASET, is_hdf5, is_nisar, nisar_to_geotiff, open_nisar, read_nisar_rslc

__all__ = ["read_sensor_model", "write_sensor_model", "sidecar_path", "read_pair_models", "image_writer",
           "write_image", "nisar_to_geotiff", "read_nisar_rslc", "open_product", "Product", "ProductImage",
           "SUPPORTED_FORMATS", "SPEED_OF_LIGHT"]

_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def read_sensor_model(path, frequency="A", polarization=None, image=None):
    """The sensor model of an image or product (see the module doc).

    ``path`` may also be a GDAL HDF5 subdataset name of an RSLC image, as QGIS gives it, e.g.
    ``HDF5:"file.h5"://science/LSAR/SLC/swaths/frequencyA/HH``; frequency and polarisation then
    come from it. ``image``: which image of a multi-image product (see :meth:`Product.image`);
    without it a product whose images differ in geometry (bursts, swaths) is an error listing them.
    """
    sub = HDF5_SUBDATASET.match(str(path))
    if sub:
        path, frequency, polarization = sub.group("path"), sub.group("freq"), sub.group("pol")
    path = Path(path)
    if not path.exists():
        raise SensorModelError(f"{path}: file not found")
    regular(path, "image")
    if path.is_file():
        if is_hdf5(path) and image is None and is_nisar(path):
            return read_nisar_rslc(path, frequency, polarization)[0]
        embedded = read_metadata_item(path, SENSOR_ITEM)
        if embedded:
            return model_from_text(embedded, f"{path} (metadata {SENSOR_ITEM})")
        sidecar = sidecar_path(path)
        if sidecar.exists():
            return model_from_text(_read_text(sidecar), str(sidecar))
    opener = _opener(path)
    if opener is None:
        if path.is_dir():
            raise SensorModelError(f"{path}: not a file, nor a product folder of a supported format ({supported()})")
        raise SensorModelError(
            f"{path}: no sensor model found: neither a GeoTIFF metadata item {SENSOR_ITEM}, nor a sidecar "
            f"{sidecar_path(path).name}, nor a supported SAR product ({supported()}); give the model as a {SCHEMA} "
            "JSON file")
    with opener(path) as product:
        return product.model(image)


def open_product(path):
    """The :class:`Product` of a file or folder, or the error listing the supported formats."""
    path = Path(path)
    if not path.exists():
        raise SensorModelError(f"{path}: file not found")
    regular(path, "INPUT")
    opener = _opener(path)
    if opener is None:
        raise SensorModelError(located(str(path), "INPUT", f"not a supported SAR product; supported: {supported()}"))
    return opener(path)


def _opener(path):
    """The function opening ``path`` as a product, by its signature; None where nothing fits."""
    from . import capella, sentinel1
    if path.is_dir():
        if (path / "manifest.safe").is_file():
            return sentinel1.open_safe
        if any(path.glob("*.xml")) or (path / "metadata" / "product.xml").is_file():
            return _sarpy  # TerraSAR-X, RADARSAT-2, RCM folders
        return None
    if path.name.lower() == "manifest.safe":
        return sentinel1.open_safe
    if is_hdf5(path):
        return open_nisar if is_nisar(path) else _hdf5
    head = _head(path)
    if head.startswith(b"NITF") or head.startswith(b"NSIF"):
        return _sicd_nitf
    if head.lstrip()[:1] == b"{":
        return capella.open_json if capella.is_capella_json(path) else _model_json
    if head[:4] in _TIFF:
        if capella.is_capella_tiff(path):
            return capella.open_tiff
        if sentinel1.safe_of(path) is not None:
            return sentinel1.open_safe
    if read_metadata_item(path, SENSOR_ITEM) or sidecar_path(path).exists():
        return _own_image
    if path.suffix.lower() == ".xml":
        return _sarpy
    return None


def _sarpy(path):
    from .sicd import open_sarpy
    return open_sarpy(path)


def _hdf5(path):
    from .sicd import open_sarpy
    try:
        return open_sarpy(path, "COSMO-SkyMed or ICEYE HDF5")
    except RasterError as exc:
        raise SensorModelError(located(str(path), "science/LSAR", f"not a NISAR product (no science/LSAR or "
                                                                  f"science/SSAR group), nor one sarpy reads: {exc}")
                               ) from None


def _sicd_nitf(path):
    from .sicd import open_sarpy
    return open_sarpy(path, "a SICD NITF")


def _model_json(path):
    """A bare sensor-model JSON: a product of one image without pixels."""
    model = model_from_text(_read_text(path), str(path))
    return Product(path, "sensor model", [ProductImage(path.stem, model)])


def _own_image(path):
    """A raster with our sensor model (embedded or sidecar): a product of one image, band 1."""
    from ..raster import open_raster
    model = read_sensor_model(path)

    def read(row0, rows):
        ds = open_raster(path, "INPUT")  # held while its band is read
        try:
            return ds.GetRasterBand(1).ReadAsArray(0, row0, model.cols, rows)
        except RuntimeError as exc:
            raise RasterError(f"{path}: cannot read rows {row0}..{row0 + rows - 1} ({exc})") from None
    ds = open_raster(path, "INPUT")
    if (ds.RasterYSize, ds.RasterXSize) != (model.rows, model.cols):
        raise SensorModelError(located(str(path), "shape", f"the image is {ds.RasterYSize} x {ds.RasterXSize} pixels "
                                                           f"but its sensor model says {model.rows} x {model.cols}"))
    return Product(path, "image with sensor model", [ProductImage(path.stem, model, read)])


def _head(path, size=64):
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError as exc:
        raise SensorModelError(f"{path}: cannot be read ({exc.strerror})") from None


def _read_text(path):
    return read_text(path, "sensor model")
