"""Outputs that appear whole or not at all, and never over an input.

Every output is written under a temporary name unique to the run, in its own folder (so the final
rename never crosses file systems): ``.<stem>.<pid>-<token>.partial<suffix>``, hidden, keeping
the suffix for the libraries that choose a format by it; the outputs of one group share the token,
so a writer deriving a sibling from one temporary (a report's figure) lands on the group's
temporary of that sibling. Only when the work succeeded are the temporaries renamed onto the
outputs, all of a group at once under a lock on their folders, so two runs writing the same
outputs leave exactly one run's complete set. On any error they are removed.

A run killed outright cannot clean up. A guardian process (one per process, started on first use)
holds the list of this process's temporaries and removes them the moment the process dies; killed
in the middle of renaming a group, the guardian completes the group (unless another run has since
written over it, when it drops the rest). Where no guardian could start, the next write into the
folder removes the temporaries of processes that no longer exist.

Before any work, every stage calls :func:`check_outputs`: an output that resolves (path, symbolic
or hard link) to one of its inputs or an input's sensor-model sidecar, a folder, a device, or
another output of the run is refused, so no input is ever written.
"""

import atexit
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .errors import RasterError, SarStereoError, SettingsError, located

_TEMP = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)-(?P<token>[0-9a-f]{8})\.(?P<kind>partial|replaced|keeping)"
                   r"(?P<suffix>.*)$")
SIDECAR = ".sensor.json"  # the sensor-model sidecar beside an image (products.sidecar_path)
# files a library writes beside the one it is asked for: GDAL's statistics, SQLite's journals (GeoPackage)
COMPANIONS = (".aux.xml", "-journal", "-wal", "-shm")


