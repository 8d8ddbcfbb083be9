"""Digital elevation models read with GDAL and sampled at geographic points.

Heights are taken as metres above the WGS84 ellipsoid (the caller converts geoid heights first).
Sampling is bilinear between pixel centres; points outside the DEM or on nodata get NaN.
"""

import numpy as np
from osgeo import gdal, osr
from pyproj import CRS, Transformer
from scipy.ndimage import map_coordinates

from .errors import RasterError, located
from .inputs import regular
from .pixels import from_gdal, inside, to_gdal

gdal.UseExceptions()


class Dem:
    """A DEM held in memory: heights (float64, NaN = unknown), geotransform and CRS."""

    def __init__(self, path):
        self.path = str(path)
        regular(self.path, "DEM", RasterError)
        try:
            ds = gdal.Open(self.path)
        except RuntimeError as exc:
            raise RasterError(f"{self.path}: field 'DEM': cannot be opened as a raster ({exc}); "
                              "give a GeoTIFF or another raster GDAL reads") from None
        gt = ds.GetGeoTransform(can_return_null=True)
        wkt = ds.GetProjection()
        if gt is None or not wkt:
            raise RasterError(f"{self.path}: field 'geotransform/CRS': the DEM is not georeferenced; "
                              "assign a CRS and geotransform (e.g. gdal_translate -a_srs -a_ullr)")
        if gt[2] != 0 or gt[4] != 0:
            raise RasterError(f"{self.path}: field 'geotransform': rotated grids are not supported; "
                              "warp the DEM to a north-up grid with gdalwarp first")
        band = ds.GetRasterBand(1)
        try:
            heights = band.ReadAsArray().astype(np.float64)
        except (RuntimeError, AttributeError) as exc:  # a damaged file; AttributeError: GDAL gave None
            raise RasterError(located(self.path, "band 1", f"cannot be read ({exc}); the file is damaged")) from None
        nodata = band.GetNoDataValue()
        if nodata is not None:
            heights[heights == nodata] = np.nan
        self._setup(heights, gt, wkt)

    @classmethod
    def from_array(cls, heights, geotransform, crs, name="<array DEM>"):
        """A DEM from an in-memory array (rows north to south for a north-up geotransform).

        ``geotransform``: GDAL's 6 numbers (pixel corners); ``crs``: anything pyproj's
        ``CRS.from_user_input`` takes (EPSG code, WKT, ...); NaN heights are unknown.
        """
        dem = cls.__new__(cls)
        dem.path = str(name)
        gt = tuple(float(v) for v in geotransform)
        if len(gt) != 6 or gt[2] != 0 or gt[4] != 0 or gt[1] == 0 or gt[5] == 0:
            raise RasterError(f"{dem.path}: field 'geotransform': expected a north-up GDAL geotransform, got {gt}")
        heights = np.array(heights, dtype=np.float64)
        if heights.ndim != 2:
            raise RasterError(f"{dem.path}: field 'heights': expected a 2-D array, got shape {heights.shape}")
        dem._setup(heights, gt, CRS.from_user_input(crs).to_wkt())
        return dem

    def _setup(self, heights, gt, wkt):
        if not np.isfinite(heights).any():
            raise RasterError(f"{self.path}: field 'band 1': holds no valid height (all nodata/NaN); "
                              "give a DEM with heights, or fix its nodata value")
        self.heights, self.geotransform = heights, gt
        self.bounds, self.checked = None, False  # height_bounds() and open_dem() fill them in
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
        return gt[0] + to_gdal(np.asarray(cols)) * gt[1], gt[3] + to_gdal(np.asarray(rows)) * gt[5]

    def xy_to_pixel(self, x, y):
        gt = self.geotransform
        return from_gdal((np.asarray(y) - gt[3]) / gt[5]), from_gdal((np.asarray(x) - gt[0]) / gt[1])

    def lonlat_to_pixel(self, lon, lat):
        """DEM (row, col) of geographic points (degrees), integer at pixel centres."""
        lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
        x, y = self._from_lonlat.transform(lon, lat)
        known = np.isfinite(lon) & np.isfinite(lat)  # pyproj gives inf for NaN into a projected CRS
        return self.xy_to_pixel(np.where(known, x, np.nan), np.where(known, y, np.nan))

    def center_lonlat(self):
        """Longitude and latitude (degrees) of the centre of the grid."""
        rows, cols = self.shape
        lon, lat = self.lonlat(*self.pixel_to_xy((rows - 1) / 2.0, (cols - 1) / 2.0))
        return float(lon), float(lat)

    def pixel_size_m(self):
        """Ground size (metres) of one pixel along rows and along columns at the grid centre."""
        from pyproj import Geod
        rows, cols = self.shape
        r, c = (rows - 1) / 2.0, (cols - 1) / 2.0
        lon, lat = self.lonlat(*self.pixel_to_xy(np.array([r, r + 1, r]), np.array([c, c, c + 1])))
        geod = Geod(ellps="WGS84")
        _, _, along_rows = geod.inv(lon[0], lat[0], lon[1], lat[1])
        _, _, along_cols = geod.inv(lon[0], lat[0], lon[2], lat[2])
        return float(along_rows), float(along_cols)

    def write(self, path):
        """Write the heights as a float32 GeoTIFF (NaN = unknown), atomically."""
        from .raster import write_geotiff
        write_geotiff(path, self.heights, band_names=("height_m",), nodata=float("nan"),
                      geotransform=self.geotransform, crs=self.crs.to_wkt())

    def lonlat(self, x, y):
        lon, lat = self._to_lonlat.transform(x, y)
        return np.asarray(lon), np.asarray(lat)

    def sample(self, lon, lat):
        """Bilinear height at geographic points (degrees); NaN outside the DEM or on nodata."""
        lon, lat = np.broadcast_arrays(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        x, y = self._from_lonlat.transform(lon, lat)
        rows, cols = self.xy_to_pixel(x, y)
        n_rows, n_cols = self.shape
        on_grid = inside(rows, cols, self.shape)
        out = map_coordinates(self.heights, [np.clip(rows, 0, n_rows - 1).ravel(),
                                             np.clip(cols, 0, n_cols - 1).ravel()],
                              order=1, mode="nearest").reshape(lon.shape)
        return np.where(on_grid, out, np.nan)


def open_dem(dem):
    """A checked :class:`Dem` from a path, a Dem, or None (the embedded Jacksboro DEM): the one way
    every step turns a DEM argument into heights it can trust."""
    if isinstance(dem, Dem) and dem.checked:
        return dem
    if dem is None:
        dem = load_default_dem()
    elif not isinstance(dem, Dem):
        dem = Dem(dem)
    lo, hi, _ = height_bounds(dem)
    if lo < -1000.0 or hi > 10000.0:
        raise RasterError(located(dem.path, "band 1", f"heights {lo:g}..{hi:g} are not terrain heights in metres; "
                                                      "set the DEM's nodata value or convert it to metres"))
    if min(dem.shape) < 2:
        raise RasterError(located(dem.path, "band 1", f"{dem.shape} pixels; the DEM needs at least 2 x 2"))
    dem.checked = True
    return dem


def height_bounds(dem):
    """(lowest, highest, median) height of the DEM, metres (computed once per Dem)."""
    if dem.bounds is None:
        finite = dem.heights[np.isfinite(dem.heights)]
        dem.bounds = float(finite.min()), float(finite.max()), float(np.median(finite))
    return dem.bounds


DEFAULT_DEM_NAME = "jacksboro_fault_dem.npz (matplotlib sample data)"


def load_default_dem():
    """The embedded default DEM: Jacksboro fault, Tennessee, 344 x 403 at 3 arc-seconds.

    It ships with matplotlib (Debian: python-matplotlib-data). Row 0 is the north edge (the
    file's ``ymin``); ``xmin``/``xmax`` and ``ymin``/``ymax`` are the grid's outer edges, so
    dx = dy = 1/1200 degree. Heights are used as metres above the WGS84 ellipsoid.
    """
    from matplotlib import cbook
    try:
        path = cbook.get_sample_data("jacksboro_fault_dem.npz", asfileobj=False)
        with np.load(path) as data:
            heights = data["elevation"].astype(np.float64)
            west, north, dx, dy = (float(data[k]) for k in ("xmin", "ymin", "dx", "dy"))
    except (OSError, KeyError, ValueError) as exc:
        raise RasterError(f"{DEFAULT_DEM_NAME}: field 'DEM': the default DEM cannot be read ({exc}); "
                          "install matplotlib's sample data (python3-matplotlib-data) or give a DEM") from None
    return Dem.from_array(heights, (west, dx, 0.0, north, 0.0, -dy), "EPSG:4326", DEFAULT_DEM_NAME)
