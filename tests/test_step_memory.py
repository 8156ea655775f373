"""A batch too big for the step-memory budget is learned from in parts: same update, lower peak memory.

Real offline MobileNetV2 and real textile images throughout.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from transfer_core.core.config import TrainConfig
from transfer_core.models.freezing import set_train_mode
from transfer_core.training.stepmemory import (
    bytes_per_image,
    part_size,
    saved_bytes,
    split_count,
)
from transfer_core.workflows.lr_finder import _prepared_trainer

ROOT = Path(__file__).resolve().parents[1]


def _trainer(data: Path, tmp_path: Path, **config):
    return _prepared_trainer(TrainConfig(schedule="fixed", data=str(data), batch_size=12, **config), str(tmp_path), None)


def test_split_never_leaves_a_single_image_and_respects_the_budget():
    assert part_size(32, per_image=75 * 2 ** 20, budget_mb=1200) == 16
    assert part_size(32, per_image=10 * 2 ** 20, budget_mb=1200) == 32  # fits: the whole batch
    assert part_size(32, per_image=10 ** 12, budget_mb=1) == 2  # never below 2 (BatchNorm)
    assert part_size(32, per_image=10 ** 12, budget_mb=0) == 32  # 0 = never split
    assert split_count(32, 16) == 2 and split_count(33, 16) == 3 and split_count(3, 2) == 1
    assert all(n // split_count(n, 2) >= 2 for n in range(2, 40))


def test_probe_measures_activations_without_touching_batchnorm(textile_small, tmp_path):
    trainer = _trainer(textile_small, tmp_path, freeze=0)
    net = trainer.net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    x = torch.zeros(2, 3, 224, 224)
    one, two = saved_bytes(net, x[:1], 0), saved_bytes(net, x, 0)
    assert two > one > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # running stats unchanged
    assert [m.training for m in net.modules()] == modes
    # Full fine-tuning keeps far more per image than training the last stages on cached inputs.
    full = bytes_per_image(net, x, 0)
    frozen = _trainer(textile_small, tmp_path / "b", freeze=3)
    h, start = frozen.feature_cache.run_frozen(x, frozen.depth)
    assert full > 3 * bytes_per_image(frozen.net, h, start)
    assert 20 * 2 ** 20 < full < 200 * 2 ** 20  # MobileNetV2 at 224 px: tens of MB per image


@pytest.mark.parametrize("freeze", ["all", 0])
def test_parts_give_the_same_update(textile_small, tmp_path, freeze):
    """Feature extraction: exactly the same step. Full fine-tuning: BatchNorm sees each part's statistics,
    so the step differs slightly; the loss reported is the same weighted mean of the same images."""
    trainer = _trainer(textile_small, tmp_path / "a", freeze=freeze)
    twin = _trainer(textile_small, tmp_path / "b", freeze=freeze)  # same seed: the same start
    assert all(torch.equal(a, b) for a, b in zip(trainer.net.parameters(), twin.net.parameters()))
    trainer.part_size, twin.part_size = 12, 4  # twin: 3 parts of 4
    idx = torch.arange(12)
    loss_whole, correct_whole = trainer.train_step(trainer.train_batch(idx, 1), lr_scale=1.0)
    loss_parts, correct_parts = twin.train_step(twin.train_batch(idx, 1), lr_scale=1.0)
    head, head_twin = trainer.net.head.state_dict(), twin.net.head.state_dict()
    if freeze == "all":
        assert loss_parts == pytest.approx(loss_whole, rel=1e-5)
        assert correct_parts == correct_whole
        assert all(torch.allclose(head[k], head_twin[k], atol=1e-6) for k in head)
    else:
        assert loss_parts == pytest.approx(loss_whole, rel=0.05)
        moved = sum(float((head[k] - head_twin[k]).abs().max()) for k in head)
        assert moved < 1e-2  # AdamW's first step moves each weight by about lr (1e-3)


PEAK_CHILD = """
import json, sys, threading, tempfile
from pathlib import Path
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import Progress
from transfer_core.training.callbacks import Callback
from transfer_core.workflows.train import make_trainer

class StopAfter(Callback):
    def __init__(self, stop): self.stop = stop
    def on_event(self, trainer, event):
        if isinstance(event, Progress) and event.phase == "train" and event.step >= 2:
            self.stop.set()

