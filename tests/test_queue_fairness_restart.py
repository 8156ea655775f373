"""The line is fair across people, and survives a restart of the app (issue 17), with the default
in-process executor: real (tiny) training runs on textile pictures, a real SQLite file, a real killed
process."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import RunFinished, RunStarted
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.childjobs import ChildProcess
from transfer_core.service.executors import InProcess, executor_from_env
from transfer_core.service.fairness import fair_order
from transfer_core.service.jobs import JobQueue
from transfer_core.service.jobstore import JobStore
from transfer_core.service.work import Job
from transfer_core.training.callbacks import Callback
from transfer_core.workflows.train import check_resumable

from tests.test_jobs import Gate  # holds a job before training until the test opens it

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0, freeze="all", max_images=12)
LONG = dict(TINY, epochs=8, freeze=2, max_images=36)


class Starts(Callback):
    """The order runs really started in, across all jobs."""

    def __init__(self):
        self.order, self.lock = [], threading.Lock()

    def on_event(self, trainer, event):
        if isinstance(event, RunStarted):
            with self.lock:
                self.order.append(event.run_id)


class W:
    def __init__(self, id, owner, submitted):
        self.id, self.owner, self.submitted = id, owner, submitted


def test_fair_order_takes_turns_across_people_first_come_within_each():
    waiting = [W("a1", "ann", 1), W("a2", "ann", 2), W("a3", "ann", 3), W("b1", "ben", 4), W("c1", "cat", 5),
               W("b2", "ben", 6)]
    assert fair_order(waiting, {}) == ["a1", "b1", "c1", "a2", "b2", "a3"]
    # ann's run just started: the others go first, each in the order they came
    assert fair_order(waiting[1:], {"ann": 7}) == ["b1", "c1", "a2", "b2", "a3"]
    assert fair_order([], {"ann": 1}) == []


def test_one_person_cannot_fill_the_line(textile_small, tmp_path):
    queue, gate, starts = JobQueue(), threading.Event(), Starts()
    config = TrainConfig(data=str(textile_small), **TINY)
    ann = [queue.submit(config, tmp_path, owner="ann", callbacks=[Gate(gate), starts]) for _ in range(4)]
    while queue.running() is None:
        time.sleep(0.02)
    ben = queue.submit(config, tmp_path, owner="ben", callbacks=[starts])  # comes last, goes next
    assert [queue.position(j.id) for j in (ben, *ann[1:])] == [1, 2, 3, 4]
    gate.set()
    for job in (*ann, ben):
        assert queue.wait(job.id, timeout=600) and isinstance(job.final, RunFinished)
    assert starts.order == [ann[0].id, ben.id, ann[1].id, ann[2].id, ann[3].id]


def test_the_default_is_one_job_at_a_time_in_a_child_process(monkeypatch):
    monkeypatch.delenv("TRANSFER_STUDIO_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("TRANSFER_STUDIO_EXECUTOR", raising=False)
    executor = executor_from_env()
    assert isinstance(executor, ChildProcess) and JobQueue(executor).slots() == 1
    monkeypatch.setenv("TRANSFER_STUDIO_EXECUTOR", "thread")
    executor = executor_from_env()
    assert isinstance(executor, InProcess) and JobQueue(executor).slots() == 1


def test_the_store_keeps_waiting_jobs_in_order(textile_small, tmp_path):
    store = JobStore(tmp_path / "queue.sqlite")
    jobs = [Job(id=f"run-{i}", config=TrainConfig(data=str(textile_small), **TINY), runs_dir=tmp_path,
                owner=o, submitted=100.0 + i) for i, o in enumerate(("ann", "ben", "ann"))]
    for job in reversed(jobs):
        store.put(job)
    store.set_state("run-1", "running")
    kept = JobStore(tmp_path / "queue.sqlite").unfinished()
    assert [(j.id, j.owner, j.state) for j in kept] == [("run-0", "ann", "queued"), ("run-1", "ben", "running"),
                                                        ("run-2", "ann", "queued")]
    assert kept[0].config == jobs[0].config
    store.set_state("run-0", "done")
    store.set_state("run-2", "cancelled")
    assert [j.id for j in store.unfinished()] == ["run-1"]


APP = textwrap.dedent("""
    import json, sys, time
    from transfer_core.core.config import TrainConfig
    from transfer_core.core.events import EpochEnd
    from transfer_core.service.jobs import JobQueue
    from transfer_core.service.jobstore import JobStore
    data, runs, db, long, tiny = sys.argv[1:6]
    queue = JobQueue(store=JobStore(db))
    jobs = [queue.submit(TrainConfig(data=data, **json.loads(long)), runs, owner="ann")]
    jobs += [queue.submit(TrainConfig(data=data, **json.loads(tiny)), runs, owner=o) for o in ("ben", "cat")]
    while not any(isinstance(e, EpochEnd) for e in jobs[0].events()):
        time.sleep(0.05)
    print(json.dumps([j.id for j in jobs]), flush=True)
    time.sleep(600)  # the test kills this "app" here
""")


def test_a_restart_requeues_waiting_jobs_and_leaves_the_running_one_resumable(textile_small, tmp_path):
    db, runs = tmp_path / "queue.sqlite", tmp_path / "runs"
    app = subprocess.Popen([sys.executable, "-c", APP, str(textile_small), str(runs), str(db), json.dumps(LONG),
                            json.dumps(TINY)], stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    try:
        running, *waiting = json.loads(app.stdout.readline())
    finally:
        app.kill()  # the app dies while the first job trains and two wait
        app.wait()
    queue = JobQueue(store=JobStore(db))  # the app starts again
    assert queue.get(running) is None  # its process is gone: not pretended to run
    for job_id in waiting:
        assert queue.wait(job_id, timeout=600) and isinstance(queue.get(job_id).final, RunFinished)
    assert [queue.get(j).owner for j in waiting] == ["ben", "cat"]
    assert RunFolder(runs / running).status() == "interrupted"
    check_resumable(runs / running)  # raises, in words, if it could not be resumed
    assert JobStore(db).unfinished() == []


def test_a_run_training_on_another_machine_is_not_taken_for_interrupted(textile_small, tmp_path):
    from transfer_core.runstore import runfiles
    from transfer_core.runstore.runs import write_json
    from transfer_core.workflows.train import train

    run = RunFolder(train(TrainConfig(data=str(textile_small), **TINY), runs_dir=tmp_path).run_dir)
    events = [e for e in run.events() if e.kind != "RunFinished"]  # as if it had not ended yet
    write_json(run.path / runfiles.PROCESS, {"pid": 1234567, "start": None, "host": "another-machine"})
    assert run.status(events) == "running"  # a Ray worker elsewhere: its pid cannot be checked from here
    write_json(run.path / runfiles.PROCESS, {"pid": 1234567, "start": None, "host": socket.gethostname()})
    assert run.status(events) == "interrupted"  # here, and that process is gone
    (run.path / runfiles.PROCESS).unlink()  # what the app does when it saw the worker die
    assert run.status(events) == "interrupted"
