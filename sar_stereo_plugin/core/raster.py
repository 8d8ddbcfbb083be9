"""GeoTIFF input and output: windows of amplitude, embedded sensor models, GCPs, metadata items.

Every writer is atomic (:mod:`.atomic`): a file appears at its path only once it is complete. A
stage writing several outputs wraps them in :func:`.atomic.atomic_outputs` too, so the group
appears at once. Pixel convention conversion (integer at centres here, 0.5 at centres in GDAL)
happens only at this boundary (:mod:`.pixels`).
"""

from contextlib import contextmanager

import numpy as np
from osgeo import gdal

from .atomic import atomic_file, final_name
from .errors import RasterError, located
from .inputs import regular
from .pixels import to_gdal

gdal.UseExceptions()

# Metadata items of the project's rasters (images, ground truth, match rasters).
SENSOR_ITEM = "SARSTEREO_SENSOR"  # the (reference) sensor model, schema sarstereo.sensor/1
SECONDARY_SENSOR_ITEM = "SARSTEREO_SECONDARY_SENSOR"
REFERENCE_IMAGE_ITEM = "SARSTEREO_REFERENCE_IMAGE"
SECONDARY_IMAGE_ITEM = "SARSTEREO_SECONDARY_IMAGE"
MATCHING_ITEM = "SARSTEREO_MATCHING"  # match raster: matcher, settings and its certainty threshold (JSON)
ROUND_TRIP_BAND = "round_trip_px"  # the match raster's optional fourth band (a ground truth's 4th is a height)


@contextmanager
def geotiff_writer(path, rows, cols, n_bands=1, metadata=None, band_names=(), gcps=None, nodata=None,
                   geotransform=None, crs=None):
    """Create a float32 GeoTIFF and yield ``write(array, row0=0, band=1)`` to fill it in blocks
    of rows, so large rasters stream; the file appears at ``path`` only if the block succeeds.

    ``gcps``: optional (rows, cols, lon, lat, h) arrays in this project's pixel convention; they
    let QGIS draw a slant-range image near its place on the map (EPSG:4326).
    ``geotransform`` (GDAL's six numbers) and ``crs`` (WKT) georeference a map raster instead.
    """
    with atomic_file(path) as tmp:
        try:
            ds = gdal.GetDriverByName("GTiff").Create(
                str(tmp), cols, rows, n_bands, gdal.GDT_Float32,
                ["COMPRESS=DEFLATE", "PREDICTOR=3", "TILED=YES", "BIGTIFF=IF_SAFER"])
        except RuntimeError as exc:
            raise _unwritable(path, exc) from None
        try:
            for i in range(n_bands):
                band = ds.GetRasterBand(i + 1)
                if nodata is not None:
                    band.SetNoDataValue(nodata)
                if i < len(band_names):
                    band.SetDescription(band_names[i])
            for key, value in (metadata or {}).items():
                ds.SetMetadataItem(key, value)
            if geotransform is not None:
                ds.SetGeoTransform([float(v) for v in geotransform])
                ds.SetProjection(crs)
            if gcps is not None:
                from osgeo import osr
                srs = osr.SpatialReference()
                srs.ImportFromEPSG(4326)
                srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
                ds.SetGCPs([gdal.GCP(float(lo), float(la), float(hh), to_gdal(float(c)), to_gdal(float(r)))
                            for r, c, lo, la, hh in zip(*(np.ravel(a) for a in gcps))
                            if np.isfinite(lo) and np.isfinite(la)], srs)

            def write(array, row0=0, band=1):
                try:
                    ds.GetRasterBand(band).WriteArray(np.asarray(array, dtype=np.float32), 0, int(row0))
                except RuntimeError as exc:
                    raise _unwritable(path, exc) from None

            yield write
            _flush(ds, path)
        finally:
            ds = None  # close before the rename (or the clean-up of a failed write)
        _check_written(tmp, path, rows, cols, n_bands)


def _flush(ds, path):
    """Write ``ds``'s last blocks: a full disk shows here, not later as a short file."""
    gdal.ErrorReset()
    try:
        ds.FlushCache()
    except RuntimeError as exc:
        raise _unwritable(path, exc) from None
    if gdal.GetLastErrorType() >= gdal.CE_Failure:
        raise _unwritable(path, gdal.GetLastErrorMsg())


def _check_written(tmp, path, rows, cols, n_bands):
    """The closed file reads back as what was written (its directory too), or a RasterError."""
    try:
        ds = gdal.Open(str(tmp))
        ok = (ds.RasterYSize, ds.RasterXSize, ds.RasterCount) == (rows, cols, n_bands)
    except RuntimeError as exc:
        raise _unwritable(path, exc) from None
    if not ok:
        raise _unwritable(path, "the file reads back with another size")


def _unwritable(path, exc):
    return RasterError(located(final_name(path), "output", f"cannot be written ({exc}); check the free disk space and "
                                                           "that the folder is writable"))


