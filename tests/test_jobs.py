"""The job queue the app's browser sessions share: one run trains at a time, the rest wait in order,
and no one can stop another person's job. Real (tiny) training runs on textile images."""
import json
import os
import statistics
import threading
import time

import pytest

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import (
    DataReady,
    EpochEnd,
    Progress,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
)
from transfer_core.service.childjobs import ChildProcess
from transfer_core.service.jobs import JobQueue
from transfer_core.training.callbacks import Callback

TINY = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0, freeze="all", max_images=12)
OWNERS = ("ann-0123456789abcdef", "ben-0123456789abcdef", "cat-0123456789abcdef", "dan-0123456789abcdef")


class Gate(Callback):
    """Holds a job just before its training starts until the test opens the gate."""

    def __init__(self, gate: threading.Event):
        self.gate = gate

    def before_fit(self, trainer):
        assert self.gate.wait(timeout=300)


class FileGate(Callback):
    """Gate for a run in another process (the app's child-process executor): holds it just before its
    training starts until the test opens the gate, a file appearing."""

    def __init__(self, path):
        self.path = path

    def before_fit(self, trainer):
        deadline = time.time() + 300
        while not self.path.exists():
            assert time.time() < deadline, "the gate was never opened"
            time.sleep(0.05)

    def set(self):
        self.path.touch()


class Concurrency(Callback):
    """Counts runs between their start and their end, across all jobs."""

    def __init__(self):
        self.lock, self.now, self.most = threading.Lock(), 0, 0

    def on_event(self, trainer, event):
        with self.lock:
            if isinstance(event, RunStarted):
                self.now += 1
                self.most = max(self.most, self.now)
            elif isinstance(event, (RunFinished, RunStopped, RunFailed)):
                self.now -= 1


