"""What the cases make their attacks from: edited sensor models, rewritten images, broken files."""

import json
import os
from pathlib import Path

import numpy as np
from osgeo import gdal

gdal.UseExceptions()


def shared_file(relative):
    """A file of the real data beside the project (skips the case where it is absent)."""
    import pytest
    shared = Path(os.environ.get("SARSTEREO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    path = shared / relative
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    return path


def light_weights():
    """The light matcher's shipped weights."""
    import sar_stereo_plugin
    return Path(sar_stereo_plugin.__file__).parent / "weights" / "light_sar.pth"


def model_doc(image):
    """The sensor model (dict) in an image's sidecar."""
    return json.loads(Path(image).with_suffix(".sensor.json").read_text())


def write_json(path, doc, prefix=""):
    Path(path).write_text(prefix + json.dumps(doc), encoding="utf-8")
    return Path(path)


def edited_model(image, out, edit):
    """``out``: the image's model edited by ``edit(doc)`` (in place; may return a new doc)."""
    doc = model_doc(image)
    return write_json(out, edit(doc) or doc)


def set_model(image, doc, sidecar=True):
    """Embed ``doc`` as the image's sensor model (and its sidecar)."""
    ds = gdal.OpenEx(str(image), gdal.OF_UPDATE)
    ds.SetMetadataItem("SARSTEREO_SENSOR", json.dumps(doc))
    ds = None
    if sidecar:
        write_json(Path(image).with_suffix(".sensor.json"), doc)


def set_item(path, key, value):
    """Set (or with None remove) a metadata item of a raster."""
    ds = gdal.OpenEx(str(path), gdal.OF_UPDATE)
    ds.SetMetadataItem(key, value)
    ds = None


def item(path, key):
    return gdal.Open(str(path)).GetMetadataItem(key)


def rewrite_image(src, dst, fn=None, dtype=gdal.GDT_Float32, gcps=True, bands=None, size=None):
    """``dst``: ``src`` with band 1 replaced by ``fn(band 1)`` (or ``bands``, a list of arrays), its
    metadata (the embedded model) and, with ``gcps``, its GCPs; the sidecar copied beside."""
    ds = gdal.Open(str(src))
    data = ds.GetRasterBand(1).ReadAsArray().astype(np.float64)
    arrays = bands if bands is not None else [fn(data) if fn else data]
    rows, cols = size or arrays[0].shape
    out = gdal.GetDriverByName("GTiff").Create(str(dst), cols, rows, len(arrays), dtype)
    for i, a in enumerate(arrays):
        out.GetRasterBand(i + 1).WriteArray(a)
    out.SetMetadata(ds.GetMetadata())
    if gcps:
        out.SetGCPs(ds.GetGCPs(), ds.GetGCPProjection())
    out = None
    sidecar = Path(src).with_suffix(".sensor.json")
    if sidecar.exists():
        Path(dst).with_suffix(".sensor.json").write_text(sidecar.read_text())
    return Path(dst)


def raster(path, array, gt=None, crs="EPSG:4326", metadata=None, nodata=None, dtype=gdal.GDT_Float32):
    """A GeoTIFF of ``array`` ((rows, cols) or (bands, rows, cols))."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    out = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[2], array.shape[1], array.shape[0], dtype)
    for i, a in enumerate(array):
        band = out.GetRasterBand(i + 1)
        band.WriteArray(a)
        if nodata is not None:
            band.SetNoDataValue(nodata)
    if gt is not None:
        from osgeo import osr
        out.SetGeoTransform(gt)
        srs = osr.SpatialReference()
        srs.SetFromUserInput(crs)
        out.SetProjection(srs.ExportToWkt())
    for key, value in (metadata or {}).items():
        out.SetMetadataItem(key, value)
    out = None
    return Path(path)


def copy_raster(src, dst, **options):
    gdal.Translate(str(dst), str(src), **options)
    return Path(dst)


def crop_dem(src, dst, east_lon=None, shift_deg=None):
    """A copy of a geographic DEM: the part west of ``east_lon`` only, or moved by ``shift_deg`` (lon)."""
    ds = gdal.Open(str(src))
    gt = list(ds.GetGeoTransform())
    data = ds.GetRasterBand(1).ReadAsArray()
    if east_lon is not None:
        data = data[:, :max(2, int((east_lon - gt[0]) / gt[1]))]
    if shift_deg is not None:
        gt[0] += shift_deg
    return raster(dst, data, gt, ds.GetProjection())


def truncate(path, fraction):
    size = Path(path).stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(int(size * fraction))
    return Path(path)


def scribble(path, start_fraction=0.3, length=4096, seed=0):
    """Overwrite ``length`` bytes inside the file with noise (a corrupted copy)."""
    size = Path(path).stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(int(size * start_fraction))
        fh.write(np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes())
    return Path(path)


def hardlink(src, dst):
    os.link(src, dst)
    return Path(dst)


def symlink(src, dst):
    os.symlink(src, dst)
    return Path(dst)


def fifo(path):
    os.mkfifo(path)
    return Path(path)


def nested_json(depth=100_000):
    return "[" * depth + "]" * depth


def moved_model(doc, east_m=200_000.0):
    """The model flown ``east_m`` metres further east (positions shifted in ECEF along the local east)."""
    pos = np.array(doc["orbit"]["position_m"])
    lon = np.arctan2(pos[:, 1], pos[:, 0])
    east = np.stack([-np.sin(lon), np.cos(lon), np.zeros_like(lon)], axis=1)
    doc["orbit"]["position_m"] = (pos + east_m * east).tolist()
    return doc


def opposite_look(doc):
    doc["look_side"] = "left" if doc["look_side"] == "right" else "right"
    return doc
