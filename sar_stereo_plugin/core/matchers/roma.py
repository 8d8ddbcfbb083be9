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
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from itertools import chain
from pathlib import Path

import numpy as np

from ..errors import located
from . import Matcher, MatcherUnavailable, PatchMatch
from .stretch import amplitude_to_uint8

ROMA_FILE = "roma_outdoor.pth"
DINOV2_FILE = "dinov2_vitl14_pretrain.pth"
# Upstream locations, as in romatch.models.model_zoo.weight_urls (a test keeps them in step).
WEIGHT_URLS = {
    ROMA_FILE: "https://github.com/Parskatt/storage/releases/download/roma/roma_outdoor.pth",
    DINOV2_FILE: "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
}
PLUGIN_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
_WHAT = {ROMA_FILE: "a RoMa outdoor checkpoint (roma_outdoor.pth, or one fine-tuned by this plugin)",
         DINOV2_FILE: "the DINOv2 ViT-L/14 checkpoint (dinov2_vitl14_pretrain.pth)",
         "light_sar.pth": "light_sar.pth weights of the light matcher"}
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")
_PRECISIONS = ("auto", "fp16", "bf16", "fp32")
_BUILD_LOCK = threading.Lock()

INSTALL_HINT = (
    "Install the deep-learning packages into this Python: `make setup` in the plugin's source tree, or "
    f"`{sys.executable} -m pip install torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu` "
    "(torch==2.13.0 for a CUDA build), `pip install einops==0.8.2 loguru==0.7.3 "
    "opencv-python-headless==4.11.0.86` and `pip install --no-deps torchvision==0.28.0 romatch==0.1.2` "
    "(never let pip replace numpy 1.24). MATCHER=poc keeps working without them.")


# --- imports -------------------------------------------------------------------------------------

def _import_romatch():
    """(torch, romatch's roma_model), imported on first use; MatcherUnavailable says how to install."""
    try:
        import torch
    except ImportError as err:
        raise MatcherUnavailable(f"PyTorch cannot be imported in {sys.executable} ({err}). {INSTALL_HINT}") from err
    try:
        _import_torchvision(torch)
        from loguru import logger
        from romatch.models.model_zoo.roma_models import roma_model
    except ImportError as err:
        raise MatcherUnavailable(f"romatch cannot be imported ({err}). {INSTALL_HINT}") from err
    logger.disable("romatch")  # it logs every model build at INFO
    return torch, roma_model


