"""Which epoch's model is kept, and when to stop early: pure bookkeeping over validation results."""
from __future__ import annotations

from dataclasses import asdict, dataclass


def count_patience(lowest_loss: float, bad_epochs: int, val_loss: float) -> tuple[float, int]:
    """After one more epoch: (the lowest validation loss so far, epochs in a row without a lower one). Early
    stopping and the progressive schedule's patience both count this way."""
    return min(lowest_loss, val_loss), 0 if val_loss < lowest_loss else bad_epochs + 1


@dataclass
class BestEpoch:
    accuracy: float = -1.0  # validation accuracy of the kept epoch
    epoch: int = 0
    loss_at_best: float = float("inf")  # its validation loss
    lowest_loss: float = float("inf")  # the lowest validation loss of any epoch (early stopping watches it)
    bad_epochs: int = 0  # epochs in a row without a lower validation loss
    careful_n: int = 0  # > 0: the validation share's size; a higher accuracy must beat its noise (see update)

    def update(self, epoch: int, val_loss: float, val_acc: float) -> bool:
        """Record one epoch's validation; True when it is the new best. Best = highest validation accuracy;
        among equals, the lower validation loss. Careful (the progressive schedule, whose later models are
        the more complex ones): each must win beyond one standard error, an accuracy higher by more than
        the kept one's (on 100 pictures at 0.9: 3 points), or one at least as high with a loss lower by
        more than the mean loss's (see _loss_margin: on 100 pictures 10%, on 4 pictures half)."""
        better = val_acc > self.accuracy + self._margin() or \
            (val_acc >= self.accuracy and val_loss < self.loss_at_best * (1 - self._loss_margin()))
        if better:
            self.accuracy, self.epoch, self.loss_at_best = val_acc, epoch, val_loss
        self.lowest_loss, self.bad_epochs = count_patience(self.lowest_loss, self.bad_epochs, val_loss)
        return better

    def _margin(self) -> float:
        if not self.careful_n or self.accuracy < 0:
            return 0.0
        p = min(max(self.accuracy, 1 / self.careful_n), 1 - 1 / self.careful_n)
        return (p * (1 - p) / self.careful_n) ** 0.5

    def _loss_margin(self) -> float:
        """The relative standard error of a mean over careful_n pictures' losses, 1/sqrt(n) when a picture's
        loss varies about as much as the losses' mean (they do: most are near 0, a few large). Without it,
        on 4 validation pictures a fine-tuned epoch with the same accuracy and a slightly lower loss
        replaced the first model and lost 4.7 points on the test pictures (README, "Defaults")."""
        return 1 / self.careful_n ** 0.5 if self.careful_n and self.accuracy >= 0 else 0.0

    def patience_ran_out(self, patience: int) -> bool:
        return patience > 0 and self.bad_epochs >= patience

    def to_checkpoint(self) -> dict:
        # The keys older checkpoints used, so runs interrupted before this module existed still resume.
        return {"best_acc": self.accuracy, "best_epoch": self.epoch, "best_loss": self.lowest_loss,
                "loss_at_best": self.loss_at_best, "bad_epochs": self.bad_epochs}

    @classmethod
    def from_checkpoint(cls, state: dict, careful_n: int = 0) -> BestEpoch:
        return cls(accuracy=state["best_acc"], epoch=state["best_epoch"], lowest_loss=state["best_loss"],
                   loss_at_best=state.get("loss_at_best", state["best_loss"]), bad_epochs=state["bad_epochs"],
                   careful_n=careful_n)

    def to_dict(self) -> dict:
        return asdict(self)


class LastEpoch(BestEpoch):
    """The plan was chosen elsewhere (on cross-validation folds: crossval.py), so its last epoch is the model,
    whatever the run's few validation pictures say about each epoch."""

    def update(self, epoch: int, val_loss: float, val_acc: float) -> bool:
        self.lowest_loss, self.bad_epochs = count_patience(self.lowest_loss, self.bad_epochs, val_loss)
        self.accuracy, self.epoch, self.loss_at_best = val_acc, epoch, val_loss
        return True
