"""Concurrency and kill -9 trials of the long algorithms (tests/adversarial/trials.py), as tables.

    python scripts/adversarial_trials.py [--concurrency 10] [--kill 20] [--seed 0] [--only matchpair,...]

Two jobs on one output path (matchpair, generateelevation, builddataset), ``--concurrency`` trials
each, the second job started 0-1.5 s after the first; then ``--kill`` trials of each long
algorithm killed with SIGKILL at a random moment of its run. Prints one row per algorithm: trials,
outcomes, failures (with what went wrong). Exit status 1 when any trial failed.
"""

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "adversarial")]

import trials  # noqa: E402

CONCURRENT = ("matchpair", "generateelevation", "builddataset")
LONG = ("simulatepair", "matchpair", "generateelevation", "evaluatedem", "builddataset", "refinepair",
        "importproduct", "finetune")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--kill", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="", help="comma-separated algorithms")
    p.add_argument("--late", action="store_true", help="kill in the last 40 %% of the run, where outputs are written")
    a = p.parse_args(argv)
    only = set(filter(None, a.only.split(",")))
    rng = random.Random(a.seed)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="sarstereo-trials-") as scratch:
        t0 = time.perf_counter()
        base = trials.make_set(Path(scratch) / "set")
        print(f"trial set made in {time.perf_counter() - t0:.0f} s\n")
        if a.concurrency:
            print("| two jobs on one output | trials | one job's complete result | later job failed cleanly | "
                  "failures |\n|---|---|---|---|---|")
            for name in CONCURRENT:
                if only and name not in only:
                    continue
                expected = trials.reference_outputs(name, base, scratch)
                outcomes, problems = Counter(), []
                for _ in range(a.concurrency):
                    ok, detail = trials.concurrency_trial(name, base, scratch, expected, rng.uniform(0.0, 1.5))
                    outcomes["ok" if ok else "failed"] += 1
                    outcomes["later failed"] += "exits [0, 2]" in detail
                    if not ok:
                        problems.append(detail)
                failed += len(problems)
                print(f"| {name} | {a.concurrency} | {outcomes['ok']} | {outcomes['later failed']} | "
                      f"{len(problems)}{': ' + problems[0] if problems else ''} |")
        if a.kill:
            late = " of the last 40 %" if a.late else ""
            print(f"\n| kill -9 at a random moment{late} | trials | killed before any output | killed with its "
                  "outputs in place | had finished | failures | run (s) |\n|---|---|---|---|---|---|---|")
            for name in LONG:
                if only and name not in only:
                    continue
                seconds, complete = trials.duration(name, base, scratch)
                outcomes, problems = Counter(), []
                for _ in range(a.kill):
                    at = rng.uniform(0.6 * seconds, seconds) if a.late else rng.uniform(0.0, seconds)
                    ok, detail, _ = trials.kill_trial(name, base, scratch, at, complete)
                    outcomes[detail if ok else "failed"] += 1
                    if not ok:
                        problems.append(detail)
                failed += len(problems)
                print(f"| {name} | {a.kill} | {outcomes['killed before any output']} | "
                      f"{outcomes['killed after its outputs were in place']} | {outcomes['had finished']} | "
                      f"{len(problems)}{': ' + problems[0] if problems else ''} | {seconds:.1f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
