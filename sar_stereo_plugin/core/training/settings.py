"""The tunables of fine-tuning (:func:`.finetune.finetune`), checked before any work starts."""

from dataclasses import dataclass

from ..errors import FinetuneError, located

MODELS = ("light", "roma")


@dataclass(frozen=True)
class FinetuneSettings:
    """Every tunable of a fine-tuning run (see :mod:`.finetune`); the command line and the QGIS
    algorithm both fill one. ``lambda_c`` None is :data:`.losses.LAMBDA_C`; ``lr`` None the recipe's."""

    model: str = "light"  # "light" or "roma"
    weights: object = None  # path or state dict to start from; None: the matcher's defaults
    dinov2_weights: object = None  # RoMa only
    weights_dir: object = None  # RoMa only: where to look for (or download) its weights
    epochs: int = 1  # passes over the train split
    steps: int = None  # optimizer steps in all (counting those before a resume); None: from epochs
    batch_size: int = 4  # pairs per step and process
    lr: float = None  # decoder/heads learning rate; the encoder keeps the recipe's ratio
    lambda_c: float = None  # λ of L = L_D + λ·L_C
    grad_clip: float = 1.0  # global gradient norm
    amp: bool = False  # mixed precision (CUDA only)
    device: str = "auto"
    resume: bool = False  # continue the run in the output folder
    seed: int = 0
    coarse_res: int = 560  # RoMa's training resolution
    augment: bool = True  # random left-right / up-down flips
    save_every: int = 0  # also checkpoint every so many steps (0: per epoch only)
    log_every: int = 10  # log the training loss every so many steps
    val_samples: int = 64  # at most this many validation pairs
    epoch_checkpoints: bool = True  # keep a model snapshot per epoch
    synthetic: float = 0.0  # share of training pairs replaced by synthetic texture pairs (0-1)

    def validate(self):
        if self.model not in MODELS:
            raise FinetuneError(located(None, "MODEL", f"{self.model!r}; choose one of {', '.join(MODELS)}"))
        for name, value, lo in (("EPOCHS", self.epochs, 1), ("BATCH_SIZE", self.batch_size, 1),
                                ("STEPS", self.steps, 1), ("save_every", self.save_every, 0),
                                ("log_every", self.log_every, 1), ("val_samples", self.val_samples, 0)):
            if value is None and (name == "STEPS" or (name == "EPOCHS" and self.steps is not None)):
                continue  # the run's length: STEPS, else EPOCHS
            if value is None or isinstance(value, bool) or int(value) != value or value < lo:
                raise FinetuneError(located(None, name, f"{value!r}; give a whole number >= {lo}"))
        lambda_c = self.lambda_c if self.lambda_c is None else float(self.lambda_c)
        for name, value, ok in (("LAMBDA_C", lambda_c, lambda_c is None or lambda_c >= 0),
                                ("LEARNING_RATE", self.lr, self.lr is None or self.lr > 0),
                                ("grad_clip", self.grad_clip, self.grad_clip > 0),
                                ("synthetic", self.synthetic, 0 <= self.synthetic <= 1)):
            if not ok:
                raise FinetuneError(located(None, name, f"{value!r}; give a positive number"
                                                        + (" or 0" if name == "LAMBDA_C" else "")))
