"""Plausibility checks: what would make a stage give a wrong result in silence is refused (or,
where the result is still usable, warned about) before any work, with the file, the field and
what to do.

Each stage calls them with one line at its entry point: the images (:func:`image`), the pair
(:func:`pair`), the prior of matching (:func:`prior`), the CRS of a DEM (:func:`crs_distortion`),
a match raster against its ground truth (:func:`same_pair`), a dataset's files (:func:`dataset_files`).
"""

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from . import ellipsoid, pixels
from .dem import height_bounds
from .errors import DatasetError, GeometryError, RasterError, SensorModelError, SettingsError, located
from .raster import open_raster, read_block
from .stereo import intersection_angle

MIN_INTERSECTION_DEG = 1.0  # below this, a pixel of disparity means kilometres of height
VELOCITY_TOLERANCE = 0.05  # median |v - dp/dt| / |v| of a model's state vectors
NEGATIVE_SHARE = 0.01  # amplitude is never negative: more than this share of negative pixels is dB or I/Q
PRIOR_COVER_WARN = 0.5  # a prior DEM covering less of the image than this is warned about
MAX_SCALE_ERROR = 0.01  # a DEM's CRS may stretch distances at the scene by at most this
_SAMPLE_SIDE = 512  # pixels a side of the decimated read that judges an image's values
_GRID = 9  # image points a side where pair geometry is judged
MIN_PATCH = 16  # the smallest patch matching takes (matching.MIN_PATCH)


# ---------------------------------------------------------------- one image and its model
def matching_inputs(reference, secondary, ref, sec, height, uncertainty, dem, patch_size):
    """Everything matching takes in (the engine's entry point): both images with their models
    (:func:`fits`), the prior (:func:`prior`), the pair (:func:`pair`), a reference of at least a
    patch, and amplitude in both (:func:`amplitude`). Returns the prior's (height, warnings)."""
    datasets = [fits(path, model, role) for path, model, role in ((reference, ref, "REFERENCE"),
                                                                  (secondary, sec, "SECONDARY"))]
    if min(ref.rows, ref.cols) < MIN_PATCH:
        raise GeometryError(located(reference, "REFERENCE", f"is {ref.rows} x {ref.cols} pixels; matching needs at "
                                                            f"least {MIN_PATCH} a side"))
    if patch_size > min(ref.rows, ref.cols):
        raise GeometryError(located("matching", "PATCH_SIZE", f"{patch_size} pixels is larger than the reference image "
                                    f"({ref.rows} rows x {ref.cols} columns); give a patch size of at most "
                                    f"{min(ref.rows, ref.cols)}"))
    height, warnings = prior(ref, sec, height, uncertainty, dem)
    pair(ref, sec, height, reference, secondary)
    for ds, path, role in zip(datasets, (reference, secondary), ("REFERENCE", "SECONDARY")):
        amplitude(ds, path, role)
    return height, warnings


def fits(path, model, field):
    """The model given for an image is its: the same shape, velocities that are its positions'
    derivative, a look side on which the image's GCPs lie. Returns the open dataset."""
    ds = open_raster(path, field)
    if (ds.RasterYSize, ds.RasterXSize) != (model.rows, model.cols):
        raise SensorModelError(located(path, "shape", f"the image is {ds.RasterYSize} x {ds.RasterXSize} pixels but "
                                                      f"its sensor model says {model.rows} x {model.cols}; give the "
                                                      "model that belongs to this image"))
    velocity(model)
    gcps_agree(ds, model, path)
    return ds


def velocity(model):
    """The state vectors' velocities agree with their positions' time derivative."""
    t = getattr(model, "orbit_time_s", None)
    if t is None or len(t) < 3:
        return
    derivative = np.gradient(model.orbit_position_m, t, axis=0, edge_order=2)
    given = model.orbit_velocity_m_s
    misfit = np.linalg.norm(derivative - given, axis=1) / np.maximum(np.linalg.norm(derivative, axis=1), 1e-9)
    if np.median(misfit) > VELOCITY_TOLERANCE:
        ratio = np.median(np.linalg.norm(given, axis=1) / np.maximum(np.linalg.norm(derivative, axis=1), 1e-9))
        raise SensorModelError(located(model.source or "sensor model", "orbit.velocity_m_s",
                                       f"the velocities disagree with the positions' time derivative by "
                                       f"{100 * np.median(misfit):.0f} % (median; speed ratio {ratio:.3g}): wrong "
                                       "units, sign, axes or order; give velocities in ECEF metres per second"))


