"""A run's state: one typed object, created with every field when the trainer is, filled in as the run goes.

The loop (trainer.py) and its helpers keep nothing else between calls; callbacks read it through the trainer
(callbacks.TrainingState documents which fields are theirs). Fields that exist only from a phase on say so:
None (or empty) before it. `slots=True`: a field cannot be born later by a typo or a helper's whim.

Ending a run before its planned epochs is a typed request (`request_stop(StopReason(...))`), as Lightning's
`should_stop` or fastai's CancelFitException: the loop checks it before each epoch, and the reason's words
go into RunFinished.reason unchanged (English, as every event; the app retranslates them on display).
"""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from transfer_core.core.config import TrainConfig
from transfer_core.training.selection import BestEpoch

if TYPE_CHECKING:
    from transfer_core.data.datasets import DatasetReport
    from transfer_core.models.network import TransferNet
    from transfer_core.models.preprocessing import Preprocessing
    from transfer_core.runstore.runs import RunFolder


class StopKind(enum.Enum):
    """Why a run ended before its planned epochs (the words say it for people; the kind is for code)."""
    EARLY_STOPPING = "early stopping"  # the person's setting: no better validation loss for N epochs
    PATIENCE = "patience"  # the progressive schedule's own: no lower validation loss once every stage learns
    TIME_BUDGET = "time budget"  # another epoch would pass the time budget
    PLANNED_EPOCHS = "planned epochs"  # the epochs chosen elsewhere (cross-validation) are done
    FIRST_MODEL = "first model"  # the head-only model is the model: no fine-tuning follows
    METHOD = "method"  # a method's callback asked


@dataclass(frozen=True)
class StopReason:
    kind: StopKind
    words: str  # what RunFinished.reason says (English; shown through retranslate)


COMPLETED = "completed"  # RunFinished.reason when no stop was requested


@dataclass(slots=True, eq=False)
class RunState:
    # Known when the trainer is made.
    config: TrainConfig
    device: torch.device
    stop: threading.Event  # the Stop button's flag
    run_id: str | None
    resumed: bool  # continues run_id from its checkpoint
    started_at: float  # time.time() when the trainer was made: budgets and elapsed times count from it
    callbacks: list = field(default_factory=list)
    final_extra: dict = field(default_factory=dict)  # end-of-run method figures, sent with RunFinished
    best: BestEpoch = field(default_factory=BestEpoch)  # the epoch kept so far (selection.py)
    run: RunFolder | None = None  # from the run's start (lifecycle.run_to_end)
    # From prepare(): the pictures, the network, the schedule.
    gen: torch.Generator | None = None  # batch order and augmented views (seeded: a resumed run redraws them)
    report: DatasetReport | None = None
    classes: list[str] = field(default_factory=list)
    train_samples: list = field(default_factory=list)
    val_samples: list = field(default_factory=list)
    test_samples: list = field(default_factory=list)
    prep: Preprocessing | None = None
    net: TransferNet | None = None
    thaw: Any = None  # the thaw schedule (thaw.ThawSchedule; not imported: it is a callback, which imports this)
    depth: int = 0  # stages kept frozen now
    cache_mb: int | None = None  # the run's memory budget
    train_store: Any = None  # decoded pictures (imagecache.ImageStore)
    val_store: Any = None
    train_y: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    # After every callback's before_fit (a method may change the network first: the cache stores its outputs).
    feature_cache: Any = None  # features.FeatureCache
    cache_gen_state: torch.Tensor | None = None  # gen's state when the cached views were drawn
    part_size: int = 0  # pictures per part of a step (stepmemory.py)
    # From the start of fit() (a method may add its parameters before: the optimizer is built from them).
    optimizer: torch.optim.Optimizer | None = None
    model: torch.nn.Module | None = None  # what a step calls: (features, logits), DDP-wrapped under torchrun
    scaler: torch.amp.GradScaler | None = None
    divergence_limit: float = float("inf")
    step: int = 0
    total_steps: int = 0
    warmup_steps: int = 0
    epoch: int = 0  # the epoch running (0: before the first)
    epochs_done: int = 0  # epochs whose results were recorded: what a Stop reports
    stop_request: StopReason | None = None

    def request_stop(self, reason: StopReason) -> None:
        """End the run before the next epoch. A later request in the same epoch replaces the reason (the
        person's early stopping, checked last, is the one reported when both the schedule and it end a run)."""
        self.stop_request = reason

    @property
    def stopping(self) -> bool:
        return self.stop_request is not None

    def end_reason(self) -> str:
        return self.stop_request.words if self.stop_request else COMPLETED
