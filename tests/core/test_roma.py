"""RoMa backend, offline on CPU: randomly initialised weights with the real checkpoints' layout,
the pixel convention proved with a fake model, checkpoint resolution/download/validation, OOM
batch halving, the SAR stretch, and one end-to-end run of the patch engine."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sar_stereo_plugin.core.matchers import MatcherUnavailable, PatchPair, create_matcher
from sar_stereo_plugin.core.matchers.stretch import amplitude_to_uint8

torch = pytest.importorskip("torch")
roma = pytest.importorskip("sar_stereo_plugin.core.matchers.roma")
weight_files = pytest.importorskip("sar_stereo_plugin.core.matchers.weights")
ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(device="cpu", coarse_res=112, upsample_res=None, batch_size=2)


@pytest.fixture(scope="module")
def states():
    """(RoMa, DINOv2) random state dicts, ~1.7 GB, built once."""
    return roma.random_state_dicts(seed=0)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory, states):
    folder = tmp_path_factory.mktemp("weights")
    torch.save(states[0], folder / roma.ROMA_FILE)
    torch.save(states[1], folder / roma.DINOV2_FILE)
    return folder


@pytest.fixture(scope="module")
def matcher(weights_dir):
    return roma.RomaMatcher(weights_dir=weights_dir, **SMALL)


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """The plugin's folder and the download cache are empty folders of tmp_path."""
    monkeypatch.setattr(weight_files, "PLUGIN_WEIGHTS_DIR", tmp_path / "plugin")
    monkeypatch.setenv("SARSTEREO_WEIGHTS_DIR", str(tmp_path / "cache"))
    return tmp_path


def _pair(rng, shape, window, nan_corner=False):
    ref = rng.gamma(4.0, 0.25, shape).astype(np.float32)
    if nan_corner:
        ref[:5, :7] = np.nan
    sec = rng.gamma(4.0, 0.25, window).astype(np.float32)
    return PatchPair(ref, sec, np.zeros((2,) + shape, np.float32), 10.0, (0, 0), (0, 0))


class FakeRoma:
    """Stands in for romatch's RegressionMatcher: warp = identity + shift (normalised units),
    clamped to [-1, 1] with certainty 0 outside, as romatch does; CUDA OOM above ``max_batch``."""

    def __init__(self, shift=(0.0, 0.0), max_batch=None):
        self.shift, self.max_batch, self.batches = torch.tensor(shift), max_batch, []

    def match(self, im_a, im_b, batched=True, im_A_high_res=None, im_B_high_res=None):
        b = im_a.shape[0]
        self.batches.append(b)
        if self.max_batch is not None and b > self.max_batch:
            raise torch.cuda.OutOfMemoryError("fake: CUDA out of memory")
        h, w = (im_A_high_res if im_A_high_res is not None else im_a).shape[-2:]
        y = torch.linspace(-1 + 1 / h, 1 - 1 / h, h)  # romatch's grid of pixel centres
        x = torch.linspace(-1 + 1 / w, 1 - 1 / w, w)
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), -1)
        to_b = grid + self.shift
        cert = torch.where((to_b.abs() > 1).any(-1), 0.0, 0.7)
        warp = torch.cat((grid, to_b.clamp(-1, 1)), -1)
        return warp[None].expand(b, -1, -1, -1), cert[None].expand(b, -1, -1)


# --- the stretch ---------------------------------------------------------------------------------

def test_stretch_maps_db_percentiles_to_0_and_255():
    db = np.arange(101.0)  # 0..100 dB: the 2nd/98th percentiles are 2 and 98 dB exactly
    amp = 10.0 ** (db / 20.0)
    out = amplitude_to_uint8(amp)
    assert out.dtype == np.uint8 and out.shape == amp.shape
    assert out[2] == 0 and out[98] == 255 and (out[:3] == 0).all() and (out[98:] == 255).all()
    assert out[50] == 128  # (50 - 2) / 96 * 255 = 127.5 -> 128
    assert out[26] == round((26 - 2) / 96 * 255)
    assert np.all(np.diff(out.astype(int)) >= 0)
    assert list(amplitude_to_uint8(amp, 10, 90)[[10, 50, 90]]) == [0, 128, 255]


