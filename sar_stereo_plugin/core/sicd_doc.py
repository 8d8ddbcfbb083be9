"""The JSON of a SICD-kind sensor model (``sarstereo.sensor/2``, ``kind: sicd``): its validation,
and its construction from a zero-Doppler model.

```json
{"schema": "sarstereo.sensor/2", "kind": "sicd", "wavelength_m": 0.031, "look_side": "right",
 "reference_epoch": "2008-01-27T05:17:45.588000Z",          (SICD Timeline.CollectStart)
 "shape": {"rows": 5, "cols": 5},                          (ours: rows azimuth, cols range)
 "pixels": {"sicd_row": [100, 1], "sicd_col": [100, 1]},   (sicd_row = a + b col, sicd_col = a + b row)
 "sicd": {"grid_type": "RGZERO", "image_formation": "RMA", "scp_ecf_m": [x, y, z],
          "scp_pixel": [row, col], "sample_spacing_m": [Row.SS, Col.SS],
          "row_uvect_ecf": [...], "col_uvect_ecf": [...], "time_coa_poly": [[...]],
          "arp_poly": {"x": [...], "y": [...], "z": [...]}, "collect_duration_s": 3.86,
          "inca": {"r_ca_scp_m": ..., "time_ca_poly": [...], "drate_sf_poly": [[...]]}}}
```

``pfa`` (``polar_ang_poly``, ``spatial_freq_sf_poly``) or ``rgazcomp`` (``az_sf``) replace ``inca`` for
those grids; the plane grids need none. Polynomial coefficients are SICD's (``c[i][j]`` multiplies
``x^i y^j``), times are seconds after ``reference_epoch``.
"""

import math
import numbers
from datetime import datetime, timedelta

import numpy as np
from numpy.polynomial import Polynomial

from .ellipsoid import llh_to_ecef
from .errors import SensorModelError, located

SCHEMA = "sarstereo.sensor/2"
GRID_TYPES = ("RGZERO", "RGAZIM", "PLANE", "XRGYCR", "XCTYAT")
_TOP = ("schema", "kind", "wavelength_m", "look_side", "reference_epoch", "shape", "pixels", "sicd")
_SICD = ("grid_type", "image_formation", "scp_ecf_m", "scp_pixel", "sample_spacing_m", "row_uvect_ecf",
         "col_uvect_ecf", "time_coa_poly", "arp_poly", "collect_duration_s")
_METHOD_KEYS = {"inca": ("r_ca_scp_m", "time_ca_poly", "drate_sf_poly"),
                "pfa": ("polar_ang_poly", "spatial_freq_sf_poly"), "rgazcomp": ("az_sf",)}
ARP_FIT_TOLERANCE_M = 1e-5


class _Checker:
    def __init__(self, source):
        self.source = source

    def fail(self, field, problem):
        raise SensorModelError(located(self.source, field, problem))

    def keys(self, doc, field, keys):
        if not isinstance(doc, dict):
            self.fail(field or "<root>", "expected a JSON object")
        for k in keys:
            if k not in doc:
                self.fail(f"{field}.{k}" if field else k, "is missing")
        unknown = sorted(set(doc) - set(keys), key=str)
        if unknown:
            self.fail(f"{field}.{unknown[0]}" if field else unknown[0], f"is not part of schema {SCHEMA}; remove it")
        return doc

    def number(self, value, field, positive=False):
        if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)) or not math.isfinite(value):
            self.fail(field, f"expected a finite number, got {value!r}")
        if positive and value <= 0:
            self.fail(field, f"must be positive, got {value}")
        return float(value)

    def vector(self, value, field, n):
        if not (isinstance(value, (list, tuple)) and len(value) == n):
            self.fail(field, f"expected a list of {n} numbers")
        return [self.number(v, f"{field}[{i}]") for i, v in enumerate(value)]

    def poly(self, value, field, dims):
        """A list of numbers (dims 1) or a list of equal-length lists (dims 2)."""
        rows = value if dims == 2 else [value]
        if not (isinstance(value, list) and value and all(isinstance(r, list) and r for r in rows)
                and len({len(r) for r in rows}) == 1):
            self.fail(field, f"expected {'a list of equal-length lists' if dims == 2 else 'a list'} of coefficients")
        out = [[self.number(c, f"{field}[{i}]") for i, c in enumerate(r)] for r in rows]
        return out if dims == 2 else out[0]


