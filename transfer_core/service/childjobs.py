"""The default executor: each training job in a child process of its own, never in the web server's.

A run that needs more memory than the machine has is ended by the kernel, and a crash in a native library
ends its process: either way only the child goes, and the server, with every other person's session, keeps
serving. Ten pages watching a run no longer take the training's time either: they poll the job's events in
the server while the child trains on its own cores (no shared interpreter lock).

The child is forked from a small server process that has already imported the engine (multiprocessing's
"forkserver"), so a job starts in a fraction of a second instead of importing torch again, and no thread of
the web server is ever forked. Events come back over a pipe as they happen (curves, progress, time left as
before); Stop is passed on and ends the run within one batch. Tasks (data checks, exports, finders) stay in
the server's queue thread, as before.

When the child dies without a final event (killed for memory, or crashed), its run folder has no final
event and no live process, so it reads as interrupted and the Runs page offers Resume; the job ends with a
RunFailed that says what happened in words: how many pictures, the memory budget, what to change.
"""
from __future__ import annotations

import importlib
import multiprocessing
from multiprocessing import spawn
import os
import resource
import signal
import threading
import time

from transfer_core.core.device import describe_device
from transfer_core.core.events import DataReady, Event, RunFailed
from transfer_core.core.i18n import N_, _
from transfer_core.core.memory import memory_budget_mb
from transfer_core.methods.registry import MethodSpec, list_methods, register
from transfer_core.runstore import runfiles
from transfer_core.service.work import FILES, Job, Task, lane_of_task, train_job
from transfer_core.training.callbacks import Callback

# A limit on each job's address space, in MB (tests, or a server that must never swap): past it an allocation
# fails in the child (MemoryError) and the run ends as interrupted, in words. Unset: the kernel's own limit.
JOB_LIMIT_ENV = "TRANSFER_STUDIO_JOB_MEMORY_LIMIT_MB"
POLL_S = 0.2
APP_GONE = 75  # the child's exit code when the app that followed it is gone
CHILD_NAME = "transfer-studio-run"  # a job's child process is named so, with the job's id

# Kept in English in the job's events; shown in the reader's language (i18n.retranslate).
CHILD_KILLED = N_("The training process was ended by the system (SIGKILL), most likely because the machine "
                  "ran out of memory{where}; the memory budget of a run is {budget} MB. The app and everyone else's "
                  "sessions go on, and nothing is lost up to the run's last finished epoch: resume it from the Runs "
                  "page, or start it again with fewer pictures or a smaller memory budget "
                  "(TRANSFER_STUDIO_MEMORY_MB).")
CHILD_SIGNALLED = N_("The training process was ended by signal {signal}{where}. The app and everyone else's sessions "
                     "go on, and nothing is lost up to the run's last finished epoch: resume it from the Runs page.")
CHILD_CRASHED = N_("The training process stopped unexpectedly (exit code {code}){where}. The app and everyone else's "
                   "sessions go on, and nothing is lost up to the run's last finished epoch: resume it from the Runs "
                   "page.")


class _PipeLog(Callback):
    """In the child: every event goes to the app as it happens. A pipe closed at the other end means the
    app is gone (killed, or restarted): the child ends at once, as if it had gone with it, so its run folder
    reads as interrupted and the app, started again, offers Resume from the last finished epoch. (Stopping
    instead would mark it stopped, and train on for no one until the next batch.)"""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()

    def on_event(self, trainer, event: Event) -> None:
        self.send(("event", event))

    def send(self, message) -> None:
        try:
            with self.lock:
                self.conn.send(message)
        except (BrokenPipeError, EOFError, OSError):
            os._exit(APP_GONE)


def _app_settings() -> dict[str, str]:
    """The app's own environment settings now: the fork server was started with those of an earlier moment."""
    return {k: v for k, v in os.environ.items() if k.startswith("TRANSFER_STUDIO_")}