def temporary_name(path, kind="partial", token=None):
    """A hidden sibling of ``path``, unique to this process and call (or to the group's ``token``)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}-{token or secrets.token_hex(4)}.{kind}{path.suffix}")


def final_name(path):
    """The output a temporary stands for (``path`` itself where it is none): what messages and
    reports name."""
    path = Path(path)
    while match := _TEMP.match(path.name):
        path = path.with_name(match["stem"] + match["suffix"])
    return path


@contextmanager
def atomic_file(path):
    """Yield a temporary path for ``path``; rename it onto ``path`` only if the block succeeds."""
    with atomic_outputs(path) as (tmp,):
        yield tmp


@contextmanager
def atomic_outputs(*paths):
    """Yield a list of temporary paths, one per output (None stays None); on success rename
    each one written onto its output, all under a lock on their folders; on failure remove them."""
    finals = [None if p is None else Path(p) for p in paths]
    for folder in {f.parent for f in finals if f is not None}:
        remove_stale(folder)
    token = secrets.token_hex(4)
    temps = [None if f is None else temporary_name(f, token=token) for f in finals]
    held = [t for t in temps if t is not None]
    _GUARDIAN.send("hold", held)
    try:
        try:
            yield temps
        except OSError as exc:  # a full disk, a folder gone read-only: said of the outputs, not of a temporary
            if isinstance(exc, SarStereoError):
                raise
            what = final_name(exc.filename) if exc.filename else ", ".join(
                str(final_name(f)) for f in finals if f is not None)
            raise RasterError(located(what, "output", f"cannot be written ({exc.strerror or exc}); check the free "
                                                      "disk space and that the folder is writable")) from None
        pairs = [(tmp, final) for tmp, final in zip(temps, finals) if tmp is not None and tmp.exists()]
        with locked(f.parent for f in finals if f is not None):
            _GUARDIAN.send("commit", token, [[str(t), str(f), os.stat(t).st_ino] for t, f in pairs])
            for tmp, final in pairs:
                os.replace(tmp, final)
    finally:
        for tmp in held:
            for path in (tmp, *(tmp.with_name(tmp.name + c) for c in COMPANIONS)):
                _remove(path)
        _GUARDIAN.send("release", held, token)


@contextmanager
def atomic_folder(path, keep_foreign=False, accept=None):
    """Yield a temporary folder beside ``path``; on success it replaces ``path``, else it is removed.

    An existing folder at ``path`` is swapped out and removed; with ``keep_foreign`` its entries the
    new folder lacks (a user's notes beside a dataset) are moved into the new one first, so nothing
    of theirs is lost, even to a kill. ``accept(path)``, called under the lock just before the swap,
    may raise to refuse what another run put there in the meantime."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent)
    tmp = temporary_name(final)
    _GUARDIAN.send("hold", [tmp])
    tmp.mkdir()
    old = None
    try:
        yield tmp
        with locked([final.parent]):
            if accept is not None:
                accept(final)
            if final.exists():
                old = temporary_name(final, "keeping" if keep_foreign else "replaced")
                _GUARDIAN.send("restore", [old], [str(final), keep_foreign])
                final.replace(old)
            tmp.replace(final)
            if old is not None and keep_foreign:
                _move_missing(old, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        _GUARDIAN.send("release", [tmp] + ([old] if old else []))


def _move_missing(old, new):
    """Move every entry of folder ``old`` that ``new`` lacks into ``new``."""
    for entry in os.listdir(old):
        if not os.path.lexists(os.path.join(new, entry)):
            os.replace(os.path.join(old, entry), os.path.join(new, entry))


@contextmanager
def locked(folders):
    """An exclusive lock (flock) on each folder, taken in a fixed order; released on leaving."""
    with ExitStack() as stack:
        for folder in sorted({str(Path(f).resolve()) for f in folders}):
            fd = os.open(folder, os.O_RDONLY)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield


def remove_stale(folder):
    """Remove the temporaries that processes which no longer run left in ``folder`` (a folder that
    was being replaced goes back where it was, or gives the new one what it lacks)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or _alive(int(match.group("pid"))):
            continue
        if match["kind"] != "partial" and entry.is_dir(follow_symlinks=False):
            final = os.path.join(folder, match["stem"] + match["suffix"])
            if not os.path.lexists(final):
                os.replace(entry.path, final)
                continue
            if match["kind"] == "keeping":
                _move_missing(entry.path, final)
        _remove(Path(entry.path))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path):
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- outputs never over inputs
def check_outputs(outputs, inputs=None, folders=()):
    """Refuse, before any work, outputs that cannot be written safely; create missing folders.

    ``outputs``: {field: path or None} (the fields in ``folders`` are folders, the others files);
    ``inputs``: {field: a path, a GDAL dataset name, an object with ``path`` or ``source`` (a Dem,
    a sensor model), a list of them, or None}. Refused (SettingsError naming the output and its
    field): an output that is an input or an input's sensor-model sidecar (by path, symbolic or
    hard link), an existing file inside an input folder, a folder (or for a folder output a file),
    a device or FIFO, the same file as another output, or one in a folder that cannot be written.
    """
    protected = [(field, kind, p) for field, value in (inputs or {}).items() for kind, p in _input_files(value)]
    seen = {}
    for field, out in outputs.items():
        if out is None or str(out) == "":
            continue
        out = Path(out)
        _check_kind(out, field, field in folders)
        for in_field, kind, path in protected:
            if _same(out, path):
                raise SettingsError(located(out, field, f"is {kind} {in_field} ({path}): writing it would destroy "
                                                        "the input; choose another output path"))
            if os.path.isdir(path) and out.exists() and _inside(out, path):
                raise SettingsError(located(out, field, f"lies inside {kind} {in_field} ({path}): writing it would "
                                                        "change the input; choose a path outside it"))
        for other, path in seen.items():
            if _same(out, path):
                raise SettingsError(located(out, field, f"is also the output {other}; give each output its own path"))
        seen[field] = out


def _check_kind(out, field, folder):
    try:
        st = os.stat(out)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise SettingsError(located(out, field, "a part of its folder path is a file, not a folder; choose another "
                                                "output path")) from None
    except OSError as exc:
        raise SettingsError(located(out, field, f"cannot be used as an output ({exc.strerror})")) from None
    if st is not None and folder and not stat.S_ISDIR(st.st_mode):
        raise SettingsError(located(out, field, "is a file, not a folder; give a folder"))
    if st is not None and not folder and stat.S_ISDIR(st.st_mode):
        raise SettingsError(located(out, field, "is a folder; give a file name"))
    if st is not None and not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise SettingsError(located(out, field, "is not a regular file (a device, FIFO or socket); give a file path"))
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(located(out, field, f"its folder {parent} cannot be made ({exc.strerror}); choose "
                                                "another output path")) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SettingsError(located(out, field, f"its folder {parent} is not writable; choose another output path"))


def _input_files(value):
    """(what it is, path) of the existing files and folders an input argument stands for, with the
    sensor-model sidecar of each file."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [found for v in value for found in _input_files(v)]
    if not isinstance(value, (str, os.PathLike)):
        value = getattr(value, "path", None) or getattr(value, "source", None)
        if not value:
            return []
    text = str(value)
    quoted = re.match(r'^[A-Za-z0-9_]+:"(.+?)"', text)  # a GDAL dataset name: HDF5:"file.h5"://...
    if quoted:
        text = quoted.group(1)
    if not os.path.exists(text) and " (" in text:  # a model's source: "<file> (metadata ...)"
        text = text.split(" (")[0]
    if not os.path.exists(text):
        return []
    found = [("the input", text)]
    sidecar = Path(text).with_suffix(SIDECAR)
    if os.path.isfile(text) and sidecar.exists() and not _same(sidecar, text):
        found.append(("the sensor-model sidecar of the input", str(sidecar)))
    return found


def _same(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _inside(path, folder):
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


# ---------------------------------------------------------------- the guardian of a killed run
_GUARDIAN_SCRIPT = r"""
import fcntl, json, os, re, shutil, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
TEMP = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.(partial|replaced|keeping)")
held, commits, restores = set(), {}, {}
for line in sys.stdin:
    try:
        op, keys, arg = json.loads(line)
    except ValueError:
        continue
    if op == "hold":
        held.update(keys)
    elif op == "commit":
        commits[keys] = arg
    elif op == "restore":
        restores.update({k: arg for k in keys})
    elif op == "release":
        held.difference_update(keys)
        commits.pop(arg, None)
        for k in keys:
            restores.pop(k, None)

def lock(paths):
    fds = []
    for folder in sorted({os.path.realpath(os.path.dirname(p)) for p in paths}):
        try:
            fd = os.open(folder, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            fds.append(fd)
        except OSError:
            pass
    return fds

for pairs in commits.values():  # killed while renaming a group: complete it, unless overwritten since
    fds = lock([f for _, f, _ in pairs])
    try:
        ours = all(os.path.exists(f) and os.stat(f).st_ino == ino for t, f, ino in pairs if not os.path.lexists(t))
        for t, f, ino in pairs:
            if ours and os.path.lexists(t):
                os.replace(t, f)
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
for old, (final, keep) in restores.items():  # killed while swapping folders: nothing of the old one is lost
    fds = lock([old])
    try:
        if not os.path.lexists(final):
            os.replace(old, final)
        elif keep:
            for entry in os.listdir(old):
                if not os.path.lexists(os.path.join(final, entry)):
                    os.replace(os.path.join(old, entry), os.path.join(final, entry))
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    held.add(old)
for path in [p + c for p in held for c in ("", ".aux.xml", "-journal", "-wal", "-shm")]:
    if not TEMP.match(os.path.basename(path)):
        continue
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass
"""


class _Guardian:
    """The process removing this one's temporaries should it die (module doc); silent where none
    can start (the next write into the folder then cleans up)."""

    def __init__(self):
        self.proc, self.pid, self.lock = None, None, threading.Lock()

    def send(self, op, keys, arg=None):
        line = json.dumps([op, [str(k) for k in keys] if isinstance(keys, list) else str(keys), arg]) + "\n"
        with self.lock:
            if self.pid != os.getpid():  # first use, or a forked child: a guardian of its own
                self.proc, self.pid = self._start(), os.getpid()
            if self.proc is None:
                return
            try:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
            except (OSError, ValueError):
                self.proc = None

    @staticmethod
    def _start():
        python = _python()
        if python is None or os.environ.get("SARSTEREO_NO_GUARDIAN"):
            return None
        try:
            proc = subprocess.Popen([python, "-I", "-S", "-c", _GUARDIAN_SCRIPT], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                                    start_new_session=os.name == "posix", close_fds=True)
        except OSError:
            return None
        atexit.register(_close, proc)
        return proc

    def close(self):
        """Let the guardian go (tests; a clean exit does this by itself)."""
        with self.lock:
            if self.proc is not None and self.pid == os.getpid():
                _close(self.proc)
            self.proc = None


def _close(proc):
    try:
        proc.stdin.close()
        proc.wait(timeout=5)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass


def _python():
    """A Python interpreter to run the guardian (inside QGIS ``sys.executable`` may be QGIS itself)."""
    v = sys.version_info
    candidates = [sys.executable, getattr(sys, "_base_executable", None),
                  *(Path(prefix) / sub / name for prefix in (sys.exec_prefix, sys.base_exec_prefix)
                    for sub in ("bin", "") for name in (f"python{v.major}.{v.minor}", f"python{v.major}",
                                                        "python", "python.exe", "pythonw.exe")),
                  shutil.which(f"python{v.major}"), shutil.which("python")]
    for candidate in candidates:
        if candidate and Path(candidate).name.lower().startswith("python") and Path(candidate).is_file():
            return str(candidate)
    return None


_GUARDIAN = _Guardian()