def _wait_for(condition, timeout=120.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_several_people_press_start_at_once(textile_small, tmp_path):
    queue, gate, count = JobQueue(), threading.Event(), Concurrency()
    jobs, barrier = {}, threading.Barrier(len(OWNERS))

    def press_start(owner):
        barrier.wait()
        jobs[owner] = queue.submit(TrainConfig(data=str(textile_small), **TINY), tmp_path, owner=owner,
                                   callbacks=[Gate(gate), count])

    threads = [threading.Thread(target=press_start, args=(o,)) for o in OWNERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _wait_for(lambda: queue.running() is not None)
    first = queue.running()
    waiting = sorted((j for j in jobs.values() if j is not first), key=lambda j: queue.position(j.id))
    assert queue.position(first.id) == 0 and [queue.position(j.id) for j in waiting] == [1, 2, 3]
    assert [j.submitted for j in waiting] == sorted(j.submitted for j in waiting)  # first come, first served

    second, third, fourth = waiting
    assert not queue.stop(third.id, owner=second.owner)  # someone else's job: refused, nothing changes
    assert not third.stop.is_set() and queue.position(third.id) == 2
    assert queue.stop(third.id, owner=third.owner)  # its owner takes it out of the queue
    assert third.state == "cancelled" and queue.position(third.id) is None
    assert [queue.position(j.id) for j in (first, second, fourth)] == [0, 1, 2]
    assert queue.stop(first.id, owner=first.owner)  # and the running one is stopped by its owner
    assert not any(j.stop.is_set() for j in (second, fourth))

    gate.set()
    for job in jobs.values():
        assert queue.wait(job.id, timeout=600)
    assert isinstance(first.final, RunStopped)
    assert isinstance(second.final, RunFinished) and isinstance(fourth.final, RunFinished)
    assert third.final is None and not third.run_dir.exists()  # never started, left nothing behind
    assert count.most == 1  # one job trained at a time
    # each job's log holds its own run's events only
    for job in (first, second, fourth):
        assert {e.run_id for e in job.events()} == {job.id}


class FailOnDataReady(Callback):
    def on_event(self, trainer, event):
        if isinstance(event, DataReady):
            raise RuntimeError("a plug-in broke")


def test_failing_jobs_leave_the_queue_working(textile_small, tmp_path):
    queue = JobQueue()
    ok = TrainConfig(data=str(textile_small), **TINY)
    cannot_start = queue.submit(TrainConfig(data=str(textile_small), device="gpu-please", **TINY), tmp_path, "a")
    broken_callback = queue.submit(ok, tmp_path, "b", callbacks=[FailOnDataReady()])
    no_data = queue.submit(TrainConfig(data=str(tmp_path / "missing"), **TINY), tmp_path, "c")
    good = queue.submit(ok, tmp_path, "d")
    for job in (cannot_start, broken_callback, no_data, good):
        assert queue.wait(job.id, timeout=600)
    assert isinstance(cannot_start.final, RunFailed) and "gpu-please" in cannot_start.final.error
    assert cannot_start.events() == [cannot_start.final]  # a watcher sees why, too
    assert isinstance(broken_callback.final, RunFailed) and "a plug-in broke" in broken_callback.final.error
    assert isinstance(no_data.final, RunFailed) and "does not exist" in no_data.final.error
    assert isinstance(good.final, RunFinished) and good.final.best_val_accuracy > 0
    assert queue.running() is None and queue.position(good.id) is None


def test_a_run_cannot_be_resumed_twice_at_once(textile_small, tmp_path):
    queue, gate = JobQueue(), threading.Event()
    job = queue.submit(TrainConfig(data=str(textile_small), **{**TINY, "epochs": 2}), tmp_path, "a",
                       callbacks=[Gate(gate)])
    _wait_for(lambda: job.run_dir.is_dir())
    with pytest.raises(ValueError, match="still training"):
        queue.resume(job.run_dir, owner="a")
    queue.stop(job.id, owner="a")
    gate.set()
    queue.wait(job.id, timeout=600)
    assert isinstance(job.final, RunStopped)
    resumed = queue.resume(job.run_dir, owner="a")
    with pytest.raises(ValueError, match="already waiting in the queue or training|still training"):
        queue.resume(job.run_dir, owner="a")
    assert queue.wait(resumed.id, timeout=600)
    assert isinstance(resumed.final, RunFinished) and resumed.run_dir == job.run_dir
    assert [e.epoch for e in resumed.events() if isinstance(e, EpochEnd)] == [1, 2]
    assert not [e for e in resumed.events() if isinstance(e, Progress) and e.epoch > 2]


def test_starts_in_the_same_second_get_different_runs(textile_small, tmp_path, monkeypatch):
    ids = iter(["20260101-000000-mobilenet_v2-beef", "20260101-000000-mobilenet_v2-beef",
                "20260101-000000-mobilenet_v2-cafe"])
    monkeypatch.setattr("transfer_core.service.jobs.new_run_id", lambda backbone: next(ids))
    queue, gate = JobQueue(), threading.Event()
    cfg = TrainConfig(data=str(textile_small), **TINY)
    a, b = (queue.submit(cfg, tmp_path, o, callbacks=[Gate(gate)]) for o in ("a", "b"))
    assert a.id != b.id and {j.id for j in queue.jobs()} == {a.id, b.id}
    queue.stop(b.id, owner="b")
    gate.set()
    assert queue.wait(a.id, timeout=600) and isinstance(a.final, RunFinished)


class StepTimer(Callback):
    """In the training process (a child of the app's): during every other training step from epoch 2 on
    (epoch 1 warms up) it raises a flag file that the watchers in the app's process watch by, and it times
    every step. Watched and unwatched steps of the same run alternate within a second or so, so a busy
    machine slows both alike (epoch against epoch, measured 0.68 with no watchers at all while other work
    came and went). The step times go to a file at the end: the callback lives in the child."""

    def __init__(self, folder):
        self.flag, self.out = folder / "watch", folder / "steps.json"
        self.step_seconds = {"watched": [], "alone": []}
        self.last = None

    def before_epoch(self, trainer, epoch):
        self.epoch, self.last = epoch, None  # a step's time never spans validation
        self.flag.unlink(missing_ok=True)

    def extra_loss(self, trainer, batch, logits):
        """Called once per training step: time the step that just ended, then switch watching over."""
        now = time.perf_counter()
        if self.last is not None and self.epoch >= 2:
            self.step_seconds["watched" if self.last[1] else "alone"].append(now - self.last[0])
        watch = self.epoch >= 2 and not (self.last and self.last[1])
        if watch:
            self.flag.write_text(repr(time.time()))
        else:
            self.flag.unlink(missing_ok=True)
        self.last = (now, watch)

    def on_event(self, trainer, event):
        if isinstance(event, EpochEnd):
            self.flag.unlink(missing_ok=True)
        if isinstance(event, (RunFinished, RunFailed, RunStopped)):
            self.out.write_text(json.dumps(self.step_seconds))


class Watchers:
    """N threads in the app's process polling a job's events the way the app's live view does (every
    0.1 s), while the training process's StepTimer raises its flag."""

    def __init__(self, n: int, folder, every: float = 0.1):
        self.every, self.n, self.job, self.folder = every, n, None, folder
        self.done = threading.Event()
        self.latencies: list[float] = []
        self.fresh: list[list] = [[] for _ in range(n)]  # per watcher, the new events it saw, in its order
        self.lock = threading.Lock()

    def _resumed(self) -> float | None:
        """When watching last resumed; None while the flag is down."""
        try:
            return float((self.folder / "watch").read_text())
        except (OSError, ValueError):
            return None

    def _watch(self, me: int):
        seen = None  # events already there at the first look are history, not latency
        while not self.done.is_set():
            resumed = self._resumed()
            if resumed is None:
                time.sleep(0.05)
                continue
            events = self.job.events()
            now = time.time()
            fresh = events[seen:] if seen is not None else []
            seen = len(events)
            self.points = [(e.epoch, e.train_loss) for e in events if isinstance(e, (Progress, EpochEnd))]  # a chart
            with self.lock:  # time spent paused (an unwatched step) is not the watcher's delay
                self.latencies += [now - max(e.time, resumed) for e in fresh]
                self.fresh[me] += fresh
            time.sleep(self.every)

    def run(self, queue, cfg, runs_dir):
        self.job = queue.submit(cfg, runs_dir, owner="teacher", callbacks=[StepTimer(self.folder)])
        threads = [threading.Thread(target=self._watch, args=(i,), daemon=True) for i in range(self.n)]
        for t in threads:
            t.start()
        try:
            assert queue.wait(self.job.id, timeout=900)
        finally:
            self.done.set()
            for t in threads:
                t.join()
        self.step_seconds = json.loads((self.folder / "steps.json").read_text())
        return self.job


@pytest.mark.slow
def test_ten_watchers_keep_up_without_slowing_training(textile_small, tmp_path):
    """Engine side of the load test: 10 sessions watching one live run (the browser side is the app's), on
    the app's own executor: the run trains in a child process, the watchers poll in the app's. Only counts,
    order and ratios measured side by side: a busy machine slows training and watchers alike."""
    watchers = Watchers(10, tmp_path)
    # No quick start, so epoch 1 is the only warm-up (with it, epoch 2 would be the first to train stage 2).
    job = watchers.run(JobQueue(ChildProcess()),
                       TrainConfig(schedule="fixed", data=str(textile_small), image_size=96, batch_size=4, epochs=5,
                                   seed=0, freeze=2, quick_start_epochs=0), tmp_path / "runs")
    assert isinstance(job.final, RunFinished), job.final
    assert job.pid != os.getpid()
    log = job.events()
    for fresh in watchers.fresh:
        # every watcher saw the run move in every watched epoch, each event once, in the run's order
        assert {2, 3, 4, 5} <= {e.epoch for e in fresh}, [(type(e).__name__, e.epoch) for e in fresh]
        assert sorted(fresh, key=log.index) == fresh and len(set(map(id, fresh))) == len(fresh)
    watched, alone = (statistics.median(watchers.step_seconds[w]) for w in ("watched", "alone"))
    assert min(len(v) for v in watchers.step_seconds.values()) >= 10  # 4 epochs of 7 steps, alternating
    latencies = sorted(watchers.latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    epoch_s = statistics.median(e.seconds for e in log if isinstance(e, EpochEnd) and e.epoch >= 2)
    print(f"\nmedian step {alone * 1000:.0f} ms without watchers, {watched * 1000:.0f} ms with 10 "
          f"({alone / watched - 1:+.1%} speed); event-to-watcher latency p95 {p95 * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms; epochs {epoch_s:.2f} s")
    assert alone / watched >= 0.9  # training speed with watchers, relative to without
    assert p95 < 0.25 * epoch_s  # an event reaches every watcher within a quarter of an epoch


def test_the_queue_forgets_tasks_over_for_longer_than_it_keeps_them_and_never_one_still_going(monkeypatch):
    """A classroom server runs for weeks: every data check, export and finder result would stay in memory.
    A task over for longer than TASK_KEPT_S is dropped when the next one is submitted; one waiting or
    running is not, and waiting on a forgotten one returns at once."""
    from transfer_core.service import jobs

    queue, gate = JobQueue(), threading.Event()
    old = queue.submit_task("old", lambda report, stop: "old result")
    assert queue.wait(old.id, timeout=30) and queue.task(old.id).result == "old result"
    going = queue.submit_task("going", lambda report, stop: gate.wait(30))
    waiting = queue.submit_task("waiting", lambda report, stop: "later")
    assert queue.task(old.id) is not None, "kept while recent"
    monkeypatch.setattr(jobs, "TASK_KEPT_S", 0.0)
    time.sleep(0.01)
    queue.submit_task("new", lambda report, stop: None)
    assert queue.task(old.id) is None
    assert queue.wait(old.id, timeout=1)
    assert queue.task(going.id) is not None and queue.task(waiting.id) is not None, "still going: kept"
    gate.set()
    assert queue.wait(waiting.id, timeout=30) and queue.task(waiting.id).result == "later"