stop = threading.Event()
config = TrainConfig(schedule="fixed", data=sys.argv[1], freeze=0, batch_size=32, step_memory_mb=int(sys.argv[2]), max_images=64)
trainer = make_trainer(config, runs_dir=tempfile.mkdtemp(), callbacks=[StopAfter(stop)], stop=stop)
trainer.run_training()
hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
print(json.dumps({"peak_mb": hwm / 1024, "part_size": trainer.part_size}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc (Linux)")
def test_full_fine_tuning_peaks_lower_in_parts(textile_full):
    """Two real full-fine-tuning runs, batch 32, stopped after 2 steps: one whole, one within 600 MB."""
    def peak(budget: int) -> dict:
        out = subprocess.run([sys.executable, "-c", PEAK_CHILD, str(textile_full), str(budget)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    whole, parts = peak(0), peak(600)
    assert whole["part_size"] == 32 and parts["part_size"] < 16
    assert whole["peak_mb"] - parts["peak_mb"] > 800, (whole, parts)


def _sgd_step(trainer, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """How far one training step moves every learning weight."""
    set_train_mode(trainer.net, trainer.depth)  # as in an epoch: learning BatchNorm uses batch statistics
    before = {n: p.detach().clone() for n, p in trainer.net.named_parameters() if p.requires_grad}
    trainer.train_step(trainer.train_batch(idx, 1), lr_scale=1.0)
    return {n: p.detach() - before[n] for n, p in trainer.net.named_parameters() if n in before}


def _distance(a: dict, b: dict) -> float:
    """Relative distance between two updates (0: the same step)."""
    diff = sum(float((a[n] - b[n]).pow(2).sum()) for n in a)
    return (diff / sum(float(v.pow(2).sum()) for v in b.values())) ** 0.5


def _reference_step(trainer, idx: torch.Tensor, count: int) -> dict[str, torch.Tensor]:
    """The step gradient accumulation should take, written out: every part's own forward and backward
    (a learning BatchNorm normalises each part by that part's statistics), its loss weighted by its
    share of the batch, then one plain SGD step."""
    set_train_mode(trainer.net, trainer.depth)
    batch = trainer.train_batch(idx, 1)
    params = {n: p for n, p in trainer.net.named_parameters() if p.requires_grad}
    for part in batch.parts(count):
        logits = trainer.net(part.x, part.start)
        loss = F.cross_entropy(logits, part.y, label_smoothing=trainer.config.label_smoothing)
        (loss * len(part.y) / len(batch.y)).backward()
    return {n: -trainer.config.lr * p.grad for n, p in params.items()}


# Plain SGD without momentum or decay: the step is lr x gradient, so a wrongly weighted part shows in
# the step (AdamW's first step is about lr x sign(gradient), which hides a wrong weight). No dropout:
# its random masks differ between one batch and its parts, which is not what this compares.
SGD = dict(optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=1e-2, dropout=0.0)


@pytest.mark.parametrize("freeze", ["all", 0])
def test_parts_give_the_same_sgd_step(textile_small, tmp_path, freeze):
    """Frozen BatchNorm (feature extraction): parts give the whole batch's step to float precision.
    Learning BatchNorm (freeze 0): each part is normalised by its own statistics, so the step is exactly
    the share-weighted sum of the parts' own gradients, and close to (not equal to) the whole batch's."""
    whole, parts, written_out = (_trainer(textile_small, tmp_path / n, freeze=freeze, **SGD) for n in "abc")
    whole.part_size, parts.part_size = 12, 4  # parts: 3 of 4 images
    idx = torch.arange(12)
    step_whole, step_parts = _sgd_step(whole, idx), _sgd_step(parts, idx)
    assert sum(float(v.abs().sum()) for v in step_whole.values()) > 0
    if freeze == "all":
        assert _distance(step_parts, step_whole) < 1e-4
    else:
        assert _distance(step_parts, _reference_step(written_out, idx, 3)) < 1e-4
        assert _distance(step_parts, step_whole) < 0.5  # same direction; BatchNorm's statistics differ


def test_with_every_stage_frozen_the_sizes_are_known_without_running_the_network():
    """Only the classifier learns on pooled features: a batch is one part, and a cached item is feature_dim
    floats, the same as a probe through the network gives; neither runs the network for it."""
    from transfer_core.models.backbones import build_network
    from transfer_core.training.features import FeatureCache
    from transfer_core.training.stepmemory import part_size_for

    net = build_network("mobilenet_v2", 3).eval()

    def must_not_run(*_a):
        raise AssertionError("the network was run")

    assert part_size_for(net, must_not_run, 64, net.num_stages, torch.device("cpu"), 32, 1) == 32
    cache = FeatureCache.__new__(FeatureCache)
    cache.net, cache.device = net, torch.device("cpu")
    with torch.no_grad():
        pooled = net.pool(net.run_stages(torch.zeros(1, 3, 64, 64), 0, net.num_stages))
    assert cache._bytes_per_item(net.num_stages) == pooled.numel() * pooled.element_size()
