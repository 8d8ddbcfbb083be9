"""Digital elevation models read with GDAL and sampled at geographic points.

Heights are taken as metres above the WGS84 ellipsoid (the caller converts geoid heights first).
Sampling is bilinear between pixel centres; points outside the DEM or on nodata get NaN.
"""

import numpy as np
from osgeo import gdal, osr
from pyproj import CRS, Transformer
from scipy.ndimage import map_coordinates

from .errors import RasterError

gdal.UseExceptions()


class Dem:
    """A DEM held in memory: heights (float64, NaN = unknown), geotransform and CRS."""

    def __init__(self, path):
        self.path = str(path)
        try:
            ds = gdal.Open(self.path)
        except RuntimeError as exc:
            raise RasterError(f"{self.path}: cannot be opened as a DEM raster ({exc})") from None
        gt = ds.GetGeoTransform(can_return_null=True)
        wkt = ds.GetProjection()
        if gt is None or not wkt:
            raise RasterError(f"{self.path}: field 'geotransform/CRS': the DEM is not georeferenced; "
                              "assign a CRS and geotransform (e.g. gdal_translate -a_srs -a_ullr)")
        if gt[2] != 0 or gt[4] != 0:
            raise RasterError(f"{self.path}: field 'geotransform': rotated grids are not supported; "
                              "warp the DEM to a north-up grid with gdalwarp first")
        band = ds.GetRasterBand(1)
        heights = band.ReadAsArray().astype(np.float64)
        nodata = band.GetNoDataValue()
        if nodata is not None:
            heights[heights == nodata] = np.nan
        if not np.isfinite(heights).any():
            raise RasterError(f"{self.path}: band 1 holds no valid height")
        self.heights, self.geotransform = heights, gt
        self.crs = CRS.from_wkt(wkt)
        srs = osr.SpatialReference(wkt=wkt)
        self.is_geographic = bool(srs.IsGeographic())
        self._from_lonlat = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        self._to_lonlat = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)

    @property
    def shape(self):
        return self.heights.shape

    def pixel_to_xy(self, rows, cols):
        """Map coordinates of (row, col) with integer values at pixel centres."""
        gt = self.geotransform
        return gt[0] + (np.asarray(cols) + 0.5) * gt[1], gt[3] + (np.asarray(rows) + 0.5) * gt[5]

    def xy_to_pixel(self, x, y):
        gt = self.geotransform
        return (np.asarray(y) - gt[3]) / gt[5] - 0.5, (np.asarray(x) - gt[0]) / gt[1] - 0.5

    def lonlat(self, x, y):
        lon, lat = self._to_lonlat.transform(x, y)
        return np.asarray(lon), np.asarray(lat)

    def sample(self, lon, lat):
        """Bilinear height at geographic points (degrees); NaN outside the DEM or on nodata."""
        lon, lat = np.broadcast_arrays(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        x, y = self._from_lonlat.transform(lon, lat)
        rows, cols = self.xy_to_pixel(x, y)
        n_rows, n_cols = self.shape
        inside = (rows >= -0.5) & (rows <= n_rows - 0.5) & (cols >= -0.5) & (cols <= n_cols - 0.5)
        out = map_coordinates(self.heights, [np.clip(rows, 0, n_rows - 1).ravel(),
                                             np.clip(cols, 0, n_cols - 1).ravel()],
                              order=1, mode="nearest").reshape(lon.shape)
        return np.where(inside, out, np.nan)
