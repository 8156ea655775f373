"""Comparing runs: two real tiny runs line up by epoch, their differing settings are listed, and the
Wilson check says when a validation set is too small to tell two accuracies apart."""
import json

import pytest
import torch

from transfer_core import cli
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import RunFinished
from transfer_core.core.metrics import evaluate_predictions
from transfer_core.inference.evaluation import describe_accuracy
from transfer_core.results.compare import (
    compare_runs,
    images_needed,
    setting_differences,
    tell_apart,
)
from transfer_core.workflows.train import train

TINY = dict(schedule="fixed", image_size=64, batch_size=8, seed=0, freeze="all")


@pytest.fixture(scope="module")
def two_runs(textile_small, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    a = train(TrainConfig(data=str(textile_small), epochs=2, lr=1e-3, **TINY), runs_dir=runs)
    b = train(TrainConfig(data=str(textile_small), epochs=3, lr=1e-2, **TINY), runs_dir=runs)
    assert isinstance(a.final, RunFinished) and isinstance(b.final, RunFinished)
    return a.run_dir, b.run_dir


def test_two_real_runs_align_by_epoch_and_list_what_differs(two_runs, capsys):
    a, b = two_runs
    result = compare_runs([a, b])
    assert [r.epochs for r in result.runs] == [[1, 2], [1, 2, 3]]
    assert result.differences == {"epochs": [2, 3], "lr": [1e-3, 1e-2]}
    table = result.aligned("val_accuracy")
    assert table["epoch"] == [1, 2, 3]
    assert table[a.name][2] is None and table[b.name][2] is not None  # the shorter run simply ends
    assert table[b.name] == result.runs[1].values["val_accuracy"]
    rows = result.long_rows()
    assert len(rows) == 5 and {r["run"] for r in rows} == {a.name, b.name}
    assert all(0 <= r["val_accuracy"] <= 1 and r["train_loss"] > 0 for r in rows)
    # 36 real images, 20% validate: far too few to call a winner, and the verdict says so.
    assert [n for _, n in result.best] == [len(json.loads((a / "validation.json").read_text())["labels"])] * 2
    assert result.verdict is not None and not result.verdict.distinguishable
    assert cli.main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.001 | 0.01" in out and "Too few validation images" in out
    with pytest.raises(ValueError, match="at least two"):
        compare_runs([a])


def test_differences_across_three_configs_cover_every_changed_setting():
    base = TrainConfig(data="d")
    configs = [base, TrainConfig(data="d", epochs=9), TrainConfig(data="d", augment="light")]
    assert setting_differences(configs) == {"epochs": [8, 9, 8], "augment": ["none", "none", "light"]}


def test_twenty_images_cannot_tell_85_from_90_percent():
    verdict = tell_apart(0.85, 20, 0.90, 20)
    assert not verdict.distinguishable
    assert "Too few validation images" in verdict.message and "overlap" in verdict.message
    assert verdict.intervals[0][0] < 0.7  # 17 of 20 right could be a 65% model


def test_two_thousand_images_tell_80_from_90_percent():
    verdict = tell_apart(0.80, 2000, 0.90, 2000)
    assert verdict.distinguishable and "do not overlap" in verdict.message


def test_the_images_needed_are_enough_and_not_far_more_than_enough():
    n = images_needed(0.85, 0.90)
    assert tell_apart(0.85, n, 0.90, n).distinguishable
    assert not tell_apart(0.85, int(n * 0.8), 0.90, int(n * 0.8)).distinguishable
    assert images_needed(0.9, 0.9) is None


def test_accuracy_is_reported_with_its_interval_and_a_small_set_warning():
    labels = torch.zeros(20, dtype=torch.long)
    probs = torch.zeros(20, 2)
    probs[:18, 0] = probs[18:, 1] = 1.0  # 18 of 20 right
    small = describe_accuracy(evaluate_predictions(labels, probs, ["a", "b"]))
    assert "90.0%" in small and "69.9%" in small and "cannot be told apart" in small
    big = describe_accuracy(evaluate_predictions(labels.repeat(100), probs.repeat(100, 1), ["a", "b"]))
    assert "cannot be told apart" not in big


def test_runs_on_other_pictures_are_not_compared(two_runs, textile_small, tmp_path):
    # A trial compared 98% from 400 images with 50% from 6 images and called the difference real.
    a, _ = two_runs
    other_split = train(TrainConfig(data=str(textile_small), epochs=1, val_split=0.4, **TINY),
                        runs_dir=tmp_path).run_dir
    result = compare_runs([a, other_split])
    assert result.verdict is None
    assert result.not_comparable and "other validation pictures" in result.not_comparable
    assert compare_runs(list(two_runs)).not_comparable is None  # same pictures: compared as before
