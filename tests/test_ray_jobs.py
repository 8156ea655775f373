"""Jobs on a real local Ray cluster (issue 17): two slots train two jobs at once with the results they
give in-process; Stop, a killed worker and an app restart behave as a person needs. The cluster is
started the way the README's classroom server starts it (`ray start --head`, 2 CPUs, 2 transfer slots),
so it outlives a driver that is killed, as it outlives an app restart."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import (
    EpochEnd,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
)
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.jobs import JobQueue
from transfer_core.service.jobstore import JobStore
from transfer_core.service.work import Job
from transfer_core.training.callbacks import Callback

from transfer_core.service.rayjobs import WORKER_DIED, RayExecutor, connect  # Ray itself is imported late

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0, freeze="all", max_images=12)
LONG = dict(TINY, epochs=6, freeze=2, max_images=36)  # several epochs with a stage learning: time to act


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """HOST:PORT of a Ray head on this machine; `--block` ties the cluster's processes to this one's."""
    # As RayExecutor does before it imports Ray for a cluster it joins by address; set for this module only,
    # so the app-like subprocesses of other tests start their own clusters as a fresh app does.
    had_mode = "RAY_AUTH_MODE" in os.environ
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    port, log = _free_port(), tmp_path_factory.mktemp("ray") / "head.log"
    with open(log, "w") as out:
        head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                                 f"--port={port}", "--num-cpus=2", '--resources={"transfer_slot": 2}',
                                 "--include-dashboard=false", "--disable-usage-stats"], stdout=out, stderr=out)
    try:
        deadline = time.time() + 180
        while "Ray runtime started" not in log.read_text():
            assert time.time() < deadline and head.poll() is None, f"the Ray head did not start: {log.read_text()}"
            time.sleep(0.5)
        address = f"127.0.0.1:{port}"
        connect(address)
        yield address
    finally:
        ray.shutdown()
        head.send_signal(signal.SIGTERM)  # with --block, the head takes its cluster's processes with it
        head.wait(timeout=60)
        if not had_mode:
            os.environ.pop("RAY_AUTH_MODE", None)


@pytest.fixture
def ray_queue(cluster):
    return JobQueue(RayExecutor(cluster))


def _wait_for(condition, timeout=300.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


class Rendezvous(Callback):
    """Each job waits after its start until `count` jobs have started: they can only all go on if they run
    at the same time (a file per job, as Ray workers are other processes). Fails the run if they don't."""

    def __init__(self, folder: Path, count: int):
        self.folder, self.count = folder, count

    def before_fit(self, trainer):
        (self.folder / f"{os.getpid()}-{id(trainer)}").touch()
        deadline = time.time() + 120
        while len(list(self.folder.iterdir())) < self.count:
            if time.time() > deadline:
                raise RuntimeError("the other job never started while this one ran")
            time.sleep(0.05)


def _first(job: Job, kind):
    return next(e for e in job.events() if isinstance(e, kind))


def test_two_slots_train_two_jobs_at_once_with_in_process_results(ray_queue, textile_small, tmp_path):
    config, meet = TrainConfig(data=str(textile_small), **TINY), tmp_path / "meet"
    meet.mkdir()
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the callback travels to the workers
    jobs = [ray_queue.submit(config, tmp_path / "ray", owner=o, callbacks=[Rendezvous(meet, 2)])
            for o in ("ann", "ben")]
    for job in jobs:
        assert ray_queue.wait(job.id, timeout=600)
    a, b = jobs
    assert isinstance(a.final, RunFinished) and isinstance(b.final, RunFinished), (a.final, b.final)
    # Both trained at the same time (the rendezvous needs it): each started before the other finished.
    assert _first(a, RunStarted).time < b.final.time and _first(b, RunStarted).time < a.final.time
    # The events came back live, in order, as the in-process queue gives them (curves, progress, ETA).
    home = JobQueue().submit(config, tmp_path / "local", owner="cat")  # in-process, the default
    _wait_for(lambda: home.state == "done")
    def story(job):  # progress ticks are timed, so their number differs; everything else is the same
        return [e.kind for e in job.events() if e.kind != "Progress"]

    assert story(a) == story(b) == story(home) and "EpochEnd" in story(a)
    for remote in (a, b):
        assert remote.final.best_val_accuracy == home.final.best_val_accuracy
        assert [round(e.val_loss, 4) for e in remote.events() if isinstance(e, EpochEnd)] == \
            [round(e.val_loss, 4) for e in home.events() if isinstance(e, EpochEnd)]
        assert RunFolder(remote.run_dir).status() == "finished"  # the run folder is where the app reads it


def test_stop_ends_a_ray_job_soon(ray_queue, textile_small, tmp_path):
    job = ray_queue.submit(TrainConfig(data=str(textile_small), **dict(LONG, epochs=50)), tmp_path, owner="ann")
    _wait_for(lambda: any(isinstance(e, EpochEnd) for e in job.events()))
    assert not ray_queue.stop(job.id, owner="ben")  # not theirs
    assert ray_queue.stop(job.id, owner="ann")
    assert ray_queue.wait(job.id, timeout=120)
    assert isinstance(job.final, RunStopped)
    assert sum(isinstance(e, EpochEnd) for e in job.events()) < 50
    assert RunFolder(job.run_dir).status() == "stopped"


