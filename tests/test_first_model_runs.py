"""A run that ends at its first model (the one click on few pictures) shows that model's accuracy, with its
95% range, in the run summary, every picker, the Runs table and Compare, which draws it as a point at
epoch 0. Real runs on real textile pictures (MobileNetV2's offline weights, CPU).

Before: the summary took the best EpochEnd, and a first-model run has none: "best accuracy -", Compare
"0% (really 0%-32%)" and empty charts."""
from __future__ import annotations

import pytest

from tests.test_app_pages import no_exception, page
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import EpochEnd, ModelReady, RunFinished, RunStopped
from transfer_core.core.metrics import wilson_interval
from transfer_core.results.compare import compare_runs
from transfer_core.runstore.runs import RunFolder, kept_model, list_runs
from transfer_core.service.workspaces import OwnerTag, new_token
from transfer_core.workflows.train import train

# 36 pictures, 7 validation ones; the one click with the classifier alone asked for (freeze: all) ends at the
# first model (RunFinished, 0 epochs), whatever cross-validation would say about fine-tuning (crossval.py).
FIRST_MODEL = dict(schedule="progressive", freeze="all", epochs=4, image_size=64, batch_size=8, seed=0)
FIXED = dict(schedule="fixed", freeze="all", epochs=2, image_size=64, batch_size=8, seed=0)


@pytest.fixture(scope="module")
def runs(textile_small, tmp_path_factory):
    """A first-model run and a fixed one, on the same pictures and split, owned by one person."""
    runs_dir, token = tmp_path_factory.mktemp("runs"), new_token()
    first = train(TrainConfig(data=str(textile_small), **FIRST_MODEL), runs_dir=runs_dir, callbacks=[OwnerTag(token)])
    fixed = train(TrainConfig(data=str(textile_small), **FIXED), runs_dir=runs_dir, callbacks=[OwnerTag(token)])
    assert isinstance(first.final, RunFinished) and first.final.epochs_run == 0, first.final
    assert isinstance(fixed.final, RunFinished) and fixed.final.epochs_run == 2, fixed.final
    return runs_dir, token, first.run_dir, fixed.run_dir


def _ready(run_dir) -> ModelReady:
    return next(e for e in RunFolder(run_dir).events() if isinstance(e, ModelReady))


def test_the_summary_of_a_first_model_run_is_the_first_models_accuracy_and_range(runs):
    runs_dir, _token, first, _fixed = runs
    (summary,) = [s for s in list_runs(runs_dir) if s.path == first]
    ready = _ready(first)
    assert summary.best_val_accuracy == pytest.approx(ready.val_accuracy) and summary.best_val_accuracy > 0
    assert summary.best_epoch == 0 and summary.epochs_run == 0
    assert 0 < summary.num_val < 20
    correct = round(ready.val_accuracy * summary.num_val)
    assert summary.interval == pytest.approx(wilson_interval(correct, summary.num_val))
    assert summary.interval[0] < summary.best_val_accuracy <= summary.interval[1]


def test_the_picker_label_shows_the_accuracy_and_its_range(runs):
    from ui.common import kept_model_word, run_label

    runs_dir, _token, first, _fixed = runs
    (summary,) = [s for s in list_runs(runs_dir) if s.path == first]
    label = run_label(summary)
    low, high = summary.interval
    assert f"best accuracy {summary.best_val_accuracy:.1%} (95% sure: {low:.0%}-{high:.0%})" in label, label
    assert "best accuracy -" not in label
    assert kept_model_word(summary) == "first model"


def test_compare_uses_the_first_models_accuracy_and_draws_it_as_a_point_at_epoch_0(runs):
    from ui import charts

    _runs_dir, _token, first, fixed = runs
    ready = _ready(first)
    result = compare_runs([first, fixed])
    assert result.runs[0].epochs == [0] and result.runs[0].values["val_accuracy"] == [pytest.approx(ready.val_accuracy)]
    assert result.runs[0].values["train_loss"] == [None]  # the first model has no training-loss figure
    assert result.runs[1].epochs == [1, 2]
    assert result.best[0][0] == pytest.approx(ready.val_accuracy)
    assert result.aligned()["epoch"] == [0, 1, 2]
    message = result.verdict.message  # same pictures, same split: the two kept models are weighed
    assert any(f"{ready.val_accuracy:.0%} ({w}" in message for w in ("really", "in ")), message
    _loss, acc = charts.compared_runs(result)
    points = [(list(t.x), list(t.y)) for t in acc.data]
    assert ([0], [pytest.approx(ready.val_accuracy)]) in points, points


def test_the_runs_page_table_and_compare_show_the_first_model(runs, monkeypatch):
    runs_dir, token, first, fixed = runs
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(runs_dir))
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(runs_dir.parent / "workspaces"))
    at = no_exception(page("pages/5_Runs.py", token).run(timeout=120))
    table = at.dataframe[0].value
    row = table[table["kept model"] == "first model"]
    assert len(row) == 1 and row["epochs"].iloc[0] == 0
    assert row["best accuracy"].iloc[0] == f"{_ready(first).val_accuracy:.1%}"
    assert row["95% sure between"].iloc[0] not in ("-", "")
    shown = "\n".join(m.value for m in at.markdown)
    assert "The kept model's validation accuracy" in shown and "first model" in shown, shown


def _events(*pairs, final=None):
    """ModelReady for epoch 0, EpochEnd for the others."""
    out = [ModelReady(run_id="r", time=0.0, val_accuracy=a) if e == 0 else
           EpochEnd(run_id="r", time=float(e), epoch=e, val_accuracy=a) for e, a in pairs]
    return out + ([final] if final else [])


def test_a_running_run_keeps_its_first_model_until_an_epoch_beats_it():
    assert kept_model(_events((0, 0.8), (1, 0.7), (2, 0.8))) == (0.8, 0)  # level is not better
    assert kept_model(_events((0, 0.8), (1, 0.7), (2, 0.9))) == (0.9, 2)
    assert kept_model(_events((0, 0.8), final=RunStopped(run_id="r", time=9.0, best_val_accuracy=0.8))) == (0.8, 0)
    assert kept_model(_events((0, 0.5), (1, 0.75), final=RunFinished(run_id="r", time=9.0, best_val_accuracy=0.5,
                                                                      best_epoch=0))) == (0.5, 0)
    assert kept_model([]) == (None, None)
