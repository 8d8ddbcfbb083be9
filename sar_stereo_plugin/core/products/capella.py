"""Capella Space SLC: the GeoTIFF (its metadata JSON in the TIFF image description) or the
``*_extended.json`` alone, which holds the whole geometry.

Capella's rows are azimuth lines and its columns range samples, as ours. Stripmaps
(``image_geometry.type`` ``slant_plane``) are zero-Doppler grids: a :class:`.sensor.SensorModel` on
their first line time, line interval, first range and range spacing, with the state vectors.
Spotlights (``pfa``) are polar-format images: a SICD-kind model (:mod:`..sicd_model`) from their
scene reference point, row/column directions and spacings, polar-angle and spatial-frequency
polynomials and ARP polynomial, all in seconds after ``collect.start_timestamp``.

sarpy's own Capella reader is not used: it reads the GeoTIFF only, knows no polar-format geometry,
and takes ``center_pixel.center_time`` -- a centre-of-aperture time -- for the zero-Doppler time
of the centre pixel, which misplaces squinted images by tens to hundreds of metres.
"""

import json
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.polynomial import Polynomial

from ..ellipsoid import ecef_to_llh
from ..errors import RasterError, SarStereoError, SensorModelError, located
from ..sensor import SCHEMA, SensorModel
from ..sicd_doc import SCHEMA as SCHEMA_V2
from ..sicd_doc import iso_utc
from ..sicd_model import SicdModel
from .base import SPEED_OF_LIGHT, Product, ProductImage

_DESCRIPTION = "TIFFTAG_IMAGEDESCRIPTION"


def is_capella_json(path):
    doc = _load(path, quiet=True)
    return isinstance(doc, dict) and isinstance(doc.get("collect"), dict) and "product_type" in doc


def is_capella_tiff(path):
    text = _description(path)
    return bool(text) and text.lstrip().startswith("{") and '"collect"' in text


def open_json(path):
    """A Capella product from its extended JSON; pixels from the GeoTIFF beside it, where present."""
    path = Path(path)
    doc = _load(path)
    tiff = next((p for p in (path.with_name(path.name.replace("_extended.json", suffix))
                             for suffix in (".tif", ".tiff")) if p != path and p.is_file()), None)
    return _product(path, doc, tiff)


