"""Time left you can trust (issue 28): a one-click run said "about 46 s left" and ended at 7 s, because every
planned epoch was priced though the run stops when it stops improving. While a run may stop early the time
left is a range (soonest, latest); when its plan is fixed, one figure; a run that ends at its first model
prices no epoch at all."""
from __future__ import annotations

import time

import pytest

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import DataReady, Progress, event_from_dict
from transfer_core.training import crossval, eta, progressive
from transfer_core.training.callbacks import Callback
from transfer_core.training.eta import Part, RunClock, shown_as_range
from transfer_core.training.progressive import Progressive
from transfer_core.training.thaw import ThawSchedule
from transfer_core.workflows.train import train

FAST = dict(image_size=64, batch_size=8, seed=0)


class FakeTime:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _plan(epochs: int = 8) -> list[Part]:
    """Reading 10 s, epochs of 10 s, an end of 5 s."""
    return [Part("decode", 10, 1.0, "decode"), *(Part(f"train{e}", 10, 1.0, epoch=e) for e in range(1, epochs + 1)),
            Part("finish", 1, 5.0)]


def test_a_run_that_may_stop_early_has_a_range_from_its_soonest_end_to_its_last_epoch():
    now = FakeTime()
    clock = RunClock(_plan(), now=now)
    clock.may_train(3, 8)  # patience can end it after epoch 3
    clock.at("decode")
    assert clock.may_stop_early()
    assert clock.left() == pytest.approx(10 + 80 + 5)  # the latest: every epoch
    assert clock.soonest() == pytest.approx(10 + 30 + 5)  # the soonest: three epochs, then the end
    now.t = 10.0 + 40.0  # reading and 4 epochs done, at their guessed pace
    clock.at("train5")
    assert clock.soonest() == pytest.approx(10 + 5)  # past the soonest epoch: this one, then the end
    assert clock.left() == pytest.approx(40 + 5)
    clock.end_training_by(20.0)  # a time budget caps both
    assert clock.left() == pytest.approx(20 + 5) and clock.soonest() == pytest.approx(15)
    clock.at("finish")
    assert not clock.may_stop_early()


def test_a_fixed_plan_is_one_figure_and_a_first_model_run_prices_no_epoch():
    fixed = RunClock(_plan(), now=FakeTime())
    fixed.at("decode")
    assert not fixed.may_stop_early() and fixed.soonest() == fixed.left() == pytest.approx(95)
    first_model = RunClock(_plan(), now=FakeTime())
    first_model.may_train(0, 0)  # ends at its first model: the 8 planned epochs never come
    first_model.at("decode")
    assert not first_model.may_stop_early()
    assert first_model.left() == pytest.approx(10 + 5)


def test_the_schedules_say_how_few_and_how_many_epochs_they_may_train():
    assert ThawSchedule().epoch_range(8, 100) == (8, 8)
    assert Progressive(2).epoch_range(8, 100) == (3, 8)  # the lowest stage thaws at 2, then 2 epochs of patience
    assert Progressive(1).epoch_range(8, 100) == (3, 8)
    assert Progressive(2).epoch_range(2, 100) == (2, 2)
    assert Progressive(0).epoch_range(8, 100) == (0, 0)  # the head alone was asked for
    # Small data: folds of all the pictures choose the first model, or exactly FOLD_EPOCHS of fine-tuning
    assert Progressive(2).epoch_range(8, progressive.MIN_VAL_TO_FINE_TUNE - 1) == (0, crossval.FOLD_EPOCHS)


def _progress(**kw) -> Progress:
    return Progress(run_id="r", time=time.time(), phase="train", epoch=1, step=1, steps=4, **kw)


