"""Turning what went wrong into words a non-expert can act on."""
from __future__ import annotations

import errno

import torch

from transfer_core.core.config import ConfigError, TrainConfig
from transfer_core.models.weights import WeightsUnavailable


class Diverged(ArithmeticError):
    """The loss became NaN or infinite: training blew up."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"the loss exploded (too large or not a number) at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def explain(exc: BaseException, config: TrainConfig | None = None) -> str:
    """A message that says what happened and what to change."""
    from transfer_core.data.datasets import (
        DatasetError,  # local import: datasets is heavier and imports PIL
    )

    if isinstance(exc, Diverged):
        lr = f" (it was {config.lr:g}; try {config.lr / 10:g})" if config else ""
        return ("Training blew up: the loss became infinite or not-a-number. The learning rate is probably "
                f"too high{lr}. Lower it and start again.")
    if _is_out_of_memory(exc):
        bs = f" (now {config.batch_size})" if config else ""
        return (f"The {'GPU' if 'cuda' in str(exc).lower() or 'GPU' in str(exc) else 'machine'} ran out of memory. "
                f"Use a smaller batch size{bs} or a smaller image size, or a smaller backbone.")
    if isinstance(exc, (DatasetError, ConfigError, WeightsUnavailable)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ("The disk is full (or this account's space or file-size limit was reached), so the run could not "
                "be saved. Free some space or delete old runs, then resume this run or start again.")
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.ENOTDIR)):
        return f"The runs folder cannot be written ({exc.filename}). Choose a folder you can write to."
    return f"Training failed: {type(exc).__name__}: {str(exc)[:300]}"
