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
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import checks, pixels
from ..atomic import SIDECAR, atomic_outputs, check_outputs
from ..dem import height_bounds, open_dem
from ..errors import GeometryError, SensorModelError, SimulationCanceled, located
from ..facets import FacetLines
from ..flight import FlightDesign
from ..progress import Progress
from ..raster import REFERENCE_IMAGE_ITEM, SECONDARY_IMAGE_ITEM, SECONDARY_SENSOR_ITEM
from ..sensor import SensorModel
from .render import render, speckle
from .texture import Texture
from .truth import ground_truth

SIMULATION_ITEM = "SARSTEREO_SIMULATION"
GROUND_TRUTH_BANDS = ("secondary_row", "secondary_col", "validity", "height_m", "layover", "shadow")


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


FORMATS = ("geotiff", "sicd")


def simulate_pair(dem=None, flight=None, reference=None, secondary=None, *, looks=4.0, seed=0,
                  reference_output=None, secondary_output=None, ground_truth_output=None, dem_output=None,
                  options=None, progress=None, is_canceled=None, return_arrays=False, format="geotiff"):
    """Simulate a SAR stereo pair over a DEM and write its images and ground truth.

    ``dem``: a GDAL-readable path, a :class:`Dem`, or None for the embedded Jacksboro DEM.
    The geometry is either ``flight`` (a :class:`FlightDesign`; the default design when nothing
    is given) or ``reference`` and ``secondary`` (``SensorModel``, dict, or JSON path).
    ``looks``: number of looks of the speckle; ``seed``: any int, same seed -> same outputs.
    Outputs (optional paths): amplitude GeoTIFFs with their sensor models (embedded, sidecar,
    GCPs) and the ground-truth GeoTIFF; with ``format="sicd"`` the images are SICD NITF files
    (sarpy's writer; RGZERO grid, detected amplitude as the real part) whose SICD-kind models --
    what :func:`..products.importer.import_product` reads back -- the result and the ground truth
    carry. ``dem_output``: the DEM itself as a float32 GeoTIFF, written with the rest (for
    evaluating DEMs made from the pair). ``progress(fraction)`` and ``is_canceled()`` are
    optional callables; on cancel :class:`SimulationCanceled` is raised and nothing is written.
    """
    options = options or SimulationOptions()
    options.validate()
    if format not in FORMATS:
        raise GeometryError(located("simulation", "format", f"{format!r}; give one of {list(FORMATS)}"))
    if not (isinstance(looks, numbers.Real) and looks >= 1):
        raise GeometryError(located("simulation", "looks", f"{looks!r}; give a number of looks >= 1"))
    sidecars = {} if format == "sicd" else {
        f"{key} (its sensor-model sidecar)": path and Path(path).with_suffix(SIDECAR)
        for key, path in (("REFERENCE_OUTPUT", reference_output), ("SECONDARY_OUTPUT", secondary_output))}
    check_outputs({"REFERENCE_OUTPUT": reference_output, "SECONDARY_OUTPUT": secondary_output,
                   "GROUND_TRUTH_OUTPUT": ground_truth_output, "DEM_OUTPUT": dem_output, **sidecars},
                  {"DEM": dem, "REFERENCE_MODEL": reference, "SECONDARY_MODEL": secondary})
    dem = open_dem(dem)
    ref_model, sec_model = _models(dem, flight, reference, secondary)
    report = Progress(progress, is_canceled, SimulationCanceled, "simulation canceled; no output was written")
    for model in (ref_model, sec_model):
        _check_overlap(model, dem)
    _check_pair(ref_model, sec_model, dem)
    checks.pair(ref_model, sec_model, height_bounds(dem)[2])  # two views of one scene from different directions
    rng_texture, rng_ref, rng_sec = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))

    h_lo, h_hi, h_ref = height_bounds(dem)
    k = int(options.oversampling)
    views = [FacetLines(m, dem, h_lo, h_hi, h_ref, 1.0 / k, m.sample_spacing_m / k) for m in (ref_model, sec_model)]
    texture = Texture.for_views(dem, views, options.texture_db, rng_texture)
    sec = render(views[1], texture, options, keep_visibility=True, report=report.part(0.0, 0.42))
    ref = render(views[0], texture, options, ground_sums=True, report=report.part(0.42, 0.85))
    gt = ground_truth(views[0], ref, views[1], sec, dem)
    report.check()
    report(0.9)
    noise = 10.0 ** (options.noise_floor_db / 10.0)
    amplitudes = [np.sqrt((img.intensity + noise) * speckle(rng, img.intensity.shape, looks)).astype(np.float32)
                  for img, rng in ((ref, rng_ref), (sec, rng_sec))]
    stats = _stats(ref, sec, gt)
    report.check()
    meta = {SIMULATION_ITEM: json.dumps({"dem": dem.path, "looks": looks, "seed": seed,
                                         "flight": asdict(flight) if isinstance(flight, FlightDesign) else None,
                                         "options": asdict(options), "stats": stats})}
    if format == "sicd":  # the same geometry as SICD's RGZERO grid
        from ..sicd_model import SicdModel
        ref_model, sec_model = (SicdModel.from_zero_doppler(m, h_ref) for m in (ref_model, sec_model))
    paths = _write_outputs(reference_output, secondary_output, ground_truth_output, amplitudes, gt,
                           ref_model, sec_model, meta, dem, h_ref, dem_output)
    report.done()
    arrays = None
    if return_arrays:
        arrays = {"reference": ref.arrays(amplitudes[0], noise), "secondary": sec.arrays(amplitudes[1], noise),
                  "ground_truth": gt["bands"], "ground_truth_lonlat": gt["lonlat"],
                  "dem_height_at_truth": gt["dem_height"]}
    return SimulationResult(*paths, ref_model, sec_model, stats, arrays)


