"""Fine-tuning of the deep matchers (``light``, ``roma``) on a patch dataset, L = L_D + λ·L_C.

:func:`finetune` trains on the ``train`` split of a dataset folder (``manifest.json`` + npz
samples, see :mod:`.dataset`) and writes into ``output_dir``:

* ``last.pth``: model, optimizer, step and config (``{"schema": "sarstereo.finetune/1", ...}``),
  written atomically after every epoch, every ``save_every`` steps and on cancel; ``resume``
  continues from it (same data order, learning rate and step count as an uninterrupted run).
* ``epoch_NNN.pth``: a snapshot of the model after each epoch with its validation; no optimizer
  (RoMa's AdamW state would triple the 0.45 GB of its weights), so the run resumes from ``last.pth``.
* the deployable weights: ``light_sar.pth`` (light; :mod:`..matchers.light` format) or
  ``roma_finetuned.pth`` (RoMa; the layout of ``roma_outdoor.pth``, DINOv2 stays the original).
* ``log.json``: config, the training loss every ``log_every`` steps, and after each epoch the
  validation accuracy at 1/3/5/10 px (secondary-window pixels) on the ``val`` split (the light
  network's single view: the matcher's test-time flips would cost four forwards per pair).

Recipe (romatch's training scripts): AdamW, weight decay 0.01, learning rates given per 8 images
and scaled by the global batch (``batch_size`` x processes): RoMa decoder 1e-4, CNN encoder 5e-6
(DINOv2 stays frozen, as in romatch); light (TinyRoMa) 1e-4 for heads and XFeat alike. ``lr``
overrides the decoder/heads rate, the encoder keeps its ratio. The rate drops tenfold for the last
10 % of the steps. Gradients are clipped to ``grad_clip`` (global norm; Adam is nearly invariant
to a uniform rescale, so this only tames rare spikes). ``amp`` (CUDA only; ignored on CPU) runs
the forward in bfloat16 where supported, else float16 with a gradient scaler.

Inputs are prepared as the matchers prepare them (same stretch; light: native size rounded to 32;
RoMa: resized to ``coarse_res``), so what is trained is what runs. With ``augment`` each pair is
flipped left-right and/or up-down at random (both images and the warp: other flight and look
directions); ``synthetic`` replaces a share of them by random speckled texture pairs
(:func:`synthetic_sample`).

Several processes (DistributedDataParallel), one per GPU or CPU share::

    torchrun --nproc_per_node=4 -m sar_stereo_plugin.core.training.finetune DATASET OUTPUT --model light
    python -m torch.distributed.run --nproc_per_node=2 -m sar_stereo_plugin.core.training.finetune \
        DATASET OUTPUT --device cpu --steps 100

Under torchrun (``WORLD_SIZE`` > 1) the process group uses NCCL on CUDA (each rank on
``cuda:LOCAL_RANK``) and gloo on CPU; each step every rank takes its own ``batch_size`` slice of one
global batch; rank 0 alone validates and writes files; at the end rank 0's BatchNorm statistics
(updated on each rank's own batch) go to every rank and every rank's model checksum is gathered into
the log (they must agree). Without torchrun the same command trains in one process.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from ..errors import FinetuneCanceled, FinetuneError, SarStereoError, located
from ..evaluate import THRESHOLDS_PX
from ..pixels import from_normalised, inside, to_normalised

CHECKPOINT_SCHEMA = "sarstereo.finetune/1"
LOG_SCHEMA = "sarstereo.finetune-log/1"
MODELS = ("light", "roma")
# learning rates per 8 images (romatch: train_roma_outdoor.py, train_tiny_roma_v1_outdoor.py)
RECIPES = {"light": {"heads": 1e-4, "backbone": 1e-4}, "roma": {"decoder": 1e-4, "encoder": 5e-6}}
WEIGHT_DECAY = 0.01
FINAL_DROP = 0.9  # lr x 0.1 from this share of the steps on
FINAL_FILES = {"light": "light_sar.pth", "roma": "roma_finetuned.pth"}


@dataclass
class FinetuneResult:
    """What :func:`finetune` did. ``validation``: the last validation (None without a val split)."""

    output_dir: str
    weights: str  # deployable weights file
    checkpoint: str
    log: str
    model: str
    steps: int
    epochs: int
    loss: float
    validation: dict
    seconds: float
    steps_per_second: float
    network: object = field(default=None, repr=False)  # the trained torch module

    def to_dict(self):
        d = asdict(self)
        d.pop("network")
        return d


# --- dataset --------------------------------------------------------------------------------------

class Samples:
    """A dataset folder's samples by split; ``load(entry)`` gives the checked arrays."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not (self.folder / "manifest.json").is_file():
            raise FinetuneError(located(self.folder, "DATASET", "no manifest.json here, so this is not a dataset "
                                                                "folder; build one first (sarstereo:builddataset)"))
        from .dataset import epipolar_of, load_manifest, load_sample
        self._load_sample, self._epipolar_of = load_sample, epipolar_of
        self.manifest = load_manifest(self.folder)
        entries = self.manifest.get("samples") or []
        self.splits = {s: [e for e in entries if e.get("split") == s] for s in ("train", "val", "test")}
        if not self.splits["train"]:
            raise FinetuneError(located(self.folder / "manifest.json", "samples",
                                        "no sample of split 'train'; build the dataset with a training split"))

    def load(self, entry):
        s = self._load_sample(self.folder, entry)
        p = s["reference"].shape
        where = self.folder / entry.get("file", "?")
        if s["warp"].shape != p + (2,) or s["valid"].shape != p or s["secondary"].ndim != 2:
            raise FinetuneError(located(where, "warp", f"shapes {s['reference'].shape}, {s['secondary'].shape}, "
                                                       f"{s['warp'].shape}, {s['valid'].shape} do not fit together"))
        out = {k: np.asarray(s[k]) for k in ("reference", "secondary", "warp", "valid")}
        if "prior" in s:  # what the engine hands a matcher; used in validation only
            out.update(prior=np.asarray(s["prior"], np.float32), search_px=float(s.get("search_px", np.nan)),
                       epipolar=self._epipolar_of(s))
        return out


