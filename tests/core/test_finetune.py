"""Fine-tuning with L = L_D + λ·L_C, offline on CPU: the loss on exact cases, RoMa (random weights
with the real layout, coarse 56) learning a tiny fixed dataset, its checkpoint reloading to the
same outputs and resuming, and the bad inputs (no manifest, wrong-architecture weights, an
interrupted run). The dataset format is written here directly (``write_dataset``), as
``core.training.dataset.build_dataset`` writes it, to keep the fixtures small and fast."""

import importlib.util
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("romatch") is None:  # importing it directly trips pytorch/vision#9085
    pytest.skip("romatch is not installed", allow_module_level=True)
from training_data import write_dataset  # noqa: E402

from sar_stereo_plugin.core.matchers import MatcherUnavailable, PatchPair  # noqa: E402
from sar_stereo_plugin.core.training import finetune as ft  # noqa: E402
from sar_stereo_plugin.core.training.losses import matching_loss, robust, truth_at  # noqa: E402

# --- the loss ------------------------------------------------------------------------------------

def test_truth_at_samples_cell_centres_and_erodes_validity():
    p = 8
    c = (2.0 * torch.arange(p) + 1) / p - 1  # the warp is the identity: each pixel's own centre
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    warp = torch.stack((gx, gy), -1)[None].clone()
    valid = torch.ones(1, p, p, dtype=torch.bool)
    valid[0, :, 0] = False  # the first column has no truth
    warp[0, :, 0] = float("nan")
    gt, good = truth_at(warp, valid, (4, 4))
    centres = (2.0 * torch.arange(4) + 1) / 4 - 1
    assert torch.allclose(gt[0, 1, 1:, 0], centres[1:].to(gt.dtype), atol=1e-6)  # x of the 2x2 cells' centres
    assert not good[0, :, 0].any() and good[0, :, 1:].all()  # a cell blending an invalid pixel is invalid


def test_loss_is_zero_for_the_truth_and_lambda_weighs_the_certainty():
    rng = np.random.default_rng(0)
    warp = torch.from_numpy(rng.uniform(-0.9, 0.9, (2, 8, 8, 2)).astype(np.float32))
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    sec_hw = torch.tensor([[40.0, 60.0], [40.0, 60.0]])
    corresps = {1: {"flow": warp.permute(0, 3, 1, 2), "certainty": torch.full((2, 1, 8, 8), 3.0)}}
    loss, parts = matching_loss(corresps, warp, valid, sec_hw, lambda_c=0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and parts["epe1"] == pytest.approx(0.0, abs=1e-4)
    bce = float(torch.nn.functional.softplus(torch.tensor(-3.0)))  # BCE of logit 3 against 1
    assert matching_loss(corresps, warp, valid, sec_hw, lambda_c=0.5)[0].item() == pytest.approx(0.5 * bce, rel=1e-5)
    # one pixel off by 3 px in x (of a 60 px wide window): ρ(3) over the 128 cells
    shifted = warp.clone()
    shifted[0, 2, 2, 0] += 3.0 * 2 / 60
    moved = {1: {"flow": shifted.permute(0, 3, 1, 2), "certainty": corresps[1]["certainty"]}}
    d = matching_loss(moved, warp, valid, sec_hw, lambda_c=0.0)[0].item()
    assert d == pytest.approx(float(robust(torch.tensor(9.0))) / 128, rel=1e-3)


def test_synthetic_pairs_carry_their_truth():
    """POC, told the truth as its prior, finds it again: images and warp agree."""
    from sar_stereo_plugin.core.matchers.poc import PocMatcher
    s = ft.synthetic_sample(np.random.default_rng(3), 128, (150, 210))
    assert s["reference"].shape == (128, 128) and s["secondary"].shape == (150, 210) and s["valid"].mean() > 0.3
    h2, w2 = s["secondary"].shape
    rows, cols = (s["warp"][..., 1] + 1) * h2 / 2 - 0.5, (s["warp"][..., 0] + 1) * w2 / 2 - 0.5
    prior = np.stack([np.nan_to_num(rows), np.nan_to_num(cols)]).astype(np.float32)
    m = PocMatcher().match([PatchPair(s["reference"], s["secondary"], prior, 3.0, (0, 0), (0, 0))])[0]
    assert np.nanmedian(np.hypot(m.rows - rows, m.cols - cols)[s["valid"] > 0]) < 1.0


# --- RoMa -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def states():
    from sar_stereo_plugin.core.matchers import roma
    return roma.random_state_dicts(seed=0)


def test_roma_learns_reloads_exactly_and_resumes(tmp_path, states):
    """RoMa fine-tuned on one pair: the loss falls; roma_finetuned.pth rebuilds a model with the
    same outputs; resume continues the step count."""
    from sar_stereo_plugin.core.matchers.roma import RomaMatcher
    torch.set_num_threads(1)
    data = write_dataset(tmp_path / "data", n_files=1, patch=32, splits=("train",), entries=40)
    out = tmp_path / "run"
    common = dict(model="roma", weights=states[0], dinov2_weights=states[1], coarse_res=56, batch_size=1,
                  lr=2e-4, device="cpu", augment=False, log_every=1, epoch_checkpoints=False)
    result = ft.finetune(data, out, steps=20, **common)
    losses = [r["loss"] for r in json.loads((out / "log.json").read_text())["train"]]
    assert len(losses) == 20 and np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses
    assert result.steps == 20 and result.validation is None  # no val split here

    sample = np.load(data / "train/000000.npz")
    pair = PatchPair(sample["reference"], sample["secondary"], np.zeros((2, 32, 32), np.float32), 5.0, (0, 0), (0, 0))
    small = dict(device="cpu", coarse_res=56, upsample_res=None)
    trained = RomaMatcher(model=result.network, **small).match([pair])[0]
    reloaded = RomaMatcher(weights=result.weights, dinov2_weights=states[1], **small).match([pair])[0]
    for a, b in zip(trained.__dict__.values(), reloaded.__dict__.values()):
        np.testing.assert_array_equal(a, b)

    again = ft.finetune(data, out, steps=22, resume=True, **common)
    log = json.loads((out / "log.json").read_text())
    assert again.steps == 22 and [r["step"] for r in log["train"]][-3:] == [20, 21, 22]
    assert [(e["event"], e["step"]) for e in log["events"]][-2:] == [("resume", 20), ("done", 22)]


def test_roma_rejects_weights_of_another_architecture(tmp_path, states):
    data = write_dataset(tmp_path / "data", n_files=2, splits=("train",))
    wrong = {"coarse_matcher.0.layer.0.weight": torch.zeros(256, 130, 3, 3)}  # a light matcher's tensor
    with pytest.raises(MatcherUnavailable, match="missing .* keys"):
        ft.finetune(data, tmp_path / "run", model="roma", weights=wrong, dinov2_weights=states[1], coarse_res=56,
                    steps=1, device="cpu")


# --- bad inputs and interruptions (light model: cheap) -------------------------------------------

def test_dataset_folder_without_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ft.FinetuneError, match="DATASET.*manifest.json"):
        ft.finetune(tmp_path / "empty", tmp_path / "run", steps=1, device="cpu")


