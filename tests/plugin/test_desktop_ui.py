"""What the Toolbox, the dialogs and the Model Designer show: names, help, groups, icons, spin boxes,
default folders, the shipped model, the plugin menu."""

import configparser
import re
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingModelAlgorithm, QgsProcessingParameterDefinition, QgsProcessingUtils
from qgis.gui import QgsDoubleSpinBox
from qgis.PyQt.QtGui import QTextDocument
from test_desktop import desktop

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def provider(plugin):
    return QgsApplication.processingRegistry().providerById("sarstereo")


def _algorithms(provider):
    return [a for a in provider.algorithms() if not isinstance(a, QgsProcessingModelAlgorithm)]


def _model(provider):
    return next(a for a in provider.algorithms() if isinstance(a, QgsProcessingModelAlgorithm))


def _rendered(html):
    doc = QTextDocument()
    doc.setHtml(html)
    return doc.toPlainText()


def test_help_renders_and_names_what_exists(provider):
    """Help is HTML: '<image>.sensor.json' must survive rendering; every 'Name' (sarstereo:id) it cites
    is an algorithm of that name; every advanced parameter is explained."""
    titles = {a.id(): a.displayName() for a in provider.algorithms()}
    inspect = _rendered(provider.algorithm("inspectpair").shortHelpString())
    assert "<image>.sensor.json" in inspect
    for alg in _algorithms(provider):
        text = _rendered(alg.shortHelpString())
        for name, alg_id in re.findall(r"'([^']+)' \((sarstereo:\w+)\)", text):
            assert titles.get(alg_id) == name, (alg.id(), name, alg_id)
        for menu in re.findall(r"Settings > [^,.;)]+", text):
            assert menu.startswith("Settings > Options > Processing > Providers > SAR stereo radargrammetry"), menu
        advanced = [p for p in alg.parameterDefinitions() if p.flags() & QgsProcessingParameterDefinition.FlagAdvanced]
        for param in advanced:
            assert f"{param.description()}:" in text, (alg.id(), param.name())
    assert "sarstereo:installdeps" in _rendered(provider.algorithm("matchpair").shortHelpString())


def test_dialog_wording(provider):
    """No raw lower-case enum keys, no '+-', the device named for both matchers it drives."""
    for alg in _algorithms(provider):
        for param in alg.parameterDefinitions():
            assert "+-" not in param.description(), (alg.id(), param.name())
            if param.type() == "enum":
                assert all(option[0].isupper() for option in param.options()), (alg.id(), param.options())
    device = provider.algorithm("matchpair").parameterDefinition("DEVICE").description()
    assert "RoMa" in device and "Light" in device


def test_spin_boxes_show_sensible_decimals(plugin, qgis_iface):
    import processing
    desktop(qgis_iface)
    places = {}
    for alg_id in ("simulatepair", "matchpair", "generateelevation", "builddataset"):
        dialog = processing.createAlgorithmDialog(f"sarstereo:{alg_id}", {})
        places[alg_id] = sorted({box.decimals() for box in dialog.findChildren(QgsDoubleSpinBox)})
        dialog.close()
    assert places["simulatepair"] == [0, 1, 2, 4]  # altitude, angles and looks, spacing, wavelength
    assert all(max(p) <= 4 for p in places.values()), places


def test_toolbox_groups_in_workflow_order_each_algorithm_its_icon(provider):
    groups = sorted({a.group() for a in provider.algorithms()})
    assert groups == ["0 Setup", "1 Pair geometry", "2 Matching", "3 Elevation", "4 Complete workflow",
                      "5 Learning", "6 Simulation"]
    icons = [a.svgIconPath() for a in _algorithms(provider)]
    assert len(set(icons)) == len(icons) == len(provider.algorithms()) - 1  # the model has QGIS's own
    assert all(Path(icon).is_file() and not a.icon().isNull() for icon, a in zip(icons, _algorithms(provider)))


def test_training_outputs_default_outside_the_temporary_folder(provider):
    temp = Path(QgsProcessingUtils.tempFolder()).resolve()
    profile = Path(QgsApplication.qgisSettingsDirPath()).resolve()
    for alg_id in ("builddataset", "finetune"):
        default = Path(provider.algorithm(alg_id).parameterDefinition("OUTPUT").defaultValue()).resolve()
        assert default.is_relative_to(profile) and not default.is_relative_to(temp), default


def test_shipped_model_valid_labelled_ordered(provider):
    model = _model(provider)
    ok, issues = model.validate()
    assert ok, issues
    for child_id in model.childAlgorithms():
        assert model.validateChildAlgorithm(child_id)[0], child_id
    inputs = [(p.name(), bool(p.flags() & p.FlagOptional)) for p in model.parameterDefinitions()
              if not p.isDestination()]
    assert inputs == [("image_reference", False), ("image_secondary", False), ("matcher", False),
                      ("reference_dem", True)]
    outputs = {p.name(): p.description() for p in model.destinationParameterDefinitions()}
    assert len(outputs) == 9 and all(outputs.values()), outputs
    assert outputs["refine:TiePoints"] == "Tie points"
    assert outputs["elevation:DEM"] == "DEM" and outputs["match:Matches"] == "Matches"
    assert outputs["elevation:Quality"] == "DEM quality"


def test_edit_model_from_the_toolbox(plugin, qgis_iface, provider):
    from processing.gui.ProviderActions import ProviderContextMenuActions
    desktop(qgis_iface)
    plugin.initGui()
    try:
        model = _model(provider)
        action = next(a for a in ProviderContextMenuActions.actions if a.name == "Edit Model…"
                      and type(a).__module__.startswith("sar_stereo_plugin"))
        action.setData(provider.algorithm("matchpair"), None)
        assert not action.isEnabled()
        action.setData(model, None)
        assert action.isEnabled()
        action.execute()
        opened = action.dialog.model()
        assert opened.sourceFilePath() == "" and opened.validate()[0]  # saving never overwrites the plugin's file
        action.dialog.close()
    finally:
        plugin.unload()
        plugin.initProcessing()


def test_plugin_menu_opens_the_installer(plugin, qgis_iface):
    desktop(qgis_iface)
    plugin.initGui()
    try:
        assert [a.text() for a in plugin.actions] == ["Install deep-learning matchers…",
                                                     "Check deep-learning matchers…", "Remove deep-learning matchers…"]
        from sar_stereo_plugin.processing.ui import open_installer
        dialog = open_installer(2)
        assert dialog.algorithm().id() == "sarstereo:installdeps"
        assert dialog.createProcessingParameters()["ACTION"] == 2  # the menu item chose "Remove"
        dialog.close()
    finally:
        plugin.unload()
        plugin.initProcessing()


def test_metadata_tells_the_whole_story():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    about, changelog = meta["general"]["about"], meta["general"]["changelog"]
    for word in ("match", "elevation", "Install deep-learning matchers", "light"):
        assert word.lower() in about.lower(), word
    for word in ("matching", "elevation", "installer", "fine-tun"):
        assert word in changelog.lower(), word