def test_the_train_page_shows_a_range_while_the_run_may_stop_early_and_reads_old_events():
    from ui.live import _eta

    words = _eta(_progress(eta_seconds=40.0, eta_soonest_seconds=10.0))
    assert words.startswith("between 1") and "and 4" in words and "stops sooner when it stops improving" in words
    assert _eta(_progress(eta_seconds=400.0, eta_soonest_seconds=100.0)).startswith("between 2 min and 7 min")
    assert _eta(_progress(eta_seconds=40.0, eta_soonest_seconds=39.0)).startswith("about 4")  # too close: one figure
    old = _progress(eta_seconds=40.0).to_dict()
    del old["eta_soonest_seconds"]  # an events.jsonl line written before ranges existed
    assert event_from_dict(old).eta_soonest_seconds is None
    assert _eta(event_from_dict(old)).startswith("about 4")
    assert not shown_as_range(None, 40.0) and shown_as_range(10.0, 40.0)


class Watch(Callback):
    def __init__(self):
        self.progress, self.clock = [], None

    def on_event(self, trainer, event):
        if isinstance(event, Progress):
            self.progress.append(event)
        if isinstance(event, DataReady):
            self.clock = trainer.progress.clock


def test_a_real_one_click_run_reports_a_range_and_a_first_model_run_none(textile_small, tmp_path, monkeypatch):
    """Fails on the single figure: no soonest end in the events of a run that can stop early."""
    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", 0)  # fine-tune on 36 pictures, for speed
    watch = Watch()
    config = TrainConfig(data=str(textile_small), schedule="progressive", freeze=3, epochs=6, **FAST)
    train(config, runs_dir=tmp_path, callbacks=[watch])
    assert watch.clock.epochs == (3, 6)
    early = [p for p in watch.progress if p.phase == "preparing" and p.eta_seconds > 0]
    # A range in every one; the time budget (set after the first model) may cap both ends to the same figure
    # on a loaded machine, so equal ends are allowed once it is known, but not before it.
    assert early and all(p.eta_soonest_seconds is not None and p.eta_soonest_seconds <= p.eta_seconds for p in early)
    assert early[0].eta_soonest_seconds < early[0].eta_seconds
    fixed = Watch()
    train(TrainConfig(data=str(textile_small), schedule="fixed", freeze=3, epochs=2, **FAST), runs_dir=tmp_path,
          callbacks=[fixed])
    assert fixed.clock.epochs is None and all(p.eta_soonest_seconds is None for p in fixed.progress)
    assert fixed.clock.measured("train") > 0 and fixed.clock.measured("fit") == 0  # "Exactly as set": no first model
    small = Watch()  # the head alone: the run ends at its first model (small data may fine-tune: crossval.py)
    train(TrainConfig(data=str(textile_small), schedule="progressive", freeze="all", epochs=6, **FAST),
          runs_dir=tmp_path, callbacks=[small])
    assert small.clock.epochs == (0, 0) and all(p.eta_soonest_seconds is None for p in small.progress)
    # The first model's fit was a part of the plan, timed as such; no epoch ran, and none was timed.
    assert small.clock.measured("fit") > 0 and small.clock.measured("train") == 0


# ---------------------------------------------------------------- what the plan prices, and what corrects it
def test_the_first_model_is_a_priced_part_of_the_plan_and_grows_with_the_pictures():
    """Fails on a plan without the head fit: about 9 s of a 19 s run at 10 pictures per class went unpriced."""
    stage_s = [0.01, 0.01, 0.01, 0.01, 0.0]
    plan = eta.plan_run(stage_s, n_train=24, n_val=6, n_test=0, epochs=8, depths=[2] * 8, cached=True,
                        start_depth=4, first_model=True)
    names = [p.name for p in plan]
    assert names[:3] == ["decode", "cache", "fit"] and names[3] == "train1" and names[-1] == "finish"
    price = {p.name: p.units * p.guess for p in plan}
    assert price["fit"] > price["cache"]  # 30 pictures' frozen pass: less than the first model's fit
    assert price["cache"] == pytest.approx(30 * 0.04)  # every stage: the first model needs pooled features
    bigger = eta.plan_run(stage_s, n_train=480, n_val=120, n_test=0, epochs=8, depths=[2] * 8, cached=True,
                          start_depth=4, first_model=True)
    assert next(p for p in bigger if p.name == "fit").guess > 2 * price["fit"]
    fixed = eta.plan_run(stage_s, n_train=24, n_val=6, n_test=0, epochs=3, depths=[3, 2, 2], cached=True)
    assert "fit" not in [p.name for p in fixed]  # "Exactly as set" makes no first model


