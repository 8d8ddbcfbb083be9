"""QGIS plugin: stereo radargrammetry of SAR image pairs into elevation models.

The package imports no QGIS at load time, so ``sar_stereo_plugin.core`` works in plain Python.
"""


def classFactory(iface):  # noqa: N802 - name required by QGIS
    from .plugin import SarStereoPlugin
    return SarStereoPlugin(iface)
