"""Procedural terrain: fractal relief with ridges, valleys and flat water, as a :class:`.dem.Dem`.

Training data for the matchers must not run out of ground, and the real DEMs at hand are few. A
terrain is made in four steps, all vectorised and seeded:

1. *Spectral relief*: two fractional-Brownian fields, white noise shaped in the Fourier domain by
   ``(f^2 + f0^2)^(-beta/4)`` (power ``~ f^-beta`` above the roll-off ``f0``, the inverse of the
   largest feature size ``feature_m``; beta 3.5-4.5 gives mountains whose relief comes from the large
   features, as in the Alpine DEMs, lower beta rougher ground), made on a
   grid a quarter larger than the DEM and cropped, so the FFT's periodic wrap never shows.
2. *Ridges and valleys*: the second field folded into sharp crests (``(1 - |n|)^2``, a ridged
   multifractal) and blended in by ``ridges``; both bent by a smooth domain warp so crests meander;
   the blend raised to the power ``valleys`` (> 1: broad valley floors between steep peaks).
3. *Slope distribution*: slopes scale with the relief's amplitude, so the amplitude is solved for
   the requested median slope of the land; slopes above ``max_slope_deg`` (a rock face's angle of
   repose; real DEMs at 20-100 m reach 60-70 degrees) are cut by the Lipschitz envelope of the
   surface (the highest surface below it that is nowhere steeper: cliffs lose their tops, as rock
   faces erode), and the amplitude is solved again around the cut, a few rounds.
4. *Water*: everything below the ``water_fraction`` quantile of the relief becomes one flat surface
   at ``base_m`` (sea or lake level); the land rises from it.

Slopes are measured as :func:`slope_deg` does (central differences of the posts, metres over
metres). The DEM is geographic (EPSG:4326) around ``center_lon``/``center_lat`` with square posts of
``pixel_m`` on the ground, rows north to south.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
from pyproj import Geod
from scipy.ndimage import gaussian_filter, map_coordinates

from ..dem import Dem
from ..errors import SettingsError, located

_GEOD = Geod(ellps="WGS84")
_MARGIN = 1.25  # the spectral fields are made on a grid this much larger, then cropped
_ROUNDS = 4  # amplitude solved again after each cut of the steepest slopes


@dataclass(frozen=True)
class TerrainDesign:
    """The knobs of :func:`synthetic_terrain` (see the module doc)."""

    rows: int = 512
    cols: int = 512
    pixel_m: float = 30.0  # post spacing on the ground
    median_slope_deg: float = 25.0  # of the land
    max_slope_deg: float = 60.0
    ridges: float = 0.5  # 0: rolling fractal hills, 1: sharp crests only
    valleys: float = 1.5  # exponent of the relief: > 1 broad valley floors and steep peaks
    beta: float = 4.0  # spectral exponent of the relief's power (3.5-4.5: mountains; lower: rougher)
    feature_m: float = 6000.0  # size of the largest features (the spectrum's roll-off)
    warp_m: float = 600.0  # how far the domain warp bends crests
    water_fraction: float = 0.0  # share of the area under flat water
    base_m: float = 500.0  # the water level and the foot of the land, metres
    center_lon: float = 10.0
    center_lat: float = 46.0

    def validate(self):
        def bad(field, problem):
            raise SettingsError(located("terrain design", field, problem))
        for field, lo in (("rows", 16), ("cols", 16)):
            if int(getattr(self, field)) < lo:
                bad(field, f"{getattr(self, field)}; give at least {lo} posts")
        for field in ("pixel_m", "feature_m", "beta"):
            if not getattr(self, field) > 0:
                bad(field, f"{getattr(self, field)}; give a positive number")
        if not 0 < self.median_slope_deg < self.max_slope_deg < 89:
            bad("median_slope_deg", f"{self.median_slope_deg} (max {self.max_slope_deg}); give "
                                    "0 < median_slope_deg < max_slope_deg < 89 degrees")
        if not 0 <= self.ridges <= 1:
            bad("ridges", f"{self.ridges}; give 0..1")
        if not self.valleys > 0:
            bad("valleys", f"{self.valleys}; give a positive exponent")
        if not 0 <= self.water_fraction < 0.9:
            bad("water_fraction", f"{self.water_fraction}; give 0 up to 0.9")
        if not self.warp_m >= 0:
            bad("warp_m", f"{self.warp_m}; give a distance >= 0")
        if not (-90 < self.center_lat < 90 and -1000 <= self.base_m <= 8000):
            bad("center_lat", f"{self.center_lat} / base_m {self.base_m}: give a latitude within -90..90 and a "
                              "base height within -1000..8000 m")


def slope_deg(heights, pixel_m):
    """Slope (degrees) of every post: central differences (one-sided at the edges) over square posts
    of ``pixel_m`` metres, or (rows, cols) metres."""
    size_r, size_c = np.broadcast_to(np.asarray(pixel_m, np.float64), (2,))
    g_r, g_c = np.gradient(np.asarray(heights, np.float64), size_r, size_c)
    return np.degrees(np.arctan(np.hypot(g_r, g_c)))


def synthetic_terrain(design=None, seed=0, name=None):
    """A procedural :class:`Dem` (module doc); the same design and seed give the same heights."""
    design = design or TerrainDesign()
    design.validate()
    rng = np.random.default_rng(seed)
    relief = _relief(design, rng)
    water = relief <= np.quantile(relief, design.water_fraction) if design.water_fraction > 0 else \
        np.zeros(relief.shape, bool)
    relief = np.where(water, 0.0, relief - (relief[water].max() if water.any() else relief.min()))
    heights = design.base_m + _scaled(relief, water, design)
    return Dem.from_array(heights, _geotransform(design), "EPSG:4326",
                          name or f"synthetic terrain (seed {seed}, {asdict(design)})")


def _spectral(rng, shape, beta, corr_px):
    """A zero-mean, unit-variance field of power ~ f^-beta rolled off below 1/corr_px."""
    f_r = np.fft.fftfreq(shape[0])[:, None]
    f_c = np.fft.rfftfreq(shape[1])[None, :]
    f2 = f_r * f_r + f_c * f_c
    amplitude = (f2 + (1.0 / corr_px) ** 2) ** (-beta / 4.0)
    amplitude[0, 0] = 0.0
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * amplitude, s=shape)
    return (field - field.mean()) / field.std()


def _unit(a):
    return (a - a.min()) / max(float(a.max() - a.min()), 1e-12)


def _relief(d, rng):
    """The unitless relief in [0, 1] (steps 1 and 2 of the module doc)."""
    big = tuple(int(math.ceil(n * _MARGIN)) for n in (d.rows, d.cols))
    corr_px = d.feature_m / d.pixel_m
    rolling = _spectral(rng, big, d.beta, corr_px)
    crests = (1.0 - np.abs(_spectral(rng, big, d.beta, corr_px))) ** 2
    warp = [gaussian_filter(rng.standard_normal(big), corr_px / 4.0, mode="wrap") for _ in range(2)]
    warp = [w / max(float(w.std()), 1e-12) * d.warp_m / d.pixel_m for w in warp]
    r0, c0 = ((b - n) // 2 for b, n in zip(big, (d.rows, d.cols)))
    rows, cols = np.mgrid[r0:r0 + d.rows, c0:c0 + d.cols].astype(np.float64)
    where = [rows + warp[0][r0:r0 + d.rows, c0:c0 + d.cols], cols + warp[1][r0:r0 + d.rows, c0:c0 + d.cols]]
    blend = (1.0 - d.ridges) * _unit(rolling) + d.ridges * _unit(crests)
    return _unit(map_coordinates(blend, where, order=1, mode="wrap")) ** d.valleys


def _scaled(relief, water, d):
    """Heights above the water (step 3): the amplitude that gives the land its median slope, with the
    steepest slopes cut, solved again a few rounds."""
    land = ~water
    target = math.tan(math.radians(d.median_slope_deg))
    gain = target / max(float(np.median(np.tan(np.radians(slope_deg(relief, d.pixel_m)))[land])), 1e-12)
    for _ in range(_ROUNDS):
        heights = _capped(relief * gain, water, d.max_slope_deg, d.pixel_m)
        median = float(np.median(np.tan(np.radians(slope_deg(heights, d.pixel_m)))[land]))
        gain *= target / max(median, 1e-12)
    return _capped(relief * gain, water, d.max_slope_deg, d.pixel_m)


# eight neighbours and their distances in posts; the envelope is L-Lipschitz along each of them
_STEPS = [(dr, dc, math.hypot(dr, dc)) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]


def _envelope(h, rise, iterations=5000):
    """The highest surface below ``h`` rising at most ``rise`` metres per post along the eight
    neighbour directions (relaxation until nothing moves)."""
    h = h.copy()
    for _ in range(iterations):
        padded = np.pad(h, 1, mode="edge")
        bound = h
        for dr, dc, dist in _STEPS:
            bound = np.minimum(bound, padded[1 + dr:1 + dr + h.shape[0], 1 + dc:1 + dc + h.shape[1]] + rise * dist)
        if np.array_equal(bound, h):
            break
        h = bound
    return h


def _capped(heights, water, cap_deg, pixel_m):
    """Slopes above ``cap_deg`` cut, the water kept flat at 0 (the land, above it, never drops below).
    An envelope along the 8 directions can still be steeper between them, and central differences
    across a kink steeper than either side: built gentler until :func:`slope_deg` stays under the
    cap everywhere."""
    cap = math.tan(math.radians(cap_deg))
    rise = cap * pixel_m * math.cos(math.radians(22.5))
    for _ in range(8):
        capped = np.where(water, 0.0, _envelope(heights, rise))
        steepest = math.tan(math.radians(float(slope_deg(capped, pixel_m).max())))
        if steepest <= cap * 1.001:
            break
        rise *= cap / steepest
    return capped


def _geotransform(d):
    """GDAL geotransform of square ``pixel_m`` posts centred on the design's point (EPSG:4326)."""
    lon, lat = d.center_lon, d.center_lat
    m_per_deg_lat = _GEOD.inv(lon, lat - 0.5, lon, lat + 0.5)[2]
    m_per_deg_lon = _GEOD.inv(lon - 0.5, lat, lon + 0.5, lat)[2]
    dy, dx = d.pixel_m / m_per_deg_lat, d.pixel_m / m_per_deg_lon
    return (lon - d.cols * dx / 2.0, dx, 0.0, lat + d.rows * dy / 2.0, 0.0, -dy)
