"""Whether a fine-tuning run learnt something worth deploying: a run whose loss stops being a
number or grows a hundredfold, or that never saw a valid ground-truth pixel, writes no weights."""

import math

from ..errors import FinetuneError, located

DIVERGED = 100.0  # the loss grew this many times over its first value: the run diverged


def check_loss(loss, step, checkpoint):
    """Stop at a loss that is not a number (nothing after it is worth keeping)."""
    if not math.isfinite(loss):
        raise FinetuneError(located(checkpoint, "LEARNING_RATE", f"the training diverged at step {step} (loss "
                                                                 f"{loss}); no weights were written: lower "
                                                                 "LEARNING_RATE, and resume from the last checkpoint "
                                                                 "or start afresh"))


def check_run(first_loss, last_loss, valid_pixels, dataset):
    """Refuse to deploy the weights of a run that diverged or saw no valid pixel."""
    if not valid_pixels:
        raise FinetuneError(located(dataset, "valid", "no training pair held a valid ground-truth pixel, so the "
                                                      "matcher learnt nothing; no weights were written: rebuild "
                                                      "the dataset (sarstereo:builddataset) with a DSM covering "
                                                      "the pairs"))
    if first_loss is not None and first_loss > 0 and not last_loss <= DIVERGED * first_loss:
        raise FinetuneError(located(dataset, "LEARNING_RATE", f"the training diverged: the loss grew from "
                                                              f"{first_loss:.4g} to {last_loss:.4g}; no weights "
                                                              "were written: lower LEARNING_RATE and start afresh"))