def test_a_part_corrects_the_rest_by_its_measured_cost_while_it_runs():
    """Fails on a clock that only corrects when a part ends: a probe 10 times too slow (a new process on a
    loaded machine) priced the frozen pass of 30 pictures at 21 s and the epochs after it at 135 s."""
    now = FakeTime()
    clock = RunClock([Part("cache", 30, 1.0, "frozen", by_units=True), Part("train1", 30, 1.0, "train", epoch=1),
                      Part("finish", 1, 10.0, "finish")], now=now)
    clock.at("cache")
    assert clock.left() == pytest.approx(30 + 30 + 10)  # the plan's own guess
    now.t = 0.6  # 6 validation pictures of 30 in 0.6 s: a tenth of the price
    left = clock.at("cache", 6, 6)
    assert left == pytest.approx(0.1 * (24 + 30 + 10))
    now.t = 3.0  # then the 24 training pictures (a second pass, counted on from the first)
    assert clock.at("cache", 24, 24) == pytest.approx(0.1 * (30 + 10))


def test_each_kind_of_part_has_its_own_ratio_and_epochs_that_never_ran_do_not_count():
    now = FakeTime()
    parts = [Part("fit", 1, 10.0, "fit"), *(Part(f"train{e}", 10, 1.0, "train", epoch=e) for e in (1, 2, 3)),
             Part("finish", 1, 10.0, "finish")]
    clock = RunClock(parts, now=now)
    clock.may_train(0, 0)  # ends at the first model
    clock.at("fit")
    now.t = 20.0  # the fit took twice its price
    clock.at("finish")
    # Old: the 20 s were shared with the three epochs jumped over, and the end was priced at a quarter.
    assert clock.ratio("finish") == pytest.approx(2.0) and clock.left() == pytest.approx(20.0)
    clock = RunClock(parts, now=now)
    now.t = 0.0
    clock.at("fit")
    now.t = 20.0
    clock.at("train1")
    assert clock.left() == pytest.approx(2 * 30 + 2 * 10)  # no epoch timed yet: the fit's ratio for all
    now.t = 25.0  # the first epoch took half its price
    clock.at("train2")
    assert clock.ratio("train") == pytest.approx(0.5) and clock.ratio("fit") == pytest.approx(2.0)
    assert clock.left() == pytest.approx(0.5 * 20 + (20 + 5) / (10 + 10) * 10)  # the end: both kinds' ratio


def test_a_thaw_recomputing_frozen_outputs_begins_the_next_epoch():
    """Fails when the clock went back to the plan's "cache" part: every later part was priced again."""
    now = FakeTime()
    parts = [Part("cache", 10, 1.0, "frozen", by_units=True), Part("fit", 1, 5.0, "fit"),
             *(Part(f"train{e}", 10, 1.0, "train", epoch=e) for e in (1, 2)), Part("finish", 1, 5.0, "finish")]
    clock = RunClock(parts, now=now)
    clock.at("cache")
    now.t = 10.0
    clock.at("fit")
    now.t = 15.0
    before = clock.left()
    assert clock.at("cache", 5, 10) <= before  # the thaw before epoch 1
    assert clock.part == "train1"
    clock.at("cache", 10, 10)
    assert clock.part == "train1"  # its later chunks stay there
    clock.at("train1", 0, 1)
    assert clock.part == "train1"


