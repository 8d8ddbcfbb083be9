"""Import one image of a SAR product as a detected amplitude GeoTIFF in our pixel convention.

The image streams through in blocks of rows: each block is read in our convention (the product's
reader transposes and flips it), multilooked (intensity averaged over ``looks_azimuth`` x
``looks_range`` pixels, amplitude = its square root; a partial block at the end is dropped) and
written through the atomic image writer, with the sensor model -- changed consistently by the
multilook -- embedded and in the sidecar, and GCPs at the scene height.
"""

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..atomic import SIDECAR, check_outputs
from ..errors import ImportCanceled, SettingsError, located
from ..progress import Progress
from ..raster import gcp_grid
from .files import image_writer

IMPORT_ITEM = "SARSTEREO_IMPORT"
BLOCK_PIXELS = 1 << 22  # source pixels per block (complex64: 32 MiB)


@dataclass
class ImportResult:
    """What :func:`import_product` wrote."""

    path: str
    product: str
    family: str
    image: str
    rows: int
    cols: int
    looks_azimuth: int
    looks_range: int
    seconds: float
    model: object = None

    def to_dict(self):
        return {k: v for k, v in asdict(self).items() if k != "model"}


def multilook_model(model, looks_azimuth, looks_range):
    """The model of ``model``'s image averaged over blocks of looks; the remainder dropped. Row r
    of the result is the mean of rows ``la r .. la r + la - 1``: its centre, ``la r + (la - 1) / 2``."""
    la, lr = int(looks_azimuth), int(looks_range)
    if la == 1 and lr == 1:
        return model
    if getattr(model, "kind", "zero_doppler") == "sicd":
        return model.multilooked(la, lr)
    return replace(model, rows=model.rows // la, cols=model.cols // lr,
                   first_line_time_s=model.first_line_time_s + 0.5 * (la - 1) * model.line_interval_s,
                   line_interval_s=la * model.line_interval_s,
                   first_sample_range_m=model.first_sample_range_m + 0.5 * (lr - 1) * model.sample_spacing_m,
                   sample_spacing_m=lr * model.sample_spacing_m)


def _looks(value, name, size):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= size:
        raise SettingsError(located("import", name, f"{value!r}; give a whole number of looks from 1 to {size}"))
    return int(value)


def import_product(product, output, image=None, looks_azimuth=1, looks_range=1, *, progress=None,
                   is_canceled=None, block_pixels=BLOCK_PIXELS):
    """Write image ``image`` of ``product`` (a path, or an open :class:`.base.Product`) to ``output``.

    ``image``: the image's name (or index) where the product holds several (swaths, bursts,
    polarisations); the error lists them otherwise. ``progress(fraction)``/``is_canceled()``:
    optional callables, checked per block; :class:`ImportCanceled` leaves nothing behind.
    """
    from . import open_product
    start = time.perf_counter()
    check_outputs({"OUTPUT": output, "OUTPUT (its sensor-model sidecar)": Path(output).with_suffix(SIDECAR)},
                  {"INPUT": product if isinstance(product, (str, bytes, Path)) else getattr(product, "path", None)})
    report = Progress(progress, is_canceled, ImportCanceled, "import canceled; no output was written")
    owned = isinstance(product, (str, bytes)) or hasattr(product, "__fspath__")
    prod = open_product(product) if owned else product
    try:
        source = prod.image(image)
        model = source.model
        la = _looks(looks_azimuth, "LOOKS_AZIMUTH", model.rows)
        lr = _looks(looks_range, "LOOKS_RANGE", model.cols)
        out_model = multilook_model(model, la, lr)
        meta = {"SARSTEREO_SOURCE": f"{prod.path}:{source.name}",
                IMPORT_ITEM: json.dumps({"product": prod.path, "family": prod.family, "image": source.name,
                                         "looks_azimuth": la, "looks_range": lr})}
        report.check()
        gcps = gcp_grid(out_model, height=source.scene_height)
        step = max(1, block_pixels // max(1, model.cols * la)) * la  # source rows per block, whole looks
        with image_writer(output, out_model, meta, gcps) as write:
            for row0 in range(0, out_model.rows * la, step):
                rows = min(step, out_model.rows * la - row0)
                write(_detect(source.read(row0, rows), la, lr, out_model.cols), row0 // la)
                report((row0 + rows) / (out_model.rows * la))
        report.done()
    finally:
        if owned:
            prod.close()
    return ImportResult(str(output), prod.path, prod.family, source.name, out_model.rows, out_model.cols, la, lr,
                        time.perf_counter() - start, out_model)


def _detect(block, la, lr, cols):
    """Amplitude of a block: sqrt of the intensity averaged over la x lr looks (NaN where any is)."""
    block = block[:, :cols * lr]
    power = block.real.astype(np.float32) ** 2
    if np.iscomplexobj(block):
        power += block.imag.astype(np.float32) ** 2
    if la > 1 or lr > 1:
        power = power.reshape(block.shape[0] // la, la, cols, lr).mean(axis=(1, 3))
    return np.sqrt(power)
