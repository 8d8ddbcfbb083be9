"""Sensor model JSON (schema sarstereo.sensor/1): strict validation, exact round trips.

A model that parses is trusted by every later step, so a malformed one must fail here, loudly,
naming the file and the field a user has to fix, and must never be half-accepted.
"""

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sar_stereo_plugin.core import SarStereoError, SensorModel, SensorModelError
from sar_stereo_plugin.core.flight import level_flight_model


@pytest.fixture(scope="module")
def good_doc():
    """A valid model document: 14 state vectors, 64 x 48 pixels."""
    model = level_flight_model(10.8, 46.8, 2500.0, 20.0, 8000.0, 35.0, rows=64, cols=48)
    return json.loads(model.to_json())


def _set(doc, path, value):
    *parents, last = path.split(".")
    for key in parents:
        doc = doc[key]
    doc[last] = value


def _delete(doc, path):
    *parents, last = path.split(".")
    for key in parents:
        doc = doc[key]
    del doc[last]


def _parse_file(tmp_path, doc):
    path = tmp_path / "image.sensor.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path, lambda: SensorModel.from_json(path)


def _expect_error(tmp_path, doc, field):
    path, parse = _parse_file(tmp_path, doc)
    with pytest.raises(SensorModelError) as info:
        parse()
    message = str(info.value)
    assert str(path) in message, message  # the user learns which file ...
    assert f"'{field}'" in message, message  # ... and which field to fix
    assert isinstance(info.value, ValueError) and isinstance(info.value, SarStereoError)
    return message


REQUIRED = ["schema", "wavelength_m", "look_side", "reference_epoch", "orbit", "azimuth", "range",
            "shape", "orbit.time_s", "orbit.position_m", "orbit.velocity_m_s",
            "azimuth.first_line_time_s", "azimuth.line_interval_s", "range.first_sample_range_m",
            "range.sample_spacing_m", "shape.rows", "shape.cols"]


@pytest.mark.parametrize("field", REQUIRED)
def test_missing_field(tmp_path, good_doc, field):
    doc = copy.deepcopy(good_doc)
    _delete(doc, field)
    assert "is missing" in _expect_error(tmp_path, doc, field)


def test_optional_doppler_defaults_to_zero(good_doc):
    doc = copy.deepcopy(good_doc)
    del doc["doppler_centroid_hz"]
    assert SensorModel.from_json(doc).doppler_centroid_hz == 0.0


@pytest.mark.parametrize("field, value", [
    ("wavelength_m", "0.03"),
    ("wavelength_m", True),  # bool is an int in Python, never a number here
    ("look_side", 1),
    ("reference_epoch", 20240501),
    ("orbit", [1, 2, 3]),
    ("azimuth", "fast"),
    ("azimuth.line_interval_s", None),
    ("range.first_sample_range_m", [9500.0]),
    ("shape.rows", 64.0),
    ("shape.cols", "48"),
    ("doppler_centroid_hz", {"value": 0}),
    ("orbit.time_s", "0, 1, 2, 3"),
    ("orbit.position_m", "ecef"),
    # right type, but not positive
    ("wavelength_m", 0.0), ("azimuth.line_interval_s", -0.005), ("range.sample_spacing_m", 0),
    ("range.first_sample_range_m", -1.0), ("shape.rows", 0), ("shape.cols", -3),
])
def test_wrong_type_or_non_positive(tmp_path, good_doc, field, value):
    doc = copy.deepcopy(good_doc)
    _set(doc, field, value)
    _expect_error(tmp_path, doc, field)


def test_strings_inside_vectors_are_not_coerced(tmp_path, good_doc):
    # numpy would silently turn "4301561.3" into a float; the schema says numbers
    doc = copy.deepcopy(good_doc)
    doc["orbit"]["position_m"][3] = [str(c) for c in doc["orbit"]["position_m"][3]]
    _expect_error(tmp_path, doc, "orbit.position_m")
    doc = copy.deepcopy(good_doc)
    doc["orbit"]["velocity_m_s"][0][2] = False
    _expect_error(tmp_path, doc, "orbit.velocity_m_s")


@pytest.mark.parametrize("field", ["extra", "orbit.acceleration_m_s2", "azimuth.prf_hz",
                                   "range.near_range_m", "shape.bands"])
def test_unknown_field(tmp_path, good_doc, field):
    doc = copy.deepcopy(good_doc)
    _set(doc, field, 1.0)
    assert "not part of schema" in _expect_error(tmp_path, doc, field)


