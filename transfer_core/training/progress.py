"""Progress events for a run: at most four a second, each with the time left for the whole run (eta.py): the
latest end, and the soonest too while the run may stop early."""
from __future__ import annotations

import time
from collections.abc import Callable

from transfer_core.core.events import Event, Progress
from transfer_core.training import crossval, eta

_EVERY_S = 0.25


class ProgressReporter:
    def __init__(self, emit: Callable[[Event], None], event: Callable[..., Event]):
        self.emit, self.event = emit, event
        self.clock: eta.RunClock | None = None  # set once the run's plan is known (start_clock)
        self._last = 0.0
        self._began: float | None = None  # the first report: the run's preparation began

    def report(self, phase: str, step: int, steps: int, *, epoch: int = 0, rate: float = 0.0,
               loss: float = 0.0, part: str | None = None) -> None:
        """`part` names the part of the plan (eta.plan_run) the run is in; the time left covers the rest.
        The clock hears every call; an event goes out at most every 0.25 s, and always for a part's end."""
        name = part or (f"train{epoch}" if phase == "train" else phase)
        self._began = self._began or time.monotonic()
        left = self.clock.at(name, step, steps) if self.clock else 0.0
        now = time.time()
        if step < steps and now - self._last < _EVERY_S:
            return
        self._last = now
        soonest = self.clock.soonest(step, steps) if self.clock and self.clock.may_stop_early() else None
        self.emit(self.event(Progress, phase=phase, epoch=epoch, step=step, steps=steps, images_per_sec=rate,
                             eta_seconds=left, eta_soonest_seconds=soonest, train_loss=loss))

    def start_clock(self, net, prep, device, *, config, start_depth: int, n_train: int, n_val: int, n_test: int,
                    depths: list[int], epoch_range: tuple[int, int] | None = None) -> None:
        """The plan of the whole run, priced by timing the network on a probe (about a second; the first
        network call of a process takes longer).
        `epoch_range`: the fewest and most epochs the schedule may train (ThawSchedule.epoch_range)."""
        setup_s = time.monotonic() - (self._began or time.monotonic())  # the scan and the network: each fold's too
        cached = start_depth > 0 and (config.augment == "none" or config.feature_views > 0)
        views = config.feature_views if config.augment != "none" else 1
        first_model = config.schedule == "progressive"  # progressive.instant_model, before any epoch
        fewest, most = epochs_to_price(config, epoch_range)
        # Small data: the first model, then folds choose none or every epoch (Progressive.epoch_range)
        folds = crossval.FOLDS if first_model and fewest == 0 < most else 0
        self.clock = eta.RunClock(eta.plan_run(
            eta.stage_seconds(net, prep.crop, device), n_train=n_train, n_val=n_val, n_test=n_test,
            epochs=config.epochs, depths=depths, cached=cached, views=views, start_depth=start_depth,
            first_model=first_model, final_depth=start_depth if most == 0 else None, folds=folds,
            fold_epochs=crossval.FOLD_EPOCHS, setup_s=setup_s))
        if (fewest, most) != (config.epochs, config.epochs):
            self.clock.may_train(fewest, most)
        self.report("preparing", 0, 1, part="decode")


def epochs_to_price(config, epoch_range: tuple[int, int] | None) -> tuple[int, int]:
    """The fewest and most epochs the run may train: the schedule's range, early stopping's soonest end within
    it. Early stopping ends a run after that many epochs without a lower validation loss than the best so far:
    the first epoch sets it, or, in the progressive schedule, the first model already did (instant_model
    records it as epoch 0), so there the soonest end is an epoch earlier."""
    fewest, most = epoch_range or (config.epochs, config.epochs)
    if config.early_stopping:
        fewest = min(fewest, config.early_stopping + (0 if config.schedule == "progressive" else 1))
    return fewest, most
