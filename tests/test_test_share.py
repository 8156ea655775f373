"""A test share that nothing is tuned on: the validation pictures choose the best epoch and fit the
confidence, so with enough pictures (TEST_MIN_PER_CLASS in every class) half of them are kept for an honest
figure, reported as the headline on the Evaluate page, in the CLI summary and in the model card."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import copy_textile
from tests.test_app_pages import app_dirs, no_exception, page  # noqa: F401 - fixture
from transfer_core.core.config import TrainConfig
from transfer_core.data.datasets import TEST_MIN_PER_CLASS, scan_dataset
from transfer_core.inference.evaluation import evaluate_run
from transfer_core.runstore.runs import RunFolder
from transfer_core.workflows.train import train


@pytest.fixture(scope="module")
def fifty(tmp_path_factory) -> Path:
    return copy_textile(tmp_path_factory.mktemp("fifty") / "photos", TEST_MIN_PER_CLASS)


def names(samples) -> set[str]:
    return {str(s.path) for s in samples}


def test_enough_pictures_split_the_held_out_share_in_two_and_leave_training_alone(fifty):
    with_test = scan_dataset(fifty, val_split=0.2, seed=3)
    without = scan_dataset(fifty, val_split=0.2, seed=3, test_share=False)
    assert names(with_test.train) == names(without.train), "the test share comes out of the held-out pictures"
    assert names(with_test.val) | names(with_test.test) == names(without.val)
    assert not names(with_test.val) & names(with_test.test)
    assert len(with_test.test) == 3 * 5 and len(with_test.val) == 3 * 5  # 10 held out per class, half each
    assert sorted({s.label for s in with_test.test}) == [0, 1, 2]


def test_a_class_below_the_minimum_means_no_test_share(tmp_path, fifty):
    short = copy_textile(tmp_path / "short", TEST_MIN_PER_CLASS)
    victim = sorted((short / "local").glob("*.jpg"))[0]
    victim.unlink()  # 49 in one class
    report = scan_dataset(short)
    assert report.test == () and len(report.val) == 30  # all held-out pictures validate, as before


@pytest.mark.slow
def test_a_run_scores_its_test_share_with_the_saved_model(fifty, tmp_path):
    config = TrainConfig(schedule="fixed", data=str(fifty), epochs=1, image_size=64, freeze="all", val_split=0.2)
    result = train(config, runs_dir=tmp_path / "runs")
    final = result.final
    assert final.kind == "RunFinished", final
    run = RunFolder(result.run_dir)
    test = run.read_json("test.json")
    val = run.read_json("validation.json")
    assert len(test["names"]) == final.num_test == 15 and not set(test["names"]) & set(val["names"])
    probs, labels = torch.tensor(test["probs"]), torch.tensor(test["labels"])
    assert final.test_accuracy == pytest.approx(float((probs.argmax(1) == labels).float().mean()))
    assert evaluate_run(run.path, "test").evaluation.total == 15
    assert all(Path(p).is_file() for p in run.validation_images("test.json"))


def test_the_evaluate_page_leads_with_the_test_share_and_says_why(app_dirs, fifty):
    runs = app_dirs / "runs"
    result = train(TrainConfig(schedule="fixed", data=str(fifty), epochs=1, image_size=64, freeze="all"), runs_dir=runs)
    at = no_exception(page("pages/3_Evaluate.py").run())
    assert at.radio(key="evaluate_share").value == "test"
    assert any("used for nothing during training" in c.value for c in at.caption)
    assert {m.label: m.value for m in at.metric}["Test pictures"] == "15"
    at.radio(key="evaluate_share").set_value("validation").run()
    assert any("a little optimistic" in c.value for c in no_exception(at).caption)
    assert {m.label: m.value for m in at.metric}["Validation pictures"] == "15"
    assert result.run_dir.is_dir()