def validate(doc, source):
    """The document, checked field by field (``SensorModelError`` naming the field otherwise)."""
    check = _Checker(source)
    check.keys(doc, "", _TOP)
    if doc["schema"] != SCHEMA or doc["kind"] != "sicd":
        check.fail("kind", f"expected schema {SCHEMA!r} of kind 'sicd'")
    check.number(doc["wavelength_m"], "wavelength_m", positive=True)
    if doc["look_side"] not in ("left", "right"):
        check.fail("look_side", f"expected 'left' or 'right', got {doc['look_side']!r}")
    parse_epoch(doc["reference_epoch"], source)
    shape = check.keys(doc["shape"], "shape", ("rows", "cols"))
    for k in ("rows", "cols"):
        if not (isinstance(shape[k], numbers.Integral) and not isinstance(shape[k], bool) and shape[k] >= 1):
            check.fail(f"shape.{k}", f"expected a positive integer, got {shape[k]!r}")
    pixels = check.keys(doc["pixels"], "pixels", ("sicd_row", "sicd_col"))
    for k in ("sicd_row", "sicd_col"):
        if check.vector(pixels[k], f"pixels.{k}", 2)[1] == 0:
            check.fail(f"pixels.{k}[1]", "the step must not be zero")
    sec = doc["sicd"]
    grid = sec.get("grid_type") if isinstance(sec, dict) else None
    formation = sec.get("image_formation") if isinstance(sec, dict) else None
    method = {"RGZERO": "inca"}.get(grid) or (formation.lower() if grid == "RGAZIM" and formation in ("PFA", "RGAZCOMP")
                                              else None)
    if grid not in GRID_TYPES or not isinstance(formation, str):
        check.fail("sicd.grid_type", f"expected one of {list(GRID_TYPES)} and an image formation name, "
                                     f"got {grid!r} / {formation!r}")
    if grid == "RGAZIM" and method is None:
        check.fail("sicd.image_formation", f"an RGAZIM grid needs PFA or RGAZCOMP, got {formation!r}")
    check.keys(sec, "sicd", _SICD + ((method,) if method else ()))
    for k, n in (("scp_ecf_m", 3), ("scp_pixel", 2), ("row_uvect_ecf", 3), ("col_uvect_ecf", 3)):
        check.vector(sec[k], f"sicd.{k}", n)
    for i, v in enumerate(check.vector(sec["sample_spacing_m"], "sicd.sample_spacing_m", 2)):
        check.number(v, f"sicd.sample_spacing_m[{i}]", positive=True)
    check.poly(sec["time_coa_poly"], "sicd.time_coa_poly", 2)
    arp = check.keys(sec["arp_poly"], "sicd.arp_poly", ("x", "y", "z"))
    for k in "xyz":
        check.poly(arp[k], f"sicd.arp_poly.{k}", 1)
    check.number(sec["collect_duration_s"], "sicd.collect_duration_s", positive=True)
    if method:
        part = check.keys(sec[method], f"sicd.{method}", _METHOD_KEYS[method])
        for k in _METHOD_KEYS[method]:
            field = f"sicd.{method}.{k}"
            if k.endswith("_poly"):
                check.poly(part[k], field, 2 if k == "drate_sf_poly" else 1)
            else:
                check.number(part[k], field, positive=k == "r_ca_scp_m")
    return doc


def parse_epoch(value, source, field="reference_epoch"):
    """A UTC ISO 8601 time (ending in Z) as a naive datetime; microseconds at most."""
    if not isinstance(value, str) or not value.endswith("Z"):
        raise SensorModelError(located(source, field, f"expected an ISO 8601 UTC time ending in Z, got {value!r}"))
    try:
        return datetime.fromisoformat(value[:-1])
    except ValueError:
        raise SensorModelError(located(source, field, f"{value!r} is not an ISO 8601 time")) from None


