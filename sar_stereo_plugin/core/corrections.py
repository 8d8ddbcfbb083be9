"""Corrections of a sensor model: what refinement learns about the metadata's errors.

An optional section ``corrections`` of the sensor-model JSON; a model without it is exact as
written. With it, the model's geometry becomes (``t_ref`` = ``reference_time_s``, times in seconds
after the model's epoch)::

    time of row r        t = t_n + a0 + a1 (t_n - t_ref),   t_n = first_line_time_s + r line_interval_s
    slant range of col c R = R_n + r0 + r1 (t - t_ref),     R_n = first_sample_range_m + c sample_spacing_m
    platform position    p(t) + along * v_hat + cross * side_hat + up * up_hat

with ``azimuth_time_s`` = [a0, a1], ``slant_range_m`` = [r0, r1] and ``position_m`` = [along, cross,
up]: a constant trajectory offset in the track frame at ``t_ref`` (``side_hat`` points to the look
side, ``up_hat`` away from the Earth's centre). An along-track offset moves the image like an
azimuth time offset of along / speed; both are kept for airborne systems that report them apart.

``unobservable`` lists the terms (:data:`TERMS`) refinement held at zero because nothing it was
given could see them (no absolute control): a step that uses the model can warn that, for
instance, an undetermined slant-range offset may bias every height.
"""

import math
from dataclasses import dataclass

import numpy as np

from .errors import SensorModelError, located

KEYS = ("reference_time_s", "azimuth_time_s", "slant_range_m", "position_m", "unobservable")
TERMS = ("azimuth_offset", "azimuth_drift", "range_offset", "range_drift", "cross_track", "vertical")


@dataclass(frozen=True)
class Corrections:
    """The correction terms of one image (see the module doc); all zero changes nothing."""

    reference_time_s: float = 0.0
    azimuth_time_s: tuple = (0.0, 0.0)
    slant_range_m: tuple = (0.0, 0.0)
    position_m: tuple = (0.0, 0.0, 0.0)
    unobservable: tuple = ()  # names of TERMS held because no absolute control could see them

    @classmethod
    def of(cls, model):
        """``model``'s corrections, or none yet (referred to its middle row) to add terms to."""
        return model.corrections or cls(reference_time_s=model.centre_time_s)

    # ------------------------------------------------------------ time and range
    def time(self, t_nominal):
        """True image time of nominal row times."""
        a0, a1 = self.azimuth_time_s
        return t_nominal + a0 + a1 * (t_nominal - self.reference_time_s)

    def nominal_time(self, t):
        """Nominal row time of true image times (inverse of :meth:`time`)."""
        a0, a1 = self.azimuth_time_s
        return (t - a0 + a1 * self.reference_time_s) / (1.0 + a1)

    def range_offset(self, t):
        """Slant range added to the nominal range of a column imaged at true time ``t``."""
        r0, r1 = self.slant_range_m
        if t is None or r1 == 0.0:
            return r0
        return r0 + r1 * (np.asarray(t, dtype=np.float64) - self.reference_time_s)

    def position_offset(self, position, velocity, look_side):
        """ECEF offset (3,) of the trajectory from the platform's state at ``reference_time_s``."""
        along, cross, up = self.position_m
        if along == cross == up == 0.0:
            return np.zeros(3)
        up_hat = np.asarray(position, float) / np.linalg.norm(position)
        v_hat = np.asarray(velocity, float) / np.linalg.norm(velocity)
        up_hat = up_hat - (up_hat @ v_hat) * v_hat
        up_hat /= np.linalg.norm(up_hat)
        side_hat = np.cross(v_hat, up_hat) * (1.0 if look_side == "right" else -1.0)
        return along * v_hat + cross * side_hat + up * up_hat

    # ------------------------------------------------------------ JSON
    def is_zero(self):
        """Changes nothing and says nothing."""
        return (not any(self.azimuth_time_s) and not any(self.slant_range_m) and not any(self.position_m)
                and not self.unobservable)

    def to_dict(self):
        return {"reference_time_s": float(self.reference_time_s),
                "azimuth_time_s": [float(v) for v in self.azimuth_time_s],
                "slant_range_m": [float(v) for v in self.slant_range_m],
                "position_m": [float(v) for v in self.position_m]} | (
                   {"unobservable": list(self.unobservable)} if self.unobservable else {})

    @classmethod
    def from_dict(cls, doc, source):
        """Parse and check the ``corrections`` section of a sensor-model document."""
        if not isinstance(doc, dict):
            raise SensorModelError(located(source, "corrections", "expected an object"))
        unknown = sorted(set(doc) - set(KEYS), key=str)
        if unknown:
            raise SensorModelError(located(source, f"corrections.{unknown[0]}", "is not a correction term; "
                                                                                 f"use {', '.join(KEYS)}"))
        values = {}
        for key, size in (("azimuth_time_s", 2), ("slant_range_m", 2), ("position_m", 3)):
            values[key] = _numbers(doc.get(key, [0.0] * size), size, f"corrections.{key}", source)
        values["reference_time_s"] = _numbers([doc.get("reference_time_s", 0.0)], 1,
                                              "corrections.reference_time_s", source)[0]
        held = doc.get("unobservable", [])
        if not isinstance(held, list) or not set(held) <= set(TERMS):
            raise SensorModelError(located(source, "corrections.unobservable", f"{held!r}; give a list of "
                                                                               f"{', '.join(TERMS)}"))
        values["unobservable"] = tuple(held)
        if not abs(values["azimuth_time_s"][1]) < 0.1:
            raise SensorModelError(located(source, "corrections.azimuth_time_s", "a drift of 10 % of the time "
                                                                                 "or more is not a correction"))
        return cls(**values)


def _numbers(value, size, field, source):
    if (not isinstance(value, (list, tuple)) or len(value) != size
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise SensorModelError(located(source, field, f"expected {size} finite number(s), got {value!r}"))
    return tuple(float(v) for v in value)


def misplaced(model, lines=0.0, samples=0.0, drift_lines=0.0, cross_track_m=0.0):
    """``model`` as wrong metadata would describe it: it puts the ground ``lines`` later (plus
    ``drift_lines`` more at the last line than at the middle, less at the first) and ``samples``
    farther than the image shows it, with its trajectory ``cross_track_m`` off to the look side. For
    mission planning and for testing refinement; :func:`.refine_pair.refine_pair` undoes it."""
    half = max(0.5 * (model.rows - 1) * model.line_interval_s, model.line_interval_s)
    return model.with_corrections(Corrections(
        model.centre_time_s, (-lines * model.line_interval_s, -drift_lines * model.line_interval_s / half),
        (-samples * model.sample_spacing_m, 0.0), (0.0, cross_track_m, 0.0)))
