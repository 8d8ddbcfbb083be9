"""Where sensor models come from and go to.

A model is found, in this order, embedded in a GeoTIFF (metadata item ``SARSTEREO_SENSOR``), in
a sidecar ``<image stem>.sensor.json`` beside the image, or in a NISAR RSLC HDF5 product.
Writing a model does both: it embeds the JSON and writes the sidecar.
"""

import json
import re
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from .atomic import atomic_file, atomic_outputs
from .errors import RasterError, SarStereoError, SensorModelError, located
from .raster import SENSOR_ITEM, gcp_grid, geotiff_writer, read_metadata_item
from .sensor import SCHEMA, SensorModel

SPEED_OF_LIGHT = 299792458.0
_NISAR_ROOTS = ("science/LSAR", "science/SSAR")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def sidecar_path(image_path):
    return Path(image_path).with_suffix(".sensor.json")


_HDF5_SUBDATASET = re.compile(r'^HDF5:"?(?P<path>[^"]+)"?://?(?P<dataset>.+/frequency(?P<freq>[A-Z])/(?P<pol>[A-Z]{2}))$')


def read_sensor_model(path, frequency="A", polarization=None):
    """The sensor model of an image: embedded, sidecar, or NISAR RSLC HDF5 (see module doc).

    ``path`` may also be a GDAL HDF5 subdataset name of an RSLC image, as QGIS gives it, e.g.
    ``HDF5:"file.h5"://science/LSAR/SLC/swaths/frequencyA/HH``; frequency and polarisation then
    come from it.
    """
    sub = _HDF5_SUBDATASET.match(str(path))
    if sub:
        path, frequency, polarization = sub.group("path"), sub.group("freq"), sub.group("pol")
    path = Path(path)
    if not path.is_file():
        raise SensorModelError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    if _is_hdf5(path):
        return read_nisar_rslc(path, frequency, polarization)[0]
    embedded = read_metadata_item(path, SENSOR_ITEM)
    if embedded:
        source = f"{path} (metadata {SENSOR_ITEM})"
        try:
            doc = json.loads(embedded)
        except json.JSONDecodeError as exc:
            raise SensorModelError(f"{source}: not valid JSON ({exc.msg} at character {exc.pos})") from None
        return SensorModel.from_json(doc, source=source)
    sidecar = sidecar_path(path)
    if sidecar.exists():
        return SensorModel.from_json(sidecar)
    raise SensorModelError(
        f"{path}: no sensor model found: neither a GeoTIFF metadata item {SENSOR_ITEM}, nor a sidecar "
        f"{sidecar.name}, nor a NISAR RSLC product; give the model as a {SCHEMA} JSON file")


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


# ---------------------------------------------------------------- NISAR RSLC
def _is_hdf5(path):
    """HDF5 signature at offset 0 or at a user-block offset (512, 1024, 2048, ...)."""
    try:
        with open(path, "rb") as fh:
            for offset in (0, 512, 1024, 2048, 4096):
                fh.seek(offset)
                if fh.read(8) == _HDF5_SIGNATURE:
                    return True
    except OSError as exc:
        raise RasterError(f"{path}: cannot be read ({exc.strerror})") from None
    return False


