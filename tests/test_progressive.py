"""The progressive schedule: a usable model before the first epoch, then stages thaw from the top.

Real offline MobileNetV2 weights and real textile pictures throughout (small sizes, CPU)."""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.test_app_pages import app_dirs, page  # noqa: F401 - app_dirs is a fixture
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import (
    FINAL_ASKED,
    FINAL_SMALL_DATA,
    DataReady,
    EpochEnd,
    ModelReady,
    Progress,
    RunFinished,
    StageThawed,
)
from transfer_core.inference.predict import load_model, predict_probs
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder
from transfer_core.training import crossval, progressive
from transfer_core.training.callbacks import Callback
from transfer_core.training.instant import (
    STRENGTHS,
    _simplest_good,
    class_weights,
    fit_head,
)
from transfer_core.training.selection import BestEpoch
from transfer_core.workflows.train import train

FAST = dict(image_size=64, batch_size=8, seed=0, schedule="progressive")
REAL_MIN_VAL = progressive.MIN_VAL_TO_FINE_TUNE


@pytest.fixture(autouse=True)
def fine_tune_small_data(monkeypatch):
    """These tests watch fine-tuning on 36 pictures (4 validation ones), for speed; the one click ends such a
    run at the first model (small data). The tests of that rule set the real threshold back (REAL_MIN_VAL)."""
    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", 0)


class PredictWhenReady(Callback):
    """At ModelReady, while the run goes on: load the run folder as Predict does and classify pictures."""

    def __init__(self, pictures):
        self.pictures, self.kinds, self.probs = pictures, [], None

    def on_event(self, trainer, event):
        self.kinds.append(event.kind)
        if isinstance(event, ModelReady):
            model = load_model(trainer.run.path)
            self.probs = predict_probs(model, self.pictures)
            self.depth_then = trainer.depth


def test_a_usable_model_is_saved_before_the_first_epoch(textile_small, tmp_path):
    pictures = sorted((textile_small / "nominal").iterdir())[:3]
    watch = PredictWhenReady(pictures)
    result = train(TrainConfig(data=str(textile_small), freeze=4, epochs=3, **FAST), runs_dir=tmp_path,
                   callbacks=[watch])
    assert isinstance(result.final, RunFinished), result.final
    assert watch.kinds.index("ModelReady") < watch.kinds.index("EpochEnd"), "the model comes before any epoch"
    assert watch.probs is not None and watch.probs.shape == (3, 3)
    assert torch.allclose(watch.probs.sum(1), torch.ones(3), atol=1e-4)
    assert watch.depth_then == 6, "the instant model is the head alone: every stage still frozen"
    run = RunFolder(result.run_dir)
    ready = [e for e in run.events() if isinstance(e, ModelReady)]
    assert len(ready) == 1 and 0 <= ready[0].val_accuracy <= 1 and ready[0].seconds > 0
    epochs = [e for e in run.events() if isinstance(e, EpochEnd)]
    assert 1 <= len(epochs) <= 3


