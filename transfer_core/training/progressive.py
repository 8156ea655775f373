"""The progressive schedule: a usable model in seconds, then better by itself.

1. Before the first epoch, with every stage frozen and the pooled features cached, the new classifier is
   fitted to convergence (instant.py) and saved as a usable model: best.pt, validation results and
   calibration, announced by a ModelReady event. Predict can use it while training goes on.
2. Then the stages above the freeze depth chosen start learning, all but the lowest at once and that one
   an epoch later (the fixed schedule's quick start), at the chosen rate, their BatchNorm statistics
   adapting to the pictures, under a new classifier (new_head says why the fitted one is not kept).
   Chosen on held-out shares of the training folders over 3 training seeds (bench/choose.py; README,
   "Defaults"), never on the test pictures: the earlier plan, one stage more each epoch at a tenth of the
   rate with the pretrained statistics kept, never beat the first model at 200 pictures per class; with
   the fitted classifier kept, this plan's first epochs sat at chance; with a new one it beats the first
   model there.
3. Training goes on while the validation loss keeps falling (patience), within the epochs and the time
   budget; the model kept is chosen with care (selection.BestEpoch's margin): the head-only model stays
   unless a later one is better beyond the validation share's noise.
4. Small data: with fewer than MIN_VAL_TO_FINE_TUNE validation pictures a later model can seldom be shown
   better on them, so the choice between the first model (a class-balanced, strongly regularised classifier
   on the frozen features: instant.py) and fine-tuning is made by cross-validation on all the labelled
   pictures (crossval.py); fine-tuning then runs crossval.FOLD_EPOCHS epochs and keeps the last. A class
   with fewer than crossval.FOLDS pictures (or groups of near-copies) cannot be cross-validated: the run
   ends at the first model, the method that holds up with few pictures per class.

The time budget is the person's limit or, when they set none, an automatic one: improving ends by about
AUTO_BUDGET times the time the first model took. That time is about one pass over the data (every picture
decoded and run through the network once, then a fit that takes seconds), so it measures the data's size
and the machine's speed together, and the budget grows with both.
A run stops before an epoch that would pass the budget, judged by the time the last one took with its thaw.
"""
from __future__ import annotations

import math
import time

import torch

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import (
    FINAL_ASKED,
    FINAL_SMALL_DATA,
    EpochEnd,
    ModelReady,
)
from transfer_core.core.i18n import _
from transfer_core.inference.calibration import save_calibration
from transfer_core.inference.novelty import store_features
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import save_atomically
from transfer_core.training import crossval
from transfer_core.training.checkpoint import weights_of
from transfer_core.training.finish import save_predictions
from transfer_core.training.instant import fit_head
from transfer_core.training.selection import count_patience
from transfer_core.training.state import StopKind, StopReason
from transfer_core.training.thaw import ThawSchedule

PATIENCE = 2  # epochs without a lower validation loss, once every allowed stage learns
# No time limit set: improving ends by this many times the first model's time. The first model takes about
# half of one plain inference pass over the pictures at 200 per class (the engine's cached, folded network
# is faster than Predict's), so 6 lets the 4 or 5 epochs that beat it there happen in about 3 such passes
# (README, "Defaults"); 2 ended every run after 2 epochs, before fine-tuning had paid off.
AUTO_BUDGET = 6.0
# Fewer validation pictures than this: whether to fine-tune is cross-validated on all the labelled pictures
# (crossval.py). One validation picture is then 2 points or more, too coarse to show a fine-tuned model better
# than the first on the run's own share: at 10 and 50 pictures per class (4 to 15 validation pictures; 4 tasks
# x 5 training seeds, bench/choose.py, 2026-12-02) the run kept a fine-tuned model in 3 of 40 runs, each time
# level with the first model's accuracy; and a hard task at 60 per class lost fine-tuning's 7 points (#28).
MIN_VAL_TO_FINE_TUNE = crossval.CV_BELOW


def too_few_to_fine_tune(num_val: int) -> bool:
    """Small data: with this many validation pictures the one click cross-validates whether to fine-tune."""
    return num_val < MIN_VAL_TO_FINE_TUNE