def _text(value):
    """An HDF5 string (bytes, str, or a one-element array of either) as str."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else value
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _epoch(dataset, source):
    units = dataset.attrs.get("units")
    if units is None:
        raise SensorModelError(located(source, dataset.name, "has no 'units' attribute ('seconds since <UTC time>')"))
    units = _text(units)
    match = re.match(r"seconds since (\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(\.\d+)?)", units)
    if not match:
        raise SensorModelError(located(source, dataset.name, f"units {units!r} are not 'seconds since <UTC time>'"))
    return datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}")


def _open_h5(path):
    import h5py
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise RasterError(f"{path}: cannot be read as HDF5 (truncated or corrupt file?): {exc}") from None


def read_nisar_rslc(path, frequency="A", polarization=None):
    """(SensorModel, h5 dataset path of the chosen image) from a NISAR RSLC HDF5 product.

    Errors name the file and the HDF5 field: ``SensorModelError`` for missing or malformed
    metadata, ``RasterError`` where the file cannot be read at all (truncated, corrupt).
    """
    source = str(path)
    with _open_h5(path) as h5:
        try:
            return _read_rslc(h5, source, frequency, polarization)
        except SarStereoError:
            raise
        except (OSError, RuntimeError) as exc:  # h5py reports damaged data blocks this way
            raise RasterError(f"{source}: the HDF5 file is damaged and cannot be read ({exc})") from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise SensorModelError(
                f"{source}: not a readable NISAR RSLC product ({type(exc).__name__}: {exc})") from None


def _read_rslc(h5, source, frequency, polarization):
    import h5py
    root = next((r for r in _NISAR_ROOTS if r in h5), None)
    if root is None:
        raise SensorModelError(located(source, "science/LSAR", "not a NISAR product (no science/LSAR or science/SSAR group)"))
    swaths, orbit = f"{root}/SLC/swaths", f"{root}/SLC/metadata/orbit"
    freq = f"{swaths}/frequency{frequency}"

    def get(name):
        if name not in h5 or not isinstance(h5[name], h5py.Dataset):
            raise SensorModelError(located(source, name, "is missing from the RSLC product"))
        return h5[name]

    if freq not in h5:
        present = sorted(k[len("frequency"):] for k in h5[swaths] if k.startswith("frequency")) if swaths in h5 else []
        raise SensorModelError(located(source, freq, f"frequency {frequency!r} not present; choose one of {present}"))
    pols = [_text(p) for p in np.atleast_1d(get(f"{freq}/listOfPolarizations")[()])]
    pol = polarization or pols[0]
    if pol not in pols:
        raise SensorModelError(located(source, f"{freq}/listOfPolarizations",
                                       f"polarization {pol!r} not present; choose one of {pols}"))
    zdt = get(f"{swaths}/zeroDopplerTime")
    t_epoch = _epoch(zdt, source)
    times = np.asarray(zdt[()], dtype=np.float64)
    ranges = np.asarray(get(f"{freq}/slantRange")[()], dtype=np.float64)
    otime = get(f"{orbit}/time")
    shift = (_epoch(otime, source) - t_epoch).total_seconds()
    look = _text(get(f"{root}/identification/lookDirection")[()]).strip().lower()
    fc = float(get(f"{freq}/processedCenterFrequency")[()])
    shape = get(f"{freq}/{pol}").shape
    for name, arr in ((zdt.name, times), (f"{freq}/slantRange", ranges)):
        if arr.ndim != 1 or arr.size < 2:
            raise SensorModelError(located(source, name, f"expected a 1-D array of 2 or more values, got {arr.shape}"))
        steps = np.diff(arr)
        if np.ptp(steps) > 1e-6 * abs(steps.mean()):
            raise SensorModelError(located(source, name, "is not uniformly spaced; resample the product first"))
    if shape != (times.size, ranges.size):
        raise SensorModelError(located(source, f"{freq}/{pol}", f"image shape {shape} does not match "
                                       f"zeroDopplerTime ({times.size}) x slantRange ({ranges.size})"))
    if not fc > 0:
        raise SensorModelError(located(source, f"{freq}/processedCenterFrequency", f"must be positive, got {fc}"))
    doc = {
        "schema": SCHEMA,
        "wavelength_m": SPEED_OF_LIGHT / fc,
        "look_side": look,
        "reference_epoch": t_epoch.isoformat() + "Z",
        "orbit": {"time_s": (np.asarray(otime[()], dtype=np.float64) + shift).tolist(),
                  "position_m": np.asarray(get(f"{orbit}/position")[()], dtype=np.float64).tolist(),
                  "velocity_m_s": np.asarray(get(f"{orbit}/velocity")[()], dtype=np.float64).tolist()},
        "azimuth": {"first_line_time_s": float(times[0]),
                    "line_interval_s": float((times[-1] - times[0]) / (len(times) - 1))},
        "range": {"first_sample_range_m": float(ranges[0]),
                  "sample_spacing_m": float((ranges[-1] - ranges[0]) / (len(ranges) - 1))},
        "doppler_centroid_hz": 0.0,  # RSLC products are focused to zero-Doppler geometry
        "shape": {"rows": int(shape[0]), "cols": int(shape[1])},
    }
    return SensorModel.from_json(doc, source=f"{source} (frequency {frequency}, {pol})"), f"{freq}/{pol}"


def nisar_to_geotiff(h5_path, out_path, frequency="A", polarization=None, block_rows=1024):
    """Convert an RSLC image to a float32 amplitude GeoTIFF that QGIS reads, model embedded.

    The image streams through in blocks of ``block_rows`` lines: memory stays flat however
    large the product.
    """
    model, dataset = read_nisar_rslc(h5_path, frequency, polarization)
    with _open_h5(h5_path) as h5, image_writer(out_path, model,
                                               {"SARSTEREO_SOURCE": f"{h5_path}:{dataset}"}) as write:
        for row0 in range(0, model.rows, block_rows):
            try:
                data = h5[dataset][row0:row0 + block_rows]
            except (OSError, RuntimeError) as exc:
                raise RasterError(f"{h5_path}: image {dataset} cannot be read; the file is damaged ({exc})") from None
            if data.dtype.names and {"r", "i"} <= set(data.dtype.names):  # NISAR's complex32 pairs
                data = data["r"].astype(np.float32) + 1j * data["i"].astype(np.float32)
            write(np.abs(data), row0)
    return model


def read_pair_models(path):
    """(reference, secondary) sensor models embedded in a match raster or a simulator ground
    truth, with a message naming the missing item otherwise."""
    from .raster import SECONDARY_SENSOR_ITEM, open_raster
    ds = open_raster(path, "MATCHES")
    models = []
    for item in (SENSOR_ITEM, SECONDARY_SENSOR_ITEM):
        text = ds.GetMetadataItem(item)
        if not text:
            raise SensorModelError(f"{path}: field '{item}': the raster does not embed both sensor models; "
                                   "give a match raster written by sarstereo:matchpair or a simulator ground truth")
        source = f"{path} (metadata {item})"
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SensorModelError(f"{source}: not valid JSON ({exc.msg} at character {exc.pos})") from None
        models.append(SensorModel.from_json(doc, source=source))
    return tuple(models)
