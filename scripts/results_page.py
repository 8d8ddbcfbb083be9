"""docs/RESULTS.md, the dated results page: each command that measures something rewrites its own section.

A section lies between ``<!-- results:KEY -->`` and ``<!-- /results:KEY -->`` lines, KEY made from the
command that regenerates it. Writing a section replaces it in place and leaves the rest of the page as it
was; a section not yet on the page is appended. Each section says when, on which machine and with which
command its figures were made. Used by ``scripts/compare_matchers.py`` (``make compare``) and
``benchmarks/run.py`` (``make bench``).
"""

import datetime
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "RESULTS.md"
HEADER = ("# Results\n\n"
          "Measurements of sar_stereo_plugin, dated, each with the command that regenerates it. A section whose "
          "first line says *Regenerate: `make …`* is rewritten by that command (`make compare`, `make bench`); "
          "the other sections record measurements made once during development.\n")


def machine():
    """One line describing this machine: CPU model and the cores this process may use, memory, GPUs."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"{cpu}, {cores} cores"]
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
        parts.append(f"{kib / 2**20:.0f} GiB")
    except (OSError, StopIteration, ValueError):
        pass
    gpus = _gpus()
    parts.append(", ".join(gpus) if gpus else "no GPU")
    return ", ".join(parts)


def _gpus():
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [name.strip() for name in out.stdout.splitlines() if name.strip()]


def section_key(command):
    """The marker key of the section a command writes: its words joined by dashes."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", command).strip("-")


def section(command, title, body, *, date=None, on=None):
    """The text of one section, markers included."""
    key = section_key(command)
    date = date or datetime.datetime.now(datetime.UTC).date().isoformat()
    return (f"<!-- results:{key} -->\n## {title}\n\n_{date}, {on or machine()}. Regenerate: `{command}`._\n\n"
            f"{body.strip()}\n<!-- /results:{key} -->\n")


def write_section(command, title, body, page=PAGE, *, date=None, on=None):
    """Put the section of ``command`` on ``page`` (replacing its previous version); returns the page path.

    The page is read, changed and replaced under a lock on its folder, so two commands finishing at
    once both keep their sections."""
    sys.path.insert(0, str(ROOT))
    from sar_stereo_plugin.core.atomic import locked, temporary_name
    page = Path(page)
    new = section(command, title, body, date=date, on=on)
    key = re.escape(section_key(command))
    pattern = re.compile(rf"^<!-- results:{key} -->\n.*?^<!-- /results:{key} -->\n", re.S | re.M)
    page.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(page)
    try:
        with locked([page.parent]):
            text = page.read_text(encoding="utf-8") if page.exists() else HEADER
            if pattern.search(text):
                text = pattern.sub(lambda _: new, text, count=1)
            else:
                text = text.rstrip("\n") + "\n\n" + new
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, page)
    finally:
        tmp.unlink(missing_ok=True)
    return page
