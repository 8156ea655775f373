"""Typed training events.

Order: RunStarted, Progress("preparing")*, DataReady, (Progress | EpochEnd)*, then exactly one final
event (RunFinished, RunStopped or RunFailed). A run that fails before its data is ready goes straight
from RunStarted to RunFailed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    run_id: str
    time: float  # seconds since the epoch, when the event happened

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class RunStarted(Event):
    """Emitted first, before any data is read, so a watcher knows the run exists."""

    backbone: str = ""
    device: str = "cpu"
    run_dir: str = ""


@dataclass(frozen=True)
class DataReady(Event):
    """Data scanned and the model built: what this run will train on and how."""

    classes: tuple[str, ...] = ()
    num_train: int = 0
    num_val: int = 0
    skipped: int = 0
    trainable_params: int = 0
    total_params: int = 0
    plan: str = ""  # the engine's strategy in words ("features cached once, head only", ...)


@dataclass(frozen=True)
class Progress(Event):
    phase: str = "train"  # "preparing" (decoding/caching), "train", "validate"
    epoch: int = 0
    step: int = 0
    steps: int = 0
    images_per_sec: float = 0.0
    eta_seconds: float = 0.0  # time left for the whole run (its latest end)
    # While the run may stop early (patience, early stopping): the time left if it stops at its first chance.
    # None: one figure (the plan is fixed, or an event written before ranges existed).
    eta_soonest_seconds: float | None = None
    train_loss: float = 0.0  # running mean of this epoch's training loss so far (for live curves)


@dataclass(frozen=True)
class EpochEnd(Event):
    epoch: int = 0
    epochs: int = 0
    train_loss: float = 0.0
    train_accuracy: float = 0.0
    val_loss: float = 0.0
    val_accuracy: float = 0.0
    lr: float = 0.0
    seconds: float = 0.0
    images_per_sec: float = 0.0
    extra: dict = field(default_factory=dict)  # method-specific figures (target accuracy, distances...)


@dataclass(frozen=True)
class ModelReady(Event):
    """A usable model is saved in the run folder (best.pt + calibration) while training goes on: Predict
    can use it now. The progressive schedule sends one after fitting the head on cached features."""
    val_accuracy: float = 0.0
    val_loss: float = 0.0
    seconds: float = 0.0  # since the run started
    what: str = "head"  # which model: "head" (only the new classifier learned so far)
    # Why no training follows, when it is the run's model: FINAL_ASKED or FINAL_SMALL_DATA (progressive.py).
    final: str = ""


FINAL_ASKED = "asked"  # ModelReady.final: the new classifier alone was asked for (freeze: all)
FINAL_SMALL_DATA = "small data"  # ModelReady.final: too few validation pictures to show a fine-tuned model better


@dataclass(frozen=True)
class StageThawed(Event):
    """At the start of `epoch`, the stage `stage` started to learn; `depth` stages stay frozen."""
    epoch: int = 0
    stage: str = ""
    depth: int = 0


@dataclass(frozen=True)
class RunFinished(Event):
    best_val_accuracy: float = 0.0
    best_epoch: int = 0
    epochs_run: int = 0
    seconds: float = 0.0
    reason: str = "completed"  # or "early stopping"
    test_accuracy: float | None = None  # on the test share nothing was tuned on (None: no test share)
    num_test: int = 0
    extra: dict = field(default_factory=dict)  # end-of-run method figures (target accuracy, teacher agreement...)


@dataclass(frozen=True)
class RunStopped(Event):
    best_val_accuracy: float = 0.0
    epochs_run: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class RunFailed(Event):
    error: str = ""  # what went wrong and what to change, in plain words
    detail: str = ""  # the exception type and text, for a bug report
    seconds: float = 0.0


FINAL_EVENTS = (RunFinished, RunStopped, RunFailed)
_KINDS = {c.__name__: c for c in (RunStarted, DataReady, Progress, EpochEnd, ModelReady, StageThawed, RunFinished,
                                   RunStopped, RunFailed)}


def event_from_dict(d: dict) -> Event:
    d = dict(d)
    cls = _KINDS[d.pop("kind")]
    known = {f.name for f in dataclasses.fields(cls)}
    d = {k: v for k, v in d.items() if k in known}
    if "classes" in d:
        d["classes"] = tuple(d["classes"])
    return cls(**d)
