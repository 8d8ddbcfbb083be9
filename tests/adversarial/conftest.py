"""Fixtures of the adversarial corpus: one small simulated pair and everything made from it, built
once per session and copied afresh into each case's folder; the outcomes recorded for the summary."""

import json
import os
import shutil
from pathlib import Path

import pytest
from harness import OUTCOMES
from qgis_fixtures import _collect_qgis_objects_before_exit, plugin  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def mini_set(tmp_path_factory):
    """A 96 x 96 pair over the embedded Jacksboro DEM: ref.tif, sec.tif (with sidecars), gt.tif,
    dem.tif (the DEM, EPSG:4326), matches.tif (POC), elev.tif with count.tif and unc.tif, and
    dataset/ (64-pixel patches, all in the train split)."""
    from sar_stereo_plugin.core import (
        FlightDesign,
        MatchSettings,
        create_matcher,
        generate_elevation,
        match_pair,
        simulate_pair,
    )
    from sar_stereo_plugin.core.dem import load_default_dem
    from sar_stereo_plugin.core.training.dataset import build_dataset
    d = tmp_path_factory.mktemp("mini")
    load_default_dem().write(d / "dem.tif")
    simulate_pair(None, FlightDesign(rows=96, cols=96), seed=1, reference_output=d / "ref.tif",
                  secondary_output=d / "sec.tif", ground_truth_output=d / "gt.tif")
    match_pair(d / "ref.tif", d / "sec.tif", d / "matches.tif", create_matcher("poc"),
               MatchSettings(patch_size=64, overlap=16), prior_dem=d / "dem.tif")
    generate_elevation(d / "matches.tif", d / "elev.tif", count_output=d / "count.tif",
                       uncertainty_output=d / "unc.tif")
    build_dataset([(d / "ref.tif", d / "sec.tif")], d / "dem.tif", d / "dataset", patch_size=64, overlap=32,
                  block_px=128, min_valid_fraction=0.05)
    for aux in d.glob("*.aux.xml"):
        aux.unlink()
    return d


@pytest.fixture
def workspace(mini_set, tmp_path):
    """The case's folder: a fresh copy of the mini set."""
    from harness import Ctx
    folder = tmp_path / "D"
    shutil.copytree(mini_set, folder)
    return Ctx(folder, mini_set)


def pytest_sessionfinish(session, exitstatus):
    """Write the outcomes where SARSTEREO_ADVERSARIAL_REPORT asks (the summary target reads them)."""
    path = os.environ.get("SARSTEREO_ADVERSARIAL_REPORT")
    if path and OUTCOMES:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps([dict(zip(("id", "algorithm", "category", "detail"), o))
                                          for o in OUTCOMES], indent=1))
