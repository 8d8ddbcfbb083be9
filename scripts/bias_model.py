"""Write a sensor model as wrong metadata would describe it (for `make demo` and the refinement cases).

Usage: .venv/bin/python scripts/bias_model.py IMAGE OUT.json --lines L --samples S
The model found with IMAGE, moved so that it puts the ground L lines later and S samples farther than
the image shows it (an azimuth timing and a slant-range error), is written to OUT.json.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("out")
    p.add_argument("--lines", type=float, default=0.0)
    p.add_argument("--samples", type=float, default=0.0)
    a = p.parse_args()
    from sar_stereo_plugin.core.corrections import misplaced
    from sar_stereo_plugin.core.products import read_sensor_model
    wrong = misplaced(read_sensor_model(a.image), a.lines, a.samples)
    Path(a.out).write_text(wrong.to_json(), encoding="utf-8")
    print(f"{a.out}: {a.lines:g} lines, {a.samples:g} samples off")


if __name__ == "__main__":
    main()