def open_tiff(path):
    text = _description(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SensorModelError(located(str(path), _DESCRIPTION, f"not valid JSON ({exc.msg})")) from None
    return _product(Path(path), doc, Path(path))


def _product(path, doc, tiff):
    source = str(path)
    model = capella_model(doc, source)
    collect = doc["collect"]
    name = f"{collect['radar'].get('transmit_polarization', '')}{collect['radar'].get('receive_polarization', '')}"
    height = float(ecef_to_llh(np.asarray(collect["image"]["center_pixel"]["target_position"], np.float64))[2])
    return Product(path, "Capella", [ProductImage(name or "SLC", model, tiff and _reader(tiff, model), height,
                                                  description=collect.get("mode", ""))])


def _reader(tiff, model):
    def read(row0, rows):
        from osgeo import gdal
        try:
            ds = gdal.Open(str(tiff))
            if (ds.RasterYSize, ds.RasterXSize) != (model.rows, model.cols):
                raise RasterError(located(str(tiff), "size", f"{ds.RasterYSize} x {ds.RasterXSize} pixels but the "
                                                             f"metadata says {model.rows} x {model.cols}"))
            return ds.GetRasterBand(1).ReadAsArray(0, row0, model.cols, rows)
        except RuntimeError as exc:
            raise RasterError(f"{tiff}: cannot be read (truncated or corrupt?): {exc}") from None
    return read


def capella_model(doc, source):
    """The sensor model of a Capella metadata document (see the module doc)."""
    try:
        collect = doc["collect"]
        image, radar = collect["image"], collect["radar"]
        geometry = image["image_geometry"]
        kind = geometry["type"]
        start = _ns(collect["start_timestamp"], source)
        epoch = start - start % 1_000_000_000  # the whole second: times below are exact to the nanosecond
        common = {"wavelength_m": SPEED_OF_LIGHT / float(radar["center_frequency"]),
                  "look_side": str(radar["pointing"]).lower(), "shape": {"rows": int(image["rows"]),
                                                                          "cols": int(image["columns"])}}
        if kind == "slant_plane":
            return _stripmap(collect, geometry, common, epoch, source)
        if kind == "pfa":
            return _spotlight(collect, geometry, common, start, source)
    except SarStereoError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SensorModelError(f"{source}: not a readable Capella metadata document ({type(exc).__name__}: "
                               f"{exc})") from None
    raise SensorModelError(located(source, "collect.image.image_geometry.type",
                                   f"{kind!r}: only 'slant_plane' and 'pfa' geometries are supported"))


def _stripmap(collect, geometry, common, epoch, source):
    doppler = geometry.get("doppler_centroid_polynomial", {}).get("coefficients", [[0.0]])
    if np.any(np.asarray(doppler, np.float64)):
        raise SensorModelError(located(source, "collect.image.image_geometry.doppler_centroid_polynomial",
                                       "a slant-plane grid with a non-zero Doppler centroid is not supported"))
    vectors = collect["state"]["state_vectors"]
    first = (_ns(geometry["first_line_time"], source) - epoch) * 1e-9
    last = first + (common["shape"]["rows"] - 1) * geometry["delta_line_time"]
    orbit = _orbit([(_ns(v["time"], source) - epoch) * 1e-9 for v in vectors], [v["position"] for v in vectors],
                   [v["velocity"] for v in vectors], first, last)
    doc = {"schema": SCHEMA, **common,
           "reference_epoch": iso_utc(datetime.utcfromtimestamp(epoch // 1_000_000_000)).replace(".000000Z", "Z"),
           "orbit": orbit,
           "azimuth": {"first_line_time_s": first, "line_interval_s": geometry["delta_line_time"]},
           "range": {"first_sample_range_m": geometry["range_to_first_sample"],
                     "sample_spacing_m": geometry["delta_range_sample"]},
           "doppler_centroid_hz": 0.0}
    return SensorModel.from_json(doc, source=source)


def _orbit(times, positions, velocities, first, last):
    """The state vectors, with one more at either end where the image's lines reach past them by
    less than one interval (Capella's stripmaps do, by a few hundredths of a second): taken from a
    polynomial fit to all of them, which a satellite orbit follows to well below a millimetre over
    seconds. Lines further out are left to the model's coverage error."""
    t, p, v = (np.asarray(a, np.float64) for a in (times, positions, velocities))
    extra = [te for te, beyond, step in ((t[0] - (t[1] - t[0]), first < t[0], t[1] - t[0]),
                                         (t[-1] + (t[-1] - t[-2]), last > t[-1], t[-1] - t[-2]))
             if beyond and abs(min(first - t[0], 0.0) + max(last - t[-1], 0.0)) <= step]
    if extra and t.size >= 4:
        fits = [Polynomial.fit(t, p[:, i], min(7, t.size - 1)) for i in range(3)]
        te = np.asarray(extra)
        order = np.argsort(np.concatenate([t, te]))
        t = np.concatenate([t, te])[order]
        p = np.concatenate([p, np.stack([f(te) for f in fits], axis=-1)])[order]
        v = np.concatenate([v, np.stack([f.deriv()(te) for f in fits], axis=-1)])[order]
    return {"time_s": t.tolist(), "position_m": p.tolist(), "velocity_m_s": v.tolist()}


def _spotlight(collect, geometry, common, start, source):
    coa = geometry["center_of_aperture"]
    arp = geometry["antenna_reference_point_polynomial"]
    ucol = np.asarray(geometry["col_direction"], np.float64)
    urow = np.asarray(geometry["row_direction"], np.float64)
    duration = (_ns(collect["stop_timestamp"], source) - start) * 1e-9
    doc = {"schema": SCHEMA_V2, "kind": "sicd", **common,
           "reference_epoch": iso_utc(np.datetime64(start, "ns").astype("datetime64[us]").astype(datetime)),
           "pixels": {"sicd_row": [0, 1], "sicd_col": [0, 1]},  # SICD row = our column (range sample)
           "sicd": {"grid_type": "RGAZIM", "image_formation": "PFA",
                    "scp_ecf_m": [float(v) for v in geometry["scene_reference_point_ecef"]],
                    "scp_pixel": [float(v) for v in geometry["scene_reference_point_row_col"]],
                    "sample_spacing_m": [float(geometry["row_sample_spacing"]), float(geometry["col_sample_spacing"])],
                    "row_uvect_ecf": urow.tolist(), "col_uvect_ecf": ucol.tolist(),
                    "time_coa_poly": [[float(coa["time"])]],
                    "arp_poly": {k: [float(c) for c in arp[k]["coefficients"]] for k in "xyz"},
                    "collect_duration_s": duration,
                    "pfa": {"polar_ang_poly": _poly(geometry["polar_angle_polynomial"]),
                            "spatial_freq_sf_poly": _poly(geometry["spatial_frequency_scale_factor_polynomial"])}}}
    return SicdModel.from_dict(doc, source)


def _poly(entry):
    return [float(c) for c in entry["coefficients"]]


def _ns(stamp, source):
    """Nanoseconds since 1970 of an ISO UTC time such as 2024-11-26T04:53:08.029800537Z."""
    try:
        return int(np.datetime64(str(stamp).rstrip("Z"), "ns").astype(np.int64))
    except ValueError:
        raise SensorModelError(located(source, "timestamp", f"{stamp!r} is not an ISO 8601 UTC time")) from None


def _load(path, quiet=False):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if quiet:
            return None
        raise SensorModelError(f"{path}: not a readable JSON document ({exc})") from None


def _description(path):
    from osgeo import gdal
    try:
        return gdal.Open(str(path)).GetMetadataItem(_DESCRIPTION) or ""
    except RuntimeError:
        return ""