def _import_torchvision(torch):
    # torchvision's CUDA wheels register fake kernels for torchvision::nms/qnms at import time;
    # beside a CPU torch their C++ ops never load and the import dies (pytorch/vision#9085).
    # Declaring the two schemas lets it finish; RoMa never calls those ops.
    try:
        import torchvision  # noqa: F401
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise MatcherUnavailable(f"torchvision cannot be imported ({err}). {INSTALL_HINT}") from err
        for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        for op in ("nms", "qnms"):
            if not hasattr(torch.ops.torchvision, op):
                torch.library.define(f"torchvision::{op}",
                                     "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401,F811


# --- device --------------------------------------------------------------------------------------

def _parse_device(device):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> (kind, index); checked before torch is imported."""
    name = str(device if device is not None else "auto").strip().lower()
    m = re.fullmatch(r"(auto|cpu|cuda)(?::(\d+))?", name)
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise MatcherUnavailable(located(None, "DEVICE", f"unknown device {device!r}; use auto, cpu, cuda or cuda:N"))
    return m.group(1), int(m.group(2) or 0)


def resolve_device(device="auto"):
    """A torch.device from the DEVICE setting: 'auto' takes CUDA where there is one, else CPU."""
    torch = _import_romatch()[0]
    return _resolve_device(torch, device)


def _resolve_device(torch, device):
    kind, index = _parse_device(device)
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise MatcherUnavailable(located(None, "DEVICE", (
            f"{device!r} asked for, but this PyTorch ({torch.__version__}) sees no CUDA device; use DEVICE=cpu, "
            "or install a CUDA build (make setup TORCH_SPEC=\"torch==2.13.0\")")))
    count = torch.cuda.device_count()
    if index >= count:
        raise MatcherUnavailable(located(None, "DEVICE", f"{device!r} asked for, but there are {count} CUDA device(s)"))
    return torch.device("cuda", index)


# --- weights -------------------------------------------------------------------------------------

def download_dir():
    """Where downloaded weights go: $SARSTEREO_WEIGHTS_DIR, else <user cache>/sar_stereo_plugin/weights."""
    env = os.environ.get("SARSTEREO_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sar_stereo_plugin" / "weights"


def _folders(weights_dir):
    folders = [Path(weights_dir).expanduser()] if weights_dir else []
    return folders + [PLUGIN_WEIGHTS_DIR, download_dir()]


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
                raise MatcherUnavailable(f"{path}: weights file not found (expected {_WHAT[filename]})")
            found[filename] = path
        else:
            path = next((f / filename for f in _folders(weights_dir) if (f / filename).is_file()), None)
            if path is None and allow_download:
                path = download(WEIGHT_URLS[filename], download_dir() / filename, progress)
            if path is None:
                missing.append(filename)
            found[filename] = path
    if missing:
        folders = ", ".join(str(f) for f in _folders(weights_dir))
        wanted = "; ".join(f"{name} from {WEIGHT_URLS[name]}" for name in missing)
        raise MatcherUnavailable(
            f"RoMa weights not found: looked for {' and '.join(missing)} in {folders}. Put {wanted} into one of "
            "these folders (or name the files), or allow the download.")
    return found


def download(url, destination, progress=None):
    """Download ``url`` to ``destination`` through a temporary file renamed at the end, so an
    interrupted download never looks like a weights file. ``progress`` gets a message, then
    fractions done. Returns ``destination``."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=destination.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            _report(progress, f"downloading {url} to {destination} ({total / 2**20:.0f} MiB)")
            done = 0
            while chunk := response.read(1 << 22):
                out.write(chunk)
                done += len(chunk)
                if total:
                    _report(progress, min(done / total, 1.0))
        os.replace(tmp, destination)
    except (OSError, ValueError) as err:
        Path(tmp).unlink(missing_ok=True)
        raise MatcherUnavailable(f"could not download {url} to {destination} ({err}); download it by hand "
                                 f"into {destination.parent}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return destination


def _report(progress, value):
    if progress is not None:
        progress(value)


def read_checkpoint(source, filename=ROMA_FILE):
    """(state dict, description) from a checkpoint file or mapping: a plain state dict or one
    wrapped as {"model" | "state_dict" | "model_state_dict": state_dict, ...}; a DDP "module."
    prefix is dropped. Files are read with weights_only=True, memory-mapped where possible."""
    torch = _import_romatch()[0]
    if isinstance(source, Mapping):
        obj, where = source, f"the {filename} state dict passed in"
    else:
        where = str(source)
        try:
            obj = torch.load(source, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(source))
        except Exception as err:  # pickle, zip and torch errors alike: the file is not a checkpoint
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise MatcherUnavailable(f"{where}: not a readable PyTorch checkpoint ({type(err).__name__}: {first}); "
                                     f"expected {_WHAT[filename]}") from err
    if isinstance(obj, Mapping) and not _is_state_dict(torch, obj):
        obj = next((obj[k] for k in _WRAPPER_KEYS if _is_state_dict(torch, obj.get(k))), obj)
    if not _is_state_dict(torch, obj):
        raise MatcherUnavailable(f"{where}: holds a {type(obj).__name__} that is not a state dict (names -> tensors, "
                                 f"possibly under 'model' or 'state_dict'); expected {_WHAT[filename]}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, where


def _is_state_dict(torch, obj):
    return isinstance(obj, Mapping) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


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
        raise MatcherUnavailable(f"{where}: {'; '.join(problems)}; is this {_WHAT[filename]}?")


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
    torch, roma_model = _import_romatch()
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
    torch, roma_model = _import_romatch()
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
        if _resolve_device(torch, device).type != "cuda":
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
        _parse_device(device)
        self.coarse_res = _resolution(coarse_res, 14, "COARSE_RES")
        self.upsample_res = _resolution(upsample_res, 8, "UPSAMPLE_RES") if upsample_res else None
        if int(batch_size) < 1:
            raise MatcherUnavailable(located(None, "BATCH_SIZE", f"{batch_size!r} is not a positive integer"))
        if precision not in _PRECISIONS:
            raise MatcherUnavailable(located(None, "PRECISION",
                                             f"{precision!r}; choose one of {', '.join(_PRECISIONS)}"))
        self.batch_size = int(batch_size)
        self.symmetric = bool(symmetric)
        self._torch = torch = _import_romatch()[0]
        self.device = _resolve_device(torch, device)
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
        pairs, out = list(pairs), []
        while len(out) < len(pairs):
            chunk = pairs[len(out):len(out) + self.batch_size]
            try:
                out.extend(self._match_batch(chunk))
                continue
            except self._torch.cuda.OutOfMemoryError as err:
                if len(chunk) == 1:
                    h, w = chunk[0].reference.shape
                    raise MatcherUnavailable(
                        f"out of GPU memory on {self.device} even with one {h}x{w} patch (coarse "
                        f"{self.coarse_res[0]}, upsample {self.upsample_res and self.upsample_res[0]}): lower "
                        "PATCH_SIZE or the coarse/upsampling resolution, or use DEVICE=cpu") from err
            # outside the except block, so the failed batch's tensors are freed before retrying
            self.batch_size = len(chunk) // 2
            if self.device.type == "cuda":
                self._torch.cuda.empty_cache()
        return out

    def _match_batch(self, pairs):
        torch = self._torch
        with torch.inference_mode():
            refs = [amplitude_to_uint8(p.reference) for p in pairs]
            secs = [amplitude_to_uint8(p.secondary) for p in pairs]
            high = {}
            if self.upsample_res:
                high = dict(im_A_high_res=self._images(refs, self.upsample_res),
                            im_B_high_res=self._images(secs, self.upsample_res))
            a, b = self._images(refs, self.coarse_res), self._images(secs, self.coarse_res)
            self._sync()
            start = time.perf_counter()
            warp, certainty = self.model.match(a, b, batched=True, **high)
            self._sync()
            self.forward_seconds += time.perf_counter() - start
            return self._sample(pairs, warp, certainty)

    def _sync(self):
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def _images(self, images, size):
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
            cols = (s[0] + 1.0) * (w2 / 2.0) - 0.5
            rows = (s[1] + 1.0) * (h2 / 2.0) - 0.5
            conf = np.clip(s[2], 0.0, 1.0)
            bad = (s[3] > 0) | np.isnan(pair.reference)  # any output pixel nearby fell outside
            for band in (rows, cols, conf):
                band[bad] = np.nan
            results.append(PatchMatch(rows.astype(np.float32), cols.astype(np.float32), conf.astype(np.float32)))
        return results

    def _grid(self, h, w):
        """(1, h, w, 2) normalised (x, y) of the pixel centres of an h x w patch, romatch's convention."""
        if (h, w) not in self._grids:
            torch = self._torch
            y = (2.0 * torch.arange(h, device=self.device) + 1.0) / h - 1.0
            x = (2.0 * torch.arange(w, device=self.device) + 1.0) / w - 1.0
            gy, gx = torch.meshgrid(y, x, indexing="ij")
            self._grids[(h, w)] = torch.stack((gx, gy), -1)[None]
        return self._grids[(h, w)]
