"""The plugin suite runs under QGIS."""

from qgis_fixtures import _collect_qgis_objects_before_exit, plugin  # noqa: F401  (fixtures)
