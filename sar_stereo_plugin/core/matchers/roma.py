"""RoMa (romatch) dense matcher on SAR patches: GPU first, CPU possible but slow.

Each amplitude patch becomes an 8-bit grey image (:func:`.stretch.amplitude_to_uint8`),
is resized to the coarse resolution (and to the upsampling resolution for RoMa's refinement
pass), replicated to three channels and ImageNet-normalised, as romatch expects. RoMa's warp
is then sampled at every reference pixel centre and turned into secondary-window pixels.

romatch's coordinate convention (checked in romatch/models/matcher.py, ``RegressionMatcher.match``
and ``Decoder.get_placeholder_flow``): normalised coordinates in [-1, 1] span the image's outer
pixel *edges*, and pixel centres sit at ``linspace(-1 + 1/n, 1 - 1/n, n)``, i.e. the
``align_corners=False`` convention. With this project's convention (integers at pixel centres)
that is ``x = (2c + 1)/w - 1``, i.e. ``c = (x + 1)·w/2 - 0.5`` (romatch's own
``to_pixel_coordinates`` omits the -0.5: its pixel 0 has its centre at 0.5). Points RoMa
places outside the other image are clamped to ±1 with certainty 0; they become NaN here.

Weights: ``roma_outdoor.pth`` (everything but the DINOv2 backbone) and
``dinov2_vitl14_pretrain.pth``, from an explicit path, a folder the caller names, the plugin's
own ``weights/`` folder or the download cache (``SARSTEREO_WEIGHTS_DIR``, else
``~/.cache/sar_stereo_plugin/weights``), downloaded there only when ``allow_download`` is set.
torch and romatch are imported on first use only.
"""

import importlib.util
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from itertools import chain
from pathlib import Path

import numpy as np

from ..errors import MatcherUnavailable, located
from ..pixels import from_normalised, to_normalised
from . import Matcher, answer
from .stretch import amplitude_to_uint8
from .torch_runtime import import_torch, in_halving_batches, parse_device, resolve_device
from .weights import DESCRIPTIONS, DINOV2_FILE, ROMA_FILE, download, download_dir, folders, read_checkpoint

# Upstream locations, as in romatch.models.model_zoo.weight_urls (a test keeps them in step).
WEIGHT_URLS = {
    ROMA_FILE: "https://github.com/Parskatt/storage/releases/download/roma/roma_outdoor.pth",
    DINOV2_FILE: "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
}
_PRECISIONS = ("auto", "fp16", "bf16", "fp32")
_BUILD_LOCK = threading.Lock()

# --- weights -------------------------------------------------------------------------------------

def resolve_weights(weights=None, dinov2_weights=None, weights_dir=None, allow_download=False, progress=None):
    """{file name: path or mapping} for the RoMa and DINOv2 weights.

    Each comes from the explicit argument (a path, or an already loaded state dict passed
    through), else ``weights_dir``, the plugin's ``weights/`` folder or the download cache, else
    (only with ``allow_download``) its upstream URL, downloaded once into the cache.
    """
    found, missing = {}, []
    for filename, explicit in ((ROMA_FILE, weights), (DINOV2_FILE, dinov2_weights)):
        if isinstance(explicit, Mapping):
            found[filename] = explicit
        elif explicit:
            path = Path(explicit).expanduser()
            if not path.is_file():
                raise MatcherUnavailable(f"{path}: weights file not found (expected {DESCRIPTIONS[filename]})")
            found[filename] = path
        else:
            path = next((f / filename for f in folders(weights_dir) if (f / filename).is_file()), None)
            if path is None and allow_download:
                path = download(WEIGHT_URLS[filename], download_dir() / filename, progress)
            if path is None:
                missing.append(filename)
            found[filename] = path
    if missing:
        looked = ", ".join(str(f) for f in folders(weights_dir))
        wanted = "; ".join(f"{name} from {WEIGHT_URLS[name]}" for name in missing)
        raise MatcherUnavailable(
            f"RoMa weights not found: looked for {' and '.join(missing)} in {looked}. Put {wanted} into one of "
            "these folders (or name the files), or allow the download.")
    return found