def automatic_budget(first_model_s: float) -> float:
    """Seconds from the start of the run that fine-tuning may use when the person set no time limit."""
    return AUTO_BUDGET * first_model_s


def would_pass(budget_s: float, elapsed_s: float, last_epoch_s: float) -> bool:
    """Would one more epoch as long as the last one end after the budget?"""
    return elapsed_s + last_epoch_s > budget_s


def thaw_plan(thaws: int) -> dict[int, int]:
    """Epoch -> stages that start learning then: all but the lowest after the first model, the lowest an
    epoch later (so the first epoch runs the fewest layers, as the fixed schedule's quick start)."""
    return {1: thaws - 1, 2: 1} if thaws >= 2 else ({1: thaws} if thaws else {})


class Progressive(ThawSchedule):
    careful_selection = True  # its later models are the more complex ones: each must beat the validation noise

    def __init__(self, thaws: int, *, budget_s: float = 0.0, patience: int = PATIENCE):
        super().__init__(thaw_plan(thaws))
        self.thaws, self.budget_s, self.patience = thaws, budget_s, patience
        self.last_thaw = max(self.epochs, default=0)
        self.budget_words = f"the time budget ({budget_s / 60:g} min)"  # budget_s 0: automatic, set at ModelReady
        # Its own patience window, counted as early stopping counts (selection.count_patience) but from the first
        # fine-tuned epoch: the first model's loss (epoch 0 for early stopping) does not count here.
        self.lowest_loss, self.bad_epochs = math.inf, 0
        self.last_end: float | None = None  # when the first model or the last epoch was ready
        self.num_val: int | None = None  # the validation share's size, once split
        self.fold = False  # a cross-validation fold's run: it fine-tunes crossval.FOLD_EPOCHS, nothing else
        self.can_cross_validate = False  # every class has crossval.FOLDS pictures (or near-copy groups)
        self.fixed_epochs: int | None = None  # set: exactly these epochs, the last one kept (no patience, budget)

    @classmethod
    def from_config(cls, config: TrainConfig, depth: int, num_stages: int) -> Progressive:
        schedule = cls(num_stages - depth, budget_s=60 * config.time_budget_minutes)
        schedule.fold = crossval.is_fold_run(config)
        return schedule

    def start_depth(self, chosen: int) -> int:
        return chosen + self.thaws  # every stage frozen: the head first

    def before_fit(self, trainer) -> None:
        self.num_val = len(trainer.val_samples)
        self.can_cross_validate = crossval.can_fold(list(trainer.train_samples) + list(trainer.val_samples))
        if self.why_not_fine_tune()[0]:  # no thaw will come: the feature cache need not keep outputs for one
            self.plan, self.epochs = {}, frozenset()
        if self.budget_s:  # the person's limit
            self._set_budget(trainer, self.budget_s, self.budget_words)
        elif trainer.resumed:  # its first model was made before: the same automatic budget again, from now
            ready = next((e for e in trainer.run.events() if isinstance(e, ModelReady)), None)
            if ready is not None:
                self._automatic_budget(trainer, ready.seconds)

    def before_epoch(self, trainer, epoch: int) -> None:
        if epoch == 1:
            final, why = self.why_not_fine_tune()
            instant_model(trainer, final=final)
            if final:
                trainer.request_stop(StopReason(StopKind.FIRST_MODEL, why))
                return
            if self.cross_validates():  # the first model is usable meanwhile
                choice = crossval.choose(trainer)
                if not choice.fine_tune:
                    trainer.request_stop(StopReason(StopKind.FIRST_MODEL, choice.words()))
                    return
            if self.fold or self.cross_validates():
                self._run_exactly(trainer, crossval.FOLD_EPOCHS)
            new_head(trainer.net)
        super().before_epoch(trainer, epoch)

    def epoch_range(self, epochs: int, num_val: int) -> tuple[int, int]:
        """The fewest and most epochs (the time left is a range between them): none when the run ends at its
        first model; else it may stop once each thaw has learned an epoch and `patience` epochs brought no
        lower validation loss (on_event's rule), or go on to the last epoch (the budget caps it: eta.py)."""
        if self.thaws == 0:  # why_not_fine_tune's cases, known from the split
            return 0, 0
        if self.fold or too_few_to_fine_tune(num_val):  # the folds choose: none, or exactly FOLD_EPOCHS
            return (crossval.FOLD_EPOCHS,) * 2 if self.fold else (0, crossval.FOLD_EPOCHS)
        return min(max(self.last_thaw, self.patience) + 1, epochs), epochs

    def why_not_fine_tune(self) -> tuple[str, str]:
        """("", "") when fine-tuning follows the first model; else (ModelReady.final, the run's end reason)."""
        if self.thaws == 0:  # the head alone was asked for, and it has converged
            return FINAL_ASKED, "the new classifier alone was asked for (freeze: all)"
        if self.num_val is not None and too_few_to_fine_tune(self.num_val) and not self.fold \
                and not self.can_cross_validate:
            return FINAL_SMALL_DATA, (f"only {self.num_val} validation pictures (fewer than {MIN_VAL_TO_FINE_TUNE}), "
                                      f"and a class with fewer than {crossval.FOLDS} pictures to cross-validate on: "
                                      "no fine-tuned model could be shown better, so the first model is kept")
        return "", ""

    def cross_validates(self) -> bool:
        """Whether the choice to fine-tune is made on folds of all the pictures (small data: crossval.py)."""
        return (not self.fold and self.thaws > 0 and self.num_val is not None and too_few_to_fine_tune(self.num_val)
                and self.can_cross_validate)

    def _run_exactly(self, trainer, epochs: int) -> None:
        """Fine-tune for `epochs` and keep the last (a plan chosen on the folds, not by a few validation pictures);
        the learning rate's schedule ends with them."""
        self.fixed_epochs = min(epochs, trainer.config.epochs)
        trainer.end_after(self.fixed_epochs)

    def on_event(self, trainer, event) -> None:
        if isinstance(event, ModelReady):
            self.last_end = event.time
            if not self.budget_s:
                self._automatic_budget(trainer, event.seconds)
        if not isinstance(event, EpochEnd):
            return
        if self.fixed_epochs:
            if event.epoch >= self.fixed_epochs:
                trainer.request_stop(StopReason(StopKind.PLANNED_EPOCHS,
                                                f"the {self.fixed_epochs} epochs chosen by cross-validation are done"))
            return
        self.lowest_loss, self.bad_epochs = count_patience(self.lowest_loss, self.bad_epochs, event.val_loss)
        if event.time < trainer.started_at:  # a resumed run's history, replayed: its losses count, not its times
            return
        # The epoch's time with the thaw before it (a thaw recomputes the cached features): the next one's guess.
        epoch_s = event.time - self.last_end if self.last_end is not None else event.seconds
        self.last_end = event.time
        if self.budget_s and would_pass(self.budget_s, event.time - trainer.started_at, epoch_s):
            trainer.request_stop(StopReason(StopKind.TIME_BUDGET,
                                            f"{self.budget_words} would be passed by another epoch"))
        elif event.epoch > self.last_thaw and self.bad_epochs >= self.patience:  # each stage learns an epoch first
            trainer.request_stop(StopReason(StopKind.PATIENCE, f"no lower validation loss for {self.patience} epochs"))

    def _automatic_budget(self, trainer, first_model_s: float) -> None:
        self._set_budget(trainer, automatic_budget(first_model_s),
                         f"the automatic time budget ({AUTO_BUDGET:g}x the {first_model_s:.0f} s the first model took)")

    def _set_budget(self, trainer, budget_s: float, words: str) -> None:
        self.budget_s, self.budget_words = budget_s, words
        trainer.limit_training_time(budget_s)  # the time left shown: no more than the budget allows

    def words(self, stage_names: list[str], depth: int) -> str:
        if not self.thaws:
            return " " + _("Progressive: the new classifier is fitted on the cached features, and that is the model.")
        if self.why_not_fine_tune()[0]:
            return " " + _("Progressive: the new classifier is fitted on the cached features, and that is the model: "
                           "with {n} validation pictures (fewer than {min}), no fine-tuned model could be shown to "
                           "be better, so none is trained. Add pictures, or choose \"Exactly as set\" to fine-tune "
                           "anyway.").format(n=self.num_val, min=MIN_VAL_TO_FINE_TUNE)
        if self.cross_validates():
            return " " + _("Progressive: first the new classifier alone (a usable model in seconds). With {n} "
                           "validation pictures (fewer than {min}), whether fine-tuning {stages} helps is then tried "
                           "on {folds} folds of all your pictures; if it does, they learn for {epochs} "
                           "epochs.").format(n=self.num_val, min=MIN_VAL_TO_FINE_TUNE, folds=crossval.FOLDS,
                                             epochs=crossval.FOLD_EPOCHS,
                                             stages=", ".join(reversed(stage_names[depth - self.thaws:depth])))
        budget = (_("{minutes} min").format(minutes=f"{self.budget_s / 60:g}") if self.budget_s
                  else _("about {times}x the time the first model took (no time limit set)").format(
                      times=f"{AUTO_BUDGET:g}"))
        return " " + _("Progressive: first the new classifier alone (a usable model in seconds), then "
                       "{stages} start learning ({last} an epoch later), "
                       "while the validation loss keeps falling and the run stays within {budget}.").format(
                           stages=", ".join(reversed(stage_names[depth - self.thaws:depth])),
                           last=stage_names[depth - self.thaws], budget=budget)


