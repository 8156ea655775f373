"""Time left you can trust (issue 28): a one-click run said "about 46 s left" and ended at 7 s, because every
planned epoch was priced though the run stops when it stops improving. While a run may stop early the time
left is a range (soonest, latest); when its plan is fixed, one figure; a run that ends at its first model
prices no epoch at all."""
from __future__ import annotations

import time

import pytest

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import DataReady, Progress, event_from_dict
from transfer_core.training import progressive
from transfer_core.training.callbacks import Callback
from transfer_core.training.eta import Part, RunClock, shown_as_range
from transfer_core.training.progressive import Progressive
from transfer_core.training.thaw import ThawSchedule
from transfer_core.workflows.train import train

FAST = dict(image_size=64, batch_size=8, seed=0)
REAL_MIN_VAL = progressive.MIN_VAL_TO_FINE_TUNE


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
    assert Progressive(2).epoch_range(8, progressive.MIN_VAL_TO_FINE_TUNE - 1) == (0, 0)  # small data


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


def test_a_real_one_click_run_reports_a_range_and_a_small_data_run_none(textile_small, tmp_path, monkeypatch):
    """Fails on the single figure: no soonest end in the events of a run that can stop early."""
    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", 0)  # fine-tune on 36 pictures, for speed
    watch = Watch()
    config = TrainConfig(data=str(textile_small), schedule="progressive", freeze=3, epochs=6, **FAST)
    train(config, runs_dir=tmp_path, callbacks=[watch])
    assert watch.clock.epochs == (3, 6)
    early = [p for p in watch.progress if p.phase == "preparing" and p.eta_seconds > 0]
    assert early and all(p.eta_soonest_seconds is not None and p.eta_soonest_seconds < p.eta_seconds for p in early)
    fixed = Watch()
    train(TrainConfig(data=str(textile_small), schedule="fixed", freeze=3, epochs=2, **FAST), runs_dir=tmp_path,
          callbacks=[fixed])
    assert fixed.clock.epochs is None and all(p.eta_soonest_seconds is None for p in fixed.progress)
    monkeypatch.setattr(progressive, "MIN_VAL_TO_FINE_TUNE", REAL_MIN_VAL)  # 7 validation pictures: first model
    small = Watch()
    train(config, runs_dir=tmp_path, callbacks=[small])
    assert small.clock.epochs == (0, 0) and all(p.eta_soonest_seconds is None for p in small.progress)