def _flip(sample, lr, ud):
    """The pair seen from the other side (lr) / flying the other way (ud): images and warp."""
    s = {k: v for k, v in sample.items() if k not in ("prior", "search_px", "epipolar")}  # training needs none
    for axis, on, comp in ((1, lr, 0), (0, ud, 1)):
        if on:
            for k in ("reference", "secondary", "valid", "warp"):
                s[k] = np.flip(s[k], axis)
            s["warp"] = s["warp"].copy()
            s["warp"][..., comp] *= -1.0  # normalised coordinates are symmetric about 0
    return {k: np.ascontiguousarray(v) for k, v in s.items()}


def synthetic_sample(rng, patch, window):
    """A random speckled texture pair with exact truth, shaped like a dataset sample: reference
    (patch, patch), secondary ``window`` (rows, cols). The ground is a log-normal texture (correlation
    0.7-4 px, 2-6 dB) over a smooth shading (0-3 dB); the window shows it at another scale (rows
    x0.85-1.18, columns x0.65-1.5, as range spacing changes with incidence) and offset, each image
    with its own speckle (1-8 looks). Mixed into training (``synthetic``), such pairs keep the
    matcher general: simulated scenes alone teach it to lean on their terrain shading."""
    from scipy.ndimage import gaussian_filter, map_coordinates
    h2, w2 = window
    sr, sc = np.exp(rng.uniform(np.log([0.85, 0.65]), np.log([1.18, 1.5])))
    span = np.array([h2 / sr, w2 / sc])  # ground extent of the window, reference pixels
    g0 = (patch - span) / 2 + rng.uniform(-1, 1, 2) * (np.abs(span - patch) / 2 + 0.25 * patch)
    lo = np.floor(np.minimum(0, g0)).astype(int) - 2
    shape = tuple(np.ceil(np.maximum(patch, g0 + span)).astype(int) + 2 - lo)
    g = gaussian_filter(rng.standard_normal(shape), rng.uniform(0.7, 4.0))
    shade = gaussian_filter(rng.standard_normal(shape), 25.0)
    log_t = g / g.std() * rng.uniform(2, 6) + shade / max(shade.std(), 1e-9) * rng.uniform(0, 3)
    tex = np.exp(log_t / 4.343)  # dB -> intensity

    def look(intensity):
        n = int(rng.choice([1, 2, 4, 8]))
        return np.sqrt(intensity * rng.gamma(n, 1.0 / n, intensity.shape)).astype(np.float32)

    ii, jj = np.mgrid[0:h2, 0:w2].astype(np.float64)
    sec = map_coordinates(tex, [g0[0] + ii / sr - lo[0], g0[1] + jj / sc - lo[1]], order=1)
    r, c = np.mgrid[0:patch, 0:patch].astype(np.float64)
    rows, cols = (r - g0[0]) * sr, (c - g0[1]) * sc  # window pixel of each reference pixel
    valid = inside(rows, cols, (h2, w2))
    warp = np.stack([to_normalised(cols, w2), to_normalised(rows, h2)], -1).astype(np.float32)
    warp[~valid] = np.nan
    return {"reference": look(tex[-lo[0]:-lo[0] + patch, -lo[1]:-lo[1] + patch]), "secondary": look(sec),
            "warp": warp, "valid": valid.astype(np.uint8)}


