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

Optimizer: AdamW, weight decay 0.01, the learning rates of each matcher's recipe
(:mod:`.backends`) given per 8 images and scaled by the global batch (``batch_size`` x processes);
``lr`` overrides the decoder/heads rate, the encoder keeps its ratio. The rate drops tenfold for the
last 10 % of the steps. Gradients are clipped to ``grad_clip`` (global norm; Adam is nearly invariant
to a uniform rescale, so this only tames rare spikes). ``amp`` (CUDA only; ignored on CPU) runs
the forward in bfloat16 where supported, else float16 with a gradient scaler. Every tunable is a
field of :class:`.settings.FinetuneSettings`.

Inputs are prepared as the matchers prepare them (same stretch; light: native size rounded to 32;
RoMa: resized to ``coarse_res``), so what is trained is what runs. With ``augment`` each pair is
flipped left-right and/or up-down at random (both images and the warp: other flight and look
directions); ``synthetic`` replaces a share of them by random speckled texture pairs
(:func:`.samples.synthetic_sample`).

Several processes (DistributedDataParallel), one per GPU or CPU share::

    torchrun --nproc_per_node=4 -m sar_stereo_plugin.core.training.finetune DATASET OUTPUT --model light
    python -m torch.distributed.run --nproc_per_node=2 -m sar_stereo_plugin.core.training.finetune \
        DATASET OUTPUT --device cpu --steps 100

