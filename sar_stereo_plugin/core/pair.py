"""Inspect a stereo pair before matching: footprints, overlap, convergence, height sensitivity.

Everything is evaluated on a regular grid of reference-image points projected to the ground at a
constant height (or onto a DEM), which keeps it vectorised and independent of polygon libraries.
"""

from dataclasses import dataclass, field

import numpy as np

from . import checks, ellipsoid, pixels
from .dem import height_bounds, open_dem
from .errors import GeometryError
from .stereo import height_sensitivity, intersection_angle, look_angles

MIN_INTERSECTION_DEG = 1.0  # below this, a pixel of disparity means kilometres of height


@dataclass
class PairReport:
    """What a user needs to know about a pair; ``to_dict`` gives the JSON report."""
    overlap_fraction: float
    intersection_angle_deg: dict
    height_sensitivity_m_per_px: dict
    look_sides: dict
    headings_deg: dict
    incidence_deg: dict
    reference_height_m: float
    footprints: dict = field(repr=False)  # role -> (n, 2) lon/lat ring, closed
    terrain: dict = field(default_factory=dict)

    def to_dict(self):
        out = {k: v for k, v in self.__dict__.items() if k != "footprints"}
        out["footprints_wkt"] = {role: ring_to_wkt(ring) for role, ring in self.footprints.items()}
        return out


def _stats(values):
    v = values[np.isfinite(values)]
    if not v.size:
        return {"min": None, "median": None, "max": None}
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def ring_to_wkt(ring):
    return "POLYGON ((" + ", ".join(f"{x:.8f} {y:.8f}" for x, y in ring) + "))"


def footprint(model, height, per_edge=16):
    """Closed lon/lat ring of the image border at a constant height.

    Near nadir an airborne range may be shorter than the platform's height above ``height``:
    such border points are drawn where their range meets the ground just off nadir instead.
    """
    r, c = model.rows - 1, model.cols - 1
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
    rows = np.concatenate([0 * t, t * r, r + 0 * t, r * (1 - t), [0.0]])
    cols = np.concatenate([t * c, c + 0 * t, c * (1 - t), 0 * t, [0.0]])
    t, rng, _ = model.contour(rows, cols)
    platform_h = ellipsoid.ecef_to_llh(model.orbit.position(t))[2]
    reachable = platform_h - 0.99 * rng  # 8 degrees off nadir
    lon, lat, _ = model.rdr2geo(rows, cols, height=np.maximum(height, reachable))
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise GeometryError(f"{model.source}: the image border cannot be placed on the ground at "
                            f"{height:.0f} m; give the scene's approximate height or a DEM")
    return np.stack([lon, lat], axis=-1)


def inspect_pair(ref_model, sec_model, dem=None, height=None, grid=33):
    """Report on a pair; raises GeometryError for a pair that cannot give heights.

    ``dem``: optional path or ``Dem``; ground points then lie on it and the report gains
    layover/shadow fractions. ``height``: constant ground height (m) otherwise; default the DEM's
    median height, or 0. Grid points whose range cannot reach that height are left out.
    """
    dem = None if dem is None else open_dem(dem)
    if height is None:
        height = height_bounds(dem)[2] if dem is not None else 0.0
    checks.pair(ref_model, sec_model, height)
    rings = {"reference": footprint(ref_model, height), "secondary": footprint(sec_model, height)}

    rows, cols = np.meshgrid(np.linspace(0, ref_model.rows - 1, grid),
                             np.linspace(0, ref_model.cols - 1, grid), indexing="ij")
    ground = dict(dem=dem) if dem is not None else dict(height=height)
    lon, lat, h = ref_model.rdr2geo(rows, cols, **ground)
    seen = np.isfinite(h)
    inside = seen & pixels.inside(*sec_model.geo2rdr(lon, lat, h), (sec_model.rows, sec_model.cols))
    overlap = float(inside.sum() / max(seen.sum(), 1))
    if not inside.any():
        raise GeometryError(
            f"{ref_model.source} and {sec_model.source} do not overlap on the ground: no point of the "
            "reference image falls inside the secondary image; choose images of the same area")
    lon, lat, h = lon[inside], lat[inside], h[inside]
    angles = intersection_angle(ref_model, sec_model, lon, lat, h)
    if np.nanmax(angles) < MIN_INTERSECTION_DEG:
        raise GeometryError(
            f"{ref_model.source} and {sec_model.source} look at the ground from nearly the same "
            f"direction (intersection angle at most {np.nanmax(angles):.2f} deg < {MIN_INTERSECTION_DEG} deg); "
            "stereo needs views from different incidence angles or opposite sides")
    sens = height_sensitivity(ref_model, sec_model, lon, lat, h)
    centre = (float(np.median(lon)), float(np.median(lat)), float(np.median(h)))
    headings, incidences = {}, {}
    for role, model in (("reference", ref_model), ("secondary", sec_model)):
        headings[role], incidences[role] = look_angles(model, *centre)
    report = PairReport(
        overlap_fraction=overlap,
        intersection_angle_deg=_stats(angles),
        height_sensitivity_m_per_px=_stats(sens),
        look_sides={"reference": ref_model.look_side, "secondary": sec_model.look_side},
        headings_deg=headings, incidence_deg=incidences,
        reference_height_m=float(height), footprints=rings)
    if dem is not None:  # the facet walk follows zero-Doppler lines: SICD-kind models have none
        from .terrain import terrain_fractions
        report.terrain = {role: terrain_fractions(model, dem) if getattr(model, "kind", "zero_doppler") != "sicd"
                          else None for role, model in (("reference", ref_model), ("secondary", sec_model))}
    return report
