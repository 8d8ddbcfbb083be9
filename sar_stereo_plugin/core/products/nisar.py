"""NISAR RSLC HDF5: the current layout (``science/LSAR/RSLC``) and the older one (``.../SLC``).

Zero-Doppler products: the model is a :class:`.sensor.SensorModel` on the product's uniform
zero-Doppler time and slant-range axes, with its orbit's state vectors.
"""

import re
from datetime import datetime

import numpy as np

from ..errors import RasterError, SarStereoError, SensorModelError, located
from ..sensor import SCHEMA, SensorModel
from .base import SPEED_OF_LIGHT, Product, ProductImage
from .files import image_writer
from .orbits import densify

_NISAR_ROOTS = ("science/LSAR", "science/SSAR")
_PRODUCT_GROUPS = ("RSLC", "SLC")  # current layout first
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SUBDATASET = re.compile(r'^HDF5:"?(?P<path>[^"]+)"?://?(?P<dataset>.+/frequency(?P<freq>[A-Z])/(?P<pol>[A-Z]{2}))$')


def is_hdf5(path):
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


def is_nisar(path):
    """Whether an HDF5 file holds a NISAR product group (damaged files count: the reader says what broke)."""
    with _open_h5(path) as h5:
        try:
            return any(root in h5 for root in _NISAR_ROOTS)
        except Exception:  # h5py reports damage as anything from KeyError to RuntimeError
            return True


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
    return datetime.fromisoformat(f"{match.group(1)}T{match.group(2)[:15]}")  # microseconds at most


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
        raise SensorModelError(located(source, "science/LSAR",
                                       "not a NISAR product (no science/LSAR or science/SSAR group)"))
    group = next((f"{root}/{g}" for g in _PRODUCT_GROUPS if f"{root}/{g}" in h5), f"{root}/{_PRODUCT_GROUPS[0]}")
    swaths, orbit = f"{group}/swaths", f"{group}/metadata/orbit"
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
    o_time, o_pos, o_vel = densify(np.asarray(otime[()], dtype=np.float64) + shift,
                                   np.asarray(get(f"{orbit}/position")[()], dtype=np.float64),
                                   np.asarray(get(f"{orbit}/velocity")[()], dtype=np.float64))
    doc = {
        "schema": SCHEMA,
        "wavelength_m": SPEED_OF_LIGHT / fc,
        "look_side": look,
        "reference_epoch": t_epoch.isoformat() + "Z",
        "orbit": {"time_s": o_time.tolist(), "position_m": o_pos.tolist(), "velocity_m_s": o_vel.tolist()},
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
            write(np.abs(read_rows(h5, dataset, row0, block_rows, h5_path)), row0)
    return model


def read_rows(h5, dataset, row0, rows, source):
    """Rows of an RSLC image as complex64, whatever its storage (complex64, or NISAR's pairs of
    float16 that numpy has no complex type for)."""
    ds = h5[dataset]
    try:
        kind = ds.id.get_type()
        names = [kind.get_member_name(i) for i in range(kind.get_nmembers())] if hasattr(kind, "get_nmembers") else []
        if names[:2] == [b"r", b"i"]:
            size = kind.get_member_type(0).get_size()
            pair = np.dtype([("r", f"<f{size}"), ("i", f"<f{size}")])
            data = ds.astype(pair)[row0:row0 + rows]
            return data["r"].astype(np.float32) + 1j * data["i"].astype(np.float32)
        return ds[row0:row0 + rows]
    except (OSError, RuntimeError) as exc:
        raise RasterError(f"{source}: image {dataset} cannot be read; the file is damaged ({exc})") from None


def open_nisar(path):
    """The :class:`Product` of an RSLC file: one image per frequency and polarisation (``A/HH``)."""
    with _open_h5(path) as h5:
        root = next((r for r in _NISAR_ROOTS if r in h5), None)
        group = root and next((f"{root}/{g}/swaths" for g in _PRODUCT_GROUPS if f"{root}/{g}/swaths" in h5), None)
        if group is None:
            read_nisar_rslc(path)  # raises the error naming what is missing
        frequencies = sorted(k[len("frequency"):] for k in h5[group] if k.startswith("frequency"))
        images = []
        for freq in frequencies:
            listed = f"{group}/frequency{freq}/listOfPolarizations"
            pols = [_text(p) for p in np.atleast_1d(h5[listed][()])] if listed in h5 else []
            for pol in pols:
                if f"{group}/frequency{freq}/{pol}" in h5:
                    model, dataset = read_nisar_rslc(path, freq, pol)
                    images.append(ProductImage(f"{freq}/{pol}", model, _reader(path, dataset),
                                               description=f"frequency {freq}, {pol}"))
    if not images:
        raise SensorModelError(located(str(path), group, "holds no image (frequency*/<polarisation>)"))
    return Product(path, "NISAR RSLC", images)


def _reader(path, dataset):
    def read(row0, rows):
        with _open_h5(path) as h5:
            return read_rows(h5, dataset, row0, rows, path)
    return read


