"""The adversarial corpus's outcomes as tables: cases by category, and by algorithm and category.

    python scripts/adversarial_summary.py build/adversarial/outcomes.json [--list]

Reads what tests/adversarial/test_corpus.py recorded (SARSTEREO_ADVERSARIAL_REPORT); ``--list``
also prints every case that did not come out clean, with what happened.
"""

import json
import sys
from collections import Counter
from pathlib import Path

CATEGORIES = ("data loss", "input modified", "raw traceback", "crash/hang", "silent wrong result",
              "unclear message", "clean")


def main(argv):
    if not argv or not Path(argv[0]).is_file():
        print("usage: adversarial_summary.py OUTCOMES.json [--list] (run the corpus first: make adversarial-summary)")
        return 2
    outcomes = json.loads(Path(argv[0]).read_text())
    totals = Counter(o["category"] for o in outcomes)
    print(f"{len(outcomes)} cases\n")
    print("| outcome | cases |\n|---|---|")
    for category in CATEGORIES:
        print(f"| {category} | {totals.get(category, 0)} |")
    algorithms = sorted({o["algorithm"] for o in outcomes}, key=lambda a: (a == "api", a))
    print("\n| algorithm | cases | " + " | ".join(CATEGORIES) + " |")
    print("|---" * (len(CATEGORIES) + 2) + "|")
    for algorithm in algorithms:
        mine = Counter(o["category"] for o in outcomes if o["algorithm"] == algorithm)
        print(f"| {algorithm} | {sum(mine.values())} | " + " | ".join(str(mine.get(c, 0)) for c in CATEGORIES) + " |")
    if "--list" in argv:
        print()
        for o in outcomes:
            if o["category"] != "clean":
                print(f"{o['id']}: {o['category']}: {o['detail']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
