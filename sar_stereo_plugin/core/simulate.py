"""SAR stereo pair simulator with exact ground truth.

One entry point, :func:`simulate_pair`: a DEM and two flights (a :class:`FlightDesign`, or two
sensor models) in; two speckled amplitude images in slant range and a ground-truth raster out.

Physics
-------
*Ground facets.* For each view the DEM is resampled onto facets that follow the radar: facet
lines sit at ``oversampling`` lines per image row, each line lying on the Doppler surface of its
azimuth time (the zero-Doppler plane of a straight flight), and along a line the facets are
spaced ``range spacing / oversampling`` metres on the ground, from near to far range. Heights
are bilinear in the DEM; a facet's ECEF position is its ellipsoid foot plus height times the
ellipsoid normal. Every facet is placed in the image by the range/Doppler equations (a Newton
solve of its Doppler time on the orbit, then its slant range) -- the same geometry as
``SensorModel.geo2rdr``. Several facets land in every image cell (about ``oversampling**2 /
sin(incidence)`` on flat ground). The antenna's elevation beam covers the image's off-nadir
angles (at the scene height) widened by 15 degrees each side, never nearer nadir than 5 degrees;
terrain outside it is not illuminated and does not count as seen.

*Backscatter.* A facet returns ``sigma0(theta_loc) * T * A``: ``A`` its true (sloped) surface area,
``theta_loc`` the angle between its normal and the line of sight, ``sigma0`` Muhleman's law
``0.0133 cos(theta) / (sin(theta) + 0.1 cos(theta))**3`` (bright slopes facing the radar,
zero beyond grazing), and ``T`` a land-cover reflectivity texture: a seeded, spatially correlated
log-normal field of ground position (parcels about 120 m across in four classes, texture at 15 m
and at the pixel size) sampled by both views at the same ground points, mean 1. Energy is summed
into the cell of the facet's image row and split linearly between the two nearest range cells;
divided by the slant-plane cell area it reads as beta0 (flat ground: sigma0 / sin(incidence)).
Foreshortening (bright, compressed fore-slopes) and layover (several slopes summed into one range
cell) follow from this sum; nothing is painted in.

*Shadow.* Along a facet line the sensor sees facets in order of ground range; a facet is hidden
when an earlier facet of its line (nearer in ground range, including terrain before the image's
near edge) rises above its line of sight -- a running maximum of ``tan(off-nadir angle)`` --
or when it faces away from the sensor. Hidden facets return nothing.

*Noise and speckle.* A thermal noise floor (``noise_floor_db`` in beta0) is added; each view gets
its own multiplicative speckle, Gamma distributed intensity with mean 1 and variance 1/LOOKS;
amplitude = sqrt(intensity). The flights are straight lines at constant height, sampled as state
vectors (:func:`flight.level_flight_model`).

Flags and ground truth (all in the reference image; the same definitions give the secondary's
statistics)
-----------------------------------------------------------------------------------------------
* A pixel *sees the DEM* when at least one facet, visible or hidden, lands in it. Every fraction
  reported here and by :func:`terrain.terrain_fractions` is a fraction of these pixels.
* A visible facet is *in layover* when its slant range is also reached by another visible facet
  of its line at a clearly different place: an earlier facet lies more than
  ``layover_threshold_px`` range cells beyond it, or a later one that much before it (running
  max / running min of range along the line). Each facet stands for the slant range between its
  neighbours (half the range step to each). A pixel is *layover* when more than half of its
  range extent (over all its facet lines) is covered by the reversed sheet of a fold -- layover
  facets whose range decreases with ground range, i.e. slopes facing the sensor steeper than
  the local incidence. (Counting the reversed sheet, not every layover facet, measures the
  multiply-covered range once, so the flag is an unbiased pixel rounding of it.)
* A pixel is *shadow* when it is not layover and more than half of its range extent is covered
  by hidden facets.
* A pixel sees *exactly one visible ground point* when all its facets are visible and none is in
  layover. Its ground point is found from the facets: their centroid, moved on the plane of their
  mean normal until it projects exactly onto the pixel centre (Newton on the range/Doppler
  equations, so reference geometry is exact), and kept when the DEM there agrees with it (to
  0.5 m); then it is moved along the pixel's range/Doppler circle onto the DEM itself (bilinear),
  so the truth lies on the very surface a DEM built from it is judged against, and agrees with
  ``SensorModel.rdr2geo(dem=...)`` (the dataset builder's truth) to 1e-3 px. A point that would
  have to move further than one range sample for that (ground nearly grazed) is dropped.
  It is *valid* (band 3 = 1) when that point also lies inside the secondary image and is visible
  there (its four neighbouring secondary facets are all visible).

Ground truth raster (float32, reference geometry): band 1 secondary row, band 2 secondary col,
band 3 validity (1/0), band 4 ground height (m above the ellipsoid; where the pixel sees exactly
one point), band 5 layover flag, band 6 shadow flag (NaN where the pixel does not see the DEM).
Bands 1-3 follow the match-raster contract (NaN = no match), so a downstream triangulation fed
with them reproduces band 4.

Default image size: see :meth:`FlightDesign.models`. Heights are taken as metres above the WGS84
ellipsoid (as :class:`Dem` does); the DEM is bilinear between its posts, so images finer than the
DEM show its planar facets.
"""

import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from . import ellipsoid
from .dem import Dem, load_default_dem
from .errors import GeometryError, RasterError, SarStereoError, SensorModelError, located
from .raster import REFERENCE_IMAGE_ITEM, SECONDARY_IMAGE_ITEM, SECONDARY_SENSOR_ITEM
from .sensor import SensorModel

SIMULATION_ITEM = "SARSTEREO_SIMULATION"
GROUND_TRUTH_BANDS = ("secondary_row", "secondary_col", "validity", "height_m", "layover", "shadow")
MIN_INCIDENCE_DEG, MAX_INCIDENCE_DEG = 10.0, 80.0

_LC = 16  # fine facet lines per coarse geometry line
_JC = 32  # fine facets per coarse geometry node along a line
_PREFIX_COARSEN = 4  # terrain before the near edge only casts shadow: sample it coarser
_CHUNK_FACETS = 800_000  # facets per processing chunk (bounds memory)
_BEAM_MARGIN_DEG = 15.0  # the antenna's elevation beam reaches this far beyond the image's angles
_BEAM_MIN_OFF_NADIR_DEG = 5.0  # but never below the platform: nadir is not illuminated


class SimulationCanceled(SarStereoError):
    """The caller's ``is_canceled`` returned True; no output was written."""


