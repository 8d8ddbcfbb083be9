"""Shared fixtures: the real data beside the project, synthetic flight geometries, an oracle matcher.
QGIS's own fixtures are in ``qgis_fixtures.py``, for the suites that run under QGIS (``plugin``,
``adversarial``); with ``SARSTEREO_CORE_ONLY=1`` (``make test``'s core run) QGIS and Qt cannot even be
imported, which proves the core and its tests need neither."""

import importlib.abc
import os
import sys
from pathlib import Path

import pytest

from sar_stereo_plugin.core.matchers import Matcher

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class _NoQgis(importlib.abc.MetaPathFinder):
    """Makes QGIS and Qt unimportable, as on a machine without QGIS."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("qgis", "PyQt5", "PyQt6", "sip", "processing"):
            raise ImportError(f"{name}: the core tests run without QGIS (SARSTEREO_CORE_ONLY)")


if os.environ.get("SARSTEREO_CORE_ONLY"):
    sys.meta_path.insert(0, _NoQgis())

SHARED_DATA = Path(os.environ.get("SARSTEREO_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; tests using it skip with a reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set SARSTEREO_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def winnipeg(shared_data):
    return shared_data / "uavsar_winnipeg"


@pytest.fixture(scope="session")
def stereo_models():
    """Two same-side airborne views (35 and 55 degrees incidence) of an Alpine scene centre."""
    from sar_stereo_plugin.core.flight import level_flight_model
    common = dict(center_lon=10.8, center_lat=46.8, center_h=2500.0, heading_deg=20.0,
                  altitude_m=8000.0, rows=400, cols=400)
    return (level_flight_model(incidence_deg=35.0, **common),
            level_flight_model(incidence_deg=55.0, **common))


class _Oracle(Matcher):
    """A matcher answering the simulator's ground truth for each patch pair, restricted to what a
    real matcher could see (valid truth inside the pair's secondary window). ``offset`` and
    ``certainty`` let a test tell answers apart."""

    name = "oracle"
    batch_size = 3

    def __init__(self, ground_truth, offset=(0.0, 0.0), certainty=1.0):
        from osgeo import gdal
        self.truth = gdal.Open(str(ground_truth)).ReadAsArray()
        self.offset, self.certainty, self.calls = offset, certainty, 0

    def describe(self):
        return "oracle"

    def match(self, pairs):
        import numpy as np

        from sar_stereo_plugin.core.matchers import PatchMatch
        out = []
        for p in pairs:
            self.calls += 1
            (r0, c0), (h, w) = p.reference_origin, p.reference.shape
            g = self.truth[:, r0:r0 + h, c0:c0 + w]
            rows = g[0] - p.secondary_origin[0] + self.offset[0]
            cols = g[1] - p.secondary_origin[1] + self.offset[1]
            seen = ((g[2] == 1) & (rows >= -0.5) & (cols >= -0.5) & (rows <= p.secondary.shape[0] - 0.5)
                    & (cols <= p.secondary.shape[1] - 0.5))
            cert = self.certainty(p) if callable(self.certainty) else self.certainty
            out.append(PatchMatch(*(np.where(seen, a, np.nan).astype(np.float32)
                                    for a in (rows, cols, np.full(rows.shape, cert)))))
        return out


@pytest.fixture(scope="session")
def oracle():
    """The oracle matcher class (see _Oracle)."""
    return _Oracle


@pytest.fixture(scope="session")
def alpine_pair(tmp_path_factory, shared_data):
    """A small 35/55 degree pair over Hintereisferner with ground truth: (paths dict, result)."""
    from sar_stereo_plugin.core.flight import FlightDesign
    from sar_stereo_plugin.core.simulate import simulate_pair
    tmp = tmp_path_factory.mktemp("alpine_pair")
    paths = {"dem": str(shared_data / "dem" / "hintereisferner_srtm3.tif"), "reference": str(tmp / "ref.tif"),
             "secondary": str(tmp / "sec.tif"), "ground_truth": str(tmp / "gt.tif")}
    result = simulate_pair(paths["dem"], FlightDesign(rows=300, cols=300), seed=3,
                           reference_output=paths["reference"], secondary_output=paths["secondary"],
                           ground_truth_output=paths["ground_truth"])
    return paths, result


@pytest.fixture(scope="session")
def without_torch():
    """Python source that makes torch, torchvision and romatch unimportable (prefix of a script
    run in a subprocess)."""
    return """import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('torch', 'romatch', 'torchvision'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
"""