def test_stretch_nodata_and_flat_patches():
    amp = np.array([[np.nan, 0.0, -1.0, np.inf], [1.0, 10.0, 100.0, 1000.0]], np.float32)
    out = amplitude_to_uint8(amp)
    assert (out[0] == 0).all() and out[1, 0] < out[1, 1] < out[1, 2] < out[1, 3]
    assert (amplitude_to_uint8(np.full((3, 3), 5.0)) == 128).all()
    assert (amplitude_to_uint8(np.full((3, 3), np.nan)) == 0).all()


# --- conventions, with a fake model --------------------------------------------------------------

def test_identity_warp_gives_pixel_centres(tmp_path):
    """romatch's normalised coordinates -> window pixels: (2c+1)/w - 1 <-> c, sizes may differ."""
    m = roma.RomaMatcher(model=FakeRoma(), device="cpu", coarse_res=56, upsample_res=96)
    rng = np.random.default_rng(1)
    same, other = _pair(rng, (40, 60), (40, 60)), _pair(rng, (40, 60), (80, 30))
    a, b = m.match([same, other])
    rows, cols = np.mgrid[0:40, 0:60].astype(np.float64)
    np.testing.assert_allclose(a.rows, rows, atol=2e-4)
    np.testing.assert_allclose(a.cols, cols, atol=2e-4)
    np.testing.assert_allclose(b.rows, (2 * rows + 1) * 80 / 80 - 0.5, atol=5e-4)
    np.testing.assert_allclose(b.cols, (2 * cols + 1) * 30 / 120 - 0.5, atol=5e-4)
    np.testing.assert_allclose(a.certainty, 0.7, atol=1e-6)
    assert all(x.dtype == np.float32 for x in (a.rows, a.cols, a.certainty))


def test_images_are_normalised_as_romatch_does():
    """Same numbers as romatch's own loader (8-bit RGB -> [0, 1] -> ImageNet mean/std) at equal size."""
    from PIL import Image
    from romatch.utils.utils import get_tuple_transform_ops
    grey = amplitude_to_uint8(np.random.default_rng(6).gamma(4.0, 0.25, (28, 42)))
    ours = roma.RomaMatcher(model=FakeRoma(), device="cpu").prepare_images([grey], (28, 42))
    rgb = Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    theirs = get_tuple_transform_ops(resize=None, normalize=True)((rgb, rgb))[0][None]
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)


def test_points_outside_the_window_and_nan_reference_are_nan():
    m = roma.RomaMatcher(model=FakeRoma(shift=(0.5, 0.0)), device="cpu", coarse_res=56, upsample_res=None)
    pair = _pair(np.random.default_rng(2), (40, 40), (40, 40), nan_corner=True)
    (out,) = m.match([pair])
    x = (2 * np.arange(40) + 1) / 40 - 1
    inside = x + 0.5 < 1 - 2 / 56  # clear of the last output pixel before the clamp
    outside = x + 0.5 > 1
    assert np.isnan(out.cols[:, outside]).all() and np.isnan(out.certainty[:, outside]).all()
    assert np.isfinite(out.cols[5:, inside]).all()
    assert np.isnan(out.rows[:5, :7]).all() and np.isnan(out.certainty[:5, :7]).all()
    np.testing.assert_allclose(out.cols[10, inside], np.arange(40)[inside] + 10.0, atol=1e-3)


def test_out_of_memory_halves_the_batch():
    fake = FakeRoma(max_batch=1)
    m = roma.RomaMatcher(model=fake, device="cpu", coarse_res=56, upsample_res=None, batch_size=4)
    rng = np.random.default_rng(3)
    out = m.match([_pair(rng, (20, 20), (24, 24)) for _ in range(5)])
    assert len(out) == 5 and m.batch_size == 1
    assert fake.batches == [4, 2, 1, 1, 1, 1, 1]
    fake_none = FakeRoma(max_batch=0)
    m = roma.RomaMatcher(model=fake_none, device="cpu", coarse_res=56, upsample_res=None, batch_size=2)
    with pytest.raises(MatcherUnavailable, match="PATCH_SIZE.*DEVICE=cpu"):
        m.match([_pair(rng, (20, 20), (24, 24))] * 2)
    assert fake_none.batches == [2, 1]


