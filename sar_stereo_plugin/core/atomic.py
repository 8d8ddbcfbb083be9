"""Outputs that appear whole or not at all: files, groups of files, folders.

Every output is written under a temporary name unique to the run, in its own folder (so the final
rename never crosses file systems): ``.<stem>.<pid>-<random>.partial<suffix>``, hidden, keeping
the suffix for the libraries that choose a format by it. Only when the work succeeded are the
temporaries renamed onto the outputs, all of a group at once under a lock on their folders, so two
runs writing the same outputs leave exactly one run's complete set. On any error they are removed.
A run killed outright cannot clean up: the next write into the folder removes the temporaries of
processes that no longer exist.
"""

import fcntl
import os
import re
import secrets
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path

_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.(partial|replaced)")


def temporary_name(path, kind="partial"):
    """A hidden sibling of ``path``, unique to this process and call."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.{kind}{path.suffix}")


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
    temps = [None if f is None else temporary_name(f) for f in finals]
    try:
        yield temps
        with locked(f.parent for f in finals if f is not None):
            for tmp, final in zip(temps, finals):
                if tmp is not None and tmp.exists():
                    os.replace(tmp, final)
    finally:
        for tmp in temps:
            if tmp is not None:
                _remove(tmp)
                _remove(tmp.with_name(tmp.name + ".aux.xml"))  # GDAL's statistics sidecar


@contextmanager
def atomic_folder(path):
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (an existing
    folder there is swapped out and removed); on failure it is removed."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent)
    tmp = temporary_name(final.with_suffix(""))
    tmp.mkdir()
    try:
        yield tmp
        with locked([final.parent]):
            old = None
            if final.exists():
                old = temporary_name(final.with_suffix(""), "replaced")
                final.replace(old)
            tmp.replace(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
    """Remove the temporaries that processes which no longer run left in ``folder``."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match and not _alive(int(match.group("pid"))):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
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