def instant_model(trainer, final: str = "") -> None:
    """Fit the head on the frozen network's pooled features, save it as the run's model so far, announce it
    (final: why no training follows, if none does: ModelReady.final)."""
    trainer.report_progress("preparing", 0, 1, part="fit")  # a part of the time left's plan (eta.plan_run)
    x, y = _training_features(trainer)
    val_x, _ = trainer.feature_cache.val_or_run(torch.arange(len(trainer.val_samples)), trainer.depth)
    fit_head(trainer.net.head, x, y, val_x.float(), trainer.val_y.to(trainer.device), len(trainer.classes),
             trainer.check_stop)
    val_loss, val_acc, probs = trainer.evaluate()
    trainer.best.update(0, val_loss, val_acc)
    save_atomically(weights_of(trainer.net), trainer.run.path / runfiles.BEST)
    save_predictions(trainer, runfiles.VALIDATION, trainer.val_samples, probs)
    save_calibration(trainer.run.path, probs, trainer.val_y)
    trainer.emit(trainer.event(ModelReady, val_accuracy=val_acc, val_loss=val_loss,
                               seconds=time.time() - trainer.started_at, what="head", final=final))


def new_head(net) -> None:
    """Fine-tuning starts from a new classifier (the fitted one stays saved as the first model). As the
    stages that learn adapt their BatchNorm statistics to the pictures, their features shift under the
    fitted classifier; its confident answers turn into large losses whose gradients wreck the pretrained
    weights. Seen on nominal vs defect at 200 per class, in one-off runs at commit b4f1efc: with the fitted
    classifier kept, the validation loss rose from 0.43 to 1.5 in one epoch at a rate of 1e-7 (only the
    statistics moved), and at 1e-3 the validation accuracy sat at 0.5, chance, for two epochs; keeping the
    pretrained statistics instead (the Keras guide's advice) left it at chance for five. A new classifier
    starts with small answers, as in the fixed schedule. The kept figures: bench/choose.py compares that
    commit with this change (README, "Defaults")."""
    for m in net.head.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _training_features(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features of every cached view of every training picture, with their labels."""
    cache, n = trainer.feature_cache, len(trainer.train_samples)
    if cache.train is not None and cache.start > trainer.net.num_stages:
        views = torch.cat([view[:].to(trainer.device).float() for view in cache.train])  # from disk too
        return views, trainer.train_y.to(trainer.device).repeat(len(cache.train))
    # Not cached (over the memory budget): each picture once, seen as Predict sees it.
    x = store_features(trainer.net, trainer.train_store, trainer.prep, trainer.device, torch.arange(n))
    return x.to(trainer.device), trainer.train_y.to(trainer.device)