# ==================================================================== public value objects
@dataclass(frozen=True)
class FlightDesign:
    """Two level flights over the DEM's centre (the reference and the secondary view).

    Same-side stereo: same heading and look side, two incidences. Opposite-side stereo
    (``opposite_side=True``): the secondary flies the reverse heading with the same look side,
    so it sees the scene from the other side. Incidences are at the scene centre (the DEM's
    centre at its median height). ``pixel_spacing_m`` is the slant-range and the azimuth
    spacing. ``rows``/``cols`` fix the image size; otherwise see :meth:`models`.
    """

    look_side: str = "right"
    heading_deg: float = 0.0
    altitude_m: float = 8000.0
    reference_incidence_deg: float = 35.0
    secondary_incidence_deg: float = 55.0
    opposite_side: bool = False
    wavelength_m: float = 0.0312
    pixel_spacing_m: float = 5.0
    rows: int = None
    cols: int = None
    max_size: int = 2048
    speed_m_s: float = 200.0

    def validate(self, dem_heights=None, source="flight design"):
        def bad(name, problem):
            raise GeometryError(located(source, name, problem))
        if self.look_side not in ("left", "right"):
            bad("look_side", f"expected 'left' or 'right', got {self.look_side!r}")
        for name in ("reference_incidence_deg", "secondary_incidence_deg"):
            value = getattr(self, name)
            if not MIN_INCIDENCE_DEG <= value <= MAX_INCIDENCE_DEG:
                bad(name, f"{value} degrees is outside {MIN_INCIDENCE_DEG:g}..{MAX_INCIDENCE_DEG:g}; "
                          "choose an incidence angle in that range")
        if not self.opposite_side and abs(self.reference_incidence_deg - self.secondary_incidence_deg) < 1.0:
            bad("secondary_incidence_deg", "same-side stereo needs two incidences at least 1 degree apart "
                                           "(or set opposite_side)")
        for name in ("pixel_spacing_m", "wavelength_m", "speed_m_s"):
            if not getattr(self, name) > 0:
                bad(name, f"must be positive, got {getattr(self, name)}")
        if not math.isfinite(self.heading_deg):
            bad("heading_deg", "must be a finite number of degrees")
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if value is not None and not 8 <= int(value) <= 65536:
                bad(name, f"{value} pixels; give 8..65536 or leave it empty for the automatic size")
        if self.max_size < 8:
            bad("max_size", f"{self.max_size} pixels; give at least 8")
        if dem_heights is not None:
            top = float(np.nanmax(dem_heights))
            if self.altitude_m < top + 500.0:
                bad("altitude_m", f"{self.altitude_m:g} m is not well above the highest terrain ({top:.0f} m); "
                                  "fly at least 500 m above it")

    def view(self, which):
        """(heading, incidence) of the 'reference' or the 'secondary' flight."""
        if which == "reference":
            return self.heading_deg, self.reference_incidence_deg
        return (self.heading_deg + (180.0 if self.opposite_side else 0.0)) % 360.0, self.secondary_incidence_deg

    def models(self, dem):
        """Sensor models of both views over ``dem``.

        Each image is centred on the DEM's centre (at its median height), so that point is seen
        at exactly the designed incidence. Without ``rows``/``cols`` an image extends, in each
        direction, as far as the farthest DEM edge, but no further than ``max_size`` pixels in
        all and no nearer to the flight track than 10 degrees incidence (or beyond 80 degrees);
        the extent is symmetric about the centre.
        """
        self.validate(dem.heights)
        lon, lat = dem.center_lonlat()
        h = float(np.nanmedian(dem.heights))
        return tuple(self._model(dem, lon, lat, h, *self.view(which)) for which in ("reference", "secondary"))

    def _model(self, dem, lon, lat, h, heading, incidence):
        from .flight import level_flight_model
        kw = dict(center_lon=lon, center_lat=lat, center_h=h, heading_deg=heading, altitude_m=self.altitude_m,
                  incidence_deg=incidence, look_side=self.look_side, wavelength_m=self.wavelength_m,
                  range_spacing_m=self.pixel_spacing_m, azimuth_spacing_m=self.pixel_spacing_m,
                  speed_m_s=self.speed_m_s)
        rows, cols = self.rows, self.cols
        if rows is None or cols is None:
            auto_rows, auto_cols = self._auto_size(dem, h, kw)
            rows, cols = rows or auto_rows, cols or auto_cols
        return level_flight_model(rows=int(rows), cols=int(cols), **kw)

    def _auto_size(self, dem, h, kw):
        from .flight import level_flight_model
        n_r, n_c = dem.shape
        size_r, size_c = dem.pixel_size_m()
        diagonal = math.hypot(n_r * size_r, n_c * size_c)
        probe_rows = 2 * int(diagonal / self.pixel_spacing_m) + 3
        probe = level_flight_model(rows=probe_rows, cols=1, **kw)
        # DEM outline, every few pixels, at its heights (median where unknown)
        rr = np.concatenate([np.zeros(n_c), np.full(n_c, n_r - 1.0), np.arange(n_r), np.arange(n_r)])
        cc = np.concatenate([np.arange(n_c), np.arange(n_c), np.zeros(n_r), np.full(n_r, n_c - 1.0)])
        hh = dem.heights[rr.astype(int), cc.astype(int)]
        lon, lat = dem.lonlat(*dem.pixel_to_xy(rr, cc))
        rows, cols = probe.geo2rdr(lon, lat, np.where(np.isfinite(hh), hh, h))
        half_rows = np.nanmax(np.abs(rows - (probe_rows - 1) / 2.0))
        half_cols = np.nanmax(np.abs(cols))
        centre_range = probe.first_sample_range_m
        dz = self.altitude_m - h
        near = (centre_range - dz / math.cos(math.radians(MIN_INCIDENCE_DEG))) / self.pixel_spacing_m
        far = (dz / math.cos(math.radians(MAX_INCIDENCE_DEG)) - centre_range) / self.pixel_spacing_m
        half_cols = min(half_cols, near, far)
        if not half_cols >= 4:
            raise GeometryError(located("flight design", "reference_incidence_deg",
                                        "the image would reach nearer than 10 degrees incidence; raise the "
                                        "incidence or the altitude, or lower pixel_spacing_m"))
        limit = (self.max_size - 1) // 2
        return 2 * min(int(math.ceil(half_rows)), limit) + 1, 2 * min(int(half_cols), limit) + 1


@dataclass(frozen=True)
class SimulationOptions:
    """Tunables of the simulator (defaults are what the QGIS algorithm uses)."""

    oversampling: int = 2  # facet lines per image row and facets per range spacing on the ground
    texture_db: float = 2.0  # standard deviation of the land-cover texture in dB; 0 = uniform
    noise_floor_db: float = -30.0  # thermal noise, beta0 in dB
    layover_threshold_px: float = 0.25  # range cells between facets that count as different places

    def validate(self):
        if not 1 <= int(self.oversampling) <= 8:
            raise GeometryError(located("simulation options", "oversampling",
                                        f"{self.oversampling}; give 1..8 facets per pixel"))
        if not self.texture_db >= 0:
            raise GeometryError(located("simulation options", "texture_db", "must be >= 0 dB"))


@dataclass
class SimulationResult:
    """What :func:`simulate_pair` made. Paths are None where no output was asked for.

    ``stats``: ``layover_fraction``, ``shadow_fraction``, ``valid_fraction``,
    ``single_point_fraction`` (fractions of the reference pixels that see the DEM, see the module
    doc), ``seen_pixels``, the secondary's ``secondary_layover_fraction``,
    ``secondary_shadow_fraction``, ``secondary_seen_pixels``, and ``truth_surface_error_m``
    (median height difference between the facets' plane and the DEM at the truth points, before
    they are moved onto the DEM). ``arrays`` (only with
    ``return_arrays=True``): ``reference``/``secondary`` dicts (``amplitude``, ``intensity``
    without noise and speckle, ``expected_intensity`` with noise, ``area_m2`` of visible facets,
    ``seen``/``layover``/``shadow`` masks, facet counts), ``ground_truth`` (the 6 bands),
    ``ground_truth_lonlat`` and ``dem_height_at_truth``.
    """

    reference_path: str
    secondary_path: str
    ground_truth_path: str
    reference_model: SensorModel
    secondary_model: SensorModel
    stats: dict
    arrays: dict = field(default=None, repr=False)


