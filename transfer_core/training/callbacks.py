"""Callbacks: how reporting and the methods beyond plain fine-tuning hook into the one training loop."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import Event
from transfer_core.training.state import StopReason


class TrainingState(Protocol):
    """What a callback (a method, a reporter, the thaw schedule) may read of a run in progress, and the few
    things it may change. This is the whole surface: nothing else of the training loop is theirs to touch.
    The trainer passed to every hook is this: its fields are those of its RunState (state.py), which says
    from which phase each exists (None or empty before it).

    Read: config, classes, device, prep (preprocessing), run / run_id (the run folder), net (the network;
    methods may wrap parts of it in before_fit), depth (stages kept frozen now), train_samples /
    val_samples, train_store / val_store (decoded pictures), train_y / val_y, epoch, step / total_steps,
    stop (the Stop flag), callbacks, best (selection.BestEpoch: the epoch kept so far), started_at (when the
    run began, time.time()), resumed (continues an interrupted run), report / runs_dir (the scan of the
    pictures and where run folders go: finish.save_predictions names pictures with them).
    Not yet at before_fit, which runs first so a method can change the network and add layers before they
    are cached and optimized: feature_cache (from before_fit's end), optimizer (from fit's start; every
    hook from before_epoch on has both).
    Change: final_extra (figures reported with RunFinished), optimizer param groups (a method adding its
    own layers' parameters), gradients in before_optimizer_step, the network's weights at after_fit, and
    best.update(0, ...) (the progressive schedule's first model, before epoch 1).
    Call: check_stop(), request_stop(StopReason) (end before the next epoch), thaw_epochs(),
    thaw_one_stage(epoch) (the thaw schedule's mechanism), evaluate(), train_batch(idx, epoch),
    report_progress(...), emit(event) / event(cls, **fields), and for schedules limit_training_time(budget_s)
    (cap the time left shown) and end_after(epochs) (train exactly that many, keep the last)."""
    config: TrainConfig
    classes: list[str]
    device: torch.device
    prep: Any
    run: Any
    run_id: str | None
    net: torch.nn.Module
    depth: int
    train_samples: list
    val_samples: list
    train_store: Any
    val_store: Any
    train_y: torch.Tensor | None
    val_y: torch.Tensor | None
    feature_cache: Any | None
    optimizer: torch.optim.Optimizer | None
    epoch: int
    step: int
    total_steps: int
    stop: threading.Event
    callbacks: list
    final_extra: dict
    best: Any
    started_at: float
    resumed: bool
    report: Any
    runs_dir: Any

    def check_stop(self) -> None: ...

    def request_stop(self, reason: StopReason) -> None: ...

    def thaw_epochs(self) -> set[int]: ...

    def thaw_one_stage(self, epoch: int, *, prepare_cache: bool = True) -> None: ...

    def evaluate(self) -> tuple[float, float, torch.Tensor]: ...

    def train_batch(self, idx: torch.Tensor, epoch: int) -> Batch: ...

    def report_progress(self, phase: str, step: int, steps: int, **kw) -> None: ...

    def emit(self, event: Event) -> None: ...

    def event(self, cls: type, **fields) -> Event: ...

    def limit_training_time(self, budget_s: float) -> None: ...

    def end_after(self, epochs: int) -> None: ...


@dataclass
class Batch:
    x: torch.Tensor  # input for net(x, start): images, cached activations or pooled features
    start: int  # which stage x enters at (num_stages + 1 means x is already a pooled feature vector)
    y: torch.Tensor
    idx: torch.Tensor  # positions in the training set
    images: torch.Tensor | None = None  # the normalised training view, when a callback asked for it
    features: torch.Tensor | None = None  # pooled features of x (set by the trainer; domain adaptation uses them)

    def parts(self, count: int) -> list[Batch]:
        """The batch cut into `count` near-equal parts (learned from one after another); itself if count is 1."""
        if count <= 1:
            return [self]
        cut = [torch.tensor_split(t, count) if t is not None else [None] * count
               for t in (self.x, self.y, self.idx, self.images)]
        return [Batch(x, self.start, y, idx, images) for x, y, idx, images in zip(*cut)]


class Callback:
    """Override what you need. Raising inside a hook fails this run only (a RunFailed event)."""

    needs_images: bool = False  # True: every batch carries images, so activations are not cached
    label_weight: float = 1.0  # how much the true labels' loss counts (distillation gives some to the teacher)

    def on_event(self, trainer: TrainingState, event: Event) -> None: ...

    def before_fit(self, trainer: TrainingState) -> None:
        """Once, before anything is cached or optimized: the network and the decoded pictures exist;
        feature_cache and optimizer are still None (a change to the network here reaches both)."""

    def before_epoch(self, trainer: TrainingState, epoch: int) -> None: ...

    def after_train_mode(self, trainer: TrainingState) -> None:
        """Each epoch, right after the network is put in training mode (frozen stages in eval mode): a method
        may put more of it back in eval mode (e.g. BatchNorm layers whose statistics it keeps)."""

    def before_optimizer_step(self, trainer: TrainingState) -> None:
        """Each step, after every part's backward and before the optimizer steps: the gradients are there to
        read or change (unscaled under mixed precision), e.g. a penalty's own gradient added, or a
        parameter's removed (set to None) so that this step leaves it as it is."""

    def extra_loss(self, trainer: TrainingState, batch: Batch, logits: torch.Tensor) -> torch.Tensor | None:
        return None

    def after_epoch(self, trainer: TrainingState, epoch: int, extra: dict) -> None:
        """Add method-specific figures to `extra`; they are saved with the epoch's event."""

    def after_fit(self, trainer: TrainingState) -> None:
        """Runs on the best model before it is saved for good (e.g. AdaBN re-estimates statistics)."""


class EventFunction(Callback):
    """Wraps a plain function of one event."""

    def __init__(self, fn: Callable[[Event], None]):
        self.fn = fn

    def on_event(self, trainer, event):
        self.fn(event)


class EventLog(Callback):
    """A thread-safe list of events that another thread (the UI) can read while training runs."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def on_event(self, trainer, event):
        with self._lock:
            self._events.append(event)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self._events)