def test_after_the_first_model_the_chosen_stages_learn_the_lowest_an_epoch_later(textile_small, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setattr(progressive, "AUTO_BUDGET", 1000.0)  # epochs 1 and 2 both come, whatever the machine
    depths = []

    class Depth(Callback):
        def after_epoch(self, trainer, epoch, extra):
            depths.append(trainer.depth)

    result = train(TrainConfig(data=str(textile_small), freeze=3, epochs=3, **FAST), runs_dir=tmp_path,
                   callbacks=[Depth()])
    assert depths == [4, 3, 3], depths  # MobileNetV2: 6 stages; never deeper than the freeze depth chosen
    thaws = [e for e in RunFolder(result.run_dir).events() if isinstance(e, StageThawed)]
    assert [(t.epoch, t.stage, t.depth) for t in thaws] == [
        (1, "last conv", 5), (1, "stage 4 (7px)", 4), (2, "stage 3 (14px)", 3)]
    assert progressive.thaw_plan(1) == {1: 1} and progressive.thaw_plan(0) == {}


def test_the_curves_mark_the_first_model_and_each_thaw():
    from ui import charts

    events = [ModelReady(run_id="r", time=0.0, val_accuracy=0.7, val_loss=0.5, seconds=3.0),
              StageThawed(run_id="r", time=1.0, epoch=1, stage="last conv", depth=5),
              EpochEnd(run_id="r", time=2.0, epoch=1, epochs=3, val_accuracy=0.8, val_loss=0.4),
              StageThawed(run_id="r", time=3.0, epoch=2, stage="stage 4 (7px)", depth=4)]
    fig = charts.accuracy_curves([events[2]])
    charts.mark_phases(fig, events, accuracy=True)
    star = [t for t in fig.data if t.name == "first model (validation)"]
    assert len(star) == 1 and list(star[0].x) == [0] and list(star[0].y) == [0.7]
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted(s.x0 for s in lines) == [0.5, 1.5]
    assert {a.text for a in fig.layout.annotations} == {"last conv learns", "stage 4 (7px) learns"}


def test_fine_tuning_starts_from_a_new_classifier_and_the_fitted_one_stays_the_first_model(textile_small, tmp_path):
    """The fitted classifier's confident answers, under features that shift as BatchNorm adapts, wrecked the
    first epochs (progressive.new_head); fine-tuning starts from a new one, the first model stays on disk."""
    seen = {}

    class Heads(Callback):
        def on_event(self, trainer, event):
            if isinstance(event, ModelReady):
                seen["fitted"] = trainer.net.head[-1].weight.detach().clone()
                seen["saved"] = torch.load(trainer.run.path / runfiles.BEST, weights_only=True)

        def before_epoch(self, trainer, epoch):  # after the schedule's own before_epoch: the first model is made
            if epoch == 1:
                seen["start"] = trainer.net.head[-1].weight.detach().clone()

    train(TrainConfig(data=str(textile_small), freeze=5, epochs=1, **FAST), runs_dir=tmp_path, callbacks=[Heads()])
    saved = next(v for k, v in seen["saved"].items() if k.startswith("head.") and k.endswith("weight"))
    assert torch.equal(saved, seen["fitted"]), "the first model on disk is the fitted classifier"
    assert not torch.allclose(seen["start"], seen["fitted"]), "fine-tuning starts from a new classifier"
    # a new nn.Linear: uniform within 1/sqrt(features); the fitted one is not bound by it
    assert seen["start"].abs().max() <= seen["start"].shape[1] ** -0.5


def test_batchnorm_adapts_in_the_stages_that_learn_and_keeps_its_statistics_in_the_frozen_ones(textile_small,
                                                                                               tmp_path):
    seen = {}

    class Stats(Callback):
        def before_fit(self, trainer):
            seen["before"] = {n: b.clone() for n, b in trainer.net.named_buffers() if "running" in n}
            seen["stages"] = trainer.net.stages

        def after_epoch(self, trainer, epoch, extra):
            seen["after"] = {n: b.clone() for n, b in trainer.net.named_buffers() if "running" in n}
            seen["learned"] = any(p.requires_grad for p in trainer.net.stages[-1].parameters())

    train(TrainConfig(data=str(textile_small), freeze=5, epochs=1, **FAST), runs_dir=tmp_path, callbacks=[Stats()])
    assert seen["learned"], "the top stage learned in epoch 1"
    top = f"stages.{len(seen['stages']) - 1}."
    changed = {n for n in seen["before"] if not torch.equal(seen["before"][n], seen["after"][n])}
    assert changed and all(n.startswith(top) for n in changed), sorted(changed)[:5]


def test_head_only_ends_with_the_instant_model(textile_small, tmp_path):
    result = train(TrainConfig(data=str(textile_small), freeze="all", epochs=5, **FAST), runs_dir=tmp_path)
    final = result.final
    assert isinstance(final, RunFinished) and final.epochs_run == 0 and final.best_epoch == 0
    assert "alone" in final.reason
    run = RunFolder(result.run_dir)
    assert (run.path / runfiles.BEST).is_file() and (run.path / runfiles.VALIDATION).is_file()
    assert final.test_accuracy is not None or final.num_test == 0


def test_small_data_cross_validates_whether_to_fine_tune_and_says_why(textile_small, tmp_path, monkeypatch):
    """6 validation pictures: the choice is made on 3 folds of all 36 pictures, each a real run making the first
    model and fine-tuning crossval.FOLD_EPOCHS epochs. Whatever the folds say is what the run does: the first
    model (no epoch), or exactly FOLD_EPOCHS epochs with the last kept. Fails if the old size rule is back (no
    folds), if the words are missing, or if the run does other than its folds chose."""
    folds = []
    real = crossval.choose
    monkeypatch.setattr(crossval, "choose", lambda trainer: folds.append(real(trainer)) or folds[-1])
    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", REAL_MIN_VAL)
    result = train(TrainConfig(data=str(textile_small), freeze=3, epochs=8, **FAST), runs_dir=tmp_path)
    final, events = result.final, RunFolder(result.run_dir).events()
    data = next(e for e in events if isinstance(e, DataReady))
    assert isinstance(final, RunFinished) and data.num_val < REAL_MIN_VAL and len(folds) == 1, final
    choice = folds[0]
    assert choice.pictures == 36 and f"cross-validated on all 36 labelled pictures ({crossval.FOLDS} folds)" in \
        final.reason and (not choice.fine_tune or choice.fine_right > choice.head_right), final.reason
    assert "folds of all your pictures" in data.plan, data.plan
    if choice.fine_tune:
        assert final.epochs_run == final.best_epoch == crossval.FOLD_EPOCHS, final
    else:
        assert final.epochs_run == 0 and final.best_epoch == 0 and "first model is kept" in final.reason, final


def test_when_the_folds_choose_fine_tuning_the_run_trains_their_epochs_and_keeps_the_last(textile_small, tmp_path,
                                                                                        monkeypatch):
    """The plumbing after the choice (the folds' own verdict is the test above's): a run told to fine-tune
    trains exactly FOLD_EPOCHS and keeps the last even where an earlier epoch scored higher on its 6 pictures."""
    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", REAL_MIN_VAL)
    monkeypatch.setattr(crossval, "choose", lambda trainer: crossval.Choice(True, 20, 30, 36))
    result = train(TrainConfig(data=str(textile_small), freeze=3, epochs=8, **FAST), runs_dir=tmp_path)
    final = result.final
    assert isinstance(final, RunFinished) and final.epochs_run == crossval.FOLD_EPOCHS, final
    assert final.best_epoch == crossval.FOLD_EPOCHS and "chosen by cross-validation" in final.reason, final


def test_a_class_too_small_to_cross_validate_ends_at_the_first_model_and_says_why(tmp_path, monkeypatch):
    """2 pictures per class cannot make 3 folds: no fine-tuned model could be shown better, so none is trained
    (the fixed schedule still trains what was asked)."""
    from tests.conftest import copy_textile
    from ui.live import first_model_words

    few = copy_textile(tmp_path / "few", 2)
    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", REAL_MIN_VAL)
    result = train(TrainConfig(data=str(few), freeze=3, epochs=4, **FAST), runs_dir=tmp_path)
    final, events = result.final, RunFolder(result.run_dir).events()
    assert isinstance(final, RunFinished) and final.epochs_run == 0 and final.best_epoch == 0, final
    assert "validation pictures" in final.reason and "first model is kept" in final.reason, final.reason
    assert not [e for e in events if isinstance(e, (EpochEnd, StageThawed))]
    ready = next(e for e in events if isinstance(e, ModelReady))
    data = next(e for e in events if isinstance(e, DataReady))
    assert ready.final == FINAL_SMALL_DATA and data.num_val < REAL_MIN_VAL
    assert "Exactly as set" in data.plan, data.plan
    words = first_model_words(ready, data.num_val)
    assert "none was trained" in words and "training goes on" not in words, words
    fixed = train(TrainConfig(data=str(few), freeze=3, epochs=1, **{**FAST, "schedule": "fixed"}),
                  runs_dir=tmp_path).final
    assert isinstance(fixed, RunFinished) and fixed.epochs_run == 1, fixed


@pytest.mark.parametrize("small", [True, False])
def test_small_data_prepares_only_the_first_models_features(textile_small, tmp_path, monkeypatch, small):
    """With no thaw to come, the feature cache computes the pooled features alone; with thaws to come it first
    keeps the outputs at the shallowest depth they reach (so no thaw runs over the pictures again), which
    small data never uses."""
    from transfer_core.training import features

    parts = []
    real_part = features.frozen_part
    monkeypatch.setattr(features, "frozen_part", lambda net, start, depth, *a, **kw: (
        parts.append((start, depth)), real_part(net, start, depth, *a, **kw))[1])
    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", REAL_MIN_VAL if small else 0)
    monkeypatch.setattr(crossval, "FOLDS", 13)  # 12 pictures per class: too few to cross-validate
    config = TrainConfig(data=str(textile_small), freeze=3, epochs=2, **FAST)
    result = train(config, runs_dir=tmp_path)
    stages = load_model(result.run_dir).net.num_stages
    assert isinstance(result.final, RunFinished), result.final
    if small:
        assert parts == [(0, stages)], parts
    else:
        # The chosen depth's outputs first and kept, then onward to the pooled features; the thaw at epoch 1
        # (to one stage above the chosen depth) runs on from them, and epoch 2's uses them: one pass over the
        # pictures in the whole run, each folded part made once for both shares.
        assert parts == [(0, 3), (3, stages), (3, 4)], parts


@pytest.mark.usefixtures("app_dirs")
def test_the_train_page_keeps_saying_why_a_small_data_run_trained_no_epoch_after_it_ends(tmp_path, monkeypatch):
    """Such a run ends a moment after its first model: the words with the figure's range and the reason must
    still be on the page once it has finished (they were only drawn while a run was going on)."""
    from tests.conftest import copy_textile
    from tests.test_app_pages import choose_folder, no_exception, raw_texts
    from transfer_core.service.jobs import default_queue

    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", REAL_MIN_VAL)
    data = page("pages/1_Data.py").run()
    choose_folder(data, copy_textile(tmp_path / "few", 2))  # too few for folds: the first model is the model
    train_page = no_exception(page("pages/2_Train.py", data.query_params["ws"]).run())
    train_page.select_slider(key="image_size_mobilenet_v2").set_value(96)
    next(b for b in train_page.button if b.label == "Start training").click().run()
    job = default_queue().jobs()[-1]
    assert default_queue().wait(job.id, timeout=300) and job.final.kind == "RunFinished", job.final
    text = raw_texts(no_exception(train_page.run()))
    assert "Your model is ready after" in text and "none was trained" in text, text[-2000:]
    assert "Finished: best validation accuracy" in text


@pytest.mark.usefixtures("app_dirs")
def test_the_train_page_says_before_the_start_that_small_data_ends_at_the_first_model(tmp_path, monkeypatch):
    """Once the Data page has counted the pictures, the Train page says that so few will not fine-tune, and
    only for the schedule that does so and only for data that small (the demo's 200 validation pictures)."""
    from tests.conftest import copy_textile
    from tests.test_app_pages import choose_folder, no_exception, raw_texts
    from transfer_core.data.datasets import demo_dataset_path
    from transfer_core.service.jobs import default_queue
    from ui.data_view import known_report
    from ui.session import DataChoice

    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", REAL_MIN_VAL)
    note = "trial runs each hold out a third of all your pictures"
    data = page("pages/1_Data.py").run()
    choose_folder(data, copy_textile(tmp_path / "few", 8))
    train_page = no_exception(page("pages/2_Train.py", data.query_params["ws"]).run())
    train_page.radio(key="schedule").set_value("progressive").run()
    assert note in raw_texts(train_page)
    assert note not in raw_texts(no_exception(train_page.radio(key="schedule").set_value("fixed").run()))
    demo = page("pages/1_Data.py").run()
    demo.button[0].click().run()  # the demo pictures; their check goes on in the queue (if not made earlier)
    if "data_scan_task" in demo.session_state:
        assert default_queue().wait(demo.session_state["data_scan_task"], timeout=300)
    train_page = no_exception(page("pages/2_Train.py", demo.query_params["ws"]).run())
    train_page.radio(key="schedule").set_value("progressive").run()
    demo_choice = DataChoice(str(demo_dataset_path()), "")
    assert known_report(demo_choice.path, demo_choice.val_split, demo_choice.seed) is not None, "else no note is shown"
    assert "Demo" in raw_texts(train_page) and note not in raw_texts(train_page)


def test_fine_tuning_follows_from_the_threshold_of_validation_pictures_up(monkeypatch):
    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", REAL_MIN_VAL)
    schedule = progressive.Progressive(thaws=3)
    schedule.num_val = REAL_MIN_VAL
    assert schedule.why_not_fine_tune() == ("", "") and not schedule.cross_validates()
    schedule.num_val, schedule.can_cross_validate = REAL_MIN_VAL - 1, True
    assert schedule.why_not_fine_tune() == ("", "") and schedule.cross_validates()
    schedule.can_cross_validate = False
    assert schedule.why_not_fine_tune()[0] == FINAL_SMALL_DATA and not schedule.cross_validates()
    head_only = progressive.Progressive(thaws=0)
    head_only.num_val = 1000
    assert head_only.why_not_fine_tune()[0] == FINAL_ASKED


def test_fine_tuning_must_beat_the_first_model_beyond_chance_picture_by_picture():
    assert not crossval.beats(0, 0) and crossval.beats(1, 1)  # one picture, and no other disagreement
    assert not crossval.beats(2, 9) and crossval.beats(3, 9)  # 6 right against 3: only just
    assert not crossval.beats(1, 21)  # one more right out of 21 that differ: chance


def test_folds_keep_near_copy_groups_whole_and_classes_in_proportion():
    from transfer_core.data.datasets import Sample

    samples = [Sample(Path(f"a{i}"), 0, i // 3) for i in range(30)] + [Sample(Path(f"b{i}"), 1) for i in range(12)]
    fold = crossval.fold_of_each(samples, 3, seed=0)
    for g in range(10):  # class 0: 10 groups of 3 near-copies
        assert len({fold[i] for i in range(30) if samples[i].group == g}) == 1
    for label, n in ((0, 30), (1, 12)):
        counts = [sum(1 for s, f in zip(samples, fold) if s.label == label and f == k) for k in range(3)]
        assert max(counts) - min(counts) <= 3 and sum(counts) == n, counts
    assert crossval.can_fold(samples) and not crossval.can_fold(samples[:30] + samples[30:32])


def test_the_head_fit_beats_guessing_on_real_features(textile_full):
    """Pooled MobileNetV2 features of 60 real pictures per class: the fitted head separates the classes
    far better than the majority class on 30 held-out pictures per class."""
    from PIL import Image

    from transfer_core.models.backbones import build_network, get_backbone

    net = build_network("mobilenet_v2", 3).eval()
    prep = get_backbone("mobilenet_v2").preprocessing_at(96)
    classes = sorted(p.name for p in textile_full.iterdir() if p.is_dir())
    xs, ys = [], []
    for label, name in enumerate(classes):
        files = sorted((textile_full / name).iterdir())[:90]
        batch = torch.stack([prep.eval_tensor(Image.open(f).convert("RGB")) for f in files])
        with torch.no_grad():
            xs.append(net.features(batch))
        ys.append(torch.full((len(files),), label))
    x, y = torch.cat(xs), torch.cat(ys)
    train_idx = torch.cat([torch.arange(i * 90, i * 90 + 60) for i in range(3)])
    val_idx = torch.cat([torch.arange(i * 90 + 60, i * 90 + 90) for i in range(3)])
    fit = fit_head(net.head, x[train_idx], y[train_idx], x[val_idx], y[val_idx], 3)
    assert fit.strength in STRENGTHS
    assert fit.val_accuracy > 0.5, fit  # majority: 1/3


def test_the_l2_path_stops_once_the_validation_loss_keeps_rising(monkeypatch):
    """Weaker penalties only fit the training pictures more closely: once the validation loss has risen for
    2 strengths in a row the path ends (validation labels that contradict training make it rise at once);
    while it falls, every strength is tried."""
    from torch import nn

    from transfer_core.training import instant

    fitted = []
    real_fit = instant.fit_penalised
    monkeypatch.setattr(instant, "fit_penalised", lambda head, *a: (fitted.append(a[-1]), real_fit(head, *a)))
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 8, generator=gen) + 2, torch.randn(20, 8, generator=gen) - 2])
    y = torch.cat([torch.zeros(20, dtype=torch.long), torch.ones(20, dtype=torch.long)])
    fit = fit_head(nn.Linear(8, 2), x, y, x[::4], 1 - y[::4], 2)
    assert fitted == list(STRENGTHS[:3]) and fit.strength == STRENGTHS[0], (fitted, fit)
    fitted.clear()
    fit = fit_head(nn.Linear(8, 2), x, y, x[::4], y[::4], 2)
    assert fitted == list(STRENGTHS), fitted


