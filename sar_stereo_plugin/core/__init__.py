"""Stereo radargrammetry without QGIS: geometry, products, simulation, matching. Never imports qgis."""

from .errors import GeometryError, RasterError, SarStereoError, SensorModelError
from .sensor import SensorModel, height_sensitivity, intersection_angle, triangulate
from .products import read_sensor_model, write_sensor_model
from .pair import inspect_pair
from .simulate import FlightDesign, simulate_pair
from .matchers import create_matcher
from .patches import MatchSettings, match_pair
from .evaluate import evaluate_matches

__all__ = [
    "SarStereoError", "SensorModelError", "GeometryError", "RasterError",
    "SensorModel", "triangulate", "intersection_angle", "height_sensitivity",
    "read_sensor_model", "write_sensor_model", "inspect_pair", "FlightDesign", "simulate_pair",
    "create_matcher", "MatchSettings", "match_pair", "evaluate_matches",
]