def _check_layout(state, expected, where, filename):
    """Clear words for a checkpoint that does not fit the architecture (names and shapes)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys such as {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys such as {unexpected[0]}")
    if reshaped:
        k = reshaped[0]
        problems.append(f"{len(reshaped)} tensors of the wrong shape such as {k} "
                        f"({tuple(state[k].shape)} instead of {tuple(expected[k].shape)})")
    if problems:
        raise MatcherUnavailable(f"{where}: {'; '.join(problems)}; is this {DESCRIPTIONS[filename]}?")



# --- model ---------------------------------------------------------------------------------------

@contextmanager
def _bare_architecture(torch, random_init=False):
    """Build romatch models without their weights.

    romatch's constructors always load a state dict strictly; to learn the architecture (and
    check a checkpoint against it with clear words) those loads are switched off for a moment.
    They are class attributes, hence the lock. Without ``random_init`` parameters are created on
    the meta device (shapes only: no memory, no random draws, which cost ~7 s for the ViT-L on
    two CPU cores) by a thread-local torch function mode; the checkpoint's tensors replace them.
    """
    from romatch.models.matcher import RegressionMatcher
    from romatch.models.transformer.dinov2 import DinoVisionTransformer
    classes = (RegressionMatcher, DinoVisionTransformer)
    with _BUILD_LOCK:
        for cls in classes:
            cls.load_state_dict = lambda self, *args, **kwargs: None
        try:
            with nullcontext() if random_init else _parameters_on_meta(torch):
                yield
        finally:
            for cls in classes:
                del cls.load_state_dict


def _parameters_on_meta(torch):
    from torch.overrides import TorchFunctionMode

    class ParametersOnMeta(TorchFunctionMode):
        # Only torch.empty (what layers allocate parameters with) moves to meta: a global
        # torch.device("meta") would also catch the constants romatch reads back with .item().
        # Merely skipping the random fills is not enough: trunc_normal_ loops until its draws,
        # which would then be uninitialised memory, fall within bounds.
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.empty:
                kwargs["device"] = "meta"
            return func(*args, **kwargs)

    return ParametersOnMeta()


def _architecture(torch, roma_model, random_init=False, **config):
    with _bare_architecture(torch, random_init):
        return roma_model(weights={}, dinov2_weights={}, device="cpu" if random_init else "meta",
                          use_custom_corr=False, amp_dtype=torch.float32, **config)


def build_model(roma_state, dinov2_state, device="cpu", amp_dtype=None, coarse_res=560, upsample_res=864,
                symmetric=False, sources=("RoMa state dict", "DINOv2 state dict")):
    """romatch's RegressionMatcher holding the given state dicts, on ``device``, in eval mode.

    The checkpoints are checked against the architecture first (``sources`` name them in the
    error). Parameters take the state dicts' tensors (no copy on CPU). On CUDA the DINOv2
    backbone runs in ``amp_dtype`` (float16 unless told) and the rest under autocast.
    """
    torch, roma_model = import_torch()
    device = torch.device(device)
    amp_dtype = amp_dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    model = _architecture(torch, roma_model, resolution=_pair(coarse_res), upsample_preds=bool(upsample_res),
                          upsample_res=_pair(upsample_res) if upsample_res else None, symmetric=symmetric)
    vit = model.encoder.dinov2_vitl14[0]
    _check_layout(roma_state, model.state_dict(), sources[0], ROMA_FILE)
    _check_layout(dinov2_state, vit.state_dict(), sources[1], DINOV2_FILE)
    # nn.Module's own method: another thread may be inside _bare_architecture, where the
    # classes' load_state_dict is a no-op
    torch.nn.Module.load_state_dict(model, roma_state, assign=True)
    torch.nn.Module.load_state_dict(vit, dinov2_state, assign=True)
    left = [n for m in (model, vit) for n, t in chain(m.named_parameters(), m.named_buffers()) if t.is_meta]
    if left:  # a romatch whose modules hold tensors outside their state dict
        raise MatcherUnavailable(f"romatch: {len(left)} tensors such as {left[0]} are not in the checkpoint; "
                                 "this romatch version is not supported (romatch==0.1.2 is)")
    model.to(device, torch.float32).eval()
    vit.to(device, amp_dtype).eval()
    for module in model.modules():  # romatch keeps its autocast dtype per module
        if hasattr(module, "amp_dtype"):
            module.amp_dtype = amp_dtype
    return model


def random_state_dicts(seed=0):
    """(RoMa, DINOv2) state dicts, randomly initialised, with exactly the layout of
    ``roma_outdoor.pth`` and ``dinov2_vitl14_pretrain.pth``: for tests, benchmarks and smoke runs
    offline. About 1.7 GB of float32; ~10 s on two CPU cores. Leaves torch's global RNG as it was."""
    torch, roma_model = import_torch()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _architecture(torch, roma_model, random_init=True, resolution=(560, 560), upsample_preds=False)
    return model.state_dict(), model.encoder.dinov2_vitl14[0].state_dict()


def _pair(res):
    return (int(res), int(res)) if np.isscalar(res) else tuple(int(r) for r in res)


