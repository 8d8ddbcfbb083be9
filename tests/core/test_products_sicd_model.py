"""The SICD-kind projection model: the zero-Doppler model as one case of the R/Rdot contour,
every SICD grid inverted by geo2rdr, the stereo functions on either kind, and its JSON."""

import copy
import json
import re

import numpy as np
import pytest

from sar_stereo_plugin.core import SensorModelError, ellipsoid, triangulate
from sar_stereo_plugin.core.matching import PairPrior
from sar_stereo_plugin.core.products.importer import multilook_model
from sar_stereo_plugin.core.sensor import SensorModel
from sar_stereo_plugin.core.sicd_model import SicdModel
from sar_stereo_plugin.core.stereo import height_sensitivity, intersection_angle, look_angles, rdr2rdr

HEIGHT = 2500.0


@pytest.fixture(scope="module")
def pair(stereo_models):
    ref, sec = stereo_models
    return ref, sec, SicdModel.from_zero_doppler(ref, HEIGHT), SicdModel.from_zero_doppler(sec, HEIGHT)


def _grid(model, n=9):
    rows, cols = np.meshgrid(np.linspace(0, model.rows - 1, n), np.linspace(0, model.cols - 1, n), indexing="ij")
    return rows, cols


def test_zero_doppler_is_one_case_of_the_contour(pair):
    ref, _, sref, _ = pair
    rows, cols = _grid(ref)
    t0, r0, d0 = ref.contour(rows, cols)
    t1, r1, d1 = sref.contour(rows, cols)
    epoch_shift = float(np.round(t0[0, 0] - t1[0, 0], 6))  # the SICD's collect start, whole microseconds
    assert np.abs(t1 + epoch_shift - t0).max() < 1e-9 and np.abs(r1 - r0).max() < 1e-6 and np.abs(d1).max() == 0
    heights = np.linspace(1500.0, 3500.0, rows.size).reshape(rows.shape)
    a, b = ref.rdr2geo(rows, cols, height=heights), sref.rdr2geo(rows, cols, height=heights)
    assert max(np.abs(a[0] - b[0]).max(), np.abs(a[1] - b[1]).max()) < 1e-10  # degrees: 10 micrometres
    r, c = sref.geo2rdr(*a)
    assert max(np.abs(r - rows).max(), np.abs(c - cols).max()) < 1e-6


def test_stereo_functions_agree_across_kinds(pair):
    ref, sec, sref, ssec = pair
    rows, cols = _grid(ref, 7)
    lon, lat, h = ref.rdr2geo(rows, cols, height=HEIGHT + 200.0 * np.sin(rows / 50.0))
    sec_rows, sec_cols = sec.geo2rdr(lon, lat, h)
    zd = triangulate(ref, rows, cols, sec, sec_rows, sec_cols)
    sk = triangulate(sref, rows, cols, ssec, sec_rows, sec_cols)
    assert np.abs(sk[2] - h).max() < 1e-5 and np.abs(sk[2] - zd[2]).max() < 1e-5 and np.nanmax(sk[3]) < 1e-5
    for func in (intersection_angle, height_sensitivity):
        np.testing.assert_allclose(func(sref, ssec, lon, lat, h), func(ref, sec, lon, lat, h), rtol=1e-7)
    np.testing.assert_allclose(look_angles(sref, lon[3, 3], lat[3, 3], h[3, 3]),
                               look_angles(ref, lon[3, 3], lat[3, 3], h[3, 3]), atol=1e-7)
    np.testing.assert_allclose(rdr2rdr(sref, ssec, rows, cols, height=HEIGHT),
                               rdr2rdr(ref, sec, rows, cols, height=HEIGHT), atol=1e-6)
    a, b = PairPrior(ref, sec, HEIGHT, 300.0), PairPrior(sref, ssec, HEIGHT, 300.0)
    for key in ("mid", "low", "high"):
        np.testing.assert_allclose(b.fields[key], a.fields[key], atol=1e-6)


def _variant(sref, grid, formation, extra):
    doc = sref.to_dict()
    sec = doc["sicd"]
    del sec["inca"]
    sec.update(grid_type=grid, image_formation=formation, **extra)
    return SicdModel.from_dict(doc, f"{grid}/{formation}")


