"""The training algorithms as a QGIS user runs them: builddataset and finetune through Processing."""

import json

import pytest
from training_data import write_dataset

from sar_stereo_plugin.core.training.dataset import load_manifest


def test_builddataset_algorithm(plugin, alpine_pair, tmp_path):
    import processing
    from qgis.core import QgsProcessingException
    paths, _ = alpine_pair
    params = {"REFERENCES": [paths["reference"]], "SECONDARIES": [paths["secondary"]], "DSM": paths["dem"],
              "PATCH_SIZE": 64, "OVERLAP": 0, "BLOCK_SIZE": 100, "VALIDATION_FRACTION": 0.2, "TEST_FRACTION": 0.2,
              "HEIGHT_UNCERTAINTY": 200.0, "SEED": 1, "OUTPUT": str(tmp_path / "ds")}
    result = processing.run("sarstereo:builddataset", params)
    counts = load_manifest(result["OUTPUT"])["counts"]
    assert (result["TRAIN_SAMPLES"], result["VALIDATION_SAMPLES"], result["TEST_SAMPLES"]) == (
        counts["train"], counts["val"], counts["test"])
    assert counts["train"] > 0 and sum(counts.values()) >= 5
    with pytest.raises(QgsProcessingException, match="REFERENCES and SECONDARIES"):
        processing.run("sarstereo:builddataset", {**params, "SECONDARIES": [paths["secondary"]] * 2,
                                                  "OUTPUT": str(tmp_path / "b")})

def test_finetune_algorithm_runs_and_reports(qgis_processing, tmp_path):
    """sarstereo:finetune as QGIS runs it (the instance itself: provider registration is tested
    with the provider); a folder without manifest becomes a Processing error with the same words."""
    pytest.importorskip("torch")
    import processing
    from qgis.core import QgsProcessingException

    from sar_stereo_plugin.processing.algorithms.finetune import Finetune
    data = write_dataset(tmp_path / "data", n_files=3, patch=64, splits=("train", "train", "val"))
    params = {"DATASET": str(data), "MODEL": 0, "EPOCHS": 2, "BATCH_SIZE": 2, "LEARNING_RATE": 1e-3,
              "LAMBDA_C": 0.01, "DEVICE": "cpu", "RESUME": False, "OUTPUT": str(tmp_path / "run")}
    result = processing.run(Finetune(), params)
    assert result["OUTPUT"] == str(tmp_path / "run") and 0.0 <= result["VALIDATION_ACCURACY_3PX"] <= 1.0
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert log["config"]["steps"] == 2 and len(log["validation"]) == 2
    assert (tmp_path / "run" / "light_sar.pth").is_file()
    with pytest.raises(QgsProcessingException, match="manifest.json"):
        processing.run(Finetune(), dict(params, DATASET=str(tmp_path), OUTPUT=str(tmp_path / "other")))