def test_early_stopping_counts_the_first_model_in_the_soonest_end():
    from transfer_core.training.progress import epochs_to_price

    progressive_run = TrainConfig(data="x", schedule="progressive", epochs=8, early_stopping=2)
    assert epochs_to_price(progressive_run, (3, 8)) == (2, 8)  # the first model is epoch 0: 2 bad epochs after it
    fixed_run = TrainConfig(data="x", schedule="fixed", epochs=8, early_stopping=2)
    assert epochs_to_price(fixed_run, None) == (3, 8)  # epoch 1 sets the loss to beat
    assert epochs_to_price(progressive_run, (0, 0)) == (0, 0)  # ends at its first model


def test_small_data_prices_the_folds_that_choose_and_then_a_fixed_plan():
    """Fails on a plan without the folds: three runs of a first model and 4 epochs each, before any epoch."""
    stage_s = [0.01, 0.01, 0.01, 0.01, 0.0]
    kw = dict(n_train=24, n_val=6, n_test=0, epochs=8, depths=[3, 2, 2, 2, 2, 2, 2, 2], cached=True, start_depth=4,
              first_model=True)
    plan = eta.plan_run(stage_s, **kw, folds=3, fold_epochs=4)
    assert [p.name for p in plan][:5] == ["decode", "cache", "fit", "choose", "train1"]
    price = {p.name: p.units * p.guess for p in plan}
    fold = eta.plan_run(stage_s, **{**kw, "n_train": 20, "n_val": 10, "depths": kw["depths"][:4]})
    assert price["choose"] == pytest.approx(3 * sum(p.units * p.guess for p in fold if p.name not in ("decode", "finish")))
    now = FakeTime()
    clock = RunClock(plan, now=now)
    clock.may_train(0, 4)  # the folds may keep the first model
    clock.at("choose", 0, 3)
    assert clock.may_stop_early()
    left = clock.left()
    clock.end_training_by(1.0)  # the automatic budget, set at the first model: it cuts neither folds nor epochs
    assert clock.left() == pytest.approx(left)
    clock.at("train1", 0, 1)
    assert not clock.may_stop_early()  # they chose fine-tuning: exactly 4 epochs, one figure


def test_the_folds_are_priced_by_what_this_run_s_own_parts_took():
    """Fails when the folds are priced at the probe's figures: they are runs like this one, on 2/3 of the
    pictures each, so this run's measured set-up, frozen pass and fit say what theirs will take."""
    stage_s = [0.01, 0.01, 0.01, 0.01, 0.0]
    plan = eta.plan_run(stage_s, n_train=24, n_val=6, n_test=0, epochs=4, depths=[3, 2, 2, 2], cached=True,
                        start_depth=4, first_model=True, folds=3, fold_epochs=4, setup_s=2.0)
    price = {p.name: p.units * p.guess for p in plan}
    fold = dict(next(p for p in plan if p.name == "choose").made_of)
    assert fold["setup"] == 2.0 and fold["frozen"] == pytest.approx(price["cache"])  # 30 pictures either way
    now = FakeTime()
    clock = RunClock(plan, now=now)
    clock.at("cache")
    now.t = 2 * price["cache"]  # the frozen pass took twice its price
    clock.at("fit")
    now.t += 3 * price["fit"]  # the fit three times
    clock.at("choose", 0, 3)
    pooled = (2 * price["cache"] + 3 * price["fit"]) / (price["cache"] + price["fit"])  # no epoch timed yet
    expected = 3 * (2.0 + 2 * fold["frozen"] + 3 * fold["fit"] + pooled * fold["train"])
    assert clock.left() == pytest.approx(expected + sum(price[f"{k}{e}"] * pooled for k in ("train", "val")
                                                        for e in range(1, 5)) + price["finish"] * pooled)
    now.t += 10.0  # then its own pace: the first fold in 10 s
    clock.at("choose", 1, 3)
    assert clock.ratio("choose") == pytest.approx(10.0 / next(p for p in plan if p.name == "choose").guess)
