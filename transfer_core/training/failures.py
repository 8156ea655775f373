"""Turning what went wrong into words a non-expert can act on."""
from __future__ import annotations

import errno

import torch

from transfer_core.core.config import ConfigError, TrainConfig
from transfer_core.core.i18n import _, sentences
from transfer_core.models.weights import WeightsUnavailable


class Diverged(ArithmeticError):
    """The loss became NaN or infinite: training blew up."""

    def __init__(self, epoch: int, step: int):
        super().__init__(_("the loss exploded (too large or not a number) at epoch {epoch}, step {step}").format(
            epoch=epoch, step=step))
        self.epoch, self.step = epoch, step


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in text
            or "can't allocate memory" in text or "cannot allocate memory" in text)


def is_out_of_memory(exc: BaseException) -> bool:
    """A run that failed for memory is interrupted, not failed: with less data, a smaller budget or more
    memory free it can resume from its last finished epoch (lifecycle.run_to_end)."""
    return _is_out_of_memory(exc) and not ("cuda" in str(exc).lower())


def out_of_memory_words(pictures: int | None, budget_mb: int | None, config: TrainConfig | None = None) -> str:
    """What a run that ran out of the machine's memory says: where, its budget, what to change."""
    first = (_("The run ran out of memory at {n} pictures.").format(n=f"{pictures:,}") if pictures
             else _("The run ran out of memory."))
    budget = (_("The memory budget for its pictures and cached features is {mb} MB (beyond it they are read from "
                "disk); the network's own work comes on top.").format(mb=f"{budget_mb:,}") if budget_mb else "")
    then = _("Nothing is lost up to its last finished epoch: resume it from the Runs page once more memory is free, "
             "or start it again with a smaller memory budget (cache_mb, or TRANSFER_STUDIO_MEMORY_MB), a smaller "
             "batch size (now {n}) or a smaller image size.").format(n=config.batch_size if config else 32)
    return sentences(first, budget, then) if budget else sentences(first, then)


def explain(exc: BaseException, config: TrainConfig | None = None) -> str:
    """A message that says what happened and what to change, in the current language (a training thread's
    is English unless LANG asks otherwise: the app shows it in each person's own with i18n.retranslate)."""
    from transfer_core.data.datasets import (
        DatasetError,  # local import: datasets is heavier and imports PIL
    )

    if isinstance(exc, Diverged):
        if config:
            return _("Training blew up: the loss became infinite or not-a-number. The learning rate is probably "
                     "too high (it was {lr}; try {lower}). Lower it and start again.").format(
                         lr=f"{config.lr:g}", lower=f"{config.lr / 10:g}")
        return _("Training blew up: the loss became infinite or not-a-number. The learning rate is probably "
                 "too high. Lower it and start again.")
    if _is_out_of_memory(exc):
        gpu = "cuda" in str(exc).lower() or "GPU" in str(exc)
        first = _("The GPU ran out of memory.") if gpu else _("The machine ran out of memory.")
        then = (_("Use a smaller batch size (now {n}) or a smaller image size, or a smaller backbone.").format(
            n=config.batch_size) if config else
            _("Use a smaller batch size or a smaller image size, or a smaller backbone."))
        return sentences(first, then)
    if isinstance(exc, (DatasetError, ConfigError, WeightsUnavailable)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return _("The disk is full (or this account's space or file-size limit was reached), so the run could not "
                 "be saved. Free some space or delete old runs, then resume this run or start again.")
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.ENOTDIR)):
        return _("The runs folder cannot be written ({folder}). Choose a folder you can write to.").format(
            folder=exc.filename)
    return _("Training failed: {kind}: {why}").format(kind=type(exc).__name__, why=str(exc)[:300])
