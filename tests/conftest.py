"""Shared fixtures: the real data beside the project, synthetic flight geometries."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

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


@pytest.fixture
def plugin(qgis_iface, qgis_processing):
    """The plugin loaded as QGIS loads it, its provider registered; unloaded afterwards."""
    import sar_stereo_plugin
    plugin = sar_stereo_plugin.classFactory(qgis_iface)
    plugin.initProcessing()
    yield plugin
    plugin.unload()


@pytest.fixture(autouse=True, scope="session")
def _collect_qgis_objects_before_exit(qgis_app):
    """Free every QGIS object Python still holds while QGIS is alive: collected after pytest-qgis
    has called exitQgis, they crash the interpreter at exit (a PyQGIS teardown-order problem)."""
    yield
    import gc
    gc.collect()
