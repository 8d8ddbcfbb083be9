"""The core library never reaches up into QGIS: people use it from plain Python.

Two checks, because each misses what the other sees: the source scan finds an import hidden in a
function that no import-time test executes; the subprocess finds an import that arrives
indirectly, through another module.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "sar_stereo_plugin" / "core"
FORBIDDEN = ("qgis", "PyQt5", "PyQt6", "sip")


def _forbidden(name):
    return name is not None and name.split(".")[0] in FORBIDDEN


def _qgis_imports(path, root=ROOT):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            names = [node.args[0].value]  # importlib.import_module("qgis.core") and friends
        else:
            continue
        yield from (f"{path.relative_to(root)}:{node.lineno}: {n}" for n in names if _forbidden(n))


def test_no_core_source_imports_qgis():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 8  # the scan really sees the core package
    offenders = [hit for path in files for hit in _qgis_imports(path)]
    assert not offenders, "core must not import QGIS/Qt:\n" + "\n".join(offenders)


def test_scanner_catches_an_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from qgis.core import QgsProject\n    import importlib\n"
                      "    return importlib.import_module('PyQt5.QtCore')\n")
    assert len(list(_qgis_imports(sample, root=tmp_path))) == 2


_BLOCKED_IMPORT = r"""
import importlib, json, pkgutil, sys

class Blocker:
    # a meta path finder that makes QGIS and Qt unimportable, as on a machine without QGIS
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in %(forbidden)r:
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Blocker())
try:
    import qgis.core
    blocked = False
except ImportError:
    blocked = True

import sar_stereo_plugin.core as core
failures = {}
for info in pkgutil.walk_packages(core.__path__, prefix="sar_stereo_plugin.core."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failures[info.name] = f"{type(exc).__name__}: {exc}"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in %(forbidden)r)
print(json.dumps({"blocked": blocked, "failures": failures, "loaded": loaded,
                  "public": sorted(core.__all__)}))
"""


def test_core_imports_without_qgis():
    script = _BLOCKED_IMPORT % {"forbidden": FORBIDDEN}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["blocked"], "the blocker did not work; the test proves nothing"
    assert report["failures"] == {}, report["failures"]
    assert report["loaded"] == []
    assert {"SensorModel", "triangulate", "read_sensor_model", "SarStereoError"} <= set(report["public"])
