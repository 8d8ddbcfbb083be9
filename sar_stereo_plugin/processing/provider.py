"""The ``sarstereo`` Processing provider."""

from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingModelAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.builddataset import BuildDataset
from .algorithms.evaluatedem import EvaluateDem
from .algorithms.evaluatematches import EvaluateMatches
from .algorithms.finetune import Finetune
from .algorithms.generateelevation import GenerateElevation
from .algorithms.importproduct import ImportProduct
from .algorithms.inspectpair import InspectPair
from .algorithms.installdeps import InstallDeps
from .algorithms.matchpair import MatchPair
from .algorithms.refinepair import RefinePair
from .algorithms.simulatepair import SimulatePair
from .common import PROVIDER_NAME, WEIGHTS_SETTING, processing_config

try:  # compiled by `make` from resources.qrc; a bare checkout falls back to the file
    from .. import resources_rc  # noqa: F401
    ICON = ":/plugins/sar_stereo_plugin/icon.svg"
except ImportError:
    ICON = str(Path(__file__).resolve().parents[1] / "icon.svg")


MODELS = Path(__file__).resolve().parent / "models"
ALGORITHMS = (InstallDeps, ImportProduct, SimulatePair, InspectPair, RefinePair, MatchPair, EvaluateMatches,
              GenerateElevation, EvaluateDem, BuildDataset, Finetune)


def shipped_models():
    """The graphical models shipped with the plugin, loaded from processing/models/*.model3."""
    models = []
    for path in sorted(MODELS.glob("*.model3")):
        model = QgsProcessingModelAlgorithm()
        if model.fromFile(str(path)):
            model.setSourceFilePath(str(path))
            models.append(model)
    return models


class SarStereoProvider(QgsProcessingProvider):
    def id(self):
        return "sarstereo"

    def name(self):
        return PROVIDER_NAME

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
                self.name(), WEIGHTS_SETTING,
                "Folder of matcher weights (roma_outdoor.pth, dinov2_vitl14_pretrain.pth)", "",
                valuetype=Setting.FOLDER))
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        # a model's steps are looked up in the registry when it loads, and this provider enters the
        # registry only after load(): load the models again once it is there
        QgsApplication.processingRegistry().providerAdded.connect(self._registered)
        return True

    def _registered(self, provider_id):
        if provider_id == self.id():
            QgsApplication.processingRegistry().providerAdded.disconnect(self._registered)
            self.refreshAlgorithms()

    def unload(self):
        config = processing_config()
        if config:
            config[0].removeSetting(WEIGHTS_SETTING)

    def loadAlgorithms(self):  # noqa: N802 - QGIS API
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())
        for model in shipped_models():
            self.addAlgorithm(model)
