"""Run every benchmarks/bench_*.py in its own process, print one table and put it on docs/RESULTS.md.

Each module defines ``cases()`` yielding (name, target_seconds, callable); the callable returns
an optional note. Each case runs in a fresh process so its peak memory (VmHWM) is its own. The
table replaces the ``make bench`` section of the results page (dated, with the machine).
"""

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _peak_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _run_case(module, index):
    sys.path.insert(0, str(HERE.parent))
    name, target, func = list(importlib.import_module(module).cases())[index]
    func(warmup=True)
    start = time.perf_counter()
    note = func(warmup=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"name": name, "target": target, "seconds": seconds,
                      "peak_mib": _peak_mib(), "note": note or ""}))


def main():
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    rows = []
    for path in sorted(HERE.glob("bench_*.py")):
        module = path.stem
        count = len(list(importlib.import_module(module).cases()))
        for i in range(count):
            out = subprocess.run([sys.executable, __file__, module, str(i)], capture_output=True,
                                 text=True, check=False)
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                raise SystemExit(f"benchmark {module}[{i}] failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'benchmark':44s} {'seconds':>8s} {'target':>7s} {'ok':>3s} {'peak MiB':>9s}  note")
    for r in rows:
        print(f"{r['name']:44s} {r['seconds']:8.2f} {r['target']:7.1f} {_ok(r):>3s} {r['peak_mib']:9.0f}  {r['note']}")
    sys.path.insert(0, str(HERE.parent / "scripts"))
    from results_page import write_section
    page = write_section("make bench", "Speed and memory", markdown(rows))
    print(f"results page: {page}")


def _ok(row):
    return "yes" if row["seconds"] <= row["target"] else "NO"


def markdown(rows):
    """The benchmark rows as a Markdown table (seconds of the timed run after a warm-up, peak resident memory
    of the case's own process)."""
    lines = ["| benchmark | seconds | target | within target | peak MiB | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        name, note = (str(r[key]).replace("|", "\\|") for key in ("name", "note"))
        lines.append(f"| {name} | {r['seconds']:.2f} | {r['target']:g} | {_ok(r)} | {r['peak_mib']:.0f} | {note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        sys.path.insert(0, str(HERE))
        _run_case(sys.argv[1], int(sys.argv[2]))
    else:
        main()