# --- evaluation -----------------------------------------------------------------------------------

def evaluate_dataset(matcher, dataset_dir, split="val", limit=None, samples=None):
    """Accuracy of ``matcher`` on a dataset split: for each valid pixel the end-point error (secondary
    window pixels) of its match; an unmatched valid pixel counts as a failure. Returns
    {"accuracy_at_px": {"1": ..}, "median_epe_px", "coverage", "valid_pixels", "samples"}, or
    None when the split is empty."""
    from ..matchers import PatchPair
    data = samples or Samples(dataset_dir)
    entries = data.splits.get(split, [])[:limit]
    if not entries:
        return None
    hits, errors, valid_count = {t: 0 for t in THRESHOLDS_PX}, [], 0
    batch = max(1, int(getattr(matcher, "batch_size", 1)))
    for i in range(0, len(entries), batch):
        loaded = [data.load(e) for e in entries[i:i + batch]]
        pairs = [PatchPair(s["reference"], s["secondary"],
                           s.get("prior", np.full((2,) + s["reference"].shape, np.nan, np.float32)),
                           s.get("search_px", float("nan")), (0, 0), (0, 0), *s.get("epipolar", (None, np.inf)))
                 for s in loaded]
        for s, m in zip(loaded, matcher.match(pairs)):
            h2, w2 = s["secondary"].shape
            rows, cols = from_normalised(s["warp"][..., 1], h2), from_normalised(s["warp"][..., 0], w2)
            valid = (s["valid"] > 0) & np.isfinite(rows) & np.isfinite(cols)
            epe = np.hypot(m.rows - rows, m.cols - cols)[valid]
            epe = epe[np.isfinite(epe)]
            valid_count += int(valid.sum())
            errors.append(epe)
            for t in THRESHOLDS_PX:
                hits[t] += int((epe <= t).sum())
    epe = np.concatenate(errors)
    n = max(valid_count, 1)
    return {"accuracy_at_px": {str(t): hits[t] / n for t in THRESHOLDS_PX},
            "median_epe_px": float(np.median(epe)) if epe.size else None,
            "coverage": epe.size / n, "valid_pixels": valid_count, "samples": len(entries)}


# --- backends -------------------------------------------------------------------------------------

class _Light:
    kind = "light"

    def __init__(self, torch, device, weights=None, state=None, batch_size=4, **_):
        from ..matchers.light import LightMatcher, build_light_model, read_light_checkpoint
        where = "checkpoint"
        if state is None and weights is not None:
            state, where = read_light_checkpoint(weights)
        self.model = build_light_model(state, device, source=where)
        self.matcher = LightMatcher(model=self.model, device=str(device), batch_size=batch_size, flips=False)
        self.torch = torch

    def groups(self):
        backbone = [p for n, p in self.model.named_parameters() if n.startswith("xfeat.")]
        heads = [p for n, p in self.model.named_parameters() if not n.startswith("xfeat.")]
        return {"heads": heads, "backbone": backbone}

    def inputs(self, refs, secs):
        from ..matchers.light import prepare_batch
        a, b = prepare_batch(self.torch, refs, secs, self.matcher.device, self.matcher.max_side)
        return {"im_A": a, "im_B": b}, refs[0].shape[0] / a.shape[-2]

    def call(self, net, batch):
        return net(batch)

    def save_weights(self, folder, meta):
        from ..matchers.light import save_light_weights
        return save_light_weights(self.model, Path(folder) / FINAL_FILES["light"], meta)


