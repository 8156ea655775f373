"""What the queue holds: training jobs and other heavy tasks, and the one function that trains a job in
whichever process runs it (the app's own, or a Ray worker's)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import Event, RunFailed
from transfer_core.data.datarefs import redact_paths
from transfer_core.training.callbacks import Callback, EventLog
from transfer_core.training.failures import explain
from transfer_core.workflows.train import make_trainer


@dataclass
class Job:
    id: str  # also the run folder's name
    config: TrainConfig
    runs_dir: Path
    owner: str  # who may stop it (the app uses the browser session's workspace id)
    submitted: float = field(default_factory=time.time)
    state: str = "queued"  # queued | running | done | cancelled
    ended: float | None = None  # when it finished or was taken out of the line
    stop: threading.Event = field(default_factory=threading.Event)
    log: EventLog = field(default_factory=EventLog)
    final: Event | None = None
    extra_callbacks: list[Callback] = field(default_factory=list)
    resume: bool = False  # continue the interrupted run folder `id` instead of starting a new one
    pid: int | None = None  # the process training it, when that is a child of this app (childjobs.py)

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.id

    def events(self) -> list[Event]:
        return self.log.snapshot()


# A task's work: called with report(step, steps, phase) and the stop flag; returns its result.
TaskWork = Callable[[Callable[[int, int, str], None], threading.Event], Any]


@dataclass
class Task:
    """Heavy work other than training (the learning-rate finder, a data check, an export, a calibration
    refit) that waits its turn in the queue, so it never runs on a page's own thread nor beside a run.
    Pages submit it, then read `progress`, `result` and `error` (in words) as it goes."""
    id: str
    kind: str  # what it is, in words: "Finding a learning rate"
    owner: str
    work: TaskWork
    submitted: float = field(default_factory=time.time)
    state: str = "queued"  # queued | running | done | cancelled
    stop: threading.Event = field(default_factory=threading.Event)
    progress: tuple[int, int, str] = (0, 0, "")  # step, steps, phase
    phase_started: float = 0.0  # when the current phase began: its pace gives the time left
    started: float | None = None
    ended: float | None = None  # when it finished or was taken out of the line (then the queue forgets it later)
    result: Any = None
    error: str | None = None
    files_only: bool = False  # reads pictures without the network (a folder's scan): its own lane, see FILES

    def report(self, step: int, steps: int, phase: str = "") -> None:
        if phase != self.progress[2]:
            self.phase_started = time.time()
        self.progress = (step, steps, phase)

    def seconds_left(self) -> float | None:
        """Time left in the current phase at its pace so far; None before a step of it is done."""
        step, steps, _ = self.progress
        if step <= 0 or steps <= step:
            return None
        return (time.time() - self.phase_started) * (steps - step) / step


def train_job(config: TrainConfig, runs_dir: Path, run_id: str, *, resume: bool, log: Callback,
              callbacks: list[Callback], stop: threading.Event) -> Event:
    """Train one job here and return its final event; a failure becomes a RunFailed in words (also sent
    to `log`), never an exception, so whatever runs jobs keeps running."""
    try:
        trainer = make_trainer(config, runs_dir=runs_dir, callbacks=[log, *callbacks], stop=stop, run_id=run_id,
                               resume=resume)
        return trainer.run_training().final
    except Exception as exc:  # noqa: BLE001 - e.g. a device name torch rejects: fail this job, keep the worker
        final = RunFailed(run_id=run_id, time=time.time(), error=redact_paths(explain(exc, config)),
                          detail=redact_paths(f"{type(exc).__name__}: {exc}")[:2000])
        log.on_event(None, final)
        return final


# The lane of tasks that only read files (files_only): they wait for each other, never for a training run
# or a network-heavy task, so a folder's scan is not stuck behind someone's ten-minute run.
FILES = "files"


def lane_of_task(task: Task, device_lane: str) -> str:
    return FILES if task.files_only else device_lane