# ==================================================================== entry point
def simulate_pair(dem=None, flight=None, reference=None, secondary=None, *, looks=4.0, seed=0,
                  reference_output=None, secondary_output=None, ground_truth_output=None,
                  options=None, progress=None, is_canceled=None, return_arrays=False):
    """Simulate a SAR stereo pair over a DEM and write its images and ground truth.

    ``dem``: a GDAL-readable path, a :class:`Dem`, or None for the embedded Jacksboro DEM.
    The geometry is either ``flight`` (a :class:`FlightDesign`; the default design when nothing
    is given) or ``reference`` and ``secondary`` (``SensorModel``, dict, or JSON path).
    ``looks``: number of looks of the speckle; ``seed``: any int, same seed -> same outputs.
    Outputs (optional paths): amplitude GeoTIFFs with their sensor models (embedded, sidecar,
    GCPs) and the ground-truth GeoTIFF. ``progress(fraction)`` and ``is_canceled()`` are
    optional callables; on cancel :class:`SimulationCanceled` is raised and nothing is written.
    """
    options = options or SimulationOptions()
    options.validate()
    if not (isinstance(looks, numbers.Real) and looks >= 1):
        raise GeometryError(located("simulation", "looks", f"{looks!r}; give a number of looks >= 1"))
    dem = open_dem(dem)
    ref_model, sec_model = _models(dem, flight, reference, secondary)
    report = _Reporter(progress, is_canceled)
    for model in (ref_model, sec_model):
        _check_overlap(model, dem)
    _check_pair(ref_model, sec_model, dem)
    rng_texture, rng_ref, rng_sec = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))

    h_lo, h_hi, h_ref = height_bounds(dem)
    k = int(options.oversampling)
    views = [FacetLines(m, dem, h_lo, h_hi, h_ref, 1.0 / k, m.sample_spacing_m / k) for m in (ref_model, sec_model)]
    texture = _Texture.for_views(dem, views, options.texture_db, rng_texture)
    sec = _render(views[1], texture, options, keep_visibility=True, report=report.part(0.0, 0.42))
    ref = _render(views[0], texture, options, ground_sums=True, report=report.part(0.42, 0.85))
    gt = _ground_truth(views[0], ref, views[1], sec, dem)
    report.check()
    report(0.9)
    noise = 10.0 ** (options.noise_floor_db / 10.0)
    amplitudes = [np.sqrt((img.intensity + noise) * _speckle(rng, img.intensity.shape, looks)).astype(np.float32)
                  for img, rng in ((ref, rng_ref), (sec, rng_sec))]
    stats = _stats(ref, sec, gt)
    report.check()
    meta = {SIMULATION_ITEM: json.dumps({"dem": dem.path, "looks": looks, "seed": seed,
                                         "flight": asdict(flight) if isinstance(flight, FlightDesign) else None,
                                         "options": asdict(options), "stats": stats})}
    paths = _write_outputs(reference_output, secondary_output, ground_truth_output, amplitudes, gt,
                           ref_model, sec_model, meta, dem, h_ref)
    report(1.0)
    arrays = None
    if return_arrays:
        arrays = {"reference": ref.arrays(amplitudes[0], noise), "secondary": sec.arrays(amplitudes[1], noise),
                  "ground_truth": gt["bands"], "ground_truth_lonlat": gt["lonlat"],
                  "dem_height_at_truth": gt["dem_height"]}
    return SimulationResult(*paths, ref_model, sec_model, stats, arrays)


# ==================================================================== inputs
def open_dem(dem):
    """A checked :class:`Dem` from a path, a Dem, or None (the embedded Jacksboro DEM)."""
    if dem is None:
        dem = load_default_dem()
    elif not isinstance(dem, Dem):
        dem = Dem(dem)
    finite = dem.heights[np.isfinite(dem.heights)]
    lo, hi = float(finite.min()), float(finite.max())
    if lo < -1000.0 or hi > 10000.0:
        raise RasterError(located(dem.path, "band 1", f"heights {lo:g}..{hi:g} are not terrain heights in metres; "
                                                      "set the DEM's nodata value or convert it to metres"))
    if min(dem.shape) < 2:
        raise RasterError(located(dem.path, "band 1", f"{dem.shape} pixels; the DEM needs at least 2 x 2"))
    return dem


def _as_model(value):
    if isinstance(value, SensorModel):
        return value
    return SensorModel.from_json(value if isinstance(value, (dict, str)) else str(value))


def _models(dem, flight, reference, secondary):
    if reference is not None or secondary is not None:
        if flight is not None:
            raise GeometryError(located("simulation", "flight", "give either a flight design or two sensor "
                                                                "models, not both"))
        for role, value in (("reference", reference), ("secondary", secondary)):
            if value is None:  # before parsing the other: the missing one is the problem to name
                raise SensorModelError(located(f"{role} sensor model", role,
                                               "is missing; give both sensor models or a flight design"))
        return _as_model(reference), _as_model(secondary)
    return (flight or FlightDesign()).models(dem)


def _footprint(model, height, n=17):
    rows, cols = np.meshgrid(np.linspace(0, model.rows - 1, n), np.linspace(0, model.cols - 1, n), indexing="ij")
    return model.rdr2geo(rows, cols, height=height)


def _check_overlap(model, dem):
    lon, lat, _ = _footprint(model, float(np.nanmedian(dem.heights)))
    if not np.isfinite(dem.sample(lon, lat)).any():
        box = (f"lon {np.nanmin(lon):.4f}..{np.nanmax(lon):.4f}, lat {np.nanmin(lat):.4f}..{np.nanmax(lat):.4f}"
               if np.isfinite(lon).any() else "nowhere on the ground")
        raise GeometryError(located(model.source or "sensor model", "orbit/range",
                                    f"the image footprint ({box}) does not overlap the DEM {dem.path}; "
                                    "give a DEM that covers the scene or a flight that sees it"))


def _check_pair(ref, sec, dem):
    lon, lat, h = _footprint(ref, float(np.nanmedian(dem.heights)), n=33)
    rows, cols = sec.geo2rdr(lon, lat, h)
    if not ((rows >= 0) & (rows <= sec.rows - 1) & (cols >= 0) & (cols <= sec.cols - 1)).any():
        raise GeometryError(located(sec.source or "secondary sensor model", "orbit/range",
                                    "the secondary image sees none of the reference image's ground; "
                                    "give two views of the same scene"))


def height_bounds(dem):
    """(lowest, highest, median) height of the DEM, metres."""
    finite = dem.heights[np.isfinite(dem.heights)]
    return float(finite.min()), float(finite.max()), float(np.median(finite))


class _Reporter:
    """Progress in [0, 1] and cancel checks; ``part`` maps a sub-task onto a sub-range."""

    def __init__(self, progress, is_canceled, lo=0.0, hi=1.0):
        self.progress, self.is_canceled, self.lo, self.hi = progress, is_canceled, lo, hi

    def __call__(self, fraction):
        self.check()
        if self.progress is not None:
            self.progress(self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0))

    def check(self):
        if self.is_canceled is not None and self.is_canceled():
            raise SimulationCanceled("simulation canceled; no output was written")

    def part(self, lo, hi):
        return _Reporter(self.progress, self.is_canceled, self.lo + (self.hi - self.lo) * lo,
                         self.lo + (self.hi - self.lo) * hi)


# ==================================================================== small geometry helpers
def _dot(a, b):
    return np.einsum("i...,i...->...", a, b)


def _cross(a, b):
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _normal(lon, lat):
    """Unit ellipsoid normal (3, ...) at geodetic lon/lat (radians)."""
    return np.stack(ellipsoid.normal(lon, lat))


