"""Faults during training, on real textile images: out of memory, a full or unwritable disk, a killed
process, and resuming it. (A diverging run and a failing callback are in test_training.py.)"""
import errno
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import copy_textile

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import (
    DataReady,
    EpochEnd,
    Progress,
    RunFailed,
    RunFinished,
    RunStopped,
)
from transfer_core.inference.predict import predict
from transfer_core.runstore.runs import RunFolder, list_runs
from transfer_core.training.callbacks import Callback, EventLog
from transfer_core.workflows.train import CannotResume, resume, train

FAST = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0, freeze="all")
REPO = Path(__file__).resolve().parents[1]


def _cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transfer_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, **kw)


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(textile_small, tmp_path_factory) -> Path:
    """A finished run that every fault below must leave exactly as it was."""
    result = train(TrainConfig(data=str(textile_small), **FAST), runs_dir=tmp_path_factory.mktemp("runs"))
    assert isinstance(result.final, RunFinished), result.final
    return result.run_dir


def _assert_intact(run_dir: Path, before: dict[str, str], image: Path) -> None:
    assert _fingerprint(run_dir) == before
    assert RunFolder(run_dir).status() == "finished"
    assert predict(run_dir, [image], k=1)[0][0][0] in ("global", "local", "nominal")


# ------------------------------------------------------------------------------------------ out of memory
class GpuOutOfMemory(Callback):
    """Simulated: there is no GPU here, so the first training batch raises what CUDA raises."""

    def extra_loss(self, trainer, batch, logits):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 3.94 GiB total capacity)")


def test_out_of_gpu_memory_suggests_a_smaller_batch_or_image(textile_small, tmp_path):
    result = train(TrainConfig(data=str(textile_small), **FAST), runs_dir=tmp_path, callbacks=[GpuOutOfMemory()])
    assert isinstance(result.final, RunFailed)
    msg = result.final.error
    assert "GPU ran out of memory" in msg and "smaller batch size (now 8)" in msg and "smaller image size" in msg
    assert RunFolder(result.run_dir).status() == "failed"


# ------------------------------------------------------------------------------------------ disk full / unwritable
class _FullDisk:
    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass


def _save_onto_a_full_disk(obj, writer):
    """Simulated ENOSPC (no way to fill a real disk safely in a test): the file write fails part-way and
    torch reports it, as it really does, as a RuntimeError that no longer says why."""
    writer.write(b"PK\x03\x04")  # the first bytes get through
    writer.f = _FullDisk()
    try:
        writer.write(b"\x00" * 4096)
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534") from None


def test_disk_full_while_saving_fails_cleanly_and_keeps_earlier_runs(textile_small, earlier_run, tmp_path,
                                                                     monkeypatch):
    before = _fingerprint(earlier_run)
    monkeypatch.setattr(torch, "save", _save_onto_a_full_disk)
    result = train(TrainConfig(data=str(textile_small), **FAST), runs_dir=earlier_run.parent)
    monkeypatch.undo()
    assert isinstance(result.final, RunFailed)
    assert result.final.error.startswith("The disk is full") and "delete old runs" in result.final.error
    assert not list(result.run_dir.glob("*.tmp")) and not (result.run_dir / "best.pt").exists()
    assert RunFolder(result.run_dir).status() == "failed"
    _assert_intact(earlier_run, before, next(textile_small.glob("local/*.jpg")))


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 ** 20, 2 ** 20))  # python ignores SIGXFSZ: writes get EFBIG


def test_a_real_write_failure_is_explained_and_earlier_runs_survive(textile_small, earlier_run):
    """Real, not simulated: the kernel refuses to write past 1 MB in this process (RLIMIT_FSIZE works even
    for root, unlike chmod), so saving the ~9 MB model fails the way a full disk does."""
    before = _fingerprint(earlier_run)
    out = _cli("train", str(textile_small), "--freeze", "all", "--epochs", "1", "--image-size", "64",
               "--out", str(earlier_run.parent), "--json", preexec_fn=_limit_file_size)
    assert out.returncode == 1, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["status"] == "RunFailed" and summary["error"].startswith("The disk is full"), summary
    failed = Path(summary["run_dir"])
    assert not list(failed.glob("*.tmp")) and RunFolder(failed).status() == "failed"
    _assert_intact(earlier_run, before, next(textile_small.glob("nominal/*.jpg")))


class MakeRunFolderImmutable(Callback):
    """`chattr +i`: a directory nobody can add files to, root included (chmod does not stop root)."""

    def on_event(self, trainer, event):
        if isinstance(event, DataReady):
            subprocess.run(["chattr", "+i", str(trainer.run.path)], check=True, capture_output=True)


def test_unwritable_run_folder_fails_with_advice(textile_small, earlier_run):
    probe = earlier_run.parent / "probe"
    probe.mkdir()
    try:
        if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available on this filesystem (covered by the two tests above)")
    except FileNotFoundError:
        pytest.skip("chattr is not installed (covered by the two tests above)")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    probe.rmdir()
    before = _fingerprint(earlier_run)
    log = EventLog()
    try:
        result = train(TrainConfig(data=str(textile_small), **FAST), runs_dir=earlier_run.parent,
                       callbacks=[MakeRunFolderImmutable(), log])
    finally:
        for run in earlier_run.parent.iterdir():
            subprocess.run(["chattr", "-i", str(run)], capture_output=True)
    assert isinstance(result.final, RunFailed)
    assert result.final.error.startswith("The runs folder cannot be written"), result.final.error
    assert RunFolder(result.run_dir).status() == "failed"
    _assert_intact(earlier_run, before, next(textile_small.glob("global/*.jpg")))