def test_non_monotonic_orbit_times(tmp_path, good_doc):
    doc = copy.deepcopy(good_doc)
    t = doc["orbit"]["time_s"]
    t[5], t[6] = t[6], t[5]
    assert "index 6" in _expect_error(tmp_path, doc, "orbit.time_s")
    doc = copy.deepcopy(good_doc)
    doc["orbit"]["time_s"][4] = doc["orbit"]["time_s"][3]  # a repeated time is no step either
    _expect_error(tmp_path, doc, "orbit.time_s")


def test_too_few_state_vectors(tmp_path, good_doc):
    doc = copy.deepcopy(good_doc)
    for key in ("time_s", "position_m", "velocity_m_s"):
        doc["orbit"][key] = doc["orbit"][key][:3]
    assert "at least 4" in _expect_error(tmp_path, doc, "orbit.time_s")


def test_vector_count_must_match_times(tmp_path, good_doc):
    doc = copy.deepcopy(good_doc)
    doc["orbit"]["velocity_m_s"].pop()
    _expect_error(tmp_path, doc, "orbit.velocity_m_s")


@pytest.mark.parametrize("mutate", [
    lambda d: _set(d, "azimuth.first_line_time_s", d["orbit"]["time_s"][-1] - 1e-3),  # last lines after the orbit
    lambda d: _set(d, "azimuth.first_line_time_s", d["orbit"]["time_s"][0] - 1e-3),  # first line before it
    lambda d: _set(d, "shape.rows", 10_000_000),  # image longer than the orbit
])
def test_image_times_outside_orbit(tmp_path, good_doc, mutate):
    doc = copy.deepcopy(good_doc)
    mutate(doc)
    assert "orbit covers only" in _expect_error(tmp_path, doc, "azimuth.first_line_time_s")


@pytest.mark.parametrize("value", ["Right", "up", "", None])
def test_bad_look_side(tmp_path, good_doc, value):
    doc = copy.deepcopy(good_doc)
    doc["look_side"] = value
    _expect_error(tmp_path, doc, "look_side")


@pytest.mark.parametrize("field, value", [
    ("wavelength_m", math.nan), ("wavelength_m", math.inf), ("doppler_centroid_hz", -math.inf),
    ("azimuth.first_line_time_s", math.nan), ("range.sample_spacing_m", math.inf),
    ("orbit.time_s", [0.0, 1.0, math.nan, 3.0]),
])
def test_non_finite_numbers(tmp_path, good_doc, field, value):
    doc = copy.deepcopy(good_doc)
    _set(doc, field, value)
    where = field if field != "orbit.time_s" else "orbit.time_s[2]"
    _expect_error(tmp_path, doc, where)  # json.dumps writes NaN/Infinity, which json.loads accepts


def test_non_finite_vector(tmp_path, good_doc):
    doc = copy.deepcopy(good_doc)
    doc["orbit"]["position_m"][2][1] = math.inf
    assert "non-finite" in _expect_error(tmp_path, doc, "orbit.position_m")


def test_positions_must_be_ecef_metres(tmp_path, good_doc):
    doc = copy.deepcopy(good_doc)
    doc["orbit"]["position_m"] = [[p / 1000.0 for p in row] for row in doc["orbit"]["position_m"]]  # km
    assert "ECEF" in _expect_error(tmp_path, doc, "orbit.position_m")


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "2024-05-01T02:00:00+02:00",
                                   "2024/05/01 02:00:00", 1714528800])
def test_bad_epoch(tmp_path, good_doc, value):
    doc = copy.deepcopy(good_doc)
    doc["reference_epoch"] = value
    _expect_error(tmp_path, doc, "reference_epoch")


def test_wrong_schema_and_root(tmp_path, good_doc):
    doc = copy.deepcopy(good_doc)
    doc["schema"] = "sarstereo.sensor/9"
    _expect_error(tmp_path, doc, "schema")
    doc["schema"] = "sarstereo.sensor/2"  # the second schema needs its kind
    _expect_error(tmp_path, doc, "kind")
    doc["kind"] = "zero_doppler"  # ... and then reads the /1 fields
    assert SensorModel.from_json(doc).to_dict() == good_doc
    _expect_error(tmp_path, [good_doc], "<root>")


