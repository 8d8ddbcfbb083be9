"""The ``sarstereo`` Processing provider."""

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.inspectpair import InspectPair
from .algorithms.simulatepair import SimulatePair

try:  # compiled by `make` from resources.qrc; a bare checkout falls back to the file
    from .. import resources_rc  # noqa: F401
    ICON = ":/plugins/sar_stereo_plugin/icon.svg"
except ImportError:
    ICON = str(Path(__file__).resolve().parents[1] / "icon.svg")


class SarStereoProvider(QgsProcessingProvider):
    def id(self):
        return "sarstereo"

    def name(self):
        return "SAR stereo radargrammetry"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802 - QGIS API
        return ICON

    def loadAlgorithms(self):  # noqa: N802 - QGIS API
        for algorithm in (InspectPair(), SimulatePair()):
            self.addAlgorithm(algorithm)