def gcps_agree(ds, model, path):
    """The image's GCPs (where it has geographic ones) lie where the model images them, and on the
    side of the track it looks to: a model of another image, or with the wrong look side, is
    refused. A model refined by some pixels passes."""
    gcps = ds.GetGCPs()
    if not gcps or not hasattr(model, "look_side"):
        return
    lon, lat, h = (np.array([getattr(g, k) for g in gcps], np.float64) for k in ("GCPX", "GCPY", "GCPZ"))
    if not ((np.abs(lat) <= 90).all() and (np.abs(lon) <= 360).all()):  # GCPs in a projected CRS: not judged
        return
    rows, cols = model.geo2rdr(lon, lat, h)
    known = np.isfinite(rows) & np.isfinite(cols)
    if known.sum() < 4:
        return
    line, pixel = (pixels.from_gdal(np.array([getattr(g, k) for g in gcps], np.float64)) for k in ("GCPLine",
                                                                                                   "GCPPixel"))
    miss = float(np.median(np.hypot(rows - line, cols - pixel)[known]))
    if miss > max(0.25 * max(model.rows, model.cols), 200.0):
        raise SensorModelError(located(model.source or path, "orbit/azimuth/range",
                                       f"images the ground of {path}'s GCPs {miss:.0f} pixels from where the image "
                                       "has them: the model does not belong to this image; give its own model"))
    side = np.isfinite(model.geo2rdr(lon, lat, h, look_side_only=True)[0])
    if side[known].mean() < 0.5:
        raise SensorModelError(located(model.source or path, "look_side",
                                       f"'{model.look_side}', but the ground points (GCPs) of {path} lie to the "
                                       f"{_other(model.look_side)} of the flight track; correct look_side"))


def amplitude(ds, path, field):
    """Band 1 holds amplitude (or complex values): refuse no data, constants and negative values."""
    scale = max(1.0, max(ds.RasterXSize, ds.RasterYSize) / _SAMPLE_SIDE)
    band = ds.GetRasterBand(1)
    data = read_block(ds, 1, buf_xsize=max(1, int(ds.RasterXSize / scale)),
                      buf_ysize=max(1, int(ds.RasterYSize / scale)))
    complex_data = np.iscomplexobj(data)
    values = np.abs(data) if complex_data else data.astype(np.float64)
    nodata = band.GetNoDataValue()
    keep = np.isfinite(values) & ((data != nodata) if nodata is not None and not complex_data else True)
    values = values[keep]
    if not values.size:
        raise RasterError(located(path, field, "holds no data (every pixel NaN or nodata); give the image itself, "
                                               "or fix its nodata value"))
    negative = float((values < 0).mean())
    if negative > NEGATIVE_SHARE:
        raise RasterError(located(path, field, f"holds negative values ({100 * negative:.0f} % of the pixels, down to "
                                               f"{values.min():.3g}), but amplitude is never negative: an image in dB? "
                                               "convert it with 10^(dB/20); the real part of complex data? give the "
                                               "complex image"))
    if values.min() == values.max():
        what = "only zeros" if values.max() == 0 else f"the same value ({values.max():.6g}) everywhere"
        raise RasterError(located(path, field, f"holds {what}: no signal to match; give the SAR image itself"))


# ---------------------------------------------------------------- two images
def pair(ref, sec, height, reference=None, secondary=None):
    """The models of a pair see the same ground from their stated sides and from directions at
    least :data:`MIN_INTERSECTION_DEG` apart, and the images are not one and the same."""
    if reference is not None and secondary is not None:
        same_images(reference, secondary, ref, sec)
    for model in (ref, sec):
        velocity(model)
    points = _shared_ground(ref, sec, height)
    if points is None:
        _explain_no_overlap(ref, sec, height)
    angles = intersection_angle(ref, sec, *points)
    if not np.nanmax(angles, initial=0.0) >= MIN_INTERSECTION_DEG:
        raise GeometryError(located(f"{ref.source} / {sec.source}", "pair",
                                    f"the two images look at the ground from nearly the same direction (intersection "
                                    f"angle at most {np.nanmax(angles, initial=0.0):.2f} deg < {MIN_INTERSECTION_DEG} "
                                    "deg): heights cannot be told; give views from different incidence angles"))


def same_images(reference, secondary, ref, sec):
    """Refuse one image given twice: the same file, or the same pixels."""
    if _same_file(reference, secondary):
        raise GeometryError(located(secondary, "SECONDARY", f"is the same image as REFERENCE ({reference}); give "
                                                            "the other image of the stereo pair"))
    if (ref.rows, ref.cols) != (sec.rows, sec.cols):
        return
    a, b = (_decimated(open_raster(p, f), 256) for p, f in ((reference, "REFERENCE"), (secondary, "SECONDARY")))
    if a.shape == b.shape and np.array_equal(a, b, equal_nan=True):
        raise GeometryError(located(secondary, "SECONDARY", f"holds the same pixels as REFERENCE ({reference}): "
                                                            "identical images give no heights; give the other image "
                                                            "of the stereo pair"))