class _Roma:
    kind = "roma"

    def __init__(self, torch, device, weights=None, dinov2_weights=None, weights_dir=None, state=None,
                 coarse_res=560, amp_dtype=None, batch_size=4, **_):
        from ..matchers import roma
        found = roma.resolve_weights(weights if state is None else state, dinov2_weights, weights_dir)
        (rstate, rwhere), (dstate, dwhere) = (roma.read_checkpoint(found[f], f) for f in (roma.ROMA_FILE,
                                                                                        roma.DINOV2_FILE))
        # build_model adopts the tensors: copy them, training must not change the caller's dict or a mmap
        rstate = {k: v.clone() for k, v in rstate.items()}
        self.model = roma.build_model(rstate, dstate, device, amp_dtype or torch.float32, coarse_res, None,
                                      False, sources=(rwhere, dwhere))
        self.matcher = roma.RomaMatcher(model=self.model, device=str(device), coarse_res=coarse_res,
                                        upsample_res=None, batch_size=batch_size)
        self.res = self.matcher.coarse_res
        self.scale_factor = math.sqrt(self.res[0] * self.res[1]) / 560.0  # as RegressionMatcher.match
        self.torch = torch

    def groups(self):
        return {"decoder": list(self.model.decoder.parameters()), "encoder": list(self.model.encoder.parameters())}

    def inputs(self, refs, secs):
        from ..matchers.stretch import amplitude_to_uint8
        m = self.matcher
        a = m._images([amplitude_to_uint8(r) for r in refs], self.res)
        b = m._images([amplitude_to_uint8(s) for s in secs], self.res)
        return {"im_A": a, "im_B": b}, refs[0].shape[0] / self.res[0]

    def call(self, net, batch):
        return net(batch, scale_factor=self.scale_factor)

    def save_weights(self, folder, meta):
        from ..matchers.weights import atomic_torch_save
        path = Path(folder) / FINAL_FILES["roma"]
        atomic_torch_save(self.torch, {k: v.detach().cpu() for k, v in self.model.state_dict().items()}, path)
        return path


# --- the loop -------------------------------------------------------------------------------------

class _Dist:
    """The torchrun process group, or a stand-in for one process."""

    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_RANK", "0"))
        self.owned = False
        self.dist = None
        if self.world > 1:
            import torch.distributed as dist
            self.dist = dist
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
                self.owned = True

    def mean(self, torch, values):
        """The mean over the ranks of a dict of floats."""
        if self.dist is None:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64)
        self.dist.all_reduce(t)
        return dict(zip(values, (t / self.world).tolist()))

    def sync_buffers(self, model):
        """Rank 0's buffers everywhere: BatchNorm statistics last updated on each rank's own batch."""
        if self.dist is not None:
            for b in model.buffers():
                self.dist.broadcast(b.data, 0)

    def gather(self, obj):
        if self.dist is None:
            return [obj]
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.dist is not None:
            self.dist.barrier()

    def close(self):
        if self.owned:
            self.dist.destroy_process_group()


