"""What every product reader gives: a :class:`Product` holding named :class:`ProductImage` s, each
with its sensor model in our pixel convention (rows azimuth, cols range) and its pixels."""

import json

import numpy as np

from ..errors import SensorModelError

SPEED_OF_LIGHT = 299792458.0
SUPPORTED_FORMATS = (
    "SICD NITF (Capella, Umbra, ICEYE deliveries)",
    "Capella SLC GeoTIFF, or its *_extended.json alone",
    "TerraSAR-X / TanDEM-X / PAZ (product folder or its main XML)",
    "COSMO-SkyMed and ICEYE SLC HDF5",
    "RADARSAT-2 and RCM (product folder or product.xml)",
    "Sentinel-1 SLC (SAFE folder or its manifest.safe; TOPS per burst)",
    "NISAR RSLC HDF5 (current science/*SAR/RSLC and older SLC layouts)",
    "a GeoTIFF with a sarstereo sensor model (embedded or sidecar)",
)


def supported():
    return "; ".join(SUPPORTED_FORMATS)


class ProductImage:
    """One image of a product. ``read(row0, rows)`` gives rows ``row0 .. row0 + rows - 1`` in our
    convention (complex or real; NaN where the product marks samples invalid)."""

    def __init__(self, name, model, read=None, scene_height=0.0, description=""):
        self.name, self.model, self._read = name, model, read
        self.scene_height, self.description = float(scene_height), description

    def read(self, row0, rows):
        if self._read is None:
            raise SensorModelError(f"{self.model.source}: the product holds metadata only, no pixels of image "
                                   f"{self.name!r}; give the image file")
        data = np.asarray(self._read(int(row0), int(rows)))
        if data.shape != (rows, self.model.cols):
            raise SensorModelError(f"{self.model.source}: image {self.name!r} gave a {data.shape} block for rows "
                                   f"{row0}..{row0 + rows - 1}; expected {(rows, self.model.cols)}")
        return data


class Product:
    """A SAR product: its ``family`` and its images by name. Use it as a context manager."""

    def __init__(self, path, family, images, close=None):
        self.path, self.family, self.images = str(path), family, list(images)
        self._close = close

    @property
    def names(self):
        return [image.name for image in self.images]

    def image(self, name=None):
        """The image called ``name`` (case-insensitive; or its index); the only one without a name."""
        if name is None or str(name).strip() == "":
            if len(self.images) == 1:
                return self.images[0]
            raise SensorModelError(f"{self.path}: field 'IMAGE': the product holds {len(self.images)} images; "
                                   f"choose one of: {', '.join(self.names)}")
        key = str(name).strip().lower()
        for image in self.images:
            if image.name.lower() == key:
                return image
        if key.isdigit() and int(key) < len(self.images):
            return self.images[int(key)]
        raise SensorModelError(f"{self.path}: field 'IMAGE': no image {name!r} in this {self.family} product; "
                               f"choose one of: {', '.join(self.names)}")

    def model(self, name=None):
        """The model of image ``name``; without a name, the model all images share (polarisations of
        one acquisition), else the error listing them."""
        if name is None and len(self.images) > 1:
            docs = {json.dumps(image.model.to_dict(), sort_keys=True) for image in self.images}
            if len(docs) == 1:
                return self.images[0].model
        return self.image(name).model

    def close(self):
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
