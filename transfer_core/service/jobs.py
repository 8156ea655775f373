"""One training job at a time per process, the rest queued in order: for the app's many browser sessions.

Training threads never touch the UI: each job records its events in a thread-safe EventLog that any
session (a refreshed tab, a second tab) reads by job id.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from transfer_core.core.i18n import N_
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import Event, RunFailed
from transfer_core.data.datarefs import redact_paths
from transfer_core.data.imagecache import Stopped
from transfer_core.runstore.runs import new_run_id
from transfer_core.training.callbacks import Callback, EventLog
from transfer_core.training.failures import explain
from transfer_core.workflows.train import check_resumable, make_trainer


@dataclass
class Job:
    id: str  # also the run folder's name
    config: TrainConfig
    runs_dir: Path
    owner: str  # who may stop it (the app uses the browser session's workspace id)
    submitted: float = field(default_factory=time.time)
    state: str = "queued"  # queued | running | done | cancelled
    stop: threading.Event = field(default_factory=threading.Event)
    log: EventLog = field(default_factory=EventLog)
    final: Event | None = None
    extra_callbacks: list[Callback] = field(default_factory=list)
    resume: bool = False  # continue the interrupted run folder `id` instead of starting a new one

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.id

    def events(self) -> list[Event]:
        return self.log.snapshot()


# A task's work: called with report(step, steps, phase) and the stop flag; returns its result.
TaskWork = Callable[[Callable[[int, int, str], None], threading.Event], Any]


@dataclass
class Task:
    """Heavy work other than training (the learning-rate finder, a data check, an export) that takes its
    turn on the device like a training job, so it never runs on a page's own thread nor beside a run.
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
    result: Any = None
    error: str | None = None

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


class JobQueue:
    def __init__(self):
        self._lock = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, Task] = {}
        self._waiting: list[str] = []
        self._worker: threading.Thread | None = None

    def submit(self, config: TrainConfig, runs_dir: str | Path, owner: str = "",
               callbacks: list[Callback] = (), run_id: str | None = None) -> Job:
        """Queue a run; `run_id` names it in advance (linked runs that point at each other's ids)."""
        with self._lock:
            # A class pressing Start in the same second must not get the same run id (4 hex digits).
            run_id = run_id or new_run_id(config.backbone)
            while run_id in self._jobs or (Path(runs_dir) / run_id).exists():
                run_id = new_run_id(config.backbone)
            return self._enqueue(Job(id=run_id, config=config, runs_dir=Path(runs_dir), owner=owner,
                                     extra_callbacks=list(callbacks)))

    def _enqueue(self, job: Job) -> Job:
        """Under the lock: `submitted` is stamped in queue order, so it never contradicts the position."""
        job.submitted = time.time()
        self._jobs[job.id] = job
        self._waiting.append(job.id)
        self._ensure_worker()
        self._lock.notify_all()
        return job

    def resume(self, run_dir: str | Path, owner: str = "", callbacks: list[Callback] = ()) -> Job:
        """Queue the continuation of an interrupted run (same folder, same id). Raises CannotResume
        (a ValueError, in words) at once if the run is running, finished, or already waiting here.

        Whether this person may resume it is the caller's check (workspaces.require_owner)."""
        run = check_resumable(run_dir)
        with self._lock:
            pending = self._jobs.get(run.id)
            if pending is not None and pending.state in ("queued", "running"):
                raise ValueError(N_("This run is already waiting in the queue or training."))
            return self._enqueue(Job(id=run.id, config=run.config, runs_dir=run.path.parent, owner=owner,
                                     extra_callbacks=list(callbacks), resume=True))

    def submit_task(self, kind: str, work: TaskWork, owner: str = "") -> Task:
        """Queue heavy work behind the jobs already waiting (one thing at a time on the device)."""
        with self._lock:
            task = Task(id=f"task-{secrets.token_hex(6)}", kind=kind, owner=owner, work=work)
            self._tasks[task.id] = task
            self._waiting.append(task.id)
            self._ensure_worker()
            self._lock.notify_all()
            return task

    def task(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.submitted)

    def running(self) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.state == "running"), None)

    def position(self, job_id: str) -> int | None:
        """0 while training, 1.. for the place in the queue, None once it is over."""
        with self._lock:
            job = self._jobs.get(job_id) or self._tasks.get(job_id)
            if job is None or job.state in ("done", "cancelled"):
                return None
            if job.state == "running":
                return 0
            return self._waiting.index(job_id) + 1

    def stop(self, job_id: str, owner: str | None = None) -> bool:
        """Stop a running job within one batch, or take a queued one out of the queue.

        With `owner`, only that owner's job is touched: one user cannot stop another's training.
        """
        with self._lock:
            job = self._jobs.get(job_id) or self._tasks.get(job_id)
            if job is None or (owner is not None and job.owner != owner):
                return False
            if job.state == "queued":
                self._waiting.remove(job_id)
                job.state = "cancelled"
            job.stop.set()
            return True

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job is over; True if it is."""
        deadline = None if timeout is None else time.time() + timeout
        with self._lock:
            while (self._jobs.get(job_id) or self._tasks[job_id]).state not in ("done", "cancelled"):
                left = None if deadline is None else deadline - time.time()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left)
        return True

    # ---- the worker ------------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="transfer-studio-trainer", daemon=True)
            self._worker.start()

    def _next(self) -> Job | Task:
        with self._lock:
            while not self._waiting:
                self._lock.wait()
            item_id = self._waiting.pop(0)
            job = self._jobs.get(item_id) or self._tasks[item_id]
            job.state = "running"
            return job

    def _work(self) -> None:
        while True:
            job = self._next()
            if isinstance(job, Task):
                self._run_task(job)
                continue
            try:
                trainer = make_trainer(job.config, runs_dir=job.runs_dir, callbacks=[job.log, *job.extra_callbacks],
                                       stop=job.stop, run_id=job.id, resume=job.resume)
                job.final = trainer.run_training().final
            except Exception as exc:  # noqa: BLE001 - e.g. a device name torch rejects: fail this job, keep the worker
                job.final = RunFailed(run_id=job.id, time=time.time(), error=redact_paths(explain(exc, job.config)),
                                      detail=redact_paths(f"{type(exc).__name__}: {exc}")[:2000])
                job.log.on_event(None, job.final)
            finally:  # whatever happened, the queue moves on and waiters wake up
                with self._lock:
                    job.state = "done"
                    self._lock.notify_all()


    def _run_task(self, task: Task) -> None:
        task.started = time.time()
        try:
            task.result = task.work(task.report, task.stop)
        except Stopped:
            task.error = "Stopped."
        except Exception as exc:  # noqa: BLE001 - the page shows it in words; the worker goes on
            task.error = redact_paths(str(exc) or type(exc).__name__)
        finally:
            with self._lock:
                task.state = "done"
                self._lock.notify_all()


_DEFAULT: JobQueue | None = None
_DEFAULT_LOCK = threading.Lock()


def default_queue() -> JobQueue:
    """The process-wide queue: one job trains at a time on this machine's device."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = JobQueue()
        return _DEFAULT