def _surface(lon, lat, h):
    """ECEF (3, ...) of geodetic lon/lat (radians) and height (m)."""
    return np.stack(np.broadcast_arrays(*ellipsoid.llh_to_xyz(lon, lat, h)))


def _llh(xyz):
    """Geodetic lon, lat (radians) and height of ECEF points (3, ...)."""
    return ellipsoid.xyz_to_llh(xyz[0], xyz[1], xyz[2])


def _unit(v):
    return v / np.sqrt(_dot(v, v))


def _bilinear(grid, rows, cols):
    """Bilinear values of ``grid`` at (rows, cols); NaN outside or next to NaN."""
    out = map_coordinates(grid, [rows.ravel(), cols.ravel()], order=1, mode="constant", cval=np.nan,
                          prefilter=False)
    return out.reshape(rows.shape)


def _muhleman(cos_loc):
    """Muhleman's backscatter law sigma0(theta_loc); zero at and beyond grazing."""
    c = np.clip(cos_loc, 0.0, 1.0)
    s = np.sqrt(1.0 - c * c)
    return 0.0133 * c / (s + 0.1 * c) ** 3


# ==================================================================== facet lines of a view
class FacetLines:
    """The ground facets of one view, laid out as lines (azimuth) x facets (ground range).

    Line ``m`` is at image row ``(index[m] + 0.5) * rows_per_line - 0.5`` (so each row holds
    1 / rows_per_line lines, symmetric about its centre); its facets lie on the Doppler surface of
    that time at the reference height, along the ground from near to far range,
    ``cross_spacing`` metres apart. Positions, normals and DEM pixel coordinates are
    computed exactly on a coarse node grid and interpolated linearly (the ellipsoid bends by
    micrometres over a coarse cell), then heights are sampled from the DEM per facet.
    """

    def __init__(self, model, dem, h_lo, h_hi, h_ref, rows_per_line, cross_spacing):
        self.model, self.dem, self.h_ref = model, dem, h_ref
        self.rows_per_line, self.cross_spacing = rows_per_line, cross_spacing
        self.k_doppler = 0.5 * model.wavelength_m * model.doppler_centroid_hz
        self.sign = -1.0 if model.look_side == "right" else 1.0
        self._lines()
        self._cross_extent(h_lo, h_hi)
        self.main = self._coarse(self.c_main[::_JC])
        self.prefix = self._coarse(self.c_prefix[::_JC]) if self.c_prefix.size else None

    # ---------------------------------------------------------------- lines
    def _lines(self):
        m, dr = self.model, self.rows_per_line
        pad = max(2, int(math.ceil(2.0 / dr)))
        n_needed = int(math.ceil(m.rows / dr)) + 2 * pad
        q = int(math.ceil((n_needed - 1) / _LC)) + 2
        index = np.arange(-pad - _LC, -pad - _LC + _LC * q + 1)
        times = m.row_to_time((index + 0.5) * dr - 0.5)
        lo, hi = m.orbit.span
        inside = np.flatnonzero((times >= lo) & (times <= hi))
        if inside.size < _LC + 1:
            raise GeometryError(located(m.source, "orbit.time_s", "the orbit is too short for the image; supply "
                                                                  "state vectors covering the whole acquisition"))
        # keep the lines that cover the image (plus pad), on whole coarse cells, inside the orbit
        want_lo = np.searchsorted(index, -pad)
        want_hi = np.searchsorted(index, int(math.ceil(m.rows / dr)) + pad)
        first = max(inside[0], min(want_lo, inside[-1] - _LC))
        cells = max(1, min(int(math.ceil((want_hi - first) / _LC)), (inside[-1] - first) // _LC))
        sel = np.arange(first, first + _LC * cells + 1)
        self.index, self.t = index[sel], times[sel]
        self.line_rows = (self.index + 0.5) * dr - 0.5
        p, v, a = m.orbit.state(self.t)
        lon, lat, hp = _llh(p.T)
        self.P, self.V, self.A = p.T, v.T, a.T  # (3, n)
        self.up = _normal(lon, lat)
        self.platform_height = hp
        self.N = self.P - hp * self.up
        cross = _cross(self.V, self.up) if m.look_side == "right" else _cross(self.up, self.V)
        self.side = _unit(cross)
        self.along = _unit(_cross(self.up, self.side) if m.look_side == "right" else _cross(self.side, self.up))
        sl = np.sin(lat)
        w = 1.0 - ellipsoid.E2 * sl * sl
        self.rho = ellipsoid.A * np.sqrt(1.0 - ellipsoid.E2) / w  # Gaussian mean radius
        self.n_lines = self.t.size

    # ---------------------------------------------------------------- cross-track extent
    def _ground_distance(self, idx, rng, h):
        t = self.t[idx]
        lon, lat = self.model.time_range_to_lonlat(t, np.full(t.shape, rng), np.full(t.shape, h))
        foot = _surface(lon, lat, 0.0)
        sigma = _dot(foot - self.P[:, idx], self.side[:, idx])
        return self.rho[idx] * np.arcsin(np.clip(sigma / self.rho[idx], -1.0, 1.0))

    def _cross_extent(self, h_lo, h_hi):
        """Ground span of the facet lines, and the antenna's elevation beam.

        The beam spans the image's off-nadir angles at the reference height, widened by
        ``_BEAM_MARGIN_DEG`` each side but not closer to nadir than ``_BEAM_MIN_OFF_NADIR_DEG``;
        facets outside it are not illuminated (this keeps low terrain near nadir, whose short
        range could otherwise fall into the image, out). Facets that may land in the image start
        at ``c_main[0]``; before it, down to the nearest ground the beam can reach, a coarser
        prefix only casts shadow.
        """
        m = self.model
        mid = np.array([self.n_lines // 2])
        edges = [self._ground_point(mid, m.col_to_range(c), self.h_ref) for c in (-0.5, m.cols - 0.5)]
        if not np.isfinite(edges[1]).all():
            raise GeometryError(located(m.source, "range.first_sample_range_m",
                                        "the image's slant ranges do not reach the ground at the scene height; "
                                        "check the range sampling and the platform height"))
        tan_b = float(self.tan_off_nadir(edges[1], mid[0], mid[0] + 1)[0, 0])
        # a near edge nearer than the scene's depth below the platform: the image starts at nadir
        near_ok = np.isfinite(edges[0]).all()
        tan_a = float(self.tan_off_nadir(edges[0], mid[0], mid[0] + 1)[0, 0]) if near_ok else 0.0
        angle_a, angle_b = math.atan(tan_a), math.atan(tan_b)
        widen = math.radians(_BEAM_MARGIN_DEG)
        self.beam = (math.tan(max(angle_a - widen, math.radians(_BEAM_MIN_OFF_NADIR_DEG))),
                     math.tan(min(angle_b + widen, math.radians(89.0))))
        dz_hi = max(float(np.min(self.platform_height)) - h_hi, 1.0)
        dz_lo = float(np.max(self.platform_height)) - h_lo
        idx = np.arange(0, self.n_lines, _LC)
        # facets that can land in the image reach at least the near range (nearest for the lowest
        # terrain) and lie inside the beam (nearest for the highest terrain; flat ground: a lower
        # bound on the curved Earth); likewise at most the far range and the beam's far edge
        near = np.nan_to_num(self._ground_distance(idx, m.col_to_range(-2.5), h_lo), nan=0.0)
        c_lo = max(float(np.min(near)), dz_hi * self.beam[0], 0.0)
        far = self._ground_distance(idx, m.col_to_range(m.cols + 1.5), h_hi)
        c_hi = min(float(np.nanmax(far)), dz_lo * self.beam[1]) if np.isfinite(far).any() else dz_lo * self.beam[1]
        n_main = _JC * int(math.ceil(max(c_hi - c_lo, self.cross_spacing) / (self.cross_spacing * _JC))) + 1
        self.c_main = c_lo + self.cross_spacing * np.arange(n_main)
        # a facet's blocker lies on its ray, so inside the beam and below h_hi: no nearer than this
        c_start = 0.98 * dz_hi * self.beam[0]
        step = self.cross_spacing * _PREFIX_COARSEN
        if c_lo - c_start > step:
            n_pre = _JC * int(math.ceil((c_lo - c_start) / (step * _JC))) + 1
            self.c_prefix = np.maximum(c_lo - step * np.arange(n_pre, 0, -1), 0.0)
        else:
            self.c_prefix = np.zeros(0)

    def _ground_point(self, idx, rng, h):
        t = self.t[idx]
        lon, lat = self.model.time_range_to_lonlat(t, np.full(t.shape, rng), np.full(t.shape, h))
        return _surface(lon, lat, h)[:, :, None]

    # ---------------------------------------------------------------- coarse nodes
    def _coarse(self, c_nodes):
        """Foot point, normal and DEM pixel of nodes (every _LC lines, at ground distances c)."""
        idx = np.arange(0, self.n_lines, _LC)
        P, V, N, up, side, along = (a[:, idx, None] for a in (self.P, self.V, self.N, self.up, self.side,
                                                               self.along))
        rho = self.rho[idx, None]
        ang = c_nodes[None, :] / rho
        q = N + rho * (np.sin(ang) * side + (np.cos(ang) - 1.0) * up)
        k = self.k_doppler
        for _ in range(4):  # slide along track onto the Doppler surface at the reference height
            lon, lat, _ = _llh(q)
            x = _surface(lon, lat, self.h_ref)
            d = x - P
            r = np.sqrt(_dot(d, d))
            g = _dot(V, d) - k * r
            dg = _dot(V, along) - k * _dot(d, along) / r
            shift = g / dg
            q = q - shift * along
            if np.abs(shift).max() < 1e-4:
                break
        lon, lat, _ = _llh(q)
        pr, pc = self.dem.lonlat_to_pixel(np.degrees(lon), np.degrees(lat))
        return np.concatenate([_surface(lon, lat, 0.0), _normal(lon, lat), pr[None], pc[None]])

    # ---------------------------------------------------------------- fine facets
    @staticmethod
    def _fine(coarse, i0, i1, n_cross):
        """Linear interpolation of coarse channels onto fine lines i0..i1-1 and all facets."""
        last = coarse.shape[1] - 1
        c0, c1 = i0 // _LC, min(-(-i1 // _LC), last)  # whole coarse cells c0..c1-1 cover the lines
        j = np.arange(n_cross)
        jc = np.minimum(j // _JC, coarse.shape[2] - 2)
        wj = (j - jc * _JC) / _JC
        block = coarse[:, c0:c1 + 1]
        nodes = block[:, :, jc] * (1.0 - wj) + block[:, :, jc + 1] * wj  # coarse lines, all facets
        step = nodes[:, 1:] - nodes[:, :-1]
        w = (np.arange(_LC) / _LC)[:, None]
        fine = np.empty((coarse.shape[0], c1 - c0, _LC, n_cross))
        np.multiply(step[:, :, None], w, out=fine)
        fine += nodes[:, :-1, None]
        fine = fine.reshape(coarse.shape[0], -1, n_cross)
        if i1 - 1 == c1 * _LC:  # the very last line is a coarse line itself
            fine = np.concatenate([fine, nodes[:, -1:]], axis=1)
        return fine[:, i0 - c0 * _LC:i1 - c0 * _LC]

    def positions(self, coarse, n_cross, i0, i1):
        """ECEF facet positions (3, lines, facets), DEM pixel coordinates and feet."""
        f = self._fine(coarse, i0, i1, n_cross)
        h = _bilinear(self.dem.heights, f[6], f[7])
        return f[0:3] + h * f[3:6], f[6], f[7], f[0:3]

    def tan_off_nadir(self, x, i0, i1):
        """tan of the angle between nadir and the look to each facet, seen from its line's sensor."""
        d = x - self.P[:, i0:i1, None]
        return _dot(d, self.side[:, i0:i1, None]) / -_dot(d, self.up[:, i0:i1, None])

    def prefix_horizon(self, i0, i1):
        """Highest tan(off-nadir) of the terrain before the near edge, per line (-inf: none)."""
        if self.prefix is None:
            return np.full(i1 - i0, -np.inf)
        x = self.positions(self.prefix, self.c_prefix.size, i0, i1)[0]
        q = self.tan_off_nadir(x, i0, i1)
        lit = np.isfinite(q) & (q >= self.beam[0]) & (q <= self.beam[1])
        return np.max(np.where(lit, q, -np.inf), axis=1)

    def doppler_time(self, x, i0, i1, max_iter=4):
        """Time offset (s) from each facet's line time to its Doppler time, and its slant range.

        Newton on the orbit's local Taylor model p(t) = P + V t + A t^2 / 2 around the line time
        (offsets are far below a line interval, where this model is exact to micrometres).
        """
        P, V, A = (a[:, i0:i1, None] for a in (self.P, self.V, self.A))
        k = self.k_doppler
        tau = np.zeros(x.shape[1:])
        d = x - P
        for _ in range(max_iter):
            v = V + A * tau
            vd = _dot(v, d)
            if k:
                r = np.sqrt(_dot(d, d))
                step = (vd - k * r) / (_dot(A, d) - _dot(v, v) + k * vd / r)
            else:
                step = vd / (_dot(A, d) - _dot(v, v))
            tau -= step
            d = x - (P + V * tau + 0.5 * A * tau * tau)
            # Newton's error after a step is ~ (|A|/|V|) step^2: nothing left below a millisecond
            if not np.nanmax(np.abs(step), initial=0.0) > 1e-3:
                break
        return tau, np.sqrt(_dot(d, d)), d

    def az_ground_spacing(self):
        """Ground distance between image rows at the middle of the scene (m)."""
        s = self.main[0:3]
        i, j = s.shape[1] // 2, s.shape[2] // 2
        step = s[:, min(i + 1, s.shape[1] - 1), j] - s[:, max(i - 1, 0), j]
        lines = (min(i + 1, s.shape[1] - 1) - max(i - 1, 0)) * _LC
        return float(np.sqrt(_dot(step, step))) / lines / self.rows_per_line


# ==================================================================== texture
class _Texture:
    """Seeded land-cover reflectivity (mean 1) on a ground grid tied to the DEM's pixels."""

    CLASS_DB = np.array([-4.0, -1.0, 0.5, 2.0])  # dark (wet, smooth), grass, fields, rock/built
    CLASS_SHARE = np.array([0.1, 0.35, 0.4, 0.15])
    MAX_CELLS = 16_000_000

    def __init__(self, dem, bounds, cell_m, strength_db, rng):
        self.r0, self.c0 = bounds[0], bounds[2]
        size_r, size_c = dem.pixel_size_m()
        cells = (bounds[1] - bounds[0]) * size_r * (bounds[3] - bounds[2]) * size_c / cell_m ** 2
        cell_m *= max(1.0, math.sqrt(cells / self.MAX_CELLS))
        self.per_r, self.per_c = size_r / cell_m, size_c / cell_m  # texture cells per DEM pixel
        shape = (int((bounds[1] - bounds[0]) * self.per_r) + 2, int((bounds[3] - bounds[2]) * self.per_c) + 2)
        if strength_db <= 0:
            self.grid = np.ones((1, 1), np.float32)
            self.per_r = self.per_c = 0.0
            return
        parcels = _smooth_noise(rng, shape, 120.0 / cell_m)
        edges = np.quantile(parcels, np.cumsum(self.CLASS_SHARE)[:-1])
        db = self.CLASS_DB[np.searchsorted(edges, parcels)]
        db += 1.5 * _smooth_noise(rng, shape, 15.0 / cell_m) + rng.standard_normal(shape)
        db *= strength_db / db.std()
        grid = 10.0 ** (db / 10.0)
        self.grid = (grid / grid.mean()).astype(np.float32)

    @classmethod
    def for_views(cls, dem, views, strength_db, rng):
        """A texture covering the ground of all views, with cells about a pixel across."""
        boxes = np.array([[np.nanmin(v.main[6]), np.nanmax(v.main[6]), np.nanmin(v.main[7]), np.nanmax(v.main[7])]
                          for v in views])
        n_r, n_c = dem.shape
        bounds = (max(boxes[:, 0].min(), -1.0), min(boxes[:, 1].max(), n_r), max(boxes[:, 2].min(), -1.0),
                  min(boxes[:, 3].max(), n_c))
        if not (bounds[1] > bounds[0] and bounds[3] > bounds[2]):
            bounds = (-1.0, n_r, -1.0, n_c)
        cell = min(min(v.model.sample_spacing_m, v.az_ground_spacing()) for v in views)
        return cls(dem, bounds, cell, strength_db, rng)

    def sample(self, pr, pc):
        i = np.clip(np.rint((pr - self.r0) * self.per_r), 0, self.grid.shape[0] - 1).astype(np.intp)
        j = np.clip(np.rint((pc - self.c0) * self.per_c), 0, self.grid.shape[1] - 1).astype(np.intp)
        return self.grid[i, j]


def _smooth_noise(rng, shape, corr_cells):
    """Unit-variance Gaussian noise correlated over about ``corr_cells`` cells (smooth-step upsampling)."""
    corr = max(float(corr_cells), 1.0)
    coarse = rng.standard_normal((int(shape[0] / corr) + 3, int(shape[1] / corr) + 3))

    def axis_weights(n):
        x = np.arange(n) / corr
        i = x.astype(np.intp)
        w = x - i
        return i, w * w * (3.0 - 2.0 * w)

    ir, wr = axis_weights(shape[0])
    ic, wc = axis_weights(shape[1])
    rows = coarse[ir] * (1.0 - wr)[:, None] + coarse[ir + 1] * wr[:, None]
    out = rows[:, ic] * (1.0 - wc) + rows[:, ic + 1] * wc
    return (out - out.mean()) / out.std()


# ==================================================================== rendering
class _Image:
    """Per-pixel sums of one view."""

    def __init__(self, model, ground_sums):
        self.model = model
        n = model.rows * model.cols
        self.intensity = np.zeros(n)
        self.area = np.zeros(n)
        self.n_vis = np.zeros(n, np.int32)
        self.n_hid = np.zeros(n, np.int32)
        self.n_lay = np.zeros(n, np.int32)
        self.layover_m = np.zeros(n)
        self.shadow_m = np.zeros(n)
        self.sum_x = np.zeros((3, n)) if ground_sums else None
        self.sum_normal = np.zeros((3, n)) if ground_sums else None
        self.origin = None

    def finish(self, a_ref, lines_per_row):
        shape = (self.model.rows, self.model.cols)
        self.intensity = (self.intensity / a_ref).reshape(shape)
        for name in ("area", "n_vis", "n_hid", "n_lay", "layover_m", "shadow_m"):
            setattr(self, name, getattr(self, name).reshape(shape))
        half = 0.5 * self.model.sample_spacing_m * lines_per_row  # half a pixel's range, all its lines
        self.seen = (self.n_vis + self.n_hid) > 0
        self.layover = self.layover_m > half
        self.shadow = ~self.layover & (self.shadow_m > half)
        self.single = (self.n_vis > 0) & (self.n_hid == 0) & (self.n_lay == 0)

    def arrays(self, amplitude, noise):
        return {"amplitude": amplitude, "intensity": self.intensity, "expected_intensity": self.intensity + noise,
                "area_m2": self.area, "seen": self.seen, "layover": self.layover, "shadow": self.shadow,
                "facets_visible": self.n_vis, "facets_hidden": self.n_hid}


def _render(view, texture, options, keep_visibility=False, ground_sums=False, report=None):
    """Render one view: intensities, facet counts and (optionally) ground-point sums."""
    model = view.model
    img = _Image(model, ground_sums)
    n_cross = view.c_main.size
    if keep_visibility:
        view.visible = np.zeros((view.n_lines, n_cross), bool)
        view.sigma_ends = np.zeros((2, view.n_lines))
    if ground_sums:
        img.origin = view.main[0:3, view.main.shape[1] // 2, view.main.shape[2] // 2].copy()
    tau_px = options.layover_threshold_px * model.sample_spacing_m
    step = max(1, _CHUNK_FACETS // n_cross)
    for i0 in range(0, view.n_lines, step):
        i1 = min(i0 + step, view.n_lines)
        f = _facets(view, texture, i0, i1, tau_px)
        _accumulate(img, f)
        if keep_visibility:
            view.visible[i0:i1] = f["visible"]
            view.sigma_ends[:, i0:i1] = f["sigma_ends"]
        if report is not None:
            report(i1 / view.n_lines)
    img.finish(view.az_ground_spacing() * model.sample_spacing_m, 1.0 / view.rows_per_line)
    return img


def _facets(view, texture, i0, i1, tau_m):
    """Everything about the facets of lines i0..i1-1 (arrays shaped lines x facets)."""
    n_cross = view.c_main.size
    a, b = max(i0 - 1, 0), min(i1 + 1, view.n_lines)  # one halo line each side for the normals
    x_all, pr, pc, foot = view.positions(view.main, n_cross, a, b)
    core = slice(i0 - a, i0 - a + (i1 - i0))
    grad_i = np.gradient(x_all, axis=1)[:, core]
    x = x_all[:, core]
    pr, pc, foot = pr[core], pc[core], foot[:, core]
    normal = view.sign * _cross(grad_i, np.gradient(x, axis=2))
    area = np.sqrt(_dot(normal, normal))
    normal = normal / area
    tau, rng, d = view.doppler_time(x, i0, i1)
    cos_loc = -_dot(normal, d) / rng
    # shadow: running maximum of tan(off-nadir) along each line, seeded by the terrain before it
    q = view.tan_off_nadir(x, i0, i1)
    finite = np.isfinite(q) & (q >= view.beam[0]) & (q <= view.beam[1])  # on the DEM and in the beam
    horizon = np.maximum.accumulate(np.where(finite, q, -np.inf), axis=1)
    before = np.empty_like(horizon)
    before[:, 0] = view.prefix_horizon(i0, i1)
    np.maximum(horizon[:, :-1], before[:, :1], out=before[:, 1:])
    visible = finite & (q >= before - 1e-10 * np.abs(before)) & (cos_loc > 0)
    # layover: the range is reached again by a visible facet clearly elsewhere on the line
    r_vis = np.where(visible, rng, -np.inf)
    prev_max = np.full_like(rng, -np.inf)
    prev_max[:, 1:] = np.maximum.accumulate(r_vis, axis=1)[:, :-1]
    r_vis[~visible] = np.inf
    next_min = np.full_like(rng, np.inf)
    next_min[:, :-1] = np.minimum.accumulate(r_vis[:, ::-1], axis=1)[:, ::-1][:, 1:]
    fold = visible & ((prev_max - rng > tau_m) | (rng - next_min > tau_m))
    extent = np.nan_to_num(np.gradient(rng, axis=1))  # slant range each facet stands for, signed
    m = view.model
    energy = np.where(visible, _muhleman(cos_loc) * texture.sample(pr, pc) * area, 0.0)
    sigma = _dot(foot[:, :, [0, -1]] - view.P[:, i0:i1, None], view.side[:, i0:i1, None])
    return {"row": view.line_rows[i0:i1, None] + tau / m.line_interval_s,
            "col": (rng - m.first_sample_range_m) / m.sample_spacing_m,
            "energy": energy, "area": area, "visible": visible, "hidden": finite & ~visible,
            "fold": fold, "extent": extent, "x": x, "normal": normal, "sigma_ends": sigma.T}


def _accumulate(img, f):
    """Add the facets of one chunk into the image sums (only the band of rows they reach)."""
    rows, cols = img.model.rows, img.model.cols
    ir = np.rint(np.nan_to_num(f["row"], nan=-9.0))
    inside_row = (ir >= 0) & (ir < rows) & np.isfinite(f["col"])
    if not inside_row.any():
        return
    sel = np.flatnonzero(inside_row.ravel())
    ir = ir.ravel()[sel].astype(np.int64)
    col = f["col"].ravel()[sel]
    lo, hi = int(ir.min()), int(ir.max())
    base, n = lo * cols, (hi - lo + 1) * cols
    ic = np.rint(col).astype(np.int64)
    inside = (ic >= 0) & (ic < cols)
    idx = np.where(inside, (ir - lo) * cols + ic, n)  # n: a bin for facets off the image
    vis = f["visible"].ravel()[sel]
    band = slice(base, base + n)
    for target, mask in ((img.n_vis, vis), (img.n_hid, f["hidden"].ravel()[sel]), (img.n_lay, f["fold"].ravel()[sel])):
        target[band] += np.bincount(idx[mask], minlength=n + 1)[:n].astype(np.int32)
    idx_v = idx[vis]
    img.area[band] += np.bincount(idx_v, f["area"].ravel()[sel][vis], minlength=n + 1)[:n]
    # range extent in layover (the reversed sheet of each fold) and in shadow, in metres
    extent, hid, fold = f["extent"].ravel()[sel], f["hidden"].ravel()[sel], f["fold"].ravel()[sel]
    reversed_fold = fold & (extent < 0)
    img.layover_m[band] -= np.bincount(idx[reversed_fold], extent[reversed_fold], minlength=n + 1)[:n]
    img.shadow_m[band] += np.bincount(idx[hid], extent[hid], minlength=n + 1)[:n]
    # energy: nearest row, split linearly between the two nearest range cells
    energy, col_v, ir_v = f["energy"].ravel()[sel][vis], col[vis], ir[vis]
    c0 = np.floor(col_v)
    w = col_v - c0
    c0 = c0.astype(np.int64)
    for cc, weight in ((c0, 1.0 - w), (c0 + 1, w)):
        j = np.where((cc >= 0) & (cc < cols), (ir_v - lo) * cols + cc, n)
        img.intensity[band] += np.bincount(j, energy * weight, minlength=n + 1)[:n]
    if img.sum_x is not None:
        x = f["x"].reshape(3, -1)[:, sel][:, vis]
        normal = f["normal"].reshape(3, -1)[:, sel][:, vis]
        for c in range(3):
            img.sum_x[c, band] += np.bincount(idx_v, x[c] - img.origin[c], minlength=n + 1)[:n]
            img.sum_normal[c, band] += np.bincount(idx_v, normal[c], minlength=n + 1)[:n]


def _speckle(rng, shape, looks):
    """Multiplicative speckle of L-look intensity: Gamma(L, 1/L), mean 1, variance 1/L."""
    return rng.gamma(float(looks), 1.0 / float(looks), size=shape)


# ==================================================================== ground truth
def _project(model, x):
    """Exact image (row, col) of ECEF points (3, n), with the Jacobians d(row)/dX and d(col)/dX."""
    t, rng = model.ecef_to_time_range(x.T)
    ok = np.isfinite(t)
    tt = np.where(ok, t, model.orbit.span[0])
    p, v, a = (arr.T for arr in model.orbit.state(tt))
    d = x - p
    k = 0.5 * model.wavelength_m * model.doppler_centroid_hz
    r = np.sqrt(_dot(d, d))
    vd = _dot(v, d)
    dt_dx = -(v - k * d / r) / (_dot(a, d) - _dot(v, v) + k * vd / r)
    dr_dx = d / r - (vd / r) * dt_dx
    return ((t - model.first_line_time_s) / model.line_interval_s,
            (rng - model.first_sample_range_m) / model.sample_spacing_m,
            dt_dx / model.line_interval_s, dr_dx / model.sample_spacing_m)


def _pixel_ground_points(model, img, pixels, iterations=3):
    """Ground point of each listed pixel: facet centroid, moved on the facets' mean plane until it
    projects exactly onto the pixel centre."""
    count = img.n_vis.ravel()[pixels]
    x = img.sum_x[:, pixels] / count + img.origin[:, None]
    normal = _unit(img.sum_normal[:, pixels])
    row, col = np.divmod(pixels, model.cols)
    for _ in range(iterations):
        r, c, g_r, g_c = _project(model, x)
        dr, dc = row - r, col - c
        # solve [g_r; g_c; normal] dx = [dr; dc; 0] (Cramer)
        gc_n, n_gr = _cross(g_c, normal), _cross(normal, g_r)
        det = _dot(g_r, gc_n)
        x = x + (dr * gc_n + dc * n_gr) / det
        if not np.nanmax(np.abs(dr) + np.abs(dc), initial=0.0) > 1e-6:
            break  # the linear step left ~ (1e-6 px)^2
    return x


def _onto_dem(model, dem, x, pixels, iterations=8, step_rad=1e-8):
    """Ground points (3, n) near the DEM moved onto its bilinear surface, still imaged at their
    pixel centres: Newton on (row, col, height - DEM) in geodetic coordinates, the DEM's slope by
    forward differences. NaN where it does not converge."""
    row, col = np.divmod(pixels, model.cols)
    lon, lat, h = _llh(x)
    out = np.full(x.shape, np.nan)
    todo = np.arange(row.size)
    for _ in range(iterations):
        lo, la, hh = lon[todo], lat[todo], h[todo]
        xyz, d_lon, d_lat = ellipsoid.geodetic_frame(lo, la, hh)
        r, c, g_r, g_c = _project(model, xyz.T)
        dem_h = dem.sample(np.degrees(lo), np.degrees(la))
        up = _normal(lo, la)
        a1, a2 = (np.stack([_dot(g, d_lon.T), _dot(g, d_lat.T), _dot(g, up)]) for g in (g_r, g_c))
        a3 = np.stack([(dem_h - dem.sample(np.degrees(lo + step_rad), np.degrees(la))) / step_rad,
                       (dem_h - dem.sample(np.degrees(lo), np.degrees(la + step_rad))) / step_rad, np.ones_like(hh)])
        b1, b2, b3 = row[todo] - r, col[todo] - c, dem_h - hh
        done = (np.abs(b1) + np.abs(b2) < 1e-7) & (np.abs(b3) < 1e-4)
        out[:, todo[done]] = xyz[done].T
        c23, c31, c12 = _cross(a2, a3), _cross(a3, a1), _cross(a1, a2)
        step = (b1 * c23 + b2 * c31 + b3 * c12) / _dot(a1, c23)  # Cramer's rule
        keep = ~done & np.all(np.isfinite(step), axis=0)
        todo = todo[keep]
        lon[todo], lat[todo], h[todo] = (v[keep] + dv[keep] for v, dv in zip((lo, la, hh), step))
        if not todo.size:
            break
    return out


def _secondary_visible(view, x, sec_rows):
    """Whether ground points are visible in a rendered view: all four surrounding facets are."""
    lon, lat, _ = _llh(x)
    foot = _surface(lon, lat, 0.0)
    line = (sec_rows + 0.5) / view.rows_per_line - 0.5 - view.index[0]
    m0 = np.floor(np.nan_to_num(line, nan=-10.0)).astype(np.int64)
    ok = (m0 >= 0) & (m0 + 1 < view.n_lines)
    n_cross = view.c_main.size
    result = ok.copy()
    for m in (m0, m0 + 1):
        m = np.clip(m, 0, view.n_lines - 1)
        sigma = _dot(foot - view.P[:, m], view.side[:, m])
        first, last = view.sigma_ends[0, m], view.sigma_ends[1, m]
        j = (sigma - first) / (last - first) * (n_cross - 1)
        j0 = np.floor(np.nan_to_num(j, nan=-10.0)).astype(np.int64)
        inside = (j0 >= 0) & (j0 + 1 < n_cross)
        j0 = np.clip(j0, 0, n_cross - 2)
        result &= inside & view.visible[m, j0] & view.visible[m, j0 + 1]
    return result


def _ground_truth(ref_view, ref, sec_view, sec, dem, block=1_000_000):
    """Ground-truth bands (see the module doc), computed in blocks of reference pixels."""
    shape = (ref_view.model.rows, ref_view.model.cols)
    bands = np.full((6,) + shape, np.nan, np.float32)
    bands[2] = 0.0
    bands[4] = np.where(ref.seen, ref.layover, np.nan)
    bands[5] = np.where(ref.seen, ref.shadow, np.nan)
    extra = np.full((3,) + shape, np.nan)  # lon, lat, DEM height at the truth points
    pixels = np.flatnonzero(ref.single.ravel())
    errors = [np.zeros(0)]
    for start in range(0, pixels.size, block):
        errors.append(_truth_block(ref_view, ref, sec_view, dem, pixels[start:start + block],
                                   bands.reshape(6, -1), extra.reshape(3, -1)))
    errors = np.concatenate(errors)
    return {"bands": bands, "lonlat": extra[:2], "dem_height": extra[2],
            "surface_error_m": float(np.median(errors)) if errors.size else float("nan")}


def _truth_block(ref_view, ref, sec_view, dem, pixels, flat, extra):
    ref_model, sec_model = ref_view.model, sec_view.model
    x = _pixel_ground_points(ref_model, ref, pixels)
    lon, lat, h = ellipsoid.ecef_to_llh(x.T)
    # the facets' plane must stand for the DEM here (not at its edge or across a sharp crest)
    error = np.abs(h - dem.sample(lon, lat))
    on_dem = error <= max(0.5, 0.05 * ref_model.sample_spacing_m)
    # then the point goes onto the DEM itself (bilinear), along its pixel's range/Doppler circle;
    # one that has to move further than a range cell for it (grazing ground) is not kept
    x_d = _onto_dem(ref_model, dem, x[:, on_dem], pixels[on_dem])
    lon_d, lat_d, h_d = ellipsoid.ecef_to_llh(x_d.T)
    with np.errstate(invalid="ignore"):
        kept = np.sqrt(_dot(x_d - x[:, on_dem], x_d - x[:, on_dem])) <= ref_model.sample_spacing_m
    on_dem[on_dem] = kept
    x, lon, lat, h = x_d[:, kept], lon_d[kept], lat_d[kept], h_d[kept]
    t2, range2 = sec_model.ecef_to_time_range(x.T)
    r2 = (t2 - sec_model.first_line_time_s) / sec_model.line_interval_s
    c2 = (range2 - sec_model.first_sample_range_m) / sec_model.sample_spacing_m
    valid = (r2 >= -0.5) & (r2 < sec_model.rows - 0.5) & (c2 >= -0.5) & (c2 < sec_model.cols - 0.5)
    valid[valid] = _secondary_visible(sec_view, x[:, valid], r2[valid])
    good, on = pixels[on_dem][valid], pixels[on_dem]
    flat[0, good], flat[1, good], flat[2, good] = r2[valid], c2[valid], 1.0
    flat[3, on] = h
    for row, values in zip(extra, (lon, lat, dem.sample(lon, lat))):
        row[on] = values
    return error[on_dem]


def _stats(ref, sec, gt):
    seen = int(ref.seen.sum())

    def frac(mask, img):
        n = img.seen.sum()
        return float(mask.sum() / n) if n else 0.0
    return {"seen_pixels": seen, "layover_fraction": frac(ref.layover, ref), "shadow_fraction": frac(ref.shadow, ref),
            "valid_fraction": frac(gt["bands"][2] == 1, ref),
            "single_point_fraction": frac(ref.single, ref),
            "secondary_seen_pixels": int(sec.seen.sum()),
            "secondary_layover_fraction": frac(sec.layover, sec),
            "secondary_shadow_fraction": frac(sec.shadow, sec),
            "truth_surface_error_m": gt["surface_error_m"]}


# ==================================================================== outputs
def _write_outputs(ref_path, sec_path, gt_path, amplitudes, gt, ref_model, sec_model, meta, dem, height):
    """Write every output under a temporary name, then rename them all: all or nothing.

    GCPs lie on the DEM (at the scene's height where a ray misses it): at height 0 the slant
    ranges of an airborne image over mountains may not reach the ground at all.
    """
    from .products import sidecar_path, write_image
    from .raster import SENSOR_ITEM, gcp_grid, write_geotiff
    jobs = []

    def temporary(path):
        path = Path(path)
        return path.with_name(f".{path.stem}.simulating{path.suffix or '.tif'}")

    try:
        for path, amp, model in ((ref_path, amplitudes[0], ref_model), (sec_path, amplitudes[1], sec_model)):
            if path:
                tmp = temporary(path)
                write_image(tmp, amp, model, metadata=meta, gcps=gcp_grid(model, height=height, dem=dem))
                jobs += [(tmp, Path(path)), (sidecar_path(tmp), sidecar_path(path))]
        if gt_path:
            tmp = temporary(gt_path)
            gt_meta = {**meta, SENSOR_ITEM: json.dumps(ref_model.to_dict()),
                       SECONDARY_SENSOR_ITEM: json.dumps(sec_model.to_dict()),
                       REFERENCE_IMAGE_ITEM: str(ref_path or ""), SECONDARY_IMAGE_ITEM: str(sec_path or "")}
            write_geotiff(tmp, gt["bands"], metadata=gt_meta, band_names=GROUND_TRUTH_BANDS,
                          gcps=gcp_grid(ref_model, height=height, dem=dem))
            jobs.append((tmp, Path(gt_path)))
        for tmp, final in jobs:
            tmp.replace(final)
    finally:
        for tmp, _ in jobs:
            if tmp.exists():
                tmp.unlink()
    return (str(ref_path) if ref_path else None, str(sec_path) if sec_path else None,
            str(gt_path) if gt_path else None)
