"""Training jobs on a Ray cluster: N jobs at once on N GPUs (or N `transfer_slot`s of CPU machines),
on this machine or many.

Each job is a detached, named Ray actor (`run-<id>` in namespace "transfer-studio") that trains in a
thread of its own worker process and keeps the job's events. The app follows it by polling: new events
come back every half second (curves, progress, ETA as before), Stop is passed on and ends the job within
one batch, and because the actor is detached and named, an app that restarts finds it again and
re-attaches (JobQueue._restore). If the worker process dies, the run folder is left as any crash leaves
it: interrupted, and resumable from its last finished epoch.

Run folders and data sets are reached through a folder every machine mounts at the same path (see the
README, "Several machines"): the worker writes the run folder where the app reads it, checkpoints
included, so resuming, the Runs page and Predict need nothing sent back.
"""
from __future__ import annotations

import os
import threading
import time

from transfer_core.core.events import Event, RunFailed
from transfer_core.core.i18n import N_, _, ngettext
from transfer_core.runstore import runfiles
from transfer_core.service.work import FILES, Job, Task, lane_of_task, train_job
from transfer_core.training.callbacks import EventLog

NAMESPACE = "transfer-studio"
SLOT = "transfer_slot"  # a CPU machine's custom resource: one per job it may train at once
# Ray starts its workers at nice 15, so they train only on CPU time nothing else wants: on a server that also
# does other work a class's runs stall (CI found it: no first model in 10 minutes). A job's worker gets the
# same share as training in the app's own process, as Ray's own job drivers do.
WORKER_ENV = {"env_vars": {"RAY_worker_niceness": "0"}}
POLL_S = 0.5
POLL_WAIT_S = 30  # a poll not answered by then is asked again (Stop is passed on in between)
# Kept in English in the run's events; shown in the reader's language (i18n.retranslate).
WORKER_DIED = N_("The process training this run stopped unexpectedly (its machine or Ray worker went away). "
                 "Nothing is lost up to its last finished epoch: resume it from the Runs page.")


class RunActor:
    """Lives in a Ray worker process: trains one job in a thread and answers polls about it."""

    def __init__(self, spec: dict):
        self.spec = spec  # what train_job needs; picklable (a Job holds locks)
        self.log, self.stop_flag = EventLog(), threading.Event()
        self.final: Event | None = None
        _share_cores()
        self.thread = threading.Thread(target=self._train, daemon=True)
        self.thread.start()

    def _train(self) -> None:
        self.final = train_job(**self.spec, log=self.log, stop=self.stop_flag)

    def poll(self, since: int) -> tuple[list[Event], Event | None]:
        """Events from number `since` on, and the final event once training is over."""
        final = self.final  # read first: a final seen here has all its events in the snapshot below
        return self.log.snapshot()[since:], final

    def stop(self) -> None:
        self.stop_flag.set()

    def describe(self) -> dict:
        return {"id": self.spec["run_id"], "pid": os.getpid(), "node": _node_ip(), "niceness": os.nice(0)}


def _share_cores() -> None:
    """Ray gives an actor one thread by default; a CPU machine's cores are shared by its slots instead."""
    import ray
    import torch

    context = ray.get_runtime_context()
    if context.get_assigned_resources().get("GPU"):
        return
    node = next((n for n in ray.nodes() if n["NodeID"] == context.get_node_id()), {})
    slots = max(1, int(node.get("Resources", {}).get(SLOT, 1)))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // slots))


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


