"""Desktop-only pieces: the installer dialog behind the plugin menu, and "Edit Model…" for the models
the provider ships (QGIS offers it only for the models of the user's own Models folder)."""

from qgis.core import QgsProcessingModelAlgorithm

_OPEN = []  # non-modal dialogs are kept alive here while shown


def open_installer(action=0):
    """Open sarstereo:installdeps's dialog with ACTION preset (0 install, 1 check, 2 remove)."""
    import processing
    dialog = processing.createAlgorithmDialog("sarstereo:installdeps", {"ACTION": action})
    _OPEN[:] = [d for d in _OPEN if d.isVisible()] + [dialog]
    dialog.show()
    return dialog


def edit_model(model):
    """Open a copy of a shipped model in the Model Designer: saving asks for a file in the user's
    models folder and never writes over the plugin's file."""
    from processing.modeler.ModelerDialog import ModelerDialog
    copy = QgsProcessingModelAlgorithm()
    copy.fromFile(model.sourceFilePath())
    copy.setSourceFilePath("")
    dialog = ModelerDialog.create(copy)
    dialog.show()
    return dialog


def edit_model_action():
    """The Toolbox context-menu action "Edit Model…" for the provider's models."""
    from processing.gui.ContextAction import ContextAction

    class EditShippedModel(ContextAction):
        def __init__(self):
            super().__init__()
            self.name = "Edit Model…"

        def isEnabled(self):  # noqa: N802 - QGIS API
            data = getattr(self, "itemData", None)
            return (isinstance(data, QgsProcessingModelAlgorithm) and data.provider() is not None
                    and data.provider().id() == "sarstereo")

        def execute(self):
            self.dialog = edit_model(self.itemData)

    return EditShippedModel()
