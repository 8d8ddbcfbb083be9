"""The fixtures of the suites that run under QGIS (pytest-qgis): imported by their conftest."""

import pytest


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
