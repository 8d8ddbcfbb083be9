"""A writer killed outright (SIGKILL) at the worst moments of core/atomic.py: its temporaries
vanish, a group it was renaming is completed (or dropped where another run wrote over it), and a
folder it was swapping comes back whole with a user's files."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_JOB = """
import os, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from sar_stereo_plugin.core import atomic
d = Path(sys.argv[1])
stage = sys.argv[2]
real_replace = os.replace
def slow_replace(a, b):  # the first rename of a group, then a long pause: the worst moment to die
    real_replace(a, b)
    print("renamed", flush=True)
    time.sleep(60)
if stage == "hold":
    with atomic.atomic_outputs(d / "a.tif", d / "b.json") as (a, b):
        a.write_bytes(b"II*\\x00" + bytes(1000))
        b.write_text("{{}}")
        print("written", flush=True)
        time.sleep(60)
elif stage == "commit":
    with atomic.atomic_outputs(d / "a.tif", d / "b.json") as (a, b):
        a.write_text("new a")
        b.write_text("new b")
        atomic.os.replace = slow_replace
else:  # swap-out: the old folder moved aside; swap-in: the new one in place, the user's files not yet
    with atomic.atomic_folder(d / "data", keep_foreign=True) as tmp:
        (tmp / "manifest.json").write_text("new")
        real = Path.replace
        def slow(self, target):
            result = real(self, target)
            if (self.name == "data") == (stage == "swap-out"):
                print("renamed", flush=True)
                time.sleep(60)
            return result
        Path.replace = slow
"""


def _run_until(folder, stage, word, timeout=30):
    proc = subprocess.Popen([sys.executable, "-c", _JOB.format(root=str(ROOT)), str(folder), stage],
                            stdout=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if word in line:
            return proc
    proc.kill()
    raise AssertionError(f"the job never said {word!r}")


def _kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    time.sleep(0.5)  # the guardian acts on the process's death


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_temporaries_vanish_when_the_writer_is_killed(tmp_path):
    proc = _run_until(tmp_path, "hold", "written")
    assert len(_hidden(tmp_path)) == 2  # both temporaries, complete and valid-looking
    _kill(proc)
    assert _hidden(tmp_path) == [] and not (tmp_path / "a.tif").exists()


def test_a_group_killed_while_renaming_is_completed(tmp_path):
    (tmp_path / "a.tif").write_text("old a")
    (tmp_path / "b.json").write_text("old b")
    proc = _run_until(tmp_path, "commit", "renamed")
    assert {(tmp_path / n).read_text() for n in ("a.tif", "b.json")} == {"new a", "old b"}  # half a group
    _kill(proc)
    assert (tmp_path / "a.tif").read_text() == "new a" and (tmp_path / "b.json").read_text() == "new b"
    assert _hidden(tmp_path) == []


def test_a_group_overwritten_since_is_not_completed(tmp_path):
    proc = _run_until(tmp_path, "commit", "renamed")
    for name in ("a.tif", "b.json"):  # another run's complete group, renamed onto the outputs before the guardian
        (tmp_path / f"other-{name}").write_text(f"other {name[0]}")
        os.replace(tmp_path / f"other-{name}", tmp_path / name)
    _kill(proc)
    assert (tmp_path / "a.tif").read_text() == "other a" and (tmp_path / "b.json").read_text() == "other b"
    assert _hidden(tmp_path) == []


def test_a_folder_killed_while_swapped_out_comes_back_whole(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("old")
    (tmp_path / "data" / "NOTES.txt").write_text("mine")
    proc = _run_until(tmp_path, "swap-out", "renamed")
    assert not (tmp_path / "data").exists()
    _kill(proc)
    assert (tmp_path / "data" / "manifest.json").read_text() == "old"
    assert (tmp_path / "data" / "NOTES.txt").read_text() == "mine"
    assert _hidden(tmp_path) == []


def test_a_folder_killed_once_swapped_in_gets_the_users_files(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("old")
    (tmp_path / "data" / "NOTES.txt").write_text("mine")
    proc = _run_until(tmp_path, "swap-in", "renamed")
    assert not (tmp_path / "data" / "NOTES.txt").exists()  # still in the old folder, aside
    _kill(proc)
    assert (tmp_path / "data" / "manifest.json").read_text() == "new"
    assert (tmp_path / "data" / "NOTES.txt").read_text() == "mine"
    assert _hidden(tmp_path) == []