def test_unreadable_files_name_the_file(tmp_path):
    for name, content in (("broken.json", b'{"schema": "sarstereo.sensor/1",'),
                          ("binary.json", b"\x89HDF\r\n\x1a\n\xff\xfe\x00")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(SensorModelError, match=str(path)):
            SensorModel.from_json(path)
    with pytest.raises(SensorModelError, match="line 1, column"):
        SensorModel.from_json(tmp_path / "broken.json")
    with pytest.raises(SensorModelError, match="missing.json"):
        SensorModel.from_json(tmp_path / "missing.json")


def test_json_round_trip_is_exact(tmp_path, good_doc):
    model = SensorModel.from_json(good_doc)
    again = SensorModel.from_json(model.to_json())
    assert again.to_dict() == model.to_dict() == good_doc  # every float survives bit for bit
    path = tmp_path / "m.sensor.json"
    path.write_text(model.to_json(), encoding="utf-8")
    assert SensorModel.from_json(path).to_dict() == good_doc
    # numpy values from code are accepted and serialise as plain JSON
    doc = copy.deepcopy(good_doc)
    doc["shape"]["rows"] = np.int64(64)
    doc["wavelength_m"] = np.float64(doc["wavelength_m"])
    doc["orbit"]["position_m"] = np.array(doc["orbit"]["position_m"])
    assert json.loads(SensorModel.from_json(doc).to_json()) == good_doc


# ---------------------------------------------------------------- property-based corruption
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


def _paths(doc, prefix=()):
    """Every (container, key) pair of the document, nested lists included."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, value in items:
        yield prefix + (key,)
        if isinstance(value, (dict, list)):
            yield from _paths(value, prefix + (key,))


def _resolve(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    return doc, path[-1]


@st.composite
def corrupted(draw, base):
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        if not paths:
            break
        shallow = [p for p in paths if len(p) <= 2]  # sections and their fields, not just vector entries
        parent, key = _resolve(doc, draw(st.sampled_from(shallow if draw(st.booleans()) else paths)))
        value = parent[key]
        op = draw(st.sampled_from(["delete", "replace", "perturb", "shuffle", "truncate", "add_key"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(JSON_VALUES)
        elif op == "perturb" and isinstance(value, (int, float)) and not isinstance(value, bool):
            factor = draw(st.sampled_from([-1.0, 0.0, 1e-9, 0.5, 1.0 + 1e-12, 2.0, 1e9, 1e300]))
            offset = draw(st.sampled_from([0.0, 1.0, -1e6, 1e-300]))
            new = value * factor + offset
            parent[key] = int(new) if isinstance(value, int) and math.isfinite(new) else new
        elif op == "shuffle" and isinstance(value, list):
            parent[key] = draw(st.permutations(value))
        elif op == "truncate" and isinstance(value, list):
            parent[key] = value[:draw(st.integers(0, len(value)))]
        elif op == "add_key" and isinstance(value, dict):
            value[draw(st.text(max_size=6))] = draw(JSON_VALUES)
    return doc


def _valid_model_invariants(model):
    t = model.orbit_time_s
    assert t.size >= 4 and np.all(np.diff(t) > 0) and np.isfinite(t).all()
    assert model.orbit_position_m.shape == model.orbit_velocity_m_s.shape == (t.size, 3)
    assert np.isfinite(model.orbit_position_m).all() and np.isfinite(model.orbit_velocity_m_s).all()
    assert model.look_side in ("left", "right")
    assert model.wavelength_m > 0 and model.line_interval_s > 0 and model.sample_spacing_m > 0
    assert isinstance(model.rows, int) and isinstance(model.cols, int) and model.rows >= 1 and model.cols >= 1
    assert t[0] <= model.row_to_time(0) and model.row_to_time(model.rows - 1) <= t[-1]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_documents_fail_cleanly_or_parse_exactly(good_doc, data):
    doc = data.draw(corrupted(good_doc))
    try:
        model = SensorModel.from_json(doc, source="fuzz.sensor.json")
    except SensorModelError as exc:
        assert str(exc).startswith("fuzz.sensor.json: ")  # names the file; no other exception type
        return
    # accepted: it must be a valid model that says exactly what the document said
    _valid_model_invariants(model)
    assert model.to_dict() == {"doppler_centroid_hz": 0.0, **doc}
    assert SensorModel.from_json(model.to_json()).to_dict() == model.to_dict()


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_fails_cleanly(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "m.sensor.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SensorModelError, match="m.sensor.json"):
        SensorModel.from_json(path)