@pytest.mark.parametrize("grid", ["RGZERO-squint", "PLANE", "RGAZCOMP", "PFA"])
def test_every_grid_round_trips(pair, grid):
    """rdr2geo then geo2rdr returns every pixel within 1e-6 px, for each SICD image formation grid."""
    sref = pair[2]
    doc = sref.to_dict()
    if grid == "RGZERO-squint":  # COA 0.4 s after closest approach: a squinted stripmap
        doc["sicd"]["time_coa_poly"][0][0] += 0.4
        model = SicdModel.from_dict(doc, grid)
    elif grid == "PLANE":
        model = _variant(sref, "PLANE", "OTHER", {})
    elif grid == "RGAZCOMP":
        model = _variant(sref, "RGAZIM", "RGAZCOMP", {"rgazcomp": {"az_sf": 1.0 / 9000.0}})
    else:  # a spotlight: one COA time, the polar angle turning with it
        doc["sicd"]["time_coa_poly"] = [[doc["sicd"]["time_coa_poly"][0][0]]]
        sref = SicdModel.from_dict(doc, grid)
        model = _variant(sref, "RGAZIM", "PFA", {"pfa": {"polar_ang_poly": [0.0, 0.02], "spatial_freq_sf_poly": [
            1.0, 0.0, 0.05]}})
    rows, cols = _grid(model, 11)
    lon, lat, h = model.rdr2geo(rows, cols, height=HEIGHT)
    assert np.isfinite(lon).all()
    r, c = model.geo2rdr(lon, lat, h)
    assert max(np.abs(r - rows).max(), np.abs(c - cols).max()) < 1e-6
    t, rng, rdot = model.contour(rows, cols)
    x = ellipsoid.llh_to_ecef(lon, lat, h)
    p, v = model.orbit.position(t), model.orbit.velocity(t)
    d = x - p
    assert np.abs(np.linalg.norm(d, axis=-1) - rng).max() < 1e-6  # the target lies on its contour
    assert np.abs(-np.einsum("...i,...i", d, v) / np.linalg.norm(d, axis=-1) - rdot).max() < 1e-8


def test_json_round_trip_and_dispatch(pair, tmp_path):
    sref = pair[2]
    path = tmp_path / "model.json"
    path.write_text(sref.to_json(), encoding="utf-8")
    again = SensorModel.from_json(path)  # the one loader dispatches on schema and kind
    assert isinstance(again, SicdModel) and again.to_dict() == sref.to_dict()
    assert again.doc["schema"] == "sarstereo.sensor/2" and again.doc["kind"] == "sicd"


@pytest.mark.parametrize("field, value, message", [
    ("sicd.grid_type", "POLAR", "sicd.grid_type"),
    ("sicd.sample_spacing_m", [-1.0, 1.0], "sicd.sample_spacing_m[0]"),
    ("sicd.arp_poly", {"x": [1.0], "y": [2.0]}, "sicd.arp_poly.z"),
    ("sicd.inca", {"r_ca_scp_m": 1e4, "time_ca_poly": [0.0]}, "sicd.inca.drate_sf_poly"),
    ("pixels.sicd_col", [0, 0], "pixels.sicd_col[1]"),
    ("look_side", "up", "look_side"),
    ("reference_epoch", "yesterday", "reference_epoch"),
    ("shape.rows", 0, "shape.rows"),
])
def test_bad_fields_are_named(pair, field, value, message):
    doc = copy.deepcopy(pair[2].to_dict())
    *parents, key = field.split(".")
    target = doc
    for p in parents:
        target = target[p]
    target[key] = value
    with pytest.raises(SensorModelError, match=re.escape(f"bad.json: field '{message}'")):
        SensorModel.from_json(doc, source="bad.json")
    extra = copy.deepcopy(pair[2].to_dict())
    extra["sicd"]["bogus"] = 1
    with pytest.raises(SensorModelError, match="field 'sicd.bogus': is not part of schema"):
        SensorModel.from_json(extra)


def test_image_beyond_the_collection_is_an_error(pair):
    doc = pair[2].to_dict()
    doc["sicd"]["time_coa_poly"][0][0] += 2.0 * doc["sicd"]["collect_duration_s"]
    with pytest.raises(SensorModelError, match="orbit does not cover its image"):
        SicdModel.from_dict(doc, "late.json")


@pytest.mark.parametrize("kind", ["zero_doppler", "sicd"])
def test_multilook_keeps_the_geometry(pair, kind):
    """Pixel (r, c) of a 3 x 2 look image is the centre of its block: (3 r + 1, 2 c + 0.5)."""
    model = pair[0] if kind == "zero_doppler" else pair[2]
    looked = multilook_model(model, 3, 2)
    assert (looked.rows, looked.cols) == (model.rows // 3, model.cols // 2)
    rows, cols = _grid(looked, 5)
    a = looked.rdr2geo(rows, cols, height=HEIGHT)
    b = model.rdr2geo(3 * rows + 1.0, 2 * cols + 0.5, height=HEIGHT)
    assert max(np.abs(a[0] - b[0]).max(), np.abs(a[1] - b[1]).max()) < 1e-11
    assert json.loads(json.dumps(looked.to_dict()))  # still serialisable
