"""The one queue for every heavy thing the app's browser sessions ask for: training jobs and tasks
(learning-rate finder, data check, export, calibration refit).

The queue decides what starts next: a fair order (fairness.py) within each lane of the executor, as many
at once as the lane has slots. The executor (executors.py) runs it: by default in a thread of this
process, one at a time; on Ray, N jobs on N GPUs or slots. Waiting and running jobs are stored
(jobstore.py), so a restart of the app re-queues the waiting ones and re-attaches the running ones.

Training never touches the UI: each job records its events in a thread-safe EventLog that any session
(a refreshed tab, a second tab) reads by job id.
"""
from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import RunFailed
from transfer_core.core.i18n import N_
from transfer_core.data.datarefs import redact_paths, workspaces_root
from transfer_core.data.imagecache import Stopped
from transfer_core.runstore.runs import new_run_id
from transfer_core.service.executors import InProcess, executor_from_env
from transfer_core.service.fairness import fair_order
from transfer_core.service.jobstore import JobStore
from transfer_core.service.work import Job, Task, TaskWork
from transfer_core.service.workspaces import OwnerTag
from transfer_core.training.callbacks import Callback
from transfer_core.workflows.train import check_resumable

__all__ = ["Job", "JobQueue", "Task", "TaskWork", "default_queue"]
QUEUE_DB_ENV = "TRANSFER_STUDIO_QUEUE_DB"  # where the queue is stored (default: workspaces/queue.sqlite)
# A finished task stays readable this long (a page reads its result on a redraw, or after the person comes back
# from lunch); then the queue forgets it, so a classroom server that runs for weeks does not keep every data
# check, export and finder result in memory. A page asking for a forgotten task gets None, as after a restart.
TASK_KEPT_S = 4 * 3600


