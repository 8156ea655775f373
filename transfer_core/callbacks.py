"""Callbacks: how reporting and the methods beyond plain fine-tuning hook into the one training loop."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from .events import Event

if TYPE_CHECKING:
    from .trainer import Trainer


@dataclass
class Batch:
    x: torch.Tensor  # input for net(x, start): images, cached activations or pooled features
    start: int  # which stage x enters at (num_stages + 1 means x is already a pooled feature vector)
    y: torch.Tensor
    idx: torch.Tensor  # positions in the training set
    images: torch.Tensor | None = None  # the normalised training view, when a callback asked for it
    features: torch.Tensor | None = None  # pooled features of x (set by the trainer; domain adaptation uses them)

    def parts(self, count: int) -> list["Batch"]:
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

    def on_event(self, trainer: "Trainer", event: Event) -> None: ...

    def before_fit(self, trainer: "Trainer") -> None: ...

    def before_epoch(self, trainer: "Trainer", epoch: int) -> None: ...

    def extra_loss(self, trainer: "Trainer", batch: Batch, logits: torch.Tensor) -> torch.Tensor | None:
        return None

    def after_epoch(self, trainer: "Trainer", epoch: int, extra: dict) -> None:
        """Add method-specific figures to `extra`; they are saved with the epoch's event."""

    def after_fit(self, trainer: "Trainer") -> None:
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