def _decimated(ds, side):
    scale = max(1.0, max(ds.RasterXSize, ds.RasterYSize) / side)
    return read_block(ds, 1, buf_xsize=max(1, int(ds.RasterXSize / scale)),
                      buf_ysize=max(1, int(ds.RasterYSize / scale)))


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except (OSError, TypeError):
        return os.path.realpath(str(a)) == os.path.realpath(str(b))


def _ground(model, height):
    rows, cols = np.meshgrid(np.linspace(0, model.rows - 1, _GRID), np.linspace(0, model.cols - 1, _GRID),
                             indexing="ij")
    return model.rdr2geo(rows, cols, height=height)


def _sees(ref, sec, height):
    """Reference ground points (at ``height``) the secondary sees from its look side, or None."""
    lon, lat, h = _ground(ref, height)
    rows, cols = sec.geo2rdr(lon, lat, h, look_side_only=True)
    seen = pixels.inside(rows, cols, (sec.rows, sec.cols))
    return (lon[seen], lat[seen], h[seen]) if seen.any() else None


def _shared_ground(ref, sec, height):
    return _sees(ref, sec, height)


def _explain_no_overlap(ref, sec, height):
    """Why no reference ground point is seen by the secondary: a wrong look side, or other areas."""
    flipped = {role: _flipped(m) for role, m in (("reference", ref), ("secondary", sec))}
    for role, r, s in (("reference", flipped["reference"], sec), ("secondary", ref, flipped["secondary"])):
        if r is not None and s is not None and _sees(r, s, height) is not None:
            model = ref if role == "reference" else sec
            raise SensorModelError(located(model.source or role, "look_side",
                                           f"'{model.look_side}' cannot be right: the two images see the same ground "
                                           f"only if the {role} looks {_other(model.look_side)}; correct look_side"))
    lon, lat, h = _ground(ref, height)
    rows, cols = sec.geo2rdr(lon, lat, h)
    if pixels.inside(rows, cols, (sec.rows, sec.cols)).any():
        raise SensorModelError(located(f"{ref.source} / {sec.source}", "look_side",
                                       f"the reference's ground lies on the side of the secondary's track it does not "
                                       f"look to ({sec.look_side}); correct look_side in the model that is wrong"))
    where = f"lon {np.nanmedian(lon):.3f}, lat {np.nanmedian(lat):.3f}" if np.isfinite(lon).any() else "nowhere"
    raise GeometryError(located(f"{ref.source} / {sec.source}", "overlap",
                                f"the images do not overlap: none of the reference's ground (around {where}, at "
                                f"{height:.0f} m) lies in the secondary image; give two images of the same area"))


def _flipped(model):
    if not dataclasses.is_dataclass(model):
        return None
    return dataclasses.replace(model, look_side=_other(model.look_side))


def _other(side):
    return "left" if side == "right" else "right"


# ---------------------------------------------------------------- the prior of matching
def prior(ref, sec, height, uncertainty, dem=None):
    """(height, warnings) for matching: the prior DEM covers the reference image, the prior height
    and its uncertainty are heights the slant ranges reach (the search range would collapse to
    nothing otherwise). ``height`` None: none was found (no HEIGHT_PRIOR, prior DEM or GCPs), 0 m
    is used with a warning."""
    warnings = []
    if dem is not None:
        lon, lat, _ = _ground(ref, height_bounds(dem)[2])
        cover = float(np.isfinite(dem.sample(lon, lat)).mean())
        if cover == 0:
            box = (f"lon {np.nanmin(lon):.4f}..{np.nanmax(lon):.4f}, lat {np.nanmin(lat):.4f}..{np.nanmax(lat):.4f}"
                   if np.isfinite(lon).any() else "nowhere on the ground")
            raise GeometryError(located(dem.path, "PRIOR_DEM", f"does not cover the reference image's ground ({box}); "
                                                               "give a DEM covering the scene, or none"))
        if cover < PRIOR_COVER_WARN:
            warnings.append(f"PRIOR_DEM {dem.path} covers only {100 * cover:.0f} % of the reference image's ground; "
                            "elsewhere the constant prior height applies")
    if height is None:
        height = 0.0
        warnings.append("no HEIGHT_PRIOR, PRIOR_DEM or GCPs in the reference image: the prior height is 0 m "
                        "(above the ellipsoid); give HEIGHT_PRIOR or a PRIOR_DEM where the ground lies elsewhere")
    if not math.isfinite(height):
        raise SettingsError(located("matching", "HEIGHT_PRIOR", f"{height}; give a height in metres"))
    reach = [np.isfinite(_ground(ref, h)[0]).mean() for h in (height - uncertainty, height, height + uncertainty)]
    top = _platform_height(ref)
    if reach[1] == 0 and dem is None:
        raise SettingsError(located("matching", "HEIGHT_PRIOR", f"{height:.0f} m is a height the slant ranges of "
                                                                f"{ref.source} do not reach (the platform flies at "
                                                                f"about {top:.0f} m); give the ground's height"))
    if uncertainty > 0 and max(reach[0], reach[2]) == 0:
        raise SettingsError(located("matching", "HEIGHT_UNCERTAINTY",
                                    f"±{uncertainty:.0f} m around {height:.0f} m reaches heights the slant ranges of "
                                    f"{ref.source} do not (the platform flies at about {top:.0f} m), so the search "
                                    "would collapse to the prior; give the terrain's height range"))
    return height, warnings