def _take_settings(settings: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith("TRANSFER_STUDIO_") and k not in settings]:
        del os.environ[key]
    os.environ.update(settings)
    limit = settings.get(JOB_LIMIT_ENV, "").strip()
    if limit:
        cap = int(float(limit) * 2 ** 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _app_methods() -> list[tuple[str, str]]:
    """(name, module) of every method registered in the app now: a method registered after the fork server
    started (a plugin imported by the app, a test's) is unknown there."""
    return [(m.name, m.build.__module__) for m in list_methods()]


def _take_methods(methods: list[tuple[str, str]]) -> None:
    """Register the app's methods here too: importing a method's module registers it (a method is one module
    that ends with register(...)); one registered later by the app is found by name among its module's specs."""
    for name, module in methods:
        if any(m.name == name for m in list_methods()):
            continue
        found = vars(importlib.import_module(module)).values()
        spec = next((v for v in found if isinstance(v, MethodSpec) and v.name == name), None)
        if spec is not None and not any(m.name == name for m in list_methods()):
            register(spec)


def _child_main(spec: dict, conn, stop_flag, settings: dict[str, str], methods: list[tuple[str, str]]) -> None:
    """The child process: train the job, send its events and its final event, exit."""
    _take_settings(settings)
    _take_methods(methods)
    stop = threading.Event()

    def pass_stop():  # the app's Stop (a process-shared flag) becomes the trainer's own
        while not stop_flag.wait(0.2):
            if stop.is_set():
                return
        stop.set()

    threading.Thread(target=pass_stop, daemon=True).start()
    log = _PipeLog(conn)
    final = train_job(**spec, log=log, stop=stop)
    log.send(("final", final))
    stop.set()
    conn.close()


def _without_main(get_preparation_data):
    """multiprocessing gives each child the parent's __main__ to import first. Streamlit swaps __main__ for the
    page script it is running (any session's, at that moment), so a job's child ran a page script: it made a
    workspace and a queue of its own, which restored the queued jobs and ran a second copy of one (seen in CI:
    a scratch-baseline run's folder already existed). A job's child needs nothing from __main__ (its target is
    a function of this module): its preparation leaves __main__ out."""
    def prepare(name):
        data = get_preparation_data(name)
        if str(name).startswith(CHILD_NAME):
            data.pop("init_main_from_name", None)
            data.pop("init_main_from_path", None)
        return data
    prepare.wrapped = get_preparation_data
    return prepare


if not hasattr(spawn.get_preparation_data, "wrapped"):
    spawn.get_preparation_data = _without_main(spawn.get_preparation_data)


def _start_fork_server() -> None:
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _context():
    ctx = multiprocessing.get_context("forkserver")
    # The fork server imports the engine once; every job is then a fork of it, started in a fraction of a second.
    ctx.set_forkserver_preload(["transfer_core.service.childjobs", "transfer_core.workflows.train"])
    return ctx


class ChildProcess:
    """Jobs in child processes, one at a time on this machine's device; tasks in this process's queue thread."""
    name = "a child process of this app"

    def __init__(self):
        self._ctx = _context()
        # Started now, beside the app's own start-up, so the first run does not wait for torch's import (~3 s).
        threading.Thread(target=_start_fork_server, name="transfer-studio-forkserver", daemon=True).start()

    def lanes(self) -> dict[str, int]:
        return {"device": 1, FILES: 1}

    def lane(self, item: Job | Task) -> str:
        return lane_of_task(item, "device") if isinstance(item, Task) else "device"

    def describe(self) -> str:
        return _("{device}, one run at a time, in a process of its own").format(device=describe_device())

    def run(self, job: Job) -> Event:
        receive, send = self._ctx.Pipe(duplex=False)
        stop_flag = self._ctx.Event()
        spec = {"config": job.config, "runs_dir": job.runs_dir, "run_id": job.id, "resume": job.resume,
                "callbacks": job.extra_callbacks}
        child = self._ctx.Process(target=_child_main, args=(spec, send, stop_flag, _app_settings(), _app_methods()), daemon=True,
                                  name=f"{CHILD_NAME} {job.id}")
        child.start()
        send.close()  # only the child writes: its end closing is how the app sees it gone
        job.pid = child.pid
        try:
            return self._follow(job, child, receive, stop_flag)
        finally:
            receive.close()

    def _follow(self, job: Job, child, receive, stop_flag) -> Event:
        while True:
            if job.stop.is_set():
                stop_flag.set()
            try:
                ready = receive.poll(POLL_S)
                message = receive.recv() if ready else None
            except (EOFError, OSError):  # the child is gone, and everything it sent has been read
                child.join(10)
                return _child_died(job, child.exitcode)
            if message is None:
                continue
            kind, event = message
            if kind == "final":
                child.join(30)
                return event
            job.log.on_event(None, event)

    def reattach(self, job: Job) -> bool:
        return False  # the pipe to a child of an earlier app is gone: its run folder reads as interrupted, resumable

    def follow(self, job: Job) -> Event:  # pragma: no cover - never called: reattach() is False
        raise NotImplementedError


def _child_died(job: Job, exitcode: int | None) -> Event:
    """The job's end when its process went without a final event: the run folder is left interrupted."""
    seen = next((e for e in reversed(job.events()) if isinstance(e, DataReady)), None)
    where = (_(" with {n} pictures").format(n=f"{seen.num_train + seen.num_val:,}") if seen is not None else "")
    if exitcode == -signal.SIGKILL:  # what the kernel's OOM killer sends (and nothing in the app does)
        error = _(CHILD_KILLED).format(where=where, budget=f"{memory_budget_mb(job.config.cache_mb):,}")
    elif exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        error = _(CHILD_SIGNALLED).format(signal=name, where=where)
    else:
        error = _(CHILD_CRASHED).format(code=exitcode, where=where)
    final = RunFailed(run_id=job.id, time=time.time(), error=error, detail=f"exit code {exitcode}")
    job.log.on_event(None, final)
    (job.run_dir / runfiles.PROCESS).unlink(missing_ok=True)  # its process is gone: the run is resumable
    return final
