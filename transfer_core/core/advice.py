"""Reading a run's curves the way a teacher would, in plain words: is it memorising the pictures?"""
from __future__ import annotations

from typing import Sequence

from transfer_core.core.events import EpochEnd
from transfer_core.core.i18n import _, sentences

# Validation accuracy this far below its best, with training accuracy this far above validation, is more
# than the noise of a small validation share: the model learns the training pictures themselves.
FALL = 0.05
GAP = 0.15


def overfitting(epochs: Sequence[EpochEnd], kept_epoch: int | None = None) -> str | None:
    """Words for a run whose validation accuracy fell after its best epoch while training accuracy kept
    climbing (or whose validation loss kept rising for 2 epochs while the training loss fell); else None.
    `kept_epoch`: the epoch whose model the run kept, when known (0: the first model, before any epoch)."""
    if len(epochs) < 2:
        return None
    best = max(epochs, key=lambda e: (e.val_accuracy, -e.epoch))
    last = epochs[-1]
    falling = last.val_accuracy <= best.val_accuracy - FALL and last.train_accuracy >= last.val_accuracy + GAP
    if not (falling or _loss_diverging(epochs)) or last.epoch == best.epoch:
        return None
    return sentences(*(
        _("Signs of overfitting: after epoch {epoch}, training accuracy went to {train} while validation accuracy "
          "went from {best} to {last}. The model is memorising your pictures instead of learning what tells the "
          "classes apart.").format(epoch=best.epoch, train=f"{last.train_accuracy:.0%}",
                                   best=f"{best.val_accuracy:.0%}", last=f"{last.val_accuracy:.0%}"),
        _kept(best, kept_epoch),
        _("To do better: add more pictures, turn on augmentation, keep more layers frozen, or train fewer epochs "
          "(early stopping does that by itself).")))


def _kept(best: EpochEnd, kept_epoch: int | None) -> str:
    if kept_epoch == 0:
        return _("The first model (the new classifier alone, before any epoch) is the model kept.")
    return _("The best epoch ({epoch}) is the model kept.").format(
        epoch=best.epoch if kept_epoch is None else kept_epoch)


def _loss_diverging(epochs: Sequence[EpochEnd]) -> bool:
    """The last 3 epochs: validation loss up twice in a row while training loss went down."""
    if len(epochs) < 3:
        return False
    a, b, c = epochs[-3:]
    return a.val_loss < b.val_loss < c.val_loss and c.train_loss < a.train_loss and c.train_accuracy > 0.9
