"""The layers of the core library, and its independence from QGIS and torch.

The core never reaches up into QGIS: people use it from plain Python. Two checks, because each
misses what the other sees: the source scan finds an import hidden in a function that no
import-time test executes; the subprocess finds an import that arrives indirectly.

Inside the core, every module may import only what :data:`ALLOWED` lists for it (the table of
docs/ARCHITECTURE.md): foundations import nothing above them, stages never import each other's
private names, and evaluation never imports elevation.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


# ---------------------------------------------------------------- layers inside the core
FOUNDATIONS = {"errors", "progress", "pixels", "atomic", "inputs", "ellipsoid"}
# module (top-level name inside core) -> the core modules it may import
ALLOWED = {
    # foundations
    "errors": set(), "pixels": set(), "ellipsoid": set(), "progress": {"errors"},
    "atomic": {"errors"}, "inputs": {"errors"},  # outputs never over inputs; inputs read bounded
    # geometry and I/O
    "orbit": {"errors"},
    "rangedoppler": {"ellipsoid"},
    "raster": {"atomic", "errors", "inputs", "pixels"},
    "dem": {"errors", "inputs", "pixels", "raster"},
    "corrections": {"errors"},
    # sicd_model: the second kind of sensor model, which sensor loads (on use) for schema /2, kind sicd
    "sensor": {"corrections", "dem", "ellipsoid", "errors", "inputs", "orbit", "rangedoppler", "sicd_model"},
    "sicd_doc": {"ellipsoid", "errors"},
    "sicd_model": {"ellipsoid", "errors", "orbit", "rangedoppler", "sensor", "sicd_doc"},
    "stereo": {"ellipsoid", "rangedoppler"},
    "coregistration": set(),
    "flight": {"ellipsoid", "errors", "sensor"},
    "facets": {"ellipsoid", "errors"},
    "fusion": set(),
    "products": {"atomic", "ellipsoid", "errors", "inputs", "progress", "raster", "sensor", "sicd_doc",
                 "sicd_model"},
    # the plausibility checks every stage calls at its entry point
    "checks": {"dem", "ellipsoid", "errors", "pixels", "raster", "stereo"},
    # stages
    "terrain": {"dem", "facets", "pixels"},
    "pair": {"checks", "dem", "ellipsoid", "errors", "pixels", "stereo", "terrain"},
    "simulate": {"atomic", "checks", "dem", "ellipsoid", "errors", "facets", "flight", "pixels", "products",
                 "progress",
                 "raster", "sensor", "sicd_model"},
    "matchers": {"atomic", "errors", "pixels"},
    "matching": {"atomic", "checks", "dem", "errors", "matchers", "pixels", "products", "progress", "raster",
                 "stereo"},
    "report": {"atomic"},
    "evaluate": {"atomic", "checks", "coregistration", "errors", "pixels", "products", "raster", "report"},
    "elevation": {"atomic", "checks", "dem", "errors", "evaluate", "fusion", "inputs", "products", "progress",
                  "raster", "report", "stereo", "terrain"},
    "tiepoints": {"corrections", "errors", "matching", "raster", "stereo"},
    "refine": {"corrections", "errors", "ellipsoid", "stereo"},
    "refine_report": set(),
    "refine_pair": {"atomic", "dem", "errors", "matchers", "products", "progress", "raster", "refine",
                    "refine_report", "stereo", "tiepoints", "sensor"},
    "training": {"atomic", "checks", "dem", "ellipsoid", "errors", "evaluate", "inputs", "matchers", "matching",
                 "pixels", "products", "progress", "stereo"},
}


def _core_imports():
    """(module, imported core module, imported names, file:line) for every relative import in the core."""
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE).with_suffix("").parts
        package = list(rel[:-1]) if rel[-1] != "__init__" else list(rel[:-1])
        module = ".".join(p for p in rel if p != "__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.level > 0):
                continue
            base = package[:len(package) - (node.level - 1)]
            names = [a.name for a in node.names]
            targets = [".".join(base + [node.module])] if node.module else [".".join(base + [n]) for n in names]
            for target in targets:
                yield module, target, names, f"{path.relative_to(ROOT)}:{node.lineno}"


def test_every_core_import_follows_the_layer_table():
    offenders, seen = [], set()
    for module, target, _, where in _core_imports():
        source, dest = module.split(".")[0], target.split(".")[0]
        seen.add(source)
        if source in ("", dest):  # the package's own __init__ exports everything; a package's own parts
            continue
        if source not in ALLOWED:
            offenders.append(f"{where}: core.{source} is not in the layer table of this test; add it")
        elif dest not in ALLOWED[source]:
            offenders.append(f"{where}: core.{source} imports core.{dest}, which its layer may not")
    assert len(seen) >= 15  # the scan really walks the core
    assert not offenders, "\n".join(offenders)


def test_foundations_import_nothing_above_them():
    for name in FOUNDATIONS:
        assert ALLOWED[name] <= FOUNDATIONS, name
    assert "elevation" not in ALLOWED["evaluate"]


def test_no_private_name_crosses_a_module():
    offenders = [f"{where}: imports {n} from core.{target}" for module, target, names, where in _core_imports()
                 for n in names if n.startswith("_") and target.split(".")[0] != module.split(".")[0]]
    assert not offenders, "\n".join(offenders)


def test_importing_core_loads_neither_qgis_nor_torch():
    script = ("import sys, sar_stereo_plugin.core as core; core.generate_elevation; core.match_pair; "
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'qgis', 'torch', 'romatch', 'PyQt5', 'sarpy'}))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- sizes a reader can take in
MAX_CORE_LINES = 700  # a core module (docs/ARCHITECTURE.md: about 650)
MAX_FUNCTION_LINES = 80  # any function of the plugin


def test_modules_and_functions_stay_short():
    import ast
    plugin = ROOT / "sar_stereo_plugin"
    long_modules = [f"{p.relative_to(ROOT)}: {n} lines" for p in (plugin / "core").rglob("*.py")
                    if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_CORE_LINES]
    long_functions = [f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
                      for p in plugin.rglob("*.py") if p.name != "resources_rc.py"
                      for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long_modules and not long_functions, "\n".join(long_modules + long_functions)