# ==================================================================== inputs
def _as_model(value):
    model = value if hasattr(value, "contour") else SensorModel.from_json(
        value if isinstance(value, (dict, str)) else str(value))
    if not isinstance(model, SensorModel):
        raise SensorModelError(located(model.source or "sensor model", "kind", "the simulator renders zero-Doppler "
                                                                          "models only; give a sarstereo.sensor/1 "
                                                                          "(or kind zero_doppler) model"))
    return model


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
    lon, lat, _ = _footprint(model, height_bounds(dem)[2])
    if not np.isfinite(dem.sample(lon, lat)).any():
        box = (f"lon {np.nanmin(lon):.4f}..{np.nanmax(lon):.4f}, lat {np.nanmin(lat):.4f}..{np.nanmax(lat):.4f}"
               if np.isfinite(lon).any() else "nowhere on the ground")
        raise GeometryError(located(model.source or "sensor model", "orbit/range",
                                    f"the image footprint ({box}) does not overlap the DEM {dem.path}; "
                                    "give a DEM that covers the scene or a flight that sees it"))


def _check_pair(ref, sec, dem):
    lon, lat, h = _footprint(ref, height_bounds(dem)[2], n=33)
    if not pixels.inside(*sec.geo2rdr(lon, lat, h), (sec.rows, sec.cols)).any():
        raise GeometryError(located(sec.source or "secondary sensor model", "orbit/range",
                                    "the secondary image sees none of the reference image's ground; "
                                    "give two views of the same scene"))


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
def _write_outputs(ref_path, sec_path, gt_path, amplitudes, gt, ref_model, sec_model, meta, dem, height,
                   dem_path=None):
    """Write every output (images with their sidecars, the ground truth) at once: all or nothing.

    GCPs lie on the DEM (at the scene's height where a ray misses it): at height 0 the slant
    ranges of an airborne image over mountains may not reach the ground at all.
    """
    from ..products import sidecar_path, write_image
    from ..raster import SENSOR_ITEM, gcp_grid, write_geotiff
    sicd = getattr(ref_model, "kind", "") == "sicd"
    images = [p for path in (ref_path, sec_path) for p in (path, None if sicd else path and sidecar_path(path))]
    with atomic_outputs(*images, gt_path, dem_path) as temps:
        if temps[5]:
            dem.write(temps[5])
        for (image, sidecar), amp, model, final in zip((temps[0:2], temps[2:4]), amplitudes, (ref_model, sec_model),
                                                       (ref_path, sec_path)):
            if image and sicd:
                from ..products.sicd import write_sicd
                write_sicd(image, model, [(0, amp)], name=Path(final).stem[:80], collector="sar_stereo_plugin")
            elif image:
                write_image(image, amp, model, metadata=meta, gcps=gcp_grid(model, height=height, dem=dem),
                            sidecar=sidecar)
        if temps[4]:
            gt_meta = {**meta, SENSOR_ITEM: json.dumps(ref_model.to_dict()),
                       SECONDARY_SENSOR_ITEM: json.dumps(sec_model.to_dict()),
                       REFERENCE_IMAGE_ITEM: str(ref_path or ""), SECONDARY_IMAGE_ITEM: str(sec_path or "")}
            write_geotiff(temps[4], gt["bands"], metadata=gt_meta, band_names=GROUND_TRUTH_BANDS,
                          gcps=gcp_grid(ref_model, height=height, dem=dem))
    return (str(ref_path) if ref_path else None, str(sec_path) if sec_path else None,
            str(gt_path) if gt_path else None)
