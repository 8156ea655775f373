"""Where queued work runs. The queue decides what runs next (fair order, slots); an executor runs one
item and returns its final event.

- ChildProcess (the default, childjobs.py): each training job in a child process of its own, one at a time
  on this machine's device, so a run that runs out of memory or crashes never takes the server with it;
  tasks in a thread of the app's process.
- InProcess (TRANSFER_STUDIO_EXECUTOR=thread, and the engine's tests): a background thread of the app's own
  process, jobs and tasks alike: nothing new to start.
- RayExecutor (rayjobs.py, TRANSFER_STUDIO_RAY_ADDRESS=local or HOST:PORT): each training job is a Ray
  actor on one GPU, or one `transfer_slot` of a CPU machine; tasks stay in the app's process.
"""
from __future__ import annotations

import logging
import os

from transfer_core.core.device import describe_device
from transfer_core.core.events import Event
from transfer_core.core.i18n import _
from transfer_core.service.work import FILES, Job, Task, lane_of_task, train_job

log = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "TRANSFER_STUDIO_RAY_ADDRESS"  # "local", or HOST:PORT of a cluster's head
SLOTS_ENV = "TRANSFER_STUDIO_SLOTS"  # jobs at once on a local Ray cluster without GPUs (default 1)
EXECUTOR_ENV = "TRANSFER_STUDIO_EXECUTOR"  # "thread": train inside the app's process (default: a child process)


class InProcess:
    """Jobs and tasks take turns in one thread of this process: the device trains one thing at a time."""
    name = "this app's process"

    def lanes(self) -> dict[str, int]:
        return {"device": 1, FILES: 1}

    def lane(self, item: Job | Task) -> str:
        return lane_of_task(item, "device") if isinstance(item, Task) else "device"

    def describe(self) -> str:
        return _("{device}, one run at a time, inside this app").format(device=describe_device())

    def run(self, job: Job) -> Event:
        return train_job(job.config, job.runs_dir, job.id, resume=job.resume, log=job.log,
                         callbacks=job.extra_callbacks, stop=job.stop)

    def reattach(self, job: Job) -> bool:
        return False  # the process that trained it is gone: its run folder is interrupted, and resumable

    def follow(self, job: Job) -> Event:  # pragma: no cover - never called: reattach() is False
        raise NotImplementedError


def executor_from_env():
    """ChildProcess unless TRANSFER_STUDIO_RAY_ADDRESS names a Ray cluster (or TRANSFER_STUDIO_EXECUTOR asks
    for a thread); if Ray cannot start, the app still works in-process and the log says why."""
    address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
    if not address:
        if os.environ.get(EXECUTOR_ENV, "").strip() == "thread":
            return InProcess()
        from transfer_core.service.childjobs import ChildProcess  # local import: it imports multiprocessing's server

        return ChildProcess()
    from transfer_core.service.rayjobs import (
        RayExecutor,  # local import: Ray is big and optional at run time
    )

    try:
        return RayExecutor(address, slots=int(os.environ.get(SLOTS_ENV, "0") or 0))
    except Exception as exc:  # noqa: BLE001 - a cluster that cannot be reached must not take the app down
        log.warning("Could not use the Ray cluster at %r (%s); training runs in this app's process.", address, exc)
        return InProcess()
