"""Enable sar_stereo_plugin in a QGIS profile's settings file (QGIS3.ini), keeping all else."""

import sys
from pathlib import Path

from qgis.PyQt.QtCore import QSettings

ini = Path(sys.argv[1])
ini.parent.mkdir(parents=True, exist_ok=True)
settings = QSettings(str(ini), QSettings.IniFormat)
settings.setValue("PythonPlugins/sar_stereo_plugin", True)
settings.sync()