# ------------------------------------------------------------------------------------------ status and resume rules
def test_a_reused_process_id_is_not_taken_for_a_running_trainer(textile_small, tmp_path):
    run = RunFolder.create(tmp_path, TrainConfig(data=str(textile_small), **FAST))
    assert run.status() == "running"  # this very process claimed it
    owner = json.loads((run.path / "process.json").read_text())
    (run.path / "process.json").write_text(json.dumps({**owner, "start": "another-boot:123"}))
    assert run.status() == "interrupted"  # same pid, but a different process (e.g. after a reboot)
    (run.path / "process.json").write_text(json.dumps({"pid": 2 ** 22 + 1}))  # above Linux's pid_max
    assert run.status() == "interrupted"


def test_resume_refuses_in_words(earlier_run, textile_small, tmp_path):
    with pytest.raises(CannotResume, match="already finished all its epochs"):
        resume(earlier_run)
    running = RunFolder.create(tmp_path, TrainConfig(data=str(textile_small), **FAST))
    with pytest.raises(CannotResume, match="still training"):
        resume(running.path)
    out = _cli("resume", str(tmp_path / "nothing-here"))
    assert out.returncode == 2 and "is not a run folder" in out.stderr


class StopDuringEpoch(Callback):
    def __init__(self, stop: threading.Event, epoch: int):
        self.stop, self.epoch = stop, epoch

    def on_event(self, trainer, event):
        if isinstance(event, Progress) and event.phase == "train" and event.epoch == self.epoch:
            self.stop.set()


def _epoch_figures(run_dir: Path) -> list[tuple]:
    return [(e.epoch, e.train_loss, e.val_loss, e.val_accuracy) for e in RunFolder(run_dir).epochs()]


@pytest.mark.slow
def test_resume_after_a_stop_mid_epoch_is_exact(textile_small, tmp_path):
    """Augmented views drawn from the seeded generator and a stage thawed at epoch 2 must all come back."""
    cfg = TrainConfig(schedule="fixed", data=str(textile_small), image_size=64, batch_size=8, epochs=3, seed=0, freeze=4,
                      augment="light", feature_views=2, unfreeze_at=(2,))
    whole = train(cfg, runs_dir=tmp_path)
    stop = threading.Event()
    part = train(cfg, runs_dir=tmp_path, callbacks=[StopDuringEpoch(stop, 3)], stop=stop)
    assert isinstance(part.final, RunStopped) and [e.epoch for e in RunFolder(part.run_dir).epochs()] == [1, 2]
    log = EventLog()
    resumed = resume(part.run_dir, callbacks=[log])
    assert isinstance(resumed.final, RunFinished) and resumed.run_dir == part.run_dir
    assert _epoch_figures(resumed.run_dir) == _epoch_figures(whole.run_dir)
    assert resumed.final.best_val_accuracy == whole.final.best_val_accuracy
    a, b = (torch.load(r / "best.pt", weights_only=True) for r in (whole.run_dir, resumed.run_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a watcher of the resumed job sees the whole history, each epoch once
    assert [e.epoch for e in log.snapshot() if isinstance(e, EpochEnd)] == [1, 2, 3]
    assert RunFolder(resumed.run_dir).status() == "finished"


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_reaches_the_same_quality(tmp_path):
    data = copy_textile(tmp_path / "data", 8)
    cfg = dict(schedule="fixed", image_size=64, batch_size=4, epochs=5, seed=0, freeze=4)
    args = [str(data), "--freeze", "4", "--epochs", "5", "--image-size", "64", "--batch-size", "4", "--seed", "0",
            "--schedule", "fixed"]
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "transfer_core", "train", *args, "--out", str(runs)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not list(runs.glob("*/checkpoint.pt")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # like closing the laptop lid on the app: no clean-up runs at all
    finally:
        proc.wait(timeout=60)
    (run_dir,) = runs.iterdir()
    done = torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < 5, "the run must be killed between its first checkpoint and its end"
    (summary,) = list_runs(runs)
    assert summary.status == "interrupted" and summary.epochs_run >= done
    with open(run_dir / "events.jsonl", "a") as f:
        f.write('{"kind": "EpochEnd", "run_id": "x", "epoch": 9, "val_acc')  # what a kill mid-write leaves
    assert [e.epoch for e in RunFolder(run_dir).epochs()][:done] == list(range(1, done + 1))

    out = _cli("resume", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["status"] == "RunFinished"
    whole = train(TrainConfig(data=str(data), **cfg), runs_dir=tmp_path / "uninterrupted")
    got, want = _epoch_figures(run_dir), _epoch_figures(whole.run_dir)
    assert [g[0] for g in got] == [1, 2, 3, 4, 5]
    for g, w in zip(got, want):  # another process, same seed: equal up to float summation order
        assert g[3] == w[3] and g[1:3] == pytest.approx(w[1:3], abs=1e-4), (g, w)
    assert RunFolder(run_dir).status() == "finished" and (run_dir / "best.pt").is_file()
