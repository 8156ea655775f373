"""The engine's speed comes from not repeating work; these tests check the work is really skipped,
by counting what runs (forward calls, autograd state), not by timing, so they hold on a busy machine."""
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import copy_textile

from transfer_core.core.config import TrainConfig
from transfer_core.core.device import plan_for
from transfer_core.core.events import RunFinished
from transfer_core.data.imagecache import ImageStore
from transfer_core.models.backbones import get_backbone
from transfer_core.training.callbacks import Callback
from transfer_core.workflows.train import train

FAST = dict(schedule="fixed", image_size=64, batch_size=8, seed=0)
REPO = Path(__file__).resolve().parents[1]


class StageCalls(Callback):
    """Counts forward calls of every backbone stage and of the head, per phase of the run, and whether
    autograd was on while each ran."""

    def before_fit(self, trainer):  # runs before the frozen part's outputs are cached
        self.phase = "preparing"
        self.calls: Counter = Counter()
        self.grad_enabled: dict[str, set] = {}
        self.num_stages = trainer.net.num_stages
        parts = [(f"stage{i}", m) for i, m in enumerate(trainer.net.stages)] + [("head", trainer.net.head)]
        for name, module in parts:
            module.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def hook(module, inputs, output):
            self.calls[(self.phase, name)] += 1
            self.grad_enabled.setdefault(f"{self.phase}:{name}", set()).add(torch.is_grad_enabled())
        return hook

    def before_epoch(self, trainer, epoch):
        self.phase = f"epoch{epoch}"

    def after_fit(self, trainer):
        self.phase = "finish"

    def stage_calls(self, phase: str, stages) -> int:
        return sum(self.calls[(phase, f"stage{i}")] for i in stages)


@pytest.mark.parametrize("augment,views", [("none", 1), ("light", 2)])
def test_feature_extraction_runs_the_backbone_once_then_only_the_head(textile_small, tmp_path, augment, views):
    calls = StageCalls()
    result = train(TrainConfig(data=str(textile_small), freeze="all", augment=augment, feature_views=views,
                               epochs=3, **FAST), runs_dir=tmp_path, callbacks=[calls])
    assert isinstance(result.final, RunFinished), result.final
    every_stage = range(calls.num_stages)
    assert calls.stage_calls("preparing", every_stage) > 0  # features computed once, up front
    for phase in ("epoch1", "epoch2", "epoch3"):
        assert calls.stage_calls(phase, every_stage) == 0, phase  # no backbone work, validation included
    # At the end, the unfamiliar-picture check needs the training pictures as Predict sees them: the cache
    # holds exactly that without augmentation (no backbone work); augmented views are not, so those
    # pictures go through the backbone once, in chunks of 64, and the validation ones never again.
    n_train = json.loads(result.run_dir.joinpath("dataset.json").read_text())["num_train"]
    once = 0 if augment == "none" else calls.num_stages * math.ceil(n_train / 64)
    assert calls.stage_calls("finish", every_stage) == once
    assert all(calls.calls[(p, "head")] > 0 for p in ("epoch1", "epoch2", "epoch3"))  # yet training happened


def test_partly_frozen_without_augmentation_caches_the_frozen_stages(textile_small, tmp_path):
    calls = StageCalls()
    result = train(TrainConfig(data=str(textile_small), freeze=3, augment="none", epochs=2, **FAST),
                   runs_dir=tmp_path, callbacks=[calls])
    assert isinstance(result.final, RunFinished), result.final
    frozen, learning = range(3), range(3, calls.num_stages)
    assert calls.stage_calls("preparing", frozen) > 0
    assert calls.stage_calls("epoch2", frozen) == 0
    assert calls.stage_calls("epoch2", learning) > 0