def test_options_are_validated():
    with pytest.raises(MatcherUnavailable, match="field 'DEVICE'.*'gpu'"):
        roma.RomaMatcher(model=FakeRoma(), device="gpu")
    with pytest.raises(MatcherUnavailable, match="field 'DEVICE'"):
        roma.RomaMatcher(model=FakeRoma(), device="cpu:1")
    if not torch.cuda.is_available():
        with pytest.raises(MatcherUnavailable, match="field 'DEVICE'.*no CUDA device.*DEVICE=cpu"):
            roma.RomaMatcher(model=FakeRoma(), device="cuda:0")
        assert not roma.roma_ready(model=FakeRoma())  # no CUDA: MATCHER=auto takes POC
    with pytest.raises(MatcherUnavailable, match="COARSE_RES.*multiple of 14"):
        roma.RomaMatcher(model=FakeRoma(), device="cpu", coarse_res=500)
    assert roma.RomaMatcher(model=FakeRoma(), device="cpu").describe().startswith("roma on cpu (float32)")


def test_weight_urls_are_romatch_upstream():
    from romatch.models.model_zoo import weight_urls
    assert roma.WEIGHT_URLS == {roma.ROMA_FILE: weight_urls["romatch"]["outdoor"],
                                roma.DINOV2_FILE: weight_urls["dinov2"]}


# --- weights: where from, download, validation ---------------------------------------------------

def test_missing_weights_name_the_paths_and_urls(no_weights_anywhere):
    mine = no_weights_anywhere / "mine"
    with pytest.raises(MatcherUnavailable) as err:
        roma.RomaMatcher(weights_dir=mine, device="cpu")
    msg = str(err.value)
    for part in (mine, no_weights_anywhere / "plugin", no_weights_anywhere / "cache", *roma.WEIGHT_URLS.values()):
        assert str(part) in msg
    assert not roma.roma_ready(weights_dir=mine)
    with pytest.raises(MatcherUnavailable, match="nowhere.pth: weights file not found"):
        roma.resolve_weights(weights=mine / "nowhere.pth")


def test_download_once_atomically(no_weights_anywhere, monkeypatch):
    src = no_weights_anywhere / "upstream"
    src.mkdir()
    urls = {}
    for i, name in enumerate((roma.ROMA_FILE, roma.DINOV2_FILE)):
        (src / name).write_bytes(bytes([i]) * 3_000_000)
        urls[name] = (src / name).as_uri()
    monkeypatch.setattr(roma, "WEIGHT_URLS", urls)
    cache = no_weights_anywhere / "cache"
    seen = []
    found = roma.resolve_weights(allow_download=True, progress=seen.append)
    assert found == {name: cache / name for name in urls}
    assert all((cache / n).read_bytes() == (src / n).read_bytes() for n in urls)
    assert sorted(p.name for p in cache.iterdir()) == sorted(urls)  # no temporary file left
    assert any(isinstance(s, str) and "downloading" in s for s in seen) and seen[-1] == 1.0

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded twice")
    monkeypatch.setattr(weight_files.urllib.request, "urlopen", no_network)
    assert roma.resolve_weights(allow_download=True) == found  # second time: from the cache

    # The cache holds these files now: a matcher loads them (they are no checkpoints here).
    with pytest.raises(MatcherUnavailable, match=f"{cache / roma.ROMA_FILE}: not a readable PyTorch checkpoint"):
        roma.RomaMatcher(device="cpu", allow_download=True)


