"""Learning-rate finder: the range test (Smith, 2017), made to give the same answer each time.

Train for a few dozen steps while the learning rate grows exponentially, and record the loss. A single
sweep's curve is noisy, so the usual "steepest slope" suggestion jumps around between runs. Here:
- every sweep starts from the same weights and is smoothed (a debiased moving average);
- several sweeps with different batch orders are averaged, point by point, in log-lr;
- the suggestion is the lr at the averaged curve's minimum divided by 10 ("the bottom of the valley,
  one decade back"), a rule that depends on where the curve turns, not on one noisy slope.
It uses the trainer's own data pipeline, so frozen stages run once (feature cache) and a sweep is quick.
"""
from __future__ import annotations

import copy
import tempfile
import threading
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import Progress
from transfer_core.models.freezing import set_train_mode
from transfer_core.runstore.runs import RunFolder
from transfer_core.training.callbacks import Callback
from transfer_core.training.failures import Diverged
from transfer_core.training.trainer import Trainer

_SMOOTHING = 0.9  # moving-average factor for the loss curve
_BLOW_UP = 4.0  # a sweep ends once its smoothed loss is this many times its best


@dataclass(frozen=True)
class LRFindResult:
    lrs: list[float]  # the learning rates tried, increasing
    losses: list[float]  # smoothed training loss at each, averaged over the sweeps
    suggestion: float  # the learning rate to use
    sweeps: list[list[float]]  # each sweep's smoothed curve (may be shorter: it stopped when the loss blew up)

    def to_dict(self) -> dict:
        return asdict(self)


def smooth(values: list[float], beta: float = _SMOOTHING) -> list[float]:
    """Exponential moving average, debiased so that the first points are not pulled toward zero."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return out


def average_curves(curves: list[list[float]]) -> list[float]:
    """Point-by-point mean over the sweeps, as far as the shortest one reached."""
    n = min(len(c) for c in curves)
    return [sum(c[i] for c in curves) / len(curves) for i in range(n)]


def suggest(lrs: list[float], losses: list[float]) -> float:
    """The lr at the lowest loss, one decade back: still learning fast there, and far from the blow-up."""
    best = min(range(len(losses)), key=losses.__getitem__)
    return lrs[best] / 10


class _Preparing(Callback):
    def __init__(self, report: Callable[[int, int], None]):
        self.report = report

    def on_event(self, trainer, event) -> None:
        if isinstance(event, Progress) and event.phase == "preparing":
            self.report(event.step, event.steps)


def lr_schedule(start: float, end: float, steps: int) -> list[float]:
    return [start * (end / start) ** (i / max(1, steps - 1)) for i in range(steps)]


def lr_find(config: TrainConfig, *, steps: int = 60, start_lr: float = 1e-6, end_lr: float = 1.0,
            sweeps: int = 3, stop: threading.Event | None = None,
            progress: Callable[[int, int], None] | None = None,
            preparing: Callable[[int, int], None] | None = None) -> LRFindResult:
    """Range test on config's data, backbone, freezing, head and optimizer. Nothing is saved. `progress`
    counts the sweeps' steps; `preparing` the pictures read and the frozen layers' outputs computed first
    (most of the time on a large data set)."""
    if steps < 10 or sweeps < 1 or not 0 < start_lr < end_lr:
        raise ValueError("lr_find needs at least 10 steps, 1 sweep and 0 < start_lr < end_lr")
    lrs = lr_schedule(start_lr, end_lr, steps)
    with tempfile.TemporaryDirectory(prefix="lr-find-") as tmp:
        trainer = _prepared_trainer(config, tmp, stop, preparing)
        start = copy.deepcopy(trainer.net.state_dict())
        curves = []
        for s in range(sweeps):
            trainer.net.load_state_dict(start)
            raw = _sweep(trainer, lrs, torch.Generator().manual_seed(config.seed * 1000 + s),
                         lambda i, s=s: progress and progress(s * steps + i + 1, sweeps * steps))
            curves.append(_until_blow_up(smooth(raw)))
    losses = average_curves(curves)
    return LRFindResult(lrs=lrs[:len(losses)], losses=losses, suggestion=suggest(lrs[:len(losses)], losses),
                        sweeps=curves)


def _prepared_trainer(config: TrainConfig, folder: str, stop: threading.Event | None,
                      preparing: Callable[[int, int], None] | None = None) -> Trainer:
    """The trainer's data, network and feature cache, in a throw-away run folder, without method callbacks:
    a range test measures the plain loss (no teacher, no adaptation, no L2-SP); only progress is followed."""
    # The rate is for the depth that trains most of the run: the one chosen, not the quick start's.
    trainer = Trainer(replace(config, quick_start_epochs=0), runs_dir=folder, stop=stop,
                      callbacks=[_Preparing(preparing)] if preparing else [])
    trainer.run = RunFolder.create(folder, trainer.config)
    trainer.run_id = trainer.run.id
    trainer.prepare()
    trainer.start_optimizer()
    return trainer


def _sweep(trainer: Trainer, lrs: list[float], gen: torch.Generator, tick: Callable[[int], None]) -> list[float]:
    """One sweep through the trainer's own data pipeline and training step, at each rate in turn."""
    cfg = trainer.config
    trainer.start_optimizer()  # a fresh optimizer (no momentum carried over from the previous sweep)
    set_train_mode(trainer.net, trainer.depth)
    order = _batches(len(trainer.train_samples), cfg.batch_size, len(lrs), gen)
    losses: list[float] = []
    for i, (lr, idx) in enumerate(zip(lrs, order)):
        trainer.check_stop()
        try:  # every group scales together, so discriminative learning rates keep their ratios
            value, _ = trainer.train_step(trainer.train_batch(idx, 1), lr_scale=lr / cfg.lr)
        except Diverged:  # not finite, or far beyond guessing: the curve has blown up
            break
        losses.append(value)
        tick(i)
        if len(losses) > 5 and smooth(losses)[-1] > _BLOW_UP * min(smooth(losses)):
            break
    return losses


def _batches(n: int, batch_size: int, count: int, gen: torch.Generator) -> list[torch.Tensor]:
    """`count` batches, walking through shuffled copies of the training set (a sweep may exceed an epoch)."""
    out: list[torch.Tensor] = []
    size = max(2, min(batch_size, n))  # BatchNorm cannot train on a batch of one
    while len(out) < count:
        out += [c for c in torch.randperm(n, generator=gen).split(size) if len(c) == size]
    return out[:count]


def _until_blow_up(curve: list[float]) -> list[float]:
    best = float("inf")
    for i, v in enumerate(curve):
        best = min(best, v)
        if i > 5 and v > _BLOW_UP * best:
            return curve[:i + 1]
    return curve