Under torchrun (``WORLD_SIZE`` > 1, :mod:`.distributed`) each rank runs on ``cuda:LOCAL_RANK`` or the
CPU and takes its own ``batch_size`` slice of each step's global batch; rank 0 alone validates and
writes files; at the end rank 0's BatchNorm statistics (updated on each rank's own batch) go to every
rank and every rank's model checksum is gathered into the log (they must agree). Without torchrun the
same command trains in one process.
"""

import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_file, check_outputs
from ..errors import FinetuneCanceled, FinetuneError, SarStereoError, located
from ..inputs import read_json
from ..matchers.torch_runtime import import_torch, resolve_device
from ..matchers.weights import atomic_torch_save
from ..progress import Progress
from . import health
from .backends import BACKENDS
from .distributed import ProcessGroup, model_checksum
from .samples import Samples, evaluate_dataset, flip_pair, synthetic_sample
from .settings import MODELS, FinetuneSettings

CHECKPOINT_SCHEMA = "sarstereo.finetune/1"
LOG_SCHEMA = "sarstereo.finetune-log/1"
WEIGHT_DECAY = 0.01
FINAL_DROP = 0.9  # lr x 0.1 from this share of the steps on


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


def finetune(dataset_dir, output_dir, settings=None, *, progress=None, is_canceled=None, report=None, **kwargs):
    """Fine-tune a matcher (see the module docstring); returns a :class:`FinetuneResult`.

    ``settings``: a :class:`FinetuneSettings`; keyword arguments named as its fields set (or
    override) them. ``progress(fraction)``, ``report(message)``, ``is_canceled()``: optional
    callables; ``is_canceled`` is asked once a step, and on cancel :class:`FinetuneCanceled` is
    raised after ``last.pth`` was written.
    """
    settings = replace(settings or FinetuneSettings(), **kwargs)
    settings.validate()
    _check_paths(dataset_dir, output_dir, settings)
    torch = import_torch()[0]
    say = report or (lambda message: None)
    data = Samples(dataset_dir)
    _check_patch_size(data, settings.model)
    out = _output_folder(output_dir, settings.resume)
    steps = Progress(progress, is_canceled, FinetuneCanceled, "fine-tuning canceled")
    dev = resolve_device(torch, settings.device)
    dist = ProcessGroup(torch, dev)
    try:
        run = _Run(torch, settings, data, out, dist, dev, say)
        dist.keep(run)  # freed under torchrun only when the process ends (ProcessGroup.keep)
        run.train(steps)
        result = run.finish()
    finally:
        dist.close()
    steps.done()
    return result


def _check_paths(dataset_dir, output_dir, settings):
    """Neither the output folder nor a file the run writes is one of its inputs."""
    out = Path(output_dir)
    written = {"OUTPUT": out, **{f"OUTPUT ({name})": out / name for name in
                                 ("light_sar.pth", "roma_finetuned.pth", "log.json", "epoch_001.pth")}}
    check_outputs(written, {"DATASET": dataset_dir, "WEIGHTS": settings.weights if isinstance(settings.weights, (
        str, Path)) else None, "DINOV2_WEIGHTS": settings.dinov2_weights if isinstance(
        settings.dinov2_weights, (str, Path)) else None}, folders=("OUTPUT",))


def _check_patch_size(data, model):
    size = int(data.manifest.get("patch_size") or data.load(data.splits["train"][0])["reference"].shape[0])
    if model == "light" and size < 64:  # XFeat's deepest level is 1/32: BatchNorm needs 2 x 2 cells there
        raise FinetuneError(located(data.folder / "manifest.json", "patch_size",
                                    f"{size} pixels; the light matcher trains on patches of at least 64"))


def _output_folder(output_dir, resume):
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "last.pth").exists() and not resume:
        raise FinetuneError(located(out, "RESUME", "this folder already holds a fine-tuning run (last.pth); set "
                                                   "RESUME to continue it, or choose an empty output folder"))
    return out


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


def _write_json(obj, path):
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


class _Run:
    """One fine-tuning run on this process: network, optimizer, log and step count, from the start
    or from ``last.pth``; every rank holds one, rank 0 alone writes."""

    def __init__(self, torch, settings, data, out, dist, dev, say):
        from .losses import LAMBDA_C, matching_loss
        self.torch, self.settings, self.data, self.out, self.dist, self.say = torch, settings, data, out, dist, say
        self.matching_loss = matching_loss
        self.lambda_c = LAMBDA_C if settings.lambda_c is None else float(settings.lambda_c)
        self.last = out / "last.pth"
        self.dev, self.amp_dtype = self._device(dev)
        ck = _load_checkpoint(torch, self.last, settings.model) if settings.resume and self.last.exists() else None
        torch.manual_seed(settings.seed)  # new heads start alike on every rank
        self.backend = BACKENDS[settings.model](torch, self.dev, settings, state=ck["model"] if ck else None,
                                                amp_dtype=self.amp_dtype)
        self.backend.model.train()
        self.world_batch = settings.batch_size * dist.world
        self.optimizer, self.scaler = self._optimizer()
        self.net = self._parallel(self.backend.model)
        self.spe = max(1, len(data.splits["train"]) // self.world_batch)  # steps per epoch
        self.total = int(settings.steps) if settings.steps else int(settings.epochs) * self.spe
        self.config = self._config()
        self.log = {"schema": LOG_SCHEMA, "config": self.config, "train": [], "validation": [], "events": []}
        self.step = 0
        if ck:
            self._restore(ck)
        self.log["events"].append({"event": "resume" if ck else "start", "step": self.step, "time": time.time()})
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.first_step, self.loss, self.validation, self.start = self.step, float("nan"), None, None
        self.first_loss, self.valid_pixels = None, 0.0  # what health.check_run judges

    def _device(self, dev):
        """This rank's device and the autocast dtype (None: full precision)."""
        torch = self.torch
        if dev.type == "cuda" and self.dist.world > 1:
            dev = torch.device("cuda", self.dist.local)
            torch.cuda.set_device(dev)
        if self.settings.amp and dev.type == "cuda":
            return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.settings.amp:
            self.say("amp ignored: mixed precision is for CUDA devices only")
        return dev, None

    def _optimizer(self):
        """AdamW over the backend's groups at the recipe's rates for this global batch (``lr``
        rescales them all), and the gradient scaler float16 needs."""
        torch, recipe, lr = self.torch, self.backend.recipe, self.settings.lr
        main_group = next(iter(recipe))
        scale = (lr / (recipe[main_group] * self.world_batch / 8.0)) if lr else 1.0
        groups = [{"params": ps, "lr": recipe[g] * self.world_batch / 8.0 * scale, "name": g}
                  for g, ps in self.backend.groups().items() if ps]
        optimizer = torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)
        return optimizer, torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _parallel(self, net):
        if self.dist.world == 1:
            return net
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(net, device_ids=[self.dev.index] if self.dev.type == "cuda" else None,
                                       find_unused_parameters=self.settings.model == "roma")

    def _config(self):
        s, val = self.settings, self.data.splits["val"]
        weights = str(s.weights) if isinstance(s.weights, (str, Path)) else (
            "state dict" if s.weights is not None else None)
        return {"model": s.model, "dataset": str(self.data.folder.resolve()), "weights": weights,
                "epochs": math.ceil(self.total / self.spe), "steps": self.total, "steps_per_epoch": self.spe,
                "batch_size": int(s.batch_size), "processes": self.dist.world,
                "learning_rates": {g["name"]: g["lr"] for g in self.optimizer.param_groups},
                "lambda_c": self.lambda_c, "grad_clip": float(s.grad_clip),
                "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
                "device": str(self.dev), "seed": int(s.seed), "coarse_res": int(s.coarse_res) if s.model == "roma"
                else None, "augment": bool(s.augment), "synthetic": float(s.synthetic),
                "train_samples": len(self.data.splits["train"]), "val_samples": min(len(val), s.val_samples)}

    def _restore(self, ck):
        """Continue from ``last.pth``: optimizer, scaler, step and the log up to that step."""
        self.optimizer.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.step = int(ck["step"])
        if (self.out / "log.json").is_file():
            old = read_json(self.out / "log.json", "log.json", FinetuneError)
            for key in ("train", "validation"):
                self.log[key] = [r for r in old.get(key, []) if r["step"] <= self.step]
            self.log["events"] = old.get("events", [])
        for g in self.optimizer.param_groups:  # this run's rates (a resume may change LEARNING_RATE)
            g["lr"] = self.config["learning_rates"][g["name"]]
        self.say(f"resuming at step {self.step} of {self.total}")

    def train(self, steps):
        """Optimizer steps up to the total; ``steps``: the run's :class:`Progress`."""
        self.start = time.perf_counter()
        while self.step < self.total:
            loss, parts = self._train_step(self._batch())
            self.step += 1
            health.check_loss(loss, self.step, self.last)
            self._record(loss, parts)
            self._check_cancel(steps)
            self._checkpoint()
        if self.step == self.first_step and self.dist.rank == 0:  # nothing left to do (resumed a finished run)
            self.validation = self.log["validation"][-1] if self.log["validation"] else self._validate()

    def _batch(self):
        """This rank's samples of the step: the epoch's shuffled order (the same on every rank and
        after a resume), flipped and replaced by synthetic pairs at random."""
        s, train = self.settings, self.data.splits["train"]
        epoch, i = divmod(self.step, self.spe)
        order = np.random.default_rng([s.seed, epoch]).permutation(len(train))
        order = np.resize(order, max(len(order), self.spe * self.world_batch))  # wraps a tiny split around
        idx = order[i * self.world_batch + self.dist.rank * s.batch_size:][:s.batch_size]
        rng = np.random.default_rng([s.seed, self.step, self.dist.rank, 1])
        batch = [self.data.load(train[k]) for k in idx]
        if s.augment:
            batch = [flip_pair(x, *(rng.random(2) < 0.5)) for x in batch]
        return [synthetic_sample(rng, x["reference"].shape[0], x["secondary"].shape)
                if rng.random() < s.synthetic else x for x in batch]

    def _train_step(self, batch):
        """One optimizer step on ``batch``; returns (loss, its parts)."""
        torch, dev, optimizer, scaler = self.torch, self.dev, self.optimizer, self.scaler
        inputs, pixel_scale = self.backend.inputs([x["reference"] for x in batch], [x["secondary"] for x in batch])
        warp = torch.from_numpy(np.stack([x["warp"] for x in batch]).astype(np.float32)).to(dev)
        valid = torch.from_numpy(np.stack([x["valid"] > 0 for x in batch])).to(dev)
        sec_hw = torch.tensor([x["secondary"].shape for x in batch], dtype=torch.float32, device=dev)
        factor = 0.1 if self.step >= FINAL_DROP * self.total else 1.0
        for g, base in zip(optimizer.param_groups, self.base_lrs):
            g["lr"] = base * factor
        self.net.train()
        with torch.autocast(dev.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext():
            corresps = self.backend.call(self.net, inputs)
        loss, parts = self.matching_loss(corresps, warp, valid, sec_hw, lambda_c=self.lambda_c,
                                         pixel_scale=pixel_scale)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(self.backend.model.parameters(), self.settings.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        return loss.item(), dict(parts, valid_px=float((valid & torch.isfinite(warp).all(-1)).sum()))

    def _record(self, loss, parts):
        """The step's loss, averaged over the ranks, into the log every ``log_every`` steps."""
        parts = self.dist.mean(dict(parts, loss=loss))
        self.loss = parts.pop("loss")
        self.first_loss = self.loss if self.first_loss is None else self.first_loss
        self.valid_pixels += parts["valid_px"]
        step, first = self.step, self.first_step
        if self.dist.rank != 0 or not (step % self.settings.log_every == 0 or step == first + 1 or step == self.total):
            return
        seconds = time.perf_counter() - self.start
        self.log["train"].append({"step": step, "epoch": step / self.spe, "loss": self.loss, **parts,
                                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3),
                                  "steps_per_second": (step - first) / max(seconds, 1e-9)})
        self.say(f"step {step}/{self.total}: loss {self.loss:.4f} (L_D {parts['loss_d']:.4f}, "
                 f"L_C {parts['loss_c']:.4f})")

    def _check_cancel(self, steps):
        """Report progress; on cancel write ``last.pth`` first, then raise."""
        try:
            steps(self.step / self.total)  # asks is_canceled once
            return
        except FinetuneCanceled:
            pass
        self.log["events"].append({"event": "canceled", "step": self.step, "time": time.time()})
        self._save(self.last)
        steps.cancel(f"fine-tuning canceled at step {self.step} of {self.total}; {self.last} holds the state: "
                     "run again with RESUME to continue")

    def _checkpoint(self):
        """After each epoch (and the last step): validate, snapshot, ``last.pth``; else every ``save_every``."""
        step, spe = self.step, self.spe
        if step % spe == 0 or step == self.total or (self.settings.save_every and step % self.settings.save_every == 0):
            # never a checkpoint, a snapshot or weights of a run that diverged or saw no valid pixel
            health.check_run(self.first_loss, self.loss, self.valid_pixels, self.data.folder / "manifest.json")
        if step % spe == 0 or step == self.total:
            self.validation = self._validate() or self.validation
            if step % spe == 0 and self.settings.epoch_checkpoints:
                self._save(self.out / f"epoch_{step // spe:03d}.pth", with_optimizer=False,
                           extra={"validation": self.log["validation"][-1] if self.log["validation"] else None})
            self._save(self.last)
        elif self.settings.save_every and step % self.settings.save_every == 0:
            self._save(self.last)

    def _save(self, path, with_optimizer=True, extra=None):
        """A checkpoint (and the log) from rank 0, each written atomically."""
        if self.dist.rank != 0:
            return
        state = {"schema": CHECKPOINT_SCHEMA, "model": {k: v.detach().cpu() for k, v in self.backend.model
                                                         .state_dict().items()},
                 "step": self.step, "config": self.config} | (extra or {})
        if with_optimizer:
            state |= {"optimizer": self.optimizer.state_dict(),
                      "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None}
        atomic_torch_save(self.torch, state, path)
        _write_json(self.log, self.out / "log.json")

    def _validate(self):
        """Accuracy on the val split (rank 0 only; None elsewhere or without one), logged."""
        if self.dist.rank != 0:
            return None
        result = evaluate_dataset(self.backend.matcher, None, "val", self.settings.val_samples, samples=self.data)
        self.net.train()
        if result:
            self.log["validation"].append({"step": self.step, "epoch": self.step / self.spe} | result)
            self.say(f"step {self.step}: validation accuracy within 1/3/5/10 px " + "/".join(
                f"{100 * v:.1f}" for v in result["accuracy_at_px"].values()) + " %")
        return result

    def finish(self):
        """Rank 0's BatchNorm statistics everywhere, the checksums, the deployable weights; the result."""
        model = self.backend.model
        self.dist.sync_buffers(model)
        sums = self.dist.gather(model_checksum(model))
        seconds = time.perf_counter() - self.start
        weights_path = self.out / self.backend.weights_file
        if self.dist.rank == 0:
            self.log["rank_checksums"] = sums
            self.log["events"].append({"event": "done", "step": self.step, "time": time.time()})
            self.backend.save_weights(self.out, {"step": self.step, "config": self.config,
                                                 "validation": self.validation})
            _write_json(self.log, self.out / "log.json")  # last.pth was written at the final step
        self.dist.barrier()
        rate = (self.step - self.first_step) / max(seconds, 1e-9)
        return FinetuneResult(str(self.out), str(weights_path), str(self.last), str(self.out / "log.json"),
                              self.settings.model, self.step, math.ceil(self.step / self.spe), self.loss,
                              self.validation, seconds, rate, model)


# --- command line (and torchrun) ------------------------------------------------------------------

def _parser():
    d = FinetuneSettings
    p = argparse.ArgumentParser(prog="python -m sar_stereo_plugin.core.training.finetune",
                                description="Fine-tune a matcher on a patch dataset (see the module docstring).")
    p.add_argument("dataset")
    p.add_argument("output")
    p.add_argument("--model", choices=MODELS, default=d.model)
    p.add_argument("--weights")
    p.add_argument("--dinov2-weights")
    p.add_argument("--weights-dir")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float)
    p.add_argument("--lambda-c", type=float)
    p.add_argument("--grad-clip", type=float, default=d.grad_clip)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--device", default=d.device)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--coarse-res", type=int, default=d.coarse_res)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--synthetic", type=float, default=d.synthetic, help="share of synthetic texture pairs")
    p.add_argument("--save-every", type=int, default=d.save_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--val-samples", type=int, default=d.val_samples)
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    return p


def main(argv=None):
    a = _parser().parse_args(argv)
    settings = FinetuneSettings(
        model=a.model, weights=a.weights, dinov2_weights=a.dinov2_weights, weights_dir=a.weights_dir, epochs=a.epochs,
        steps=a.steps, batch_size=a.batch_size, lr=a.lr, lambda_c=a.lambda_c, grad_clip=a.grad_clip, amp=a.amp,
        device=a.device, resume=a.resume, seed=a.seed, coarse_res=a.coarse_res, augment=not a.no_augment,
        save_every=a.save_every, log_every=a.log_every, val_samples=a.val_samples, synthetic=a.synthetic)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    try:
        if a.threads:
            import_torch()[0].set_num_threads(a.threads)
        result = finetune(a.dataset, a.output, settings, report=print if rank0 else None)
    except SarStereoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if rank0:
        print(json.dumps(result.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # end without freeing the process group (ProcessGroup.keep)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
