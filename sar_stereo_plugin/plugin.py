"""QGIS entry point: puts the plugin's deep-learning packages on sys.path, registers the Processing
provider, and in the desktop adds the plugin menu (installer) and "Edit Model…" for the shipped
models in the Processing Toolbox."""

from qgis.core import QgsApplication


class SarStereoPlugin:
    def __init__(self, iface):
        from .deps import activate
        from .processing.common import deps_folder
        self.iface = iface
        self.provider = None
        self.actions = []
        self.context_actions = []
        self.deps_active = activate(deps_folder())  # before anything imports torch

    def initProcessing(self):  # noqa: N802 - QGIS API
        if self.provider is not None:  # initGui calls it too
            return
        from .processing.provider import SarStereoProvider
        self.provider = SarStereoProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS API
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .processing.common import ICONS, PROVIDER_NAME
        from .processing.ui import edit_model_action, open_installer
        self.initProcessing()
        for text, action in (("Install deep-learning matchers…", 0), ("Check deep-learning matchers…", 1),
                             ("Remove deep-learning matchers…", 2)):
            qaction = QAction(QIcon(str(ICONS / "installdeps.svg")), text, self.iface.mainWindow())
            qaction.triggered.connect(lambda _=False, a=action: open_installer(a))
            self.iface.addPluginToMenu(PROVIDER_NAME, qaction)
            self.actions.append(qaction)
        try:
            from processing.gui.ProviderActions import ProviderContextMenuActions
        except ImportError:  # Processing plugin disabled
            return
        self.context_actions = [edit_model_action()]
        ProviderContextMenuActions.registerProviderContextMenuActions(self.context_actions)

    def unload(self):
        from .processing.common import PROVIDER_NAME
        for qaction in self.actions:
            self.iface.removePluginMenu(PROVIDER_NAME, qaction)
        self.actions = []
        if self.context_actions:
            from processing.gui.ProviderActions import ProviderContextMenuActions
            ProviderContextMenuActions.deregisterProviderContextMenuActions(self.context_actions)
            self.context_actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
