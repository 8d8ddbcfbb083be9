"""Stereo radargrammetry without QGIS: one entry point per stage, its settings and results.

Never imports qgis; torch is imported only when a deep matcher or training is used (the training
entry points below load on first access).
"""

from .dem import Dem, open_dem
from .elevation import ElevationResult, ElevationSettings, generate_elevation
from .errors import (
    Canceled,
    DatasetCanceled,
    DatasetError,
    ElevationCanceled,
    FinetuneCanceled,
    FinetuneError,
    GeometryError,
    ImportCanceled,
    InvalidMatcherOption,
    MatcherUnavailable,
    MatchingCanceled,
    RasterError,
    SarStereoError,
    SensorModelError,
    SettingsError,
    SimulationCanceled,
)
from .evaluate import evaluate_dem, evaluate_matches
from .flight import FlightDesign, level_flight_model
from .matchers import MATCHERS, create_matcher
from .matching import MatchResult, MatchSettings, match_pair
from .pair import PairReport, inspect_pair
from .products import open_product, read_sensor_model, write_sensor_model
from .products.importer import ImportResult, import_product
from .sensor import SensorModel
from .sicd_model import SicdModel
from .simulate import SimulationOptions, SimulationResult, simulate_pair
from .stereo import height_sensitivity, intersection_angle, rdr2rdr, triangulate

_TRAINING = {"build_dataset": "dataset", "DatasetResult": "dataset", "finetune": "finetune",
             "FinetuneSettings": "settings", "FinetuneResult": "finetune"}

__all__ = [
    # errors
    "SarStereoError", "SettingsError", "Canceled", "SensorModelError", "GeometryError", "RasterError",
    "DatasetError", "MatcherUnavailable", "InvalidMatcherOption", "FinetuneError", "SimulationCanceled",
    "MatchingCanceled", "ElevationCanceled", "DatasetCanceled", "FinetuneCanceled", "ImportCanceled",
    # geometry and products
    "SensorModel", "SicdModel", "read_sensor_model", "write_sensor_model", "triangulate", "rdr2rdr",
    "intersection_angle", "height_sensitivity", "Dem", "open_dem", "level_flight_model",
    "open_product", "import_product", "ImportResult",
    # stages
    "inspect_pair", "PairReport",
    "simulate_pair", "FlightDesign", "SimulationOptions", "SimulationResult",
    "match_pair", "MatchSettings", "MatchResult", "create_matcher", "MATCHERS",
    "evaluate_matches",
    "generate_elevation", "ElevationSettings", "ElevationResult",
    "evaluate_dem",
    *_TRAINING,
]


def __getattr__(name):
    """The training entry points, imported on first use."""
    if name in _TRAINING:
        import importlib
        return getattr(importlib.import_module(f".training.{_TRAINING[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