def write_geotiff(path, bands, metadata=None, band_names=(), gcps=None, nodata=None, geotransform=None, crs=None):
    """Write a float32 GeoTIFF atomically. ``bands``: (rows, cols) or (n, rows, cols) array;
    the other arguments as for :func:`geotiff_writer`."""
    bands = np.asarray(bands, dtype=np.float32)
    if bands.ndim == 2:
        bands = bands[None]
    n, rows, cols = bands.shape
    with geotiff_writer(path, rows, cols, n, metadata, band_names, gcps, nodata, geotransform, crs) as write:
        for i in range(n):
            write(bands[i], band=i + 1)


def read_metadata_item(path, key):
    """One metadata item of a raster, or None."""
    regular(path, "image", RasterError)
    try:
        ds = gdal.Open(str(path))
    except RuntimeError:
        return None
    return ds.GetMetadataItem(key)


def gcp_grid(model, height=0.0, dem=None, n=8):
    """GCPs (rows, cols, lon, lat, h) on an n x n grid of the image, on ``dem`` where it is
    given and covers them, else at the constant ``height``."""
    rows, cols = np.meshgrid(np.linspace(0, model.rows - 1, n), np.linspace(0, model.cols - 1, n),
                             indexing="ij")
    lon, lat, h = model.rdr2geo(rows, cols, height=height)
    if dem is not None:
        on_dem = model.rdr2geo(rows, cols, dem=dem)
        found = np.isfinite(on_dem[2])
        lon, lat, h = (np.where(found, a, b) for a, b in zip(on_dem, (lon, lat, h)))
    return rows, cols, lon, lat, h


def gcp_height(path):
    """Median height of a raster's GCPs (None without GCPs): a scene height for geometry checks."""
    try:
        gcps = gdal.Open(str(path)).GetGCPs()
    except RuntimeError:
        return None
    return float(np.median([g.GCPZ for g in gcps])) if gcps else None


def amplitude_db_range(path, low=2.0, high=98.0, max_side=1024):
    """(low, high) percentiles of 20 log10(amplitude) of band 1, from a decimated read."""
    ds = open_raster(path)
    scale = max(ds.RasterXSize, ds.RasterYSize) / max_side
    shape = (max(1, int(ds.RasterYSize / max(scale, 1))), max(1, int(ds.RasterXSize / max(scale, 1))))
    amp = np.abs(read_block(ds, 1, buf_xsize=shape[1], buf_ysize=shape[0])).astype(np.float64)
    amp = amp[np.isfinite(amp) & (amp > 0)]
    if not amp.size:
        raise RasterError(f"{path}: band 1 holds no positive amplitude to display")
    lo, hi = np.percentile(20.0 * np.log10(amp), [low, high])
    return float(lo), float(max(hi, lo + 1e-3))


def open_raster(path, field="image"):
    """A GDAL dataset, or a RasterError naming the file and the parameter it came from."""
    regular(path, field, RasterError)
    try:
        return gdal.Open(str(path))
    except RuntimeError as exc:
        raise RasterError(f"{path}: field '{field}': cannot be opened as a raster ({exc})") from None


def read_amplitude(ds, row0, col0, rows, cols):
    """A window of band 1 as float32 amplitude: |z| for complex (SLC) data, NaN for nodata
    and non-finite values. The window must lie inside the raster."""
    band = ds.GetRasterBand(1)
    data = read_block(ds, 1, col0, row0, cols, rows)
    out = (np.abs(data) if np.iscomplexobj(data) else data).astype(np.float32, copy=False)
    nodata = band.GetNoDataValue()
    if nodata is not None and not np.iscomplexobj(data):
        out[data == nodata] = np.nan
    out[~np.isfinite(out)] = np.nan
    return out


def read_block(ds, band, col0=0, row0=0, cols=None, rows=None, **kwargs):
    """A window of a band (the whole band by default); a RasterError naming the file where the
    file is damaged (truncated, corrupt)."""
    cols = ds.RasterXSize if cols is None else cols
    rows = ds.RasterYSize if rows is None else rows
    try:
        data = ds.GetRasterBand(band).ReadAsArray(int(col0), int(row0), int(cols), int(rows), **kwargs)
    except RuntimeError as exc:
        raise RasterError(located(final_name(ds.GetDescription()), f"band {band}",
                                  f"cannot be read ({exc}); the file is damaged: make it again")) from None
    if data is None:
        raise RasterError(located(final_name(ds.GetDescription()), f"band {band}", "cannot be read; the file is "
                                                                                   "damaged: make it again"))
    return data


def band_percentiles(path, percentiles, absolute=False, max_side=1024):
    """Percentiles of band 1's finite values (of their magnitudes with ``absolute``), from a
    decimated read; None where the band holds no finite value."""
    ds = open_raster(path)
    scale = max(1.0, max(ds.RasterXSize, ds.RasterYSize) / max_side)
    values = read_block(ds, 1, buf_xsize=max(1, int(ds.RasterXSize / scale)),
                        buf_ysize=max(1, int(ds.RasterYSize / scale))).astype(np.float64)
    nodata = ds.GetRasterBand(1).GetNoDataValue()
    values = values[np.isfinite(values) & ((values != nodata) if nodata is not None else True)]
    if not values.size:
        return None
    return [float(v) for v in np.percentile(np.abs(values) if absolute else values, percentiles)]