def test_class_weights_balance_classes_and_the_simplest_good_fit_wins():
    w = class_weights(torch.tensor([0, 0, 0, 1]), 3)
    assert torch.allclose(w, torch.tensor([4 / 9, 4 / 3, 0.0]))
    from transfer_core.training.instant import HeadFit

    fits = [(HeadFit(0.1, 0.500, 0.8), "strong"), (HeadFit(0.01, 0.495, 0.8), "middle"),
            (HeadFit(0.001, 0.40, 0.9), "weak")]
    assert _simplest_good(fits)[1] == "weak"  # clearly lower loss
    assert _simplest_good(fits[:2])[1] == "strong"  # within 2%: the stronger penalty


def test_careful_selection_needs_more_than_noise_to_replace_the_kept_model():
    best = BestEpoch(careful_n=100)
    assert best.update(0, 0.50, 0.90)
    assert not best.update(1, 0.55, 0.92), "2 points on 100 pictures at 0.9 is within one standard error (3)"
    assert not best.update(2, 0.46, 0.90), "as accurate, the loss 8% lower: within its noise on 100 (10%)"
    assert best.update(3, 0.44, 0.90), "as accurate and the loss 12% lower"
    assert best.update(4, 0.60, 0.94), "4 points is beyond the noise"
    tiny = BestEpoch(careful_n=4)  # the validation share of 10 pictures per class, 2 classes
    assert tiny.update(0, 0.40, 0.75)
    assert not tiny.update(1, 0.30, 0.75), "a quarter lower on 4 pictures is noise: the first model stays"
    assert tiny.update(2, 0.15, 0.75), "less than half the loss"
    plain = BestEpoch()
    plain.update(0, 0.50, 0.90)
    assert plain.update(1, 0.55, 0.92), "the fixed schedule keeps the old rule: higher accuracy wins"


