"""Training jobs in a child process (the app's default executor, service/childjobs.py): real runs on real
textile pictures in real child processes. The kernel's OOM killer cannot be called on a shared test machine,
so one test ends the child with the same signal it sends (SIGKILL); another caps the child's address space
(RLIMIT_AS, the shared recipe's way) so the engine's own allocation fails, as it would on a smaller machine."""
import os
import signal

import pytest

from conftest import copy_textile
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import DataReady, EpochEnd, RunFailed, RunFinished, RunStarted, RunStopped
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.childjobs import JOB_LIMIT_ENV, ChildProcess
from transfer_core.service.executors import EXECUTOR_ENV, InProcess, executor_from_env
from transfer_core.service.jobs import JobQueue
from transfer_core.training.callbacks import Callback

FAST = dict(schedule="fixed", image_size=64, batch_size=8, seed=0, freeze=3, quick_start_epochs=0)


class KillAtEpoch(Callback):
    """In the child: the kernel's OOM killer's signal, at the start of epoch `epoch`."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def before_epoch(self, trainer, epoch):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def queue():
    return JobQueue(ChildProcess())


def test_the_app_trains_in_a_child_process_by_default(monkeypatch):
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    monkeypatch.delenv("TRANSFER_STUDIO_RAY_ADDRESS", raising=False)
    assert isinstance(executor_from_env(), ChildProcess)
    monkeypatch.setenv(EXECUTOR_ENV, "thread")
    assert isinstance(executor_from_env(), InProcess)


@pytest.mark.slow
def test_a_job_trains_in_its_own_process_and_every_event_reaches_the_app_in_order(queue, textile_small, tmp_path):
    job = queue.submit(TrainConfig(data=str(textile_small), epochs=2, **FAST), tmp_path, owner="ann")
    assert queue.wait(job.id, timeout=600)
    assert isinstance(job.final, RunFinished), job.final
    assert job.pid is not None and job.pid != os.getpid()
    events = job.events()
    assert isinstance(events[0], RunStarted) and events[-1] == job.final
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2]
    run = RunFolder(tmp_path / job.id)
    assert run.status() == "finished" and run.read_json("process.json", {}).get("pid") == job.pid
    assert [e.epoch for e in run.events() if isinstance(e, EpochEnd)] == [1, 2]


@pytest.mark.slow
def test_stop_reaches_the_child_within_the_run(queue, textile_small, tmp_path):
    job = queue.submit(TrainConfig(data=str(textile_small), epochs=200, **FAST), tmp_path, owner="ann")
    import time

    deadline = time.time() + 300
    while not any(isinstance(e, EpochEnd) for e in job.events()) and time.time() < deadline:
        time.sleep(0.1)
    assert queue.stop(job.id, owner="ann")
    assert queue.wait(job.id, timeout=120)
    assert isinstance(job.final, RunStopped), job.final
    assert job.final.epochs_run < 200


@pytest.mark.slow
def test_a_child_killed_like_the_oom_killer_does_leaves_the_app_serving_and_the_run_resumable(
        queue, textile_small, tmp_path):
    job = queue.submit(TrainConfig(data=str(textile_small), epochs=3, **FAST), tmp_path, owner="ann",
                       callbacks=[KillAtEpoch(2)])
    assert queue.wait(job.id, timeout=600)
    assert isinstance(job.final, RunFailed), job.final
    assert "SIGKILL" in job.final.error and "memory" in job.final.error and "36 pictures" in job.final.error
    run = RunFolder(tmp_path / job.id)
    assert run.status() == "interrupted"  # not failed: Resume is offered
    # The app goes on: the next job (another person's) trains, and the killed one resumes from epoch 1.
    other = queue.submit(TrainConfig(data=str(textile_small), epochs=1, **FAST), tmp_path, owner="ben")
    again = queue.resume(run.path, owner="ann")
    assert queue.wait(other.id, timeout=600) and isinstance(other.final, RunFinished), other.final
    assert queue.wait(again.id, timeout=600) and isinstance(again.final, RunFinished), again.final
    assert [e.epoch for e in RunFolder(run.path).events() if isinstance(e, EpochEnd)] == [1, 2, 3]


@pytest.mark.slow
def test_a_run_past_the_childs_memory_limit_ends_interrupted_in_words_and_a_small_budget_fits(
        queue, tmp_path, monkeypatch):
    """600 pictures at image size 1024 (540 of them loaded for training and validation) are 2.5 GB decoded: asked to hold them all in memory (cache_mb), the
    child, capped at 5.5 GB of address space (torch and its threads take about 4 GB of it), cannot; the same
    pictures with a budget of 64 MB are read from disk by batch, past the point where the first run failed."""
    data = copy_textile(tmp_path / "data", 200)
    monkeypatch.setenv(JOB_LIMIT_ENV, "5632")
    big = queue.submit(TrainConfig(data=str(data), epochs=1, cache_mb=100_000, **{**FAST, "image_size": 1024}),
                       tmp_path / "runs", owner="ann")
    assert queue.wait(big.id, timeout=900)
    assert isinstance(big.final, RunFailed), big.final
    assert "ran out of memory at 540 pictures" in big.final.error and "100,000 MB" in big.final.error, big.final.error
    assert RunFolder(tmp_path / "runs" / big.id).status() == "interrupted"
    small = queue.submit(TrainConfig(data=str(data), epochs=1, cache_mb=64, max_images=8,
                                     **{**FAST, "image_size": 1024}), tmp_path / "runs", owner="ann",
                         callbacks=[StopWhenReady()])
    assert queue.wait(small.id, timeout=900)
    assert isinstance(small.final, RunStopped), small.final  # it got past loading every picture
    assert any(isinstance(e, DataReady) for e in small.events())


class StopWhenReady(Callback):
    """Stops the run once its pictures and cached outputs are ready (the run's own Stop)."""

    def on_event(self, trainer, event):
        if isinstance(event, DataReady):
            trainer.stop.set()


def test_a_jobs_child_never_runs_the_page_script_streamlit_has_made_main(queue, tmp_path, monkeypatch):
    """Streamlit makes the page script it runs __main__; multiprocessing would have each child import it first,
    so a job's child ran a page (a workspace and a second queue of its own, which ran a queued job twice)."""
    import sys
    import types

    marker = tmp_path / "page-ran"
    page = tmp_path / "page.py"
    page.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__, fake_main.__spec__ = str(page), None
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    job = queue.submit(TrainConfig(data=str(copy_textile(tmp_path / "d", 4)), epochs=1, **{**FAST, "freeze": "all"}),
                       tmp_path / "runs")
    assert queue.wait(job.id, timeout=300) and isinstance(job.final, RunFinished), job.final
    assert not marker.exists(), "the child imported the page script that was __main__"
