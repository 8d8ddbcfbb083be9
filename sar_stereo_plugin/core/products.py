"""Where sensor models come from and go to.

A model is found, in this order, embedded in a GeoTIFF (metadata item ``SARSTEREO_SENSOR``), in
a sidecar ``<image stem>.sensor.json`` beside the image, or in a NISAR RSLC HDF5 product.
Writing a model does both: it embeds the JSON and writes the sidecar.
"""

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from .errors import SensorModelError, located
from .raster import SENSOR_ITEM, gcp_grid, read_metadata_item, write_geotiff
from .sensor import SCHEMA, SensorModel

SPEED_OF_LIGHT = 299792458.0
_NISAR_ROOTS = ("science/LSAR", "science/SSAR")


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
    if not path.exists():
        raise SensorModelError(f"{path}: file not found")
    if _is_hdf5(path):
        return read_nisar_rslc(path, frequency, polarization)[0]
    embedded = read_metadata_item(path, SENSOR_ITEM)
    if embedded:
        return SensorModel.from_json(json.loads(embedded), source=f"{path} (metadata {SENSOR_ITEM})")
    sidecar = sidecar_path(path)
    if sidecar.exists():
        return SensorModel.from_json(sidecar)
    raise SensorModelError(
        f"{path}: no sensor model found: neither a GeoTIFF metadata item {SENSOR_ITEM}, nor a sidecar "
        f"{sidecar.name}, nor a NISAR RSLC product; give the model as a {SCHEMA} JSON file")


def write_sensor_model(image_path, model):
    """Embed the model into an existing GeoTIFF and write its sidecar JSON."""
    from osgeo import gdal
    ds = gdal.Open(str(image_path), gdal.GA_Update)
    ds.SetMetadataItem(SENSOR_ITEM, json.dumps(model.to_dict()))
    ds = None
    sidecar_path(image_path).write_text(model.to_json(), encoding="utf-8")


def write_image(path, amplitude, model, metadata=None):
    """Write a float32 amplitude GeoTIFF with the model embedded, as sidecar, and GCPs."""
    meta = {SENSOR_ITEM: json.dumps(model.to_dict()), **(metadata or {})}
    write_geotiff(path, amplitude, metadata=meta, band_names=("amplitude",), gcps=gcp_grid(model))
    sidecar_path(path).write_text(model.to_json(), encoding="utf-8")


# ---------------------------------------------------------------- NISAR RSLC
def _is_hdf5(path):
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def _epoch(units, source, field):
    match = re.match(r"seconds since (\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(\.\d+)?)", units)
    if not match:
        raise SensorModelError(located(source, field, f"units {units!r} are not 'seconds since <UTC time>'"))
    return datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}")


def read_nisar_rslc(path, frequency="A", polarization=None):
    """(SensorModel, h5 dataset path of the chosen image) from a NISAR RSLC HDF5 product."""
    import h5py
    source = str(path)
    with h5py.File(path, "r") as h5:
        root = next((r for r in _NISAR_ROOTS if r in h5), None)
        if root is None:
            raise SensorModelError(located(source, "science/LSAR", "not a NISAR product (no science/LSAR or science/SSAR group)"))
        swaths, orbit = f"{root}/SLC/swaths", f"{root}/SLC/metadata/orbit"
        freq = f"{swaths}/frequency{frequency}"

        def get(name):
            if name not in h5:
                raise SensorModelError(located(source, name, "is missing from the RSLC product"))
            return h5[name]

        pols = [p.decode() for p in get(f"{freq}/listOfPolarizations")[()]]
        pol = polarization or pols[0]
        if pol not in pols:
            raise SensorModelError(located(source, f"{freq}/listOfPolarizations",
                                           f"polarization {pol!r} not present; choose one of {pols}"))
        zdt = get(f"{swaths}/zeroDopplerTime")
        t_epoch = _epoch(zdt.attrs["units"].decode(), source, zdt.name)
        times = zdt[()]
        ranges = get(f"{freq}/slantRange")[()]
        otime = get(f"{orbit}/time")
        o_epoch = _epoch(otime.attrs["units"].decode(), source, otime.name)
        shift = (o_epoch - t_epoch).total_seconds()
        look = get(f"{root}/identification/lookDirection")[()].decode().strip().lower()
        fc = float(get(f"{freq}/processedCenterFrequency")[()])
        shape = get(f"{freq}/{pol}").shape
        for name, arr in ((zdt.name, times), (f"{freq}/slantRange", ranges)):
            steps = np.diff(arr)
            if steps.size and np.ptp(steps) > 1e-6 * abs(steps.mean()):
                raise SensorModelError(located(source, name, "is not uniformly spaced; resample the product first"))
        doc = {
            "schema": SCHEMA,
            "wavelength_m": SPEED_OF_LIGHT / fc,
            "look_side": look,
            "reference_epoch": t_epoch.isoformat() + "Z",
            "orbit": {"time_s": (otime[()] + shift).tolist(),
                      "position_m": get(f"{orbit}/position")[()].tolist(),
                      "velocity_m_s": get(f"{orbit}/velocity")[()].tolist()},
            "azimuth": {"first_line_time_s": float(times[0]),
                        "line_interval_s": float((times[-1] - times[0]) / (len(times) - 1))},
            "range": {"first_sample_range_m": float(ranges[0]),
                      "sample_spacing_m": float((ranges[-1] - ranges[0]) / (len(ranges) - 1))},
            "doppler_centroid_hz": 0.0,  # RSLC products are focused to zero-Doppler geometry
            "shape": {"rows": int(shape[0]), "cols": int(shape[1])},
        }
    return SensorModel.from_json(doc, source=f"{source} (frequency {frequency}, {pol})"), f"{freq}/{pol}"


def nisar_to_geotiff(h5_path, out_path, frequency="A", polarization=None):
    """Convert an RSLC image to a float32 amplitude GeoTIFF that QGIS reads, model embedded."""
    import h5py
    model, dataset = read_nisar_rslc(h5_path, frequency, polarization)
    with h5py.File(h5_path, "r") as h5:
        amplitude = np.abs(h5[dataset][()]).astype(np.float32)
    write_image(out_path, amplitude, model, metadata={"SARSTEREO_SOURCE": f"{h5_path}:{dataset}"})
    return model