def _platform_height(model):
    t = model.row_to_time(np.array([(model.rows - 1) / 2.0]))
    return float(ellipsoid.ecef_to_llh(model.orbit.position(t))[2][0])


def terrain_heights(heights, path, field):
    """Heights that are terrain in metres (as :func:`.dem.open_dem` requires of a DEM it reads)."""
    finite = heights[np.isfinite(heights)]
    if finite.size and (finite.min() < -1000.0 or finite.max() > 10000.0):
        raise RasterError(located(path, field, f"heights {finite.min():g}..{finite.max():g} are not terrain heights in "
                                               "metres; set the DEM's nodata value or convert it to metres"))


# ---------------------------------------------------------------- outputs on a map
def crs_distortion(crs, lon, lat, field="CRS"):
    """Refuse a projected CRS that stretches distances at the scene (EPSG:3857 at 36 deg: 24 %):
    its cells would not be the size asked for on the ground."""
    from pyproj import Proj
    try:
        factors = Proj(crs).get_factors(lon, lat)
        scale = max(abs(factors.meridional_scale - 1.0), abs(factors.parallel_scale - 1.0))
    except Exception:  # noqa: BLE001 - pyproj raises several kinds; an unknown distortion is not refused
        return
    if math.isfinite(scale) and scale > MAX_SCALE_ERROR:
        zone = int((lon + 180.0) // 6.0) % 60 + 1
        utm = f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"
        raise SettingsError(located("elevation", field, f"{crs.name} stretches distances by {100 * scale:.1f} % at the "
                                                        f"scene, so its cells would not be the size asked for on the "
                                                        f"ground; choose a conformal local CRS such as {utm}, or "
                                                        "leave it empty for the UTM zone"))


# ---------------------------------------------------------------- products of one pair
def same_pair(a_models, b_models, a_path, b_path, field):
    """Refuse rasters of two different pairs: their embedded models must describe the same images
    (refinement's corrections aside)."""
    for role, a, b in zip(("reference", "secondary"), a_models, b_models):
        differs = _model_difference(a, b)
        if differs:
            raise SensorModelError(located(b_path, field, f"was made for another pair than {a_path}: the {role} "
                                                          f"sensor models differ ({differs}); give the ground truth of "
                                                          "the pair the matches were made from"))


def _model_difference(a, b):
    da, db = a.to_dict(), b.to_dict()
    for doc in (da, db):
        doc.pop("corrections", None)
    return _differs(da, db, "")


def _differs(a, b, where):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _differs(a.get(key), b.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        try:
            same = np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-9, atol=1e-3)
        except (TypeError, ValueError):
            same = a == b
        return None if same else where
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return None if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) else where
    return None if a == b else where


# ---------------------------------------------------------------- datasets
def dataset_files(folder, samples):
    """Every sample file of a manifest lies inside the dataset folder."""
    root = Path(os.path.realpath(folder))
    for i, entry in enumerate(samples):
        name = str(entry.get("file", ""))
        path = Path(os.path.realpath(root / name))
        if Path(name).is_absolute() or not path.is_relative_to(root) or path == root:
            raise DatasetError(located(Path(folder) / "manifest.json", f"samples[{i}].file",
                                       f"{name!r} lies outside the dataset folder; a dataset's samples lie in its "
                                       "train/, val/ and test/ folders: rebuild the dataset"))