def test_failed_download_leaves_nothing(no_weights_anywhere, monkeypatch):
    monkeypatch.setattr(roma, "WEIGHT_URLS", {n: (no_weights_anywhere / "gone" / n).as_uri()
                                              for n in (roma.ROMA_FILE, roma.DINOV2_FILE)})
    with pytest.raises(MatcherUnavailable, match="could not download .*download it by hand"):
        roma.resolve_weights(allow_download=True)
    big = no_weights_anywhere / "big.bin"
    big.write_bytes(b"x" * (9 << 20))

    class StopError(Exception):
        pass

    def cancel(value):
        if isinstance(value, float):
            raise StopError
    dest = no_weights_anywhere / "cache" / "big.bin"
    with pytest.raises(StopError):
        weight_files.download(big.as_uri(), dest, progress=cancel)
    assert not any(dest.parent.iterdir())  # neither the file nor its temporary


def test_corrupt_and_mismatched_checkpoints(tmp_path, weights_dir, states):
    bad = tmp_path / roma.ROMA_FILE
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(MatcherUnavailable, match=f"{bad}: not a readable PyTorch checkpoint"):
        roma.RomaMatcher(weights=bad, weights_dir=weights_dir, device="cpu")
    dino = weights_dir / roma.DINOV2_FILE
    with pytest.raises(MatcherUnavailable) as err:  # DINOv2 weights given as the RoMa checkpoint
        roma.RomaMatcher(weights=dino, weights_dir=weights_dir, device="cpu")
    n_roma, n_dino = len(states[0]), len(states[1])
    assert str(err.value).startswith(f"{dino}: missing {n_roma} keys such as encoder.")
    assert f"{n_dino} unexpected keys" in str(err.value) and "is this a RoMa outdoor checkpoint" in str(err.value)
    key = "decoder.proj.16.0.weight"
    reshaped = {**states[0], key: torch.zeros(3, 3)}
    with pytest.raises(MatcherUnavailable, match=f"1 tensors of the wrong shape such as {key} "
                                                 r"\(\(3, 3\) instead of \(512, 1024, 1, 1\)\)"):
        roma.RomaMatcher(weights=reshaped, dinov2_weights=states[1], **SMALL)
    torch.save({"epoch": 3, "optimizer": {}}, bad)
    with pytest.raises(MatcherUnavailable, match="holds a dict that is not a state dict"):
        roma.RomaMatcher(weights=bad, weights_dir=weights_dir, device="cpu")


# --- the real architecture with random weights ---------------------------------------------------

def test_matches_have_the_right_shapes_and_are_deterministic(matcher):
    rng = np.random.default_rng(4)
    pairs = [_pair(rng, (64, 80), (100, 90), nan_corner=True), _pair(rng, (48, 48), (70, 60))]
    first, again = matcher.match(pairs), matcher.match(pairs)
    assert matcher.forward_seconds > 0
    for pair, out, out2 in zip(pairs, first, again):
        for band, band2 in zip((out.rows, out.cols, out.certainty), (out2.rows, out2.cols, out2.certainty)):
            assert band.shape == pair.reference.shape and band.dtype == np.float32
            np.testing.assert_array_equal(band, band2)
        certain = np.isfinite(out.certainty)
        assert certain.mean() > 0.5 and np.isfinite(out.rows[certain]).all() and np.isfinite(out.cols[certain]).all()
        assert out.certainty[certain].min() >= 0 and out.certainty[certain].max() <= 1
        h2, w2 = pair.secondary.shape
        assert (out.rows[certain] >= -0.5).all() and (out.rows[certain] <= h2 - 0.5).all()
        assert (out.cols[certain] >= -0.5).all() and (out.cols[certain] <= w2 - 0.5).all()
    assert np.isnan(first[0].rows[:5, :7]).all()


def test_wrapped_checkpoint_loads_the_same(weights_dir, states, matcher):
    """A fine-tuning checkpoint {"model": state_dict, ...} (given loaded: files unwrap the same way,
    and saving 0.4 GB again would only slow the test)."""
    wrapped = {"model": {f"module.{k}": v for k, v in states[0].items()}, "epoch": 7, "loss": 0.1}
    m = create_matcher("roma", weights=wrapped, dinov2_weights=weights_dir / roma.DINOV2_FILE, **SMALL)
    pair = [_pair(np.random.default_rng(5), (40, 40), (50, 50))]
    np.testing.assert_array_equal(m.match(pair)[0].cols, matcher.match(pair)[0].cols)
    assert "state dict passed in" in m.describe()


