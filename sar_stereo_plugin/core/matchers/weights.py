"""Weights of the deep matchers: where they are looked for, downloaded, read and written.

Looked for, in order: the explicit path, a folder the caller names, the plugin's own ``weights/``
folder and the download cache (``SARSTEREO_WEIGHTS_DIR``, else ``~/.cache/sar_stereo_plugin/weights``),
which is filled only on explicit request. Files are read with ``weights_only=True`` and written
atomically (:mod:`..atomic`), so an interrupted download or save never passes for weights.
"""

import os
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

from ..atomic import atomic_file
from ..errors import MatcherUnavailable
from .torch_runtime import import_torch

ROMA_FILE = "roma_outdoor.pth"
DINOV2_FILE = "dinov2_vitl14_pretrain.pth"
LIGHT_FILE = "light_sar.pth"
PLUGIN_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
DESCRIPTIONS = {ROMA_FILE: "a RoMa outdoor checkpoint (roma_outdoor.pth, or one fine-tuned by this plugin)",
                DINOV2_FILE: "the DINOv2 ViT-L/14 checkpoint (dinov2_vitl14_pretrain.pth)",
                LIGHT_FILE: "light_sar.pth weights of the light matcher"}
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")


def download_dir():
    """Where downloaded weights go: $SARSTEREO_WEIGHTS_DIR, else <user cache>/sar_stereo_plugin/weights."""
    env = os.environ.get("SARSTEREO_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sar_stereo_plugin" / "weights"


def folders(weights_dir):
    folders = [Path(weights_dir).expanduser()] if weights_dir else []
    return folders + [PLUGIN_WEIGHTS_DIR, download_dir()]


def download(url, destination, progress=None):
    """Download ``url`` to ``destination`` atomically, so an interrupted download never looks like
    a weights file. ``progress`` gets a message, then fractions done. Returns ``destination``."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(destination) as tmp, open(tmp, "wb") as out, \
                urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            _report(progress, f"downloading {url} to {destination} ({total / 2**20:.0f} MiB)")
            done = 0
            while chunk := response.read(1 << 22):
                out.write(chunk)
                done += len(chunk)
                if total:
                    _report(progress, min(done / total, 1.0))
    except (OSError, ValueError) as err:
        raise MatcherUnavailable(f"could not download {url} to {destination} ({err}); download it by hand "
                                 f"into {destination.parent}") from err
    return destination


def _report(progress, value):
    if progress is not None:
        progress(value)


def read_checkpoint(source, filename=ROMA_FILE):
    """(state dict, description) from a checkpoint file or mapping: a plain state dict or one
    wrapped as {"model" | "state_dict" | "model_state_dict": state_dict, ...}; a DDP "module."
    prefix is dropped. Files are read with weights_only=True, memory-mapped where possible."""
    torch = import_torch()[0]
    if isinstance(source, Mapping):
        obj, where = source, f"the {filename} state dict passed in"
    else:
        where = str(source)
        try:
            obj = torch.load(source, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(source))
        except Exception as err:  # pickle, zip and torch errors alike: the file is not a checkpoint
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise MatcherUnavailable(f"{where}: not a readable PyTorch checkpoint ({type(err).__name__}: {first}); "
                                     f"expected {DESCRIPTIONS[filename]}") from err
    if isinstance(obj, Mapping) and not is_state_dict(torch, obj):
        obj = next((obj[k] for k in _WRAPPER_KEYS if is_state_dict(torch, obj.get(k))), obj)
    if not is_state_dict(torch, obj):
        raise MatcherUnavailable(f"{where}: holds a {type(obj).__name__} that is not a state dict (names -> tensors, "
                                 f"possibly under 'model' or 'state_dict'); expected {DESCRIPTIONS[filename]}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, where


def is_state_dict(torch, obj):
    return isinstance(obj, Mapping) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def atomic_torch_save(torch, obj, path):
    """torch.save through the project's atomic writer: never a half-written file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)