def iso_utc(stamp):
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- from a zero-Doppler model
def fit_arp(orbit, t_lo, t_hi, t0, source="orbit"):
    """ARP polynomial coefficients (3, n) in seconds after t0 reproducing ``orbit`` over t_lo..t_hi
    to ``ARP_FIT_TOLERANCE_M``: the lowest degree (up to 10) that does."""
    lo, hi = orbit.span
    t_lo, t_hi = max(t_lo, lo), min(t_hi, hi)
    t = np.linspace(t_lo, t_hi, 401)
    pos = orbit.position(t)
    for degree in range(3, 11):
        coefs = np.array([Polynomial.fit(t - t0, pos[:, i], degree).convert().coef for i in range(3)])
        coefs = np.pad(coefs, ((0, 0), (0, degree + 1 - coefs.shape[1])))
        fitted = np.stack([np.polynomial.polynomial.polyval(t - t0, c) for c in coefs], axis=-1)
        if np.abs(fitted - pos).max() <= ARP_FIT_TOLERANCE_M:
            return coefs
    raise SensorModelError(located(source, "orbit", f"no polynomial of degree 10 or less reproduces the orbit over "
                                                    f"{t_lo:.3f}..{t_hi:.3f} s to {ARP_FIT_TOLERANCE_M} m"))


def zero_doppler_doc(model, scene_height=0.0):
    """The RGZERO (INCA) document equivalent to a zero-Doppler :class:`.sensor.SensorModel`: SCP at
    the centre pixel on ``scene_height``, COA time = closest-approach time = the row's time."""
    source = model.source or "sensor model"
    if model.doppler_centroid_hz != 0.0:
        raise SensorModelError(located(source, "doppler_centroid_hz", "only a zero-Doppler model has an RGZERO "
                                                                      "(INCA) equivalent here"))
    t_first, t_last = float(model.row_to_time(0)), float(model.row_to_time(model.rows - 1))
    micro = math.floor(t_first * 1e6)  # SICD's CollectStart holds whole microseconds
    t0 = micro / 1e6
    epoch = parse_epoch(model.reference_epoch.replace("+00:00", "Z"), source) + timedelta(microseconds=micro)
    duration = max(t_last - t0, model.line_interval_s)
    r_s, c_s = model.rows // 2, model.cols // 2
    t_s = float(model.row_to_time(r_s))
    scp = llh_to_ecef(*model.rdr2geo(r_s, c_s, height=scene_height)).reshape(3)
    if not np.isfinite(scp).all():
        raise SensorModelError(located(source, "range", f"the centre pixel's range does not reach the scene height "
                                                        f"{scene_height:.0f} m; give the scene's height"))
    p, v, a = (x[0] for x in model.orbit.state(np.array([t_s])))
    speed = float(np.linalg.norm(v))
    ss_col = speed * model.line_interval_s
    u_row = (scp - p) / np.linalg.norm(scp - p)
    u_col = v - np.dot(v, u_row) * u_row
    tca = [t_s - t0, model.line_interval_s / ss_col]
    margin = 0.25 * duration + model.line_interval_s
    arp = fit_arp(model.orbit, t0 - margin, t_last + margin, t0, source)
    return {
        "schema": SCHEMA, "kind": "sicd", "wavelength_m": float(model.wavelength_m), "look_side": model.look_side,
        "reference_epoch": iso_utc(epoch), "shape": {"rows": int(model.rows), "cols": int(model.cols)},
        "pixels": {"sicd_row": [0, 1], "sicd_col": [0, 1]},
        "sicd": {
            "grid_type": "RGZERO", "image_formation": "RMA", "scp_ecf_m": scp.tolist(), "scp_pixel": [c_s, r_s],
            "sample_spacing_m": [float(model.sample_spacing_m), ss_col],
            "row_uvect_ecf": u_row.tolist(), "col_uvect_ecf": (u_col / np.linalg.norm(u_col)).tolist(),
            "time_coa_poly": [tca], "arp_poly": {k: arp[i].tolist() for i, k in enumerate("xyz")},
            "collect_duration_s": duration,
            "inca": {"r_ca_scp_m": float(model.col_to_range(c_s)), "time_ca_poly": tca,
                     "drate_sf_poly": [[1.0 + float(np.dot(a, p - scp)) / speed ** 2]]}}}