class RayExecutor:
    """Jobs go to Ray, one GPU (or one transfer_slot) each; tasks stay in this process, one at a time."""

    def __init__(self, address: str, slots: int = 0):
        if address != "local":
            # A cluster started with `ray start` uses token authentication (Ray 2.60); a driver joining it by
            # address must say so before Ray is imported, and finds the token in ~/.ray/auth_token (or
            # RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH).
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        import ray

        if not ray.is_initialized():
            _connect_for_good(address, slots)
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.job_slots = self.gpus or int(resources.get(SLOT, 0))
        if self.job_slots < 1:
            raise RuntimeError(f"the cluster has no GPU and no '{SLOT}' resource: start its machines with "
                               f"ray start ... --resources='{{\"{SLOT}\": 1}}'")
        self.name = f"Ray ({self.job_slots} {'GPU' if self.gpus else 'slot'}{'s' if self.job_slots > 1 else ''})"
        self._actor_class = ray.remote(RunActor)

    def lanes(self) -> dict[str, int]:
        return {"ray": self.job_slots, "app": 1, FILES: 1}

    def lane(self, item: Job | Task) -> str:
        return lane_of_task(item, "app") if isinstance(item, Task) else "ray"

    def describe(self) -> str:
        kind = ngettext("{n} GPU", "{n} GPUs", self.job_slots) if self.gpus else \
            ngettext("{n} slot", "{n} slots", self.job_slots)
        return _("a Ray cluster, up to {n} runs at a time ({kind})").format(n=self.job_slots,
                                                                             kind=kind.format(n=self.job_slots))

    def run(self, job: Job) -> Event:
        """Start the job's actor and follow it to its end (called on one of the queue's threads)."""
        ask = {"num_gpus": 1} if self.gpus else {"resources": {SLOT: 1}}
        actor = self._actor_class.options(name=actor_name(job.id), namespace=NAMESPACE, lifetime="detached",
                                          num_cpus=0, max_concurrency=4, runtime_env=WORKER_ENV, **ask).remote(_spec(job))
        return self._follow(job, actor)

    def reattach(self, job: Job) -> bool:
        import ray

        try:
            ray.get_actor(actor_name(job.id), namespace=NAMESPACE)
        except ValueError:  # no such actor: it ended, or its cluster restarted
            return False
        return True

    def follow(self, job: Job) -> Event:
        import ray

        try:
            actor = ray.get_actor(actor_name(job.id), namespace=NAMESPACE)
        except ValueError:
            return _worker_died(job, "gone")
        return self._follow(job, actor)

    def worker_of(self, job_id: str) -> dict:
        """Where a running job trains: its Ray worker's process id and node (for tests and the status)."""
        import ray

        return ray.get(ray.get_actor(actor_name(job_id), namespace=NAMESPACE).describe.remote(), timeout=60)

    def _follow(self, job: Job, actor) -> Event:
        import ray
        from ray.exceptions import RayActorError

        seen, stop_sent = 0, False
        try:
            while True:
                if job.stop.is_set() and not stop_sent:
                    actor.stop.remote()
                    stop_sent = True
                try:
                    events, final = ray.get(actor.poll.remote(seen), timeout=POLL_WAIT_S)
                except ray.exceptions.GetTimeoutError:  # still starting (a worker process, its imports): ask again
                    continue
                for event in events:
                    job.log.on_event(None, event)
                seen += len(events)
                if final is not None:
                    ray.kill(actor)  # done: free its slot
                    return final
                time.sleep(POLL_S)
        except RayActorError as exc:  # its process or machine is gone
            return _worker_died(job, type(exc).__name__)


def _spec(job: Job) -> dict:
    return {"config": job.config, "runs_dir": job.runs_dir, "run_id": job.id, "resume": job.resume,
            "callbacks": job.extra_callbacks}


def _worker_died(job: Job, detail: str) -> Event:
    """The job's end as the app sees it; the run folder itself has no final event, so it reads as
    interrupted and the Runs page offers Resume."""
    final = RunFailed(run_id=job.id, time=time.time(), error=WORKER_DIED, detail=detail)
    job.log.on_event(None, final)
    # From another machine its process id means nothing here: saying it is gone makes the run resumable.
    (job.run_dir / runfiles.PROCESS).unlink(missing_ok=True)
    return final


def actor_name(job_id: str) -> str:
    return f"run-{job_id}"


def connect(address: str, slots: int = 0) -> None:
    """`local`: a Ray cluster inside this app (it ends with the app); HOST:PORT: join a running cluster
    started with `ray start --head` (it outlives app restarts, so running jobs are re-attached)."""
    import ray

    quiet = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
    if address == "local":
        gpus = _local_gpus()
        ray.init(address="local", num_cpus=os.cpu_count() or 1, resources={SLOT: slots or max(gpus, 1)},
                 include_dashboard=False, **quiet)
    else:
        ray.init(address=address, **quiet)


def _connect_for_good(address: str, slots: int) -> None:
    """connect() from a thread that lives as long as the process: a Ray driver stops working when the
    thread that started it ends, and the app's first page runs in a script thread that soon does."""
    ready, failed = threading.Event(), []

    def keep():
        try:
            connect(address, slots)
        except Exception as exc:  # noqa: BLE001 - handed to the caller below
            failed.append(exc)
        ready.set()
        if not failed:
            threading.Event().wait()

    threading.Thread(target=keep, name="transfer-studio-ray", daemon=True).start()
    ready.wait()
    if failed:
        raise failed[0]


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
