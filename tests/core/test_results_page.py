"""docs/RESULTS.md: `make compare` and `make bench` each rewrite their own section and nothing else."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        yield (_load("scripts/results_page.py", "results_page"), _load("scripts/compare_matchers.py", "compare"),
               _load("benchmarks/run.py", "bench_run"))
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_a_section_is_replaced_in_place_and_the_rest_kept(scripts, tmp_path):
    page_mod = scripts[0]
    page = tmp_path / "docs" / "RESULTS.md"
    page_mod.write_section("make compare", "Matchers", "| a |\n|---|\n| 1 |", page, date="2026-01-01", on="box A")
    page_mod.write_section("make bench", "Speed", "| b |\n|---|\n| 2 |", page, date="2026-01-02", on="box B")
    text = page.read_text()
    assert text.startswith("# Results\n")
    hand_written = "\n## Training history\n\nwritten by hand, kept\n"
    page.write_text(text.replace("<!-- results:make-bench -->", hand_written + "\n<!-- results:make-bench -->"))
    page_mod.write_section("make compare", "Matchers", "| a |\n|---|\n| 3 |", page, date="2026-02-01", on="box C")
    text = page.read_text()
    assert text.count("<!-- results:make-compare -->") == 1 and text.count("<!-- /results:make-compare -->") == 1
    assert "| 3 |" in text and "| 1 |" not in text and "2026-01-01" not in text
    assert "_2026-02-01, box C. Regenerate: `make compare`._" in text
    assert hand_written in text and "| 2 |" in text and "_2026-01-02, box B. Regenerate: `make bench`._" in text
    assert text.index("make-compare") < text.index("Training history") < text.index("make-bench")
    assert not [p for p in page.parent.iterdir() if p.name != "RESULTS.md"]  # no temporary left behind


def test_the_machine_line_names_cores_and_gpus(scripts):
    line = scripts[0].machine()
    assert " cores, " in line and line.split(", ")[-1]  # the last part names the GPUs, or says there is none


def test_compare_names_the_command_that_regenerates_its_table(scripts):
    compare = scripts[1]
    defaults = dict(matchers=["poc", "light", "fused"], patch_size=None, overlap=None, scenes="all", steps="new",
                    baseline=None, band=None, threshold=None)
    assert compare.command(compare.argparse.Namespace(**defaults)) == "make compare"
    args = compare.argparse.Namespace(**{**defaults, "scenes": "validation", "band": 8.0})
    assert compare.command(args) == ".venv/bin/python scripts/compare_matchers.py --scenes validation --band 8.0"
    args = compare.argparse.Namespace(**{**defaults, "matchers": ["poc", "light-baseline"], "baseline": "old.pth"})
    assert compare.command(args) == (".venv/bin/python scripts/compare_matchers.py --matchers poc light-baseline "
                                     "--baseline old.pth")


def test_bench_table_is_markdown(scripts):
    rows = [{"name": "geo2rdr | 1 M points", "seconds": 0.2234, "target": 2, "peak_mib": 193.6, "note": ""},
            {"name": "slow", "seconds": 61.0, "target": 60.0, "peak_mib": 10.0, "note": "a|b"}]
    lines = scripts[2].markdown(rows).splitlines()
    assert lines[0] == "| benchmark | seconds | target | within target | peak MiB | note |"
    assert lines[2] == "| geo2rdr \\| 1 M points | 0.22 | 2 | yes | 194 |  |"
    assert lines[3] == "| slow | 61.00 | 60 | NO | 10 | a\\|b |"