class JobQueue:
    def __init__(self, executor=None, store: JobStore | None = None):
        self.executor = executor or InProcess()
        self.store = store
        self._lock = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, Task] = {}
        self._waiting: list[str] = []  # in the order they came
        self._busy: dict[str, int] = {}  # lane -> items running in it
        self._served: dict[str, int] = {}  # owner -> when (a counter) their last item started
        self._tick = 0
        self._dispatcher: threading.Thread | None = None
        if store is not None:
            self._restore()

    # ---- asking --------------------------------------------------------------------------------------
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

    def submit_task(self, kind: str, work: TaskWork, owner: str = "", *, files_only: bool = False) -> Task:
        """Queue heavy work behind what is already waiting in its lane (fair order, like jobs); files_only:
        it reads files without the network, in a lane of its own (work.FILES)."""
        with self._lock:
            self._forget_old_tasks()
            task = Task(id=f"task-{secrets.token_hex(6)}", kind=kind, owner=owner, work=work, files_only=files_only)
            self._tasks[task.id] = task
            self._queue_item(task)
            return task

    def _forget_old_tasks(self) -> None:
        """Under the lock: tasks over for longer than TASK_KEPT_S go (those waiting or running stay)."""
        old = time.time() - TASK_KEPT_S
        for task_id in [t.id for t in self._tasks.values() if t.ended is not None and t.ended < old]:
            del self._tasks[task_id]

    def _enqueue(self, job: Job, *, keep_time: bool = False) -> Job:
        """Under the lock: `submitted` is stamped in queue order, so it never contradicts the position."""
        if not keep_time:
            job.submitted = time.time()
        if job.owner:  # the run folder records who may stop, resume, rename or delete it
            job.extra_callbacks = [*job.extra_callbacks, OwnerTag(job.owner)]
        self._jobs[job.id] = job
        if self.store is not None:
            self.store.put(job)
        self._queue_item(job)
        return job

    def _queue_item(self, item: Job | Task) -> None:
        self._waiting.append(item.id)
        self._ensure_dispatcher()
        self._lock.notify_all()

    # ---- looking -------------------------------------------------------------------------------------
    def task(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.submitted)

    def running_jobs(self) -> list[Job]:
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.state == "running"), key=lambda j: j.submitted)

    def running(self) -> Job | None:
        """The longest-running job, if any (the one job of the in-process default)."""
        return next(iter(self.running_jobs()), None)

    def slots(self) -> int:
        """How many training jobs can run at once."""
        return max(self.executor.lanes().values())

    def position(self, job_id: str) -> int | None:
        """0 while running, 1.. for the place in its line (in the order things will start), None once over."""
        with self._lock:
            item = self._item(job_id)
            if item is None or item.state in ("done", "cancelled"):
                return None
            if item.state == "running":
                return 0
            return self._order(self.executor.lane(item)).index(job_id) + 1

    # ---- stopping and waiting ------------------------------------------------------------------------
    def stop(self, job_id: str, owner: str | None = None) -> bool:
        """Stop a running job within one batch, or take a queued one out of the queue.

        With `owner`, only that owner's job is touched: one user cannot stop another's training.
        """
        with self._lock:
            item = self._item(job_id)
            if item is None or (owner is not None and item.owner != owner):
                return False
            if item.state == "queued":
                self._waiting.remove(job_id)
                item.state, item.ended = "cancelled", time.time()
                self._stored_state(item, "cancelled")
                self._lock.notify_all()
            item.stop.set()
            return True

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job is over; True if it is (a task the queue has forgotten was over long ago)."""
        deadline = None if timeout is None else time.time() + timeout
        with self._lock:
            while (item := self._item(job_id)) is not None and item.state not in ("done", "cancelled"):
                left = None if deadline is None else deadline - time.time()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left)
        return True

    # ---- the dispatcher: starts what is next wherever a slot is free ---------------------------------
    def _item(self, item_id: str) -> Job | Task | None:
        return self._jobs.get(item_id) or self._tasks.get(item_id)

    def _order(self, lane: str) -> list[str]:
        waiting = [self._item(i) for i in self._waiting]
        return fair_order([w for w in waiting if self.executor.lane(w) == lane], self._served)

    def _next_ready(self) -> Job | Task | None:
        for lane, slots in self.executor.lanes().items():
            order = self._order(lane) if self._busy.get(lane, 0) < slots else []
            if order:
                return self._item(order[0])
        return None

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or not self._dispatcher.is_alive():
            self._dispatcher = threading.Thread(target=self._dispatch, name="transfer-studio-queue", daemon=True)
            self._dispatcher.start()

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                item = self._next_ready()
                while item is None:
                    self._lock.wait()
                    item = self._next_ready()
                self._waiting.remove(item.id)
                self._tick += 1
                self._served[item.owner] = self._tick
                self._start(item)
            threading.Thread(target=self._execute, args=(item, self.executor.run),
                             name=f"transfer-studio-job {item.id}", daemon=True).start()

    def _start(self, item: Job | Task) -> None:
        """Under the lock: the item takes a slot of its lane."""
        item.state = "running"
        lane = self.executor.lane(item)
        self._busy[lane] = self._busy.get(lane, 0) + 1
        self._stored_state(item, "running")

    def _execute(self, item: Job | Task, run) -> None:
        try:
            if isinstance(item, Task):
                self._run_task(item)
            else:
                item.final = run(item)
        except Exception as exc:  # noqa: BLE001 - an executor's own failure: this job fails, the queue goes on
            item.final = RunFailed(run_id=item.id, time=time.time(), error=redact_paths(
                f"The job could not be run ({type(exc).__name__}: {exc})."))
            item.log.on_event(None, item.final)
        finally:  # whatever happened, the queue moves on and waiters wake up
            with self._lock:
                item.state, item.ended = "done", time.time()
                self._busy[self.executor.lane(item)] -= 1
                self._stored_state(item, "done")
                self._lock.notify_all()

    @staticmethod
    def _run_task(task: Task) -> None:
        task.started = time.time()
        try:
            task.result = task.work(task.report, task.stop)
        except Stopped:
            task.error = "Stopped."
        except Exception as exc:  # noqa: BLE001 - the page shows it in words; the queue goes on
            task.error = redact_paths(str(exc) or type(exc).__name__)

    # ---- surviving a restart -------------------------------------------------------------------------
    def _stored_state(self, item: Job | Task, state: str) -> None:
        if self.store is not None and isinstance(item, Job):
            self.store.set_state(item.id, state)

    def _restore(self) -> None:
        """Queue again what was waiting when the app last stopped, in its order; follow what still runs.
        A job that was running in-process has lost its process: its run folder shows it interrupted, with
        Resume on the Runs page, as after any crash."""
        with self._lock:
            for job in self.store.unfinished():
                was = job.state
                job.state = "queued"
                if was == "queued":
                    self._enqueue(job, keep_time=True)
                elif self.executor.reattach(job):
                    self._jobs[job.id] = job
                    self._start(job)
                    threading.Thread(target=self._execute, args=(job, self.executor.follow), daemon=True,
                                     name=f"transfer-studio-job {job.id}").start()
                else:
                    self.store.set_state(job.id, "done")


_DEFAULT: JobQueue | None = None
_DEFAULT_LOCK = threading.Lock()


def queue_db_path() -> Path:
    return Path(os.environ.get(QUEUE_DB_ENV) or workspaces_root() / "queue.sqlite")


def default_queue() -> JobQueue:
    """The process-wide queue, stored on disk, on the executor the environment names (executors.py)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = JobQueue(executor_from_env(), JobStore(queue_db_path()))
        return _DEFAULT