def _resolution(value, multiple, field):
    try:
        res = _pair(value)
    except (TypeError, ValueError):
        res = ()
    if len(res) != 2 or min(res) <= 0 or any(r % multiple for r in res):
        raise MatcherUnavailable(located(None, field, f"{value!r} is not a positive multiple of {multiple}"))
    return res


# --- matcher -------------------------------------------------------------------------------------

def roma_ready(device="auto", weights=None, dinov2_weights=None, weights_dir=None, model=None, **_):
    """True when RoMa can run well here without downloading anything: torch imports, romatch is
    installed, the device resolves to CUDA, and both weights are at hand (used by MATCHER=auto)."""
    try:
        if importlib.util.find_spec("romatch") is None:
            return False
        import torch
        if resolve_device(torch, device).type != "cuda":
            return False
        if model is None:
            resolve_weights(weights, dinov2_weights, weights_dir, allow_download=False)
        return True
    except Exception:  # any failure means "not ready": auto then falls back to POC
        return False


class RomaMatcher(Matcher):
    """RoMa dense matching of SAR patches (see the module docstring for the conventions).

    ``weights``/``dinov2_weights``: checkpoint paths or already loaded state dicts (plain or
    wrapped as {"model": ...}); ``weights_dir``: a folder holding both files; ``device``: auto,
    cpu, cuda or cuda:N; ``coarse_res``: RoMa's matching resolution (a multiple of 14, int or
    (h, w)); ``upsample_res``: resolution of the refinement pass (a multiple of 8; 0/None: off);
    ``batch_size``: pairs per forward, halved on CUDA out-of-memory; ``symmetric``: also match
    secondary -> reference and zero the certainty where the round trip misses by more than
    2 pixels of the matching grid (doubles the work; the reference -> secondary warp itself is
    the same either way); ``precision``: auto (float16 on CUDA), fp16, bf16 or fp32, always fp32
    on CPU; ``allow_download``: fetch missing weights from upstream once; ``progress``:
    callable(message or fraction) for that download; ``model``: an already built model (e.g.
    one being fine-tuned) used instead of loading weights; its resolution attributes are set
    to these options, and romatch's ``match`` leaves it in eval mode.

    ``forward_seconds`` accumulates the time spent inside RoMa itself.
    """

    name = "roma"
    OPTIONS = ("weights", "dinov2_weights", "weights_dir", "device", "coarse_res", "upsample_res", "batch_size",
               "symmetric", "precision", "allow_download", "progress", "model")
    fb_threshold_px = 2.0

    def __init__(self, weights=None, dinov2_weights=None, weights_dir=None, device="auto", coarse_res=560,
                 upsample_res=864, batch_size=4, symmetric=False, precision="auto", allow_download=False,
                 progress=None, model=None):
        parse_device(device)
        self.coarse_res = _resolution(coarse_res, 14, "COARSE_RES")
        self.upsample_res = _resolution(upsample_res, 8, "UPSAMPLE_RES") if upsample_res else None
        if int(batch_size) < 1:
            raise MatcherUnavailable(located(None, "BATCH_SIZE", f"{batch_size!r} is not a positive integer"))
        if precision not in _PRECISIONS:
            raise MatcherUnavailable(located(None, "PRECISION",
                                             f"{precision!r}; choose one of {', '.join(_PRECISIONS)}"))
        self.batch_size = int(batch_size)
        self.symmetric = bool(symmetric)
        self._torch = torch = import_torch()[0]
        self.device = resolve_device(torch, device)
        self.amp_dtype = self._amp_dtype(torch, precision)
        self.forward_seconds = 0.0
        if model is None:
            found = resolve_weights(weights, dinov2_weights, weights_dir, allow_download, progress)
            (roma_state, roma_where), (dino_state, dino_where) = (
                read_checkpoint(found[f], f) for f in (ROMA_FILE, DINOV2_FILE))
            model = build_model(roma_state, dino_state, self.device, self.amp_dtype, self.coarse_res,
                                self.upsample_res, self.symmetric, sources=(roma_where, dino_where))
            self.weights = roma_where
        else:
            self.weights = "a model passed in"
        self.model = model
        # romatch reads its resolutions and symmetry from these attributes at every match()
        model.h_resized, model.w_resized = self.coarse_res
        model.upsample_preds = self.upsample_res is not None
        model.upsample_res = self.upsample_res
        model.symmetric = self.symmetric
        mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).view(1, 3, 1, 1)  # ImageNet, as romatch
        std = torch.tensor([0.229, 0.224, 0.225], device=self.device).view(1, 3, 1, 1)
        self._scale, self._offset = 1.0 / (255.0 * std), -mean / std  # uint8 grey -> normalised RGB
        self._grids = {}

    def _amp_dtype(self, torch, precision):
        if self.device.type != "cuda" or precision == "fp32":
            return torch.float32
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise MatcherUnavailable(located(None, "PRECISION", f"bf16 is not supported on {self.device}; use fp16"))
        return torch.bfloat16 if precision == "bf16" else torch.float16

    def describe(self):
        up = "x".join(map(str, self.upsample_res)) if self.upsample_res else "off"
        return (f"roma on {self.device} ({str(self.amp_dtype).replace('torch.', '')}), coarse "
                f"{'x'.join(map(str, self.coarse_res))}, upsample {up}, symmetric {self.symmetric}, "
                f"batch {self.batch_size}, weights {self.weights}")

    def match(self, pairs):
        def too_large(pair):
            h, w = pair.reference.shape
            return (f"out of GPU memory on {self.device} even with one {h}x{w} patch (coarse {self.coarse_res[0]}, "
                    f"upsample {self.upsample_res and self.upsample_res[0]}): lower PATCH_SIZE or the "
                    "coarse/upsampling resolution, or use DEVICE=cpu")
        return in_halving_batches(self._torch, self, list(pairs), self._match_batch, too_large)

    def _match_batch(self, pairs):
        torch = self._torch
        with torch.inference_mode():
            refs = [amplitude_to_uint8(p.reference) for p in pairs]
            secs = [amplitude_to_uint8(p.secondary) for p in pairs]
            high = {}
            if self.upsample_res:
                high = dict(im_A_high_res=self.prepare_images(refs, self.upsample_res),
                            im_B_high_res=self.prepare_images(secs, self.upsample_res))
            a, b = self.prepare_images(refs, self.coarse_res), self.prepare_images(secs, self.coarse_res)
            self._sync()
            start = time.perf_counter()
            warp, certainty = self.model.match(a, b, batched=True, **high)
            self._sync()
            self.forward_seconds += time.perf_counter() - start
            return self._sample(pairs, warp, certainty)

    def _sync(self):
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def prepare_images(self, images, size):
        """uint8 patches of any sizes -> (B, 3, h, w) ImageNet-normalised, resized as romatch's
        own loader does (bicubic, antialiased); the grey channel broadcasts to three."""
        torch, F = self._torch, self._torch.nn.functional
        x = torch.cat([F.interpolate(torch.from_numpy(im).to(self.device)[None, None].float(), size=size,
                                     mode="bicubic", antialias=True, align_corners=False) for im in images])
        return torch.addcmul(self._offset, x.clamp_(0.0, 255.0), self._scale)  # (B,1,h,w) -> (B,3,h,w), one pass

    def _sample(self, pairs, warp, certainty):
        """RoMa's warp on its output grid -> PatchMatch at each reference pixel centre."""
        torch = self._torch
        width = warp.shape[2] // 2 if self.symmetric else warp.shape[2]
        flow, cert = warp[:, :, :width, 2:].float(), certainty[:, :, :width].float()
        if self.symmetric:  # round trip A -> B -> A must come back within fb_threshold_px
            back = warp[:, :, width:, :2].float()
            cert = cert * self.model.conf_from_fb_consistency(flow, back, th=self.fb_threshold_px)
        outside = (flow.abs() >= 1).any(-1, keepdim=True)  # romatch clamps points beyond the window to ±1
        field = torch.cat((flow, cert[..., None], outside.float()), -1).permute(0, 3, 1, 2)
        results = []
        for k, pair in enumerate(pairs):
            (h, w), (h2, w2) = pair.reference.shape, pair.secondary.shape
            s = torch.nn.functional.grid_sample(field[k:k + 1], self._grid(h, w), mode="bilinear",
                                                padding_mode="border", align_corners=False)[0].cpu().numpy()
            # a match nearby that RoMa clamped at the window's edge is no match either
            results.append(answer(pair, from_normalised(s[1], h2), from_normalised(s[0], w2), s[2], no_match=s[3] > 0))
        return results

    def _grid(self, h, w):
        """(1, h, w, 2) normalised (x, y) of the pixel centres of an h x w patch, romatch's convention."""
        if (h, w) not in self._grids:
            torch = self._torch
            y = to_normalised(torch.arange(h, device=self.device), h)
            x = to_normalised(torch.arange(w, device=self.device), w)
            gy, gx = torch.meshgrid(y, x, indexing="ij")
            self._grids[(h, w)] = torch.stack((gx, gy), -1)[None]
        return self._grids[(h, w)]