def test_frozen_stages_run_without_autograd_on_fresh_augmented_batches(textile_small, tmp_path):
    calls = StageCalls()
    # feature_views=0: a fresh augmented view every batch, so the frozen part must run every batch.
    result = train(TrainConfig(data=str(textile_small), freeze=3, augment="strong", feature_views=0, epochs=1,
                               **FAST), runs_dir=tmp_path, callbacks=[calls])
    assert isinstance(result.final, RunFinished), result.final
    assert calls.stage_calls("epoch1", range(3)) > 0
    for i in range(3):
        assert calls.grad_enabled[f"epoch1:stage{i}"] == {False}, i
    # The learning stages do train with autograd in the same epoch (so the check above can tell).
    assert True in calls.grad_enabled[f"epoch1:stage{calls.num_stages - 1}"]


def test_image_store_streams_beyond_its_budget_and_gives_identical_batches(textile_small):
    paths = sorted(textile_small.rglob("*.jpg"))[:10]
    prep = get_backbone("mobilenet_v2").preprocessing.at_size(64)
    cached = ImageStore(paths, prep, budget_bytes=10 * 2 ** 20)
    need = cached.item_bytes * len(paths)
    streamed = ImageStore(paths, prep, budget_bytes=need - 1)
    assert cached.in_memory and cached.nbytes == need
    assert not streamed.in_memory and streamed.nbytes == 0 and streamed.data is None
    idx = torch.tensor([7, 0, 3, 3, 9])
    a, b = cached.batch(idx), streamed.batch(idx)
    assert a.dtype == torch.uint8 and a.shape == (5, 3, prep.resize, prep.resize)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # real, different images


def test_gpu_gets_mixed_precision_and_pinned_memory_and_the_cpu_does_not_but_both_get_channels_last():
    # Pure decision logic on device descriptors: torch.device("cuda") needs no GPU to exist.
    gpu, cpu = plan_for(torch.device("cuda", 0)), plan_for(torch.device("cpu"))
    assert (gpu.amp, gpu.channels_last, gpu.pin_memory) == (True, True, True)
    assert (cpu.amp, cpu.channels_last, cpu.pin_memory) == (False, True, False)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # ~2 min on an idle 2-core machine; far longer when many jobs share it
def test_benchmark_quick_prints_every_figure_on_real_images(tmp_path):
    data = copy_textile(tmp_path / "data", 8)
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "benchmark.py"), str(data), "--quick",
                           "--image-size", "64", "--json", str(out)], capture_output=True, text=True, timeout=2300)
    assert done.returncode == 0, done.stderr[-3000:]
    device = "GPU" if torch.cuda.is_available() else "CPU"  # the benchmark names the device it ran on
    for words in ("limit", "engine", "plain recipe", "2/1", "3/4", "feature extraction", "peak memory", device):
        assert words in done.stdout, words
    figures = json.loads(out.read_text())
    for row in figures["throughput"]:
        assert row["limit_train"] > 0 and row["engine_epoch"] > 0 and row["ratio_epoch"] > 0
    assert 0 <= figures["plain"]["accuracy"] <= 1 and figures["plain"]["seconds"] > 0
    fe = figures["feature_extraction"]
    assert fe["later_epoch_s"] < fe["first_epoch_s"]  # features computed once: later epochs are cheaper
    assert 100 < figures["peak_rss_mb"] < 16000


class StageWeights(StageCalls):
    """Also keeps a copy of one stage's weights at the start of every epoch and at the end."""

    def __init__(self, stage: int):
        self.stage, self.snapshots = stage, {}

    def _snap(self, trainer, key):
        self.snapshots[key] = [p.detach().clone() for p in trainer.net.stages[self.stage].parameters()]

    def before_epoch(self, trainer, epoch):
        super().before_epoch(trainer, epoch)
        self._snap(trainer, epoch)

    def after_fit(self, trainer):
        super().after_fit(trainer)
        self._snap(trainer, "end")

    def changed(self, a, b) -> bool:
        return any(not torch.equal(x, y) for x, y in zip(self.snapshots[a], self.snapshots[b]))