def test_command_line_reports_when_the_first_model_was_ready(textile_small, tmp_path, capsys):
    import json

    from transfer_core import cli

    code = cli.main(["train", str(textile_small), "--schedule", "progressive", "--freeze", "5", "--epochs", "2",
                     "--image-size", "64", "--batch-size", "8", "--out", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    out = captured.out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["status"] == "RunFinished"
    assert 0 < summary["first_model_seconds"] < summary["seconds"]
    assert "First model ready" in captured.out + captured.err
    fixed = cli.main(["train", str(textile_small), "--schedule", "fixed", "--freeze", "all", "--epochs", "1",
                      "--image-size", "64", "--out", str(tmp_path), "--json"])
    assert fixed == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["first_model_seconds"] is None


def test_train_page_offers_the_schedule(app_dirs):
    data = page("pages/1_Data.py").run()
    data.button[0].click().run()  # the demo pictures
    at = page("pages/2_Train.py", data.query_params["ws"]).run()
    assert not at.exception
    radio = at.radio(key="schedule")
    assert set(radio.options) >= {"Model first, then better (recommended)", "Exactly as set"}
    radio.set_value("progressive").run()
    assert any(n.key == "time_budget_minutes" for n in at.number_input)
    assert not any(c.key == "quick_start" for c in at.checkbox), "quick start belongs to the fixed schedule"
    at.radio(key="schedule").set_value("fixed").run()
    assert any(c.key == "quick_start" for c in at.checkbox)


def test_the_stop_rule_waits_for_every_thaw_then_for_two_epochs_without_a_lower_loss():
    from types import SimpleNamespace

    from transfer_core.training.progressive import Progressive

    schedule, run = Progressive(thaws=2), _run_started_at_0()

    def epoch(n, loss):
        schedule.on_event(run, EpochEnd(run_id="r", time=float(n), epoch=n, val_loss=loss, seconds=1.0))
        return run.state.end_reason() if run.state.stopping else None

    assert epoch(1, 0.5) is None
    assert epoch(2, 0.6) is None and epoch(3, 0.7) is not None, "2 epochs without a lower loss, thaws done"
    schedule, run = Progressive(thaws=3), _run_started_at_0()
    assert [epoch(n, loss) for n, loss in ((1, 0.5), (2, 0.4), (3, 0.45))] == [None] * 3
    assert "validation loss" in epoch(4, 0.8)


def test_the_time_budget_ends_the_run_with_the_best_model_kept(textile_small, tmp_path):
    result = train(TrainConfig(data=str(textile_small), freeze=4, epochs=6, time_budget_minutes=0.001, **FAST),
                   runs_dir=tmp_path)
    final = result.final
    assert isinstance(final, RunFinished) and final.epochs_run == 1, final
    assert "time budget" in final.reason
    assert (RunFolder(result.run_dir).path / runfiles.BEST).is_file()


def _run_started_at_0():
    """The part of a trainer (callbacks.TrainingState) a schedule's on_event uses, on a made-up clock."""
    from types import SimpleNamespace

    from transfer_core.training.state import RunState

    state = RunState(config=None, device=None, stop=None, run_id="r", resumed=False, started_at=0.0)
    return SimpleNamespace(state=state, started_at=0.0, request_stop=state.request_stop,
                           limit_training_time=lambda budget_s: None)


def _epochs(schedule, events):
    """Feed a schedule events on a made-up clock (the run started at 0): the reason it ends, or None."""
    run = _run_started_at_0()
    for e in events:
        schedule.on_event(run, e)
    return run.state.end_reason() if run.state.stopping else None


def test_the_automatic_budget_is_a_multiple_of_the_first_models_time_and_stops_before_an_overrun(monkeypatch):
    from transfer_core.training.progressive import (
        Progressive,
        automatic_budget,
        would_pass,
    )

    assert automatic_budget(10.0) == 10.0 * progressive.AUTO_BUDGET > 10.0
    assert automatic_budget(20.0) == 2 * automatic_budget(10.0), "twice the pictures, twice the time"
    assert would_pass(20.0, 15.0, 6.0) and not would_pass(20.0, 15.0, 4.0)
    monkeypatch.setattr(progressive, "AUTO_BUDGET", 2.0)
    ready = ModelReady(run_id="r", time=10.0, val_accuracy=0.7, val_loss=0.9, seconds=10.0)  # budget: 20 s
    # Epoch 1 ends at 11 s; epoch 2 trains 1 s but its thaw recomputed the cached features: 11 -> 17 s.
    # Another such epoch (6 s) would end at 23 s: stop, though the loss still falls and epochs are left.
    first = EpochEnd(run_id="r", time=11.0, epoch=1, epochs=8, val_loss=0.6, seconds=1.0)
    second = EpochEnd(run_id="r", time=17.0, epoch=2, epochs=8, val_loss=0.5, seconds=1.0)
    assert _epochs(Progressive(thaws=3), [ready, first]) is None
    reason = _epochs(Progressive(thaws=3), [ready, first, second])
    assert reason is not None and "automatic time budget" in reason and "first model" in reason
    assert _epochs(Progressive(thaws=3, budget_s=60.0), [ready, first, second]) is None, \
        "a time limit the person set wins over the automatic budget"
    explicit = _epochs(Progressive(thaws=3, budget_s=18.0), [ready, first, second])
    assert "the time budget (0.3 min)" in explicit and "automatic" not in explicit


def test_the_automatic_budget_ends_a_run_whose_epochs_are_slow_against_its_first_model(textile_small, tmp_path,
                                                                                      monkeypatch):
    """A budget of 1x the first model's time: any epoch passes it, whatever the machine's speed."""
    from transfer_core.workflows.train import make_trainer

    monkeypatch.setattr(progressive, "AUTO_BUDGET", 1.0)
    config = TrainConfig(data=str(textile_small), freeze=4, epochs=4, **FAST)  # 2 thaws: >= 3 epochs otherwise
    trainer = make_trainer(config, runs_dir=tmp_path)
    final = trainer.run_training().final
    assert isinstance(final, RunFinished) and final.epochs_run == 1, final
    assert "automatic time budget" in final.reason, final.reason
    assert trainer.progress.clock.training_ends is not None, "the time left shown knew of the budget"
    limited = train(replace(config, time_budget_minutes=60.0), runs_dir=tmp_path).final
    assert isinstance(limited, RunFinished) and limited.epochs_run >= 3, "the person's limit replaces it"
    assert "automatic" not in limited.reason, limited.reason
    fixed = train(replace(config, schedule="fixed", epochs=2), runs_dir=tmp_path).final
    assert isinstance(fixed, RunFinished) and fixed.epochs_run == 2 and fixed.reason == "completed", fixed


class StopAtFirstEpochEnd(Callback):
    def __init__(self):
        self.stop = threading.Event()

    def on_event(self, trainer, event) -> None:
        if isinstance(event, EpochEnd):
            self.stop.set()


def test_a_resumed_run_gets_the_automatic_budget_again(textile_small, tmp_path, monkeypatch):
    """Its first model was made before the interruption, so no ModelReady comes to set the budget: it is
    read from the run folder (without it the resumed run went on to its patience or its epochs). The
    epochs replayed from before do not count against it (they did: it ended before training one)."""
    from transfer_core.workflows.train import resume

    monkeypatch.setattr(progressive, "AUTO_BUDGET", 1000.0)  # the first part is not ended by its budget
    stopper = StopAtFirstEpochEnd()
    # 3 thaws, 2 of them in epoch 1: the resumed run replays both, or its optimizer state does not fit
    config = TrainConfig(data=str(textile_small), freeze=3, epochs=6, **FAST)
    first = train(config, runs_dir=tmp_path, callbacks=[stopper], stop=stopper.stop)
    assert first.final.kind == "RunStopped" and first.final.epochs_run == 1, first.final
    monkeypatch.setattr(progressive, "AUTO_BUDGET", 0.01)  # now any epoch passes it
    final = resume(first.run_dir).final
    assert isinstance(final, RunFinished) and final.epochs_run == 2, final
    assert "automatic time budget" in final.reason, final.reason


def test_the_train_page_names_the_trial_runs_while_the_folds_choose():
    """Not "Epoch 0 of 8 · batch 0 of 3": the folds are trial runs, and the page says which one runs."""
    from types import SimpleNamespace

    from ui.live import _progress_line

    job = SimpleNamespace(config=TrainConfig(data="x", epochs=8))
    events = [DataReady(run_id="r", time=0.0, num_val=6),
              Progress(run_id="r", time=1.0, phase="choosing", step=1, steps=3, eta_seconds=40.0)]
    done, words = _progress_line(job, events)
    assert "trial run 2 of 3" in words and "Epoch" not in words and done == pytest.approx(1 / 3)