def _checksum(model):
    h = hashlib.sha256()
    for name, t in sorted(getattr(model, "module", model).state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _write_json(obj, path):
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


def _load_checkpoint(torch, path, model):
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file
        raise FinetuneError(located(path, "RESUME", f"the checkpoint cannot be read ({type(err).__name__}: "
                                                    f"{str(err)[:200]}); delete it to start afresh")) from err
    if not isinstance(ck, dict) or ck.get("schema") != CHECKPOINT_SCHEMA:
        raise FinetuneError(located(path, "RESUME", "not a fine-tuning checkpoint of this plugin"))
    if ck["config"].get("model") != model:
        raise FinetuneError(located(path, "MODEL", f"the run in this folder trains {ck['config'].get('model')!r}, "
                                                   f"not {model!r}; resume with MODEL={ck['config'].get('model')} "
                                                   "or choose another output folder"))
    return ck


def finetune(dataset_dir, output_dir, *, model="light", weights=None, dinov2_weights=None, weights_dir=None,
             epochs=1, steps=None, batch_size=4, lr=None, lambda_c=None, grad_clip=1.0, amp=False, device="auto",
             resume=False, seed=0, coarse_res=560, augment=True, save_every=0, log_every=10, val_samples=64,
             epoch_checkpoints=True, synthetic=0.0, progress=None, is_canceled=None, report=None):
    """Fine-tune a matcher (see the module docstring); returns a :class:`FinetuneResult`.

    ``model``: "light" or "roma". ``weights``: the start (light: a ``light_sar.pth`` or checkpoint,
    None = pretrained XFeat with new heads; RoMa: ``roma_outdoor.pth`` or a state dict, else
    looked up as the RoMa matcher does, with ``dinov2_weights`` and ``weights_dir``). ``epochs``:
    passes over the training split; ``steps``: stop after this many optimizer steps in all (counting
    those before a resume). ``batch_size``: pairs per step and process. ``lambda_c``: λ of
    :mod:`.losses` (default ``losses.LAMBDA_C``). ``coarse_res``: RoMa's training resolution.
    ``save_every``: also checkpoint every so many steps (0: per epoch only). ``val_samples``: at
    most this many validation pairs. ``epoch_checkpoints``: keep a model snapshot per epoch.
    ``synthetic``: share of training pairs replaced by :func:`synthetic_sample` pairs (0-1).
    ``progress(fraction)``, ``report(message)``, ``is_canceled()``: optional callables; on cancel
    :class:`FinetuneCanceled` is raised after ``last.pth`` was written.
    """
    from ..matchers.torch_runtime import import_torch, resolve_device
    from .losses import LAMBDA_C, matching_loss
    torch = import_torch()[0]
    if model not in MODELS:
        raise FinetuneError(located(None, "MODEL", f"{model!r}; choose one of {', '.join(MODELS)}"))
    for name, value, lo in (("EPOCHS", epochs, 1), ("BATCH_SIZE", batch_size, 1), ("STEPS", steps, 1)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < lo):
            raise FinetuneError(located(None, name, f"{value!r}; give a whole number >= {lo}"))
    lambda_c = LAMBDA_C if lambda_c is None else float(lambda_c)
    for name, value, ok in (("LAMBDA_C", lambda_c, lambda_c >= 0), ("LEARNING_RATE", lr, lr is None or lr > 0),
                            ("grad_clip", grad_clip, grad_clip > 0), ("synthetic", synthetic, 0 <= synthetic <= 1)):
        if not ok:
            raise FinetuneError(located(None, name, f"{value!r}; give a positive number"
                                                    + (" or 0" if name == "LAMBDA_C" else "")))
    say = report or (lambda message: None)
    data = Samples(dataset_dir)
    size = int(data.manifest.get("patch_size") or data.load(data.splits["train"][0])["reference"].shape[0])
    if model == "light" and size < 64:  # XFeat's deepest level is 1/32: BatchNorm needs 2 x 2 cells there
        raise FinetuneError(located(Path(dataset_dir) / "manifest.json", "patch_size",
                                    f"{size} pixels; the light matcher trains on patches of at least 64"))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pth"
    if last.exists() and not resume:
        raise FinetuneError(located(out, "RESUME", "this folder already holds a fine-tuning run (last.pth); set "
                                                   "RESUME to continue it, or choose an empty output folder"))

    dev = resolve_device(torch, device)
    dist = _Dist(dev)
    if dev.type == "cuda" and dist.world > 1:
        dev = torch.device("cuda", dist.local)
        torch.cuda.set_device(dev)
    amp_dtype = None
    if amp and dev.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif amp:
        say("amp ignored: mixed precision is for CUDA devices only")
    ck = _load_checkpoint(torch, last, model) if resume and last.exists() else None
    torch.manual_seed(seed)  # new heads start alike on every rank
    backend = (_Light if model == "light" else _Roma)(
        torch, dev, weights=weights, dinov2_weights=dinov2_weights, weights_dir=weights_dir, batch_size=batch_size,
        state=ck["model"] if ck else None, coarse_res=coarse_res, amp_dtype=amp_dtype)
    net = backend.model
    net.train()
    world_batch = batch_size * dist.world
    recipe = RECIPES[model]
    main_group = next(iter(recipe))
    scale = (lr / (recipe[main_group] * world_batch / 8.0)) if lr else 1.0
    groups = [{"params": ps, "lr": recipe[g] * world_batch / 8.0 * scale, "name": g}
              for g, ps in backend.groups().items() if ps]
    optimizer = torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None,
                                      find_unused_parameters=model == "roma")

    spe = max(1, len(data.splits["train"]) // world_batch)  # steps per epoch
    total = int(steps) if steps else int(epochs) * spe
    config = {"model": model, "dataset": str(Path(dataset_dir).resolve()), "weights": str(weights) if isinstance(
        weights, (str, Path)) else ("state dict" if weights is not None else None), "epochs": math.ceil(total / spe),
        "steps": total, "steps_per_epoch": spe, "batch_size": int(batch_size), "processes": dist.world,
        "learning_rates": {g["name"]: g["lr"] for g in groups}, "lambda_c": lambda_c, "grad_clip": float(grad_clip),
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else None, "device": str(dev), "seed": int(seed),
        "coarse_res": int(coarse_res) if model == "roma" else None, "augment": bool(augment),
        "synthetic": float(synthetic),
        "train_samples": len(data.splits["train"]), "val_samples": min(len(data.splits["val"]), val_samples)}
    log = {"schema": LOG_SCHEMA, "config": config, "train": [], "validation": [], "events": []}
    step = 0
    if ck:
        optimizer.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        step = int(ck["step"])
        if (out / "log.json").is_file():
            old = json.loads((out / "log.json").read_text())
            log["train"] = [r for r in old.get("train", []) if r["step"] <= step]
            log["validation"] = [r for r in old.get("validation", []) if r["step"] <= step]
            log["events"] = old.get("events", [])
        for g in optimizer.param_groups:  # this run's rates (a resume may change LEARNING_RATE)
            g["lr"] = config["learning_rates"][g["name"]]
        say(f"resuming at step {step} of {total}")
    log["events"].append({"event": "resume" if ck else "start", "step": step, "time": time.time()})
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    def save(path, with_optimizer=True, extra=None):
        if dist.rank != 0:
            return
        state = {"schema": CHECKPOINT_SCHEMA, "model": {k: v.detach().cpu() for k, v in backend.model.state_dict()
                                                         .items()}, "step": step, "config": config} | (extra or {})
        if with_optimizer:
            state |= {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled()
                      else None}
        from ..matchers.weights import atomic_torch_save
        atomic_torch_save(torch, state, path)
        _write_json(log, out / "log.json")

    def validate():
        if dist.rank != 0:
            return None
        result = evaluate_dataset(backend.matcher, None, "val", val_samples, samples=data)
        net.train()
        if result:
            log["validation"].append({"step": step, "epoch": step / spe} | result)
            say(f"step {step}: validation accuracy within 1/3/5/10 px " + "/".join(
                f"{100 * v:.1f}" for v in result["accuracy_at_px"].values()) + " %")
        return result

    start, first_step, loss_value, validation = time.perf_counter(), step, float("nan"), None
    train = data.splits["train"]
    try:
        while step < total:
            epoch, i = divmod(step, spe)
            order = np.random.default_rng([seed, epoch]).permutation(len(train))
            order = np.resize(order, max(len(order), spe * world_batch))  # wraps a tiny split around
            idx = order[i * world_batch + dist.rank * batch_size:][:batch_size]
            rng = np.random.default_rng([seed, step, dist.rank, 1])
            batch = [data.load(train[k]) for k in idx]
            if augment:
                batch = [_flip(s, *(rng.random(2) < 0.5)) for s in batch]
            batch = [synthetic_sample(rng, s["reference"].shape[0], s["secondary"].shape)
                     if rng.random() < synthetic else s for s in batch]
            inputs, pixel_scale = backend.inputs([s["reference"] for s in batch], [s["secondary"] for s in batch])
            warp = torch.from_numpy(np.stack([s["warp"] for s in batch]).astype(np.float32)).to(dev)
            valid = torch.from_numpy(np.stack([s["valid"] > 0 for s in batch])).to(dev)
            sec_hw = torch.tensor([s["secondary"].shape for s in batch], dtype=torch.float32, device=dev)
            factor = 0.1 if step >= FINAL_DROP * total else 1.0
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base * factor
            net.train()
            with torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else nullcontext():
                corresps = backend.call(net, inputs)
            loss, parts = matching_loss(corresps, warp, valid, sec_hw, lambda_c=lambda_c, pixel_scale=pixel_scale)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(backend.model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            parts = dist.mean(torch, dict(parts, loss=loss.item()))
            loss_value = parts.pop("loss")
            if dist.rank == 0 and (step % log_every == 0 or step == first_step + 1 or step == total):
                seconds = time.perf_counter() - start
                log["train"].append({"step": step, "epoch": step / spe, "loss": loss_value, **parts,
                                     "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3),
                                     "steps_per_second": (step - first_step) / max(seconds, 1e-9)})
                say(f"step {step}/{total}: loss {loss_value:.4f} (L_D {parts['loss_d']:.4f}, "
                    f"L_C {parts['loss_c']:.4f})")
            if progress:
                progress(step / total)
            if is_canceled and is_canceled():
                log["events"].append({"event": "canceled", "step": step, "time": time.time()})
                save(last)
                raise FinetuneCanceled(f"fine-tuning canceled at step {step} of {total}; {last} holds the state: "
                                       "run again with RESUME to continue")
            if step % spe == 0 or step == total:
                validation = validate() or validation
                if step % spe == 0 and epoch_checkpoints:
                    save(out / f"epoch_{step // spe:03d}.pth", with_optimizer=False,
                         extra={"validation": log["validation"][-1] if log["validation"] else None})
                save(last)
            elif save_every and step % save_every == 0:
                save(last)
        if step == first_step and dist.rank == 0:  # nothing left to do (resumed a finished run)
            validation = log["validation"][-1] if log["validation"] else validate()
        dist.sync_buffers(backend.model)
        sums = dist.gather(_checksum(backend.model))
        seconds = time.perf_counter() - start
        weights_path = out / FINAL_FILES[model]
        if dist.rank == 0:
            log["rank_checksums"] = sums
            log["events"].append({"event": "done", "step": step, "time": time.time()})
            backend.save_weights(out, {"step": step, "config": config, "validation": validation})
            _write_json(log, out / "log.json")  # last.pth was written at the final step
        dist.barrier()
    finally:
        dist.close()
    rate = (step - first_step) / max(seconds, 1e-9)
    return FinetuneResult(str(out), str(weights_path), str(last), str(out / "log.json"), model, step,
                          math.ceil(step / spe), loss_value, validation, seconds, rate, backend.model)


# --- command line (and torchrun) ------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sar_stereo_plugin.core.training.finetune",
                                description="Fine-tune a matcher on a patch dataset (see the module docstring).")
    p.add_argument("dataset")
    p.add_argument("output")
    p.add_argument("--model", choices=MODELS, default="light")
    p.add_argument("--weights")
    p.add_argument("--dinov2-weights")
    p.add_argument("--weights-dir")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float)
    p.add_argument("--lambda-c", type=float)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--coarse-res", type=int, default=560)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--synthetic", type=float, default=0.0, help="share of synthetic texture pairs")
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--val-samples", type=int, default=64)
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    a = p.parse_args(argv)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    try:
        result = finetune(a.dataset, a.output, model=a.model, weights=a.weights, dinov2_weights=a.dinov2_weights,
                          weights_dir=a.weights_dir, epochs=a.epochs, steps=a.steps, batch_size=a.batch_size,
                          lr=a.lr, lambda_c=a.lambda_c, grad_clip=a.grad_clip, amp=a.amp, device=a.device,
                          resume=a.resume, seed=a.seed, coarse_res=a.coarse_res, augment=not a.no_augment,
                          save_every=a.save_every, log_every=a.log_every, val_samples=a.val_samples,
                          synthetic=a.synthetic,
                          report=print if rank0 else None)
    except SarStereoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if rank0:
        print(json.dumps(result.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