def test_a_failure_on_ray_is_explained_in_words(ray_queue, tmp_path):
    job = ray_queue.submit(TrainConfig(data=str(tmp_path / "no-such-folder"), **TINY), tmp_path / "runs")
    assert ray_queue.wait(job.id, timeout=300)
    assert isinstance(job.final, RunFailed) and "Traceback" not in job.final.error
    assert "folder" in job.final.error.lower()


def test_a_killed_worker_leaves_its_run_interrupted_and_resumable(ray_queue, textile_small, tmp_path):
    job = ray_queue.submit(TrainConfig(data=str(textile_small), **LONG), tmp_path, owner="ann")
    _wait_for(lambda: any(isinstance(e, EpochEnd) for e in job.events()))
    worker = ray_queue.executor.worker_of(job.id)
    assert worker["pid"] != os.getpid()  # it trains in a Ray worker process, not in the app's
    assert worker["niceness"] <= os.nice(0)  # not at Ray's nice 15, which starves it on a busy machine
    os.kill(worker["pid"], signal.SIGKILL)
    assert ray_queue.wait(job.id, timeout=120)
    assert isinstance(job.final, RunFailed) and job.final.error == WORKER_DIED
    assert RunFolder(job.run_dir).status() == "interrupted"
    resumed = ray_queue.resume(job.run_dir, owner="ann")
    assert ray_queue.wait(resumed.id, timeout=600)
    assert isinstance(resumed.final, RunFinished) and resumed.final.epochs_run == LONG["epochs"]


DRIVER = textwrap.dedent("""
    import json, sys, time
    from transfer_core.core.config import TrainConfig
    from transfer_core.core.events import EpochEnd
    from transfer_core.service.jobs import JobQueue
    from transfer_core.service.jobstore import JobStore
    from transfer_core.service.rayjobs import RayExecutor
    address, data, runs, db, long, tiny = sys.argv[1:7]
    queue = JobQueue(RayExecutor(address), JobStore(db))
    jobs = [queue.submit(TrainConfig(data=data, **json.loads(long)), runs, owner=o) for o in ("ann", "ben")]
    jobs.append(queue.submit(TrainConfig(data=data, **json.loads(tiny)), runs, owner="cat"))
    while not all(any(isinstance(e, EpochEnd) for e in j.events()) for j in jobs[:2]):
        time.sleep(0.1)
    print(json.dumps([[j.id, j.state] for j in jobs]), flush=True)
    time.sleep(600)  # the test kills this "app" here
""")


def test_an_app_restart_reattaches_running_jobs_and_requeues_waiting_ones(cluster, textile_small, tmp_path):
    db, runs = tmp_path / "queue.sqlite", tmp_path / "runs"
    app = subprocess.Popen([sys.executable, "-c", DRIVER, cluster, str(textile_small), str(runs), str(db),
                            json.dumps(LONG), json.dumps(TINY)], stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    try:
        states = json.loads(app.stdout.readline())
    finally:
        app.kill()  # the app dies with two jobs training on Ray and one waiting
        app.wait()
    assert [s for _, s in states] == ["running", "running", "queued"]
    queue = JobQueue(RayExecutor(cluster), JobStore(db))  # the app starts again
    jobs = [queue.get(job_id) for job_id, _ in states]
    assert [j.state for j in jobs[:2]] == ["running", "running"] and jobs[2].state in ("queued", "running")
    for job in jobs:
        assert queue.wait(job.id, timeout=900)
        assert isinstance(job.final, RunFinished), job.final
    # Re-attached jobs replay their whole story, so their curves start at epoch 1 again in the app.
    assert [e.epoch for e in jobs[0].events() if isinstance(e, EpochEnd)] == list(range(1, LONG["epochs"] + 1))
    assert all(RunFolder(runs / j.id).status() == "finished" for j in jobs)
    assert JobStore(db).unfinished() == []  # nothing left to restore next time


APP_LIKE = textwrap.dedent("""
    import json, os, sys, threading
    os.environ["TRANSFER_STUDIO_RAY_ADDRESS"] = "local"
    from transfer_core.core.config import TrainConfig
    from transfer_core.service import jobs
    data, runs, tiny = sys.argv[1:4]
    made = {}
    def first_page():  # Streamlit runs each page in a script thread that ends
        made["job"] = jobs.default_queue().submit(TrainConfig(data=data, **json.loads(tiny)), runs, owner="ann")
    page = threading.Thread(target=first_page)
    page.start()
    page.join()
    job = made["job"]
    jobs.default_queue().wait(job.id, timeout=600)
    print(json.dumps([type(jobs.default_queue().executor).__name__, job.final.kind]))
""")


def test_the_app_starts_a_local_cluster_from_a_page_thread(textile_small, tmp_path):
    """TRANSFER_STUDIO_RAY_ADDRESS=local as the app meets it: the queue is first asked for on a page's
    script thread, which ends at once (a Ray driver started on such a thread used to hang every job)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TRANSFER_STUDIO_QUEUE_DB=str(tmp_path / "queue.sqlite"))
    out = subprocess.run([sys.executable, "-c", APP_LIKE, str(textile_small), str(tmp_path / "runs"),
                          json.dumps(TINY)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
                         check=False)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["RayExecutor", "RunFinished"], out.stderr[-2000:]
