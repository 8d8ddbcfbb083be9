"""The ``sarstereo`` Processing provider."""

from pathlib import Path

from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.builddataset import BuildDataset
from .algorithms.evaluatedem import EvaluateDem
from .algorithms.evaluatematches import EvaluateMatches
from .algorithms.finetune import Finetune
from .algorithms.generateelevation import GenerateElevation
from .algorithms.importproduct import ImportProduct
from .algorithms.inspectpair import InspectPair
from .algorithms.matchpair import MatchPair
from .algorithms.simulatepair import SimulatePair
from .common import WEIGHTS_SETTING, processing_config

try:  # compiled by `make` from resources.qrc; a bare checkout falls back to the file
    from .. import resources_rc  # noqa: F401
    ICON = ":/plugins/sar_stereo_plugin/icon.svg"
except ImportError:
    ICON = str(Path(__file__).resolve().parents[1] / "icon.svg")


MODELS = Path(__file__).resolve().parent / "models"


class SarStereoProvider(QgsProcessingProvider):
    def id(self):
        return "sarstereo"

    def name(self):
        return "SAR stereo radargrammetry"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802 - QGIS API
        return ICON

    def load(self):
        """Also declares the provider's setting (Settings > Options > Processing > Providers)."""
        config = processing_config()
        if config:
            ProcessingConfig, Setting = config
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(Setting(
                self.name(), WEIGHTS_SETTING, "Folder of matcher weights (roma_outdoor.pth, dinov2_vitl14_pretrain.pth)",
                "", valuetype=Setting.FOLDER))
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self):
        config = processing_config()
        if config:
            config[0].removeSetting(WEIGHTS_SETTING)

    def loadAlgorithms(self):  # noqa: N802 - QGIS API
        for algorithm in (ImportProduct(), InspectPair(), SimulatePair(), MatchPair(), EvaluateMatches(),
                          GenerateElevation(), EvaluateDem(), BuildDataset(), Finetune()):
            self.addAlgorithm(algorithm)
        for path in sorted(MODELS.glob("*.model3")):  # the shipped graphical models
            model = QgsProcessingModelAlgorithm()
            if model.fromFile(str(path)):
                self.addAlgorithm(model)
