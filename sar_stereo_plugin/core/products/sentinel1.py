"""Sentinel-1 SLC (SAFE): one image per swath, polarisation and, for TOPS (IW, EW), burst.

Read from the annotation XML alone (orbit state vectors, first line time, azimuth time interval,
slant-range time, range sampling rate, burst list): SLC products are focused to zero-Doppler
geometry, so every image is a :class:`.sensor.SensorModel`. A TOPS burst's lines start at its
``azimuthTime``; samples outside the burst's valid window (``firstValidSample`` /
``lastValidSample``) read as NaN. sarpy's Sentinel-1 reader is not used: it also needs the
annotation's noise and calibration files and fails where they are missing; the geometry needs
neither.
"""

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import RasterError, SensorModelError, located
from ..sensor import SCHEMA, SensorModel
from .base import SPEED_OF_LIGHT, Product, ProductImage


def safe_of(path):
    """The SAFE folder of a measurement TIFF inside it, else None."""
    path = Path(path)
    folder = path.parent.parent
    return folder if path.parent.name == "measurement" and (folder / "manifest.safe").is_file() else None


def open_safe(path):
    """The :class:`Product` of a SAFE folder (or its manifest.safe, or one measurement TIFF in it)."""
    path = Path(path)
    only = None
    if path.is_file():
        folder = safe_of(path) or path.parent
        only = path.stem if path.suffix.lower() in (".tif", ".tiff") else None
    else:
        folder = path
    annotations = sorted((folder / "annotation").glob("*.xml"))
    if only:
        annotations = [a for a in annotations if a.stem == only]
    if not annotations:
        raise SensorModelError(located(str(folder), "annotation", "holds no annotation XML (s1?-*-slc-*.xml); "
                                                                  "not a complete Sentinel-1 SLC product"))
    images = [image for xml in annotations for image in annotation_images(xml)]
    return Product(folder, "Sentinel-1", images)


def _time(text, source, field):
    try:
        return np.datetime64(text.strip().rstrip("Z"), "us")
    except (AttributeError, ValueError):
        raise SensorModelError(located(source, field, f"{text!r} is not an ISO 8601 UTC time")) from None


def _text(root, field, source):
    value = root.findtext(field)
    if value is None:
        raise SensorModelError(located(source, field, "is missing from the annotation"))
    return value


def _number(root, field, source):
    try:
        return float(_text(root, field, source))
    except ValueError:
        raise SensorModelError(located(source, field, "is not a number")) from None


def annotation_images(xml):
    """The images one annotation file describes: the whole swath (stripmap) or each burst (TOPS)."""
    source = str(xml)
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SensorModelError(f"{source}: not a readable annotation XML ({exc})") from None
    swath, pol = (_text(root, f"adsHeader/{k}", source).strip() for k in ("swath", "polarisation"))
    info = "imageAnnotation/imageInformation"
    first = _time(_text(root, f"{info}/productFirstLineUtcTime", source), source, f"{info}/productFirstLineUtcTime")
    epoch = first.astype("datetime64[s]")

    def seconds(stamp):
        return float((stamp - epoch) / np.timedelta64(1, "us")) * 1e-6

    orbits = root.findall("generalAnnotation/orbitList/orbit")
    if not orbits:
        raise SensorModelError(located(source, "generalAnnotation/orbitList", "holds no orbit state vectors"))
    vectors = [[_number(o, f"{kind}/{c}", source) for c in "xyz"] for kind in ("position", "velocity") for o in orbits]
    fs = _number(root, "generalAnnotation/productInformation/rangeSamplingRate", source)
    f0 = _number(root, "generalAnnotation/productInformation/radarFrequency", source)
    doc = {"schema": SCHEMA, "wavelength_m": SPEED_OF_LIGHT / f0,
           "look_side": "right", "reference_epoch": f"{epoch}Z",
           "orbit": {"time_s": [seconds(_time(o.findtext("time"), source, "orbit/time")) for o in orbits],
                     "position_m": vectors[:len(orbits)], "velocity_m_s": vectors[len(orbits):]},
           "azimuth": {"first_line_time_s": seconds(first),
                       "line_interval_s": _number(root, f"{info}/azimuthTimeInterval", source)},
           "range": {"first_sample_range_m": 0.5 * SPEED_OF_LIGHT * _number(root, f"{info}/slantRangeTime", source),
                     "sample_spacing_m": 0.5 * SPEED_OF_LIGHT / fs},
           "doppler_centroid_hz": 0.0,  # SLC images are focused to zero-Doppler geometry
           "shape": {"rows": int(_number(root, f"{info}/numberOfLines", source)),
                     "cols": int(_number(root, f"{info}/numberOfSamples", source))}}
    heights = [float(h.text) for h in root.iter("height")]
    height = float(np.median(heights)) if heights else 0.0
    tiff = Path(xml).parent.parent / "measurement" / f"{Path(xml).stem}.tiff"
    name = f"{swath}-{pol}".lower()
    bursts = root.findall("swathTiming/burstList/burst")
    if not bursts:
        model = SensorModel.from_json(doc, source=f"{source} ({name})")
        return [ProductImage(name, model, _reader(tiff, model, 0), height, description=f"{swath} {pol}")]
    lines = int(_number(root, "swathTiming/linesPerBurst", source))
    images = []
    for k, burst in enumerate(bursts):
        field = f"swathTiming/burstList/burst[{k + 1}]"
        start = seconds(_time(burst.findtext("azimuthTime"), source, f"{field}/azimuthTime"))
        burst_doc = {**doc, "azimuth": {**doc["azimuth"], "first_line_time_s": start},
                     "shape": {**doc["shape"], "rows": lines}}
        model = SensorModel.from_json(burst_doc, source=f"{source} ({name}-b{k + 1})")
        valid = [np.array(burst.findtext(f"{key}Sample", "").split(), np.int64) for key in ("firstValid", "lastValid")]
        images.append(ProductImage(f"{name}-b{k + 1}", model, _reader(tiff, model, k * lines, valid), height,
                                   description=f"{swath} {pol} burst {k + 1}"))
    return images


def _reader(tiff, model, line0, valid=None):
    """read(row0, rows) from the measurement TIFF, lines ``line0 + row``; NaN outside the valid window."""
    def read(row0, rows):
        from osgeo import gdal
        if not tiff.is_file():
            raise RasterError(f"{tiff}: the measurement image of this annotation is missing")
        try:
            ds = gdal.Open(str(tiff))  # held: a band outlives its dataset only as a dangling pointer
            data = ds.GetRasterBand(1).ReadAsArray(0, line0 + row0, model.cols, rows)
        except RuntimeError as exc:
            raise RasterError(f"{tiff}: cannot read lines {line0 + row0}..{line0 + row0 + rows - 1} ({exc})") from None
        data = data.astype(np.complex64)
        if valid is not None and valid[0].size == model.rows:
            first, last = (v[row0:row0 + rows, None] for v in valid)
            cols = np.arange(model.cols)[None, :]
            data[(first < 0) | (cols < first) | (cols > last)] = np.nan
        return data
    return read