def test_symmetric_and_upsampled(states):
    """The refinement pass runs; symmetric matching leaves the reference -> secondary warp as it
    is and only lowers certainty where the round trip fails."""
    options = dict(weights=states[0], dinov2_weights=states[1], device="cpu", coarse_res=112, upsample_res=128)
    pair = [_pair(np.random.default_rng(7), (50, 60), (64, 64))]
    one_way = roma.RomaMatcher(**options).match(pair)[0]
    both = roma.RomaMatcher(symmetric=True, **options).match(pair)[0]
    np.testing.assert_allclose(both.cols, one_way.cols, atol=1e-3)
    np.testing.assert_allclose(both.rows, one_way.rows, atol=1e-3)
    assert (np.nan_to_num(both.certainty) <= np.nan_to_num(one_way.certainty) + 1e-4).all()


def test_match_pair_end_to_end(tmp_path, matcher):
    from sar_stereo_plugin.core.dem import height_bounds, open_dem
    from sar_stereo_plugin.core.flight import FlightDesign
    from sar_stereo_plugin.core.matching import MatchSettings, match_pair
    from sar_stereo_plugin.core.simulate import simulate_pair
    paths = {k: tmp_path / f"{k}.tif" for k in ("reference", "secondary", "truth")}
    simulate_pair(None, FlightDesign(rows=200, cols=200), reference_output=paths["reference"],
                  secondary_output=paths["secondary"], ground_truth_output=paths["truth"])
    lo, hi, _ = height_bounds(open_dem(None))
    before = matcher.forward_seconds
    settings = MatchSettings(patch_size=128, overlap=16, height_prior=(lo + hi) / 2,
                             height_uncertainty_m=(hi - lo) / 2, consistency_px=0.0)
    result = match_pair(paths["reference"], paths["secondary"], tmp_path / "match.tif", matcher, settings)
    bands = gdal.Open(str(tmp_path / "match.tif")).ReadAsArray()
    assert bands.shape == (3, 200, 200) and bands.dtype == np.float32
    cert = bands[2][np.isfinite(bands[2])]
    assert cert.size > 0.5 * 200 * 200 and cert.min() >= 0 and cert.max() <= 1
    assert 0 < matcher.forward_seconds - before <= result.seconds_matching <= result.seconds_total
    assert result.matcher.startswith("roma on cpu")
    # the engine's forward-backward check works for RoMa as for any matcher (RoMa's own symmetric
    # mode aside): each patch is matched back, the round trip is the fourth band, and only answers
    # whose round trip closes within a pixel (RoMa's tolerance) stay
    before = matcher.forward_seconds
    checked = match_pair(paths["reference"], paths["secondary"], tmp_path / "checked.tif", matcher,
                         replace(settings, consistency_px=None))
    bands = gdal.Open(str(tmp_path / "checked.tif")).ReadAsArray()
    answered = np.isfinite(bands[3])
    assert bands.shape == (4, 200, 200) and answered.mean() > 0.5  # the way back ran for the answered pixels
    assert (bands[3][np.isfinite(bands[0])] <= 1.0).all()
    assert checked.rejected_fraction == pytest.approx((answered & ~np.isfinite(bands[0])).mean())
    assert matcher.forward_seconds - before > 0


def test_plugin_core_without_torch(without_torch):
    """Blocking torch: the roma module still imports, asking for it says what to install, and
    MATCHER=auto falls back to POC."""
    code = without_torch + """
from sar_stereo_plugin.core.matchers import MatcherUnavailable, create_matcher
import sar_stereo_plugin.core.matchers.roma
assert create_matcher('auto').name == 'poc'
try:
    create_matcher('roma')
except MatcherUnavailable as err:
    print(err)
assert 'torch' not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert "installer" in out.stdout and "torch==2.13.0" in out.stdout and "MATCHER=poc" in out.stdout