def test_quick_start_keeps_one_more_stage_frozen_first_then_thaws_it_from_the_kept_cache(textile_small, tmp_path,
                                                                                           monkeypatch):
    from transfer_core.training.features import FeatureCache
    computed = []  # (phase, depth) of every pass of the images through the first stages
    original = FeatureCache._compute

    def counting(cache, store, view_fn, stages, dest):
        computed.append((watch.phase, len(list(stages.children()))))  # the frozen stages it runs (no pooling here)
        return original(cache, store, view_fn, stages, dest)

    monkeypatch.setattr(FeatureCache, "_compute", counting)
    watch = StageWeights(stage=3)
    result = train(TrainConfig(data=str(textile_small), freeze=3, quick_start_epochs=1, augment="none", epochs=3,
                               **FAST), runs_dir=tmp_path, callbacks=[watch])
    assert isinstance(result.final, RunFinished), result.final
    assert not watch.changed(1, 2)  # epoch 1: stage 3 stays as pretrained (its output is cached)
    assert watch.changed(2, 3)  # in epoch 2 it learns, as freeze=3 asks (the end restores the best epoch's)
    # The thaw needs stage 2's output: computed once at the start (training and validation images) and
    # kept; stage 3's output came from it. Stages 0-2 never run over the images again.
    assert computed == [("preparing", 3), ("preparing", 3)]
    plan = next(json.loads(line) for line in (result.run_dir / "events.jsonl").read_text().splitlines()
                if '"DataReady"' in line)["plan"]
    assert "Quick start" in plan


def test_every_thaw_runs_on_from_outputs_kept_at_the_shallowest_depth_so_the_pictures_pass_once(
        textile_small, tmp_path, monkeypatch):
    """Gradual unfreezing from freeze 4, stages 3 then 2 at epochs 2 and 3: stage 2's outputs are computed
    at the start and kept; depths 4 and 3 run on from them. Before, only the next thaw's depth was kept, so
    every other thaw ran the pictures through the first stages again (the progressive schedule's 2-stage
    first thaw, every time)."""
    from transfer_core.training.features import FeatureCache
    from transfer_core.training.thaw import ThawSchedule
    assert ThawSchedule({2: 1, 3: 1}).depths_to_keep(0, 4) == [2, 3]  # the shallowest first, then the next
    assert ThawSchedule({1: 2, 2: 1}).depths_to_keep(1, 4) == [3]
    assert ThawSchedule({2: 1}).depths_to_keep(2, 3) == []
    computed = []
    original = FeatureCache._compute

    def counting(cache, store, view_fn, stages, dest):
        computed.append(len(list(stages.children())))
        return original(cache, store, view_fn, stages, dest)

    monkeypatch.setattr(FeatureCache, "_compute", counting)
    result = train(TrainConfig(data=str(textile_small), freeze=4, unfreeze_at=(2, 3), augment="none", epochs=3,
                               **FAST), runs_dir=tmp_path)
    assert isinstance(result.final, RunFinished), result.final
    assert computed == [2, 2], computed  # training and validation pictures, once, through stages 0-1


def test_quick_start_is_off_for_feature_extraction_and_for_runs_saved_before_it(textile_small, tmp_path):
    calls = StageCalls()
    result = train(TrainConfig(data=str(textile_small), freeze="all", epochs=2, **FAST), runs_dir=tmp_path,
                   callbacks=[calls])
    assert isinstance(result.final, RunFinished)
    assert calls.calls[("epoch2", "head")] > 0 and calls.stage_calls("epoch2", range(calls.num_stages)) == 0
    old = TrainConfig(data="x").to_dict()
    del old["quick_start_epochs"]
    assert TrainConfig.from_dict(old).quick_start_epochs == 0


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_frozen_stages_folded_for_caching_compute_the_same_outputs(name):
    from torch import nn

    from transfer_core.models.backbones import build_network
    from transfer_core.training.features import frozen_part

    net = build_network(name, 3).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(4, 3, 96, 96)
    part = frozen_part(net, 0, 3, channels_last=True)
    with torch.no_grad():
        expected = net.run_stages(x, 0, 3)
        got = part(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(expected, got, atol=1e-4, rtol=1e-4)
    if name == "mobilenet_v2":  # timm's fused BatchNorm+activation layers are left as they are (still equal)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in part.modules())  # every BatchNorm folded away
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the network is untouched