def test_light_rejects_weights_of_another_architecture(tmp_path):
    data = write_dataset(tmp_path / "data", n_files=2, patch=64, splits=("train",))
    bad = tmp_path / "roma_like.pth"
    torch.save({"decoder.embedding_decoder.to_out.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(MatcherUnavailable, match="not weights of the light matcher"):
        ft.finetune(data, tmp_path / "run", weights=bad, steps=1, device="cpu")


def test_options_are_checked(tmp_path):
    data = write_dataset(tmp_path / "data", n_files=2, splits=("train",))
    with pytest.raises(ft.FinetuneError, match="MODEL"):
        ft.finetune(data, tmp_path / "run", model="loftr", device="cpu")
    with pytest.raises(ft.FinetuneError, match="BATCH_SIZE"):
        ft.finetune(data, tmp_path / "run", batch_size=0, device="cpu")
    with pytest.raises(ft.FinetuneError, match="patch_size.*at least 64"):
        ft.finetune(data, tmp_path / "run", device="cpu")  # 32 pixel patches


def test_interrupted_run_resumes_to_the_same_model(tmp_path):
    """Canceled at step 5 (and a half-written file lying around), resumed: the same weights as a
    run never interrupted; the folder is never silently reused."""
    torch.set_num_threads(1)
    data = write_dataset(tmp_path / "data", n_files=5, patch=64, splits=("train",) * 4 + ("val",))
    common = dict(steps=9, batch_size=2, lr=1e-3, device="cpu", log_every=1)
    whole = ft.finetune(data, tmp_path / "whole", **common)

    out = tmp_path / "cut"
    calls = iter(range(100))
    with pytest.raises(ft.FinetuneCanceled, match="step 5 of 9.*RESUME"):
        ft.finetune(data, out, is_canceled=lambda: next(calls) >= 4, **common)
    assert torch.load(out / "last.pth", weights_only=True)["step"] == 5
    (out / "last.pth.x1y2.part").write_bytes(b"half a checkpoint")  # a crash while saving
    with pytest.raises(ft.FinetuneError, match="RESUME"):
        ft.finetune(data, out, **common)  # not silently overwritten
    with pytest.raises(ft.FinetuneError, match="MODEL"):
        ft.finetune(data, out, model="roma", resume=True, **common)
    resumed = ft.finetune(data, out, resume=True, **common)

    assert resumed.steps == whole.steps == 9
    a = torch.load(whole.weights, weights_only=True)["model"]
    b = torch.load(resumed.weights, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = json.loads((out / "log.json").read_text())
    assert [r["step"] for r in log["train"]] == list(range(1, 10))
    assert [e["event"] for e in log["events"]] == ["start", "canceled", "resume", "done"]
    assert resumed.validation == whole.validation and set(resumed.validation["accuracy_at_px"]) == {"1", "3", "5", "10"}
