"""The time left covers the whole run from its first second: a trial saw "29 s left" in the first batch of a
run that took 102 s, and nothing at all during 18 s of preparation."""
from __future__ import annotations

import pytest

from tests.conftest import copy_textile
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import Progress
from transfer_core.training.callbacks import Callback
from transfer_core.training.eta import Part, RunClock, plan_run
from transfer_core.workflows.train import train


class FakeTime:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_the_plan_prices_later_epochs_by_their_depth_and_the_preparation_too():
    stage_s = [0.01, 0.01, 0.01, 0.01]  # four stages, then head
    plan = plan_run(stage_s + [0.0], n_train=100, n_val=20, n_test=0, epochs=3, depths=[3, 2, 2], cached=True)
    names = [p.name for p in plan]
    assert names == ["decode", "cache", "train1", "val1", "train2", "val2", "train3", "val3", "finish"]
    price = {p.name: p.units * p.guess for p in plan}
    assert price["train2"] == pytest.approx(2 * price["train1"])  # a quick start's epoch 1 is cheaper
    assert price["cache"] == pytest.approx(120 * 0.03)


def test_the_clock_corrects_its_guesses_by_what_parts_really_took():
    now = FakeTime()
    clock = RunClock([Part("decode", 10, 1.0, "decode"), Part("a", 10, 1.0), Part("b", 10, 1.0)], now=now)
    assert clock.left() == 30  # before anything: the plan's own guess
    clock.at("decode")
    now.t = 5.0  # decoding took half the guess
    clock.at("a")
    assert clock.left() == pytest.approx(20)  # compute not yet timed: still the guess
    now.t = 5.0 + 20.0  # "a" took twice its guess
    assert clock.at("b") == pytest.approx(20)  # so "b" is priced at twice its guess too
    now.t = 35.0
    assert clock.at("b", 5, 10) == pytest.approx(10)  # halfway through b after 10 s: 10 s left


def test_a_time_budget_caps_the_time_left_but_not_the_end_of_the_run():
    now = FakeTime()
    parts = [Part("decode", 10, 1.0, "decode"), *(Part(f"train{e}", 10, 1.0) for e in range(1, 9)),
             Part("finish", 1, 5.0)]
    clock = RunClock(parts, now=now)
    clock.at("train1")
    assert clock.left() == pytest.approx(85)  # 8 epochs of 10 s and the end's 5 s
    clock.end_training_by(25.0)  # the automatic budget, known once the first model is ready
    assert clock.left() == pytest.approx(25 + 5)
    now.t = 40.0  # past the budget: only the end is left
    assert clock.at("train3") == pytest.approx(5.0 * 2)  # priced at the pace the epochs took (2x the guess)
    fixed = RunClock(parts, now=now)  # no budget: the plan's every epoch
    fixed.at("train1")
    assert fixed.left() == pytest.approx(85)


class Etas(Callback):
    def __init__(self):
        self.seen = []

    def on_event(self, trainer, event):
        if isinstance(event, Progress):
            self.seen.append((event.phase, event.epoch, event.eta_seconds, event.time))


@pytest.mark.slow
def test_a_real_run_reports_time_left_while_preparing_and_it_covers_the_later_epochs(tmp_path):
    data = copy_textile(tmp_path / "photos", 12)
    etas = Etas()
    result = train(TrainConfig(schedule="fixed", data=str(data), epochs=3, image_size=96, freeze=3), runs_dir=tmp_path / "runs",
                   callbacks=[etas])
    assert result.final.kind == "RunFinished"
    preparing = [e for e in etas.seen if e[0] == "preparing"]
    assert preparing and preparing[-1][2] > 0, "time left is shown from the start"
    first_train = next(e for e in etas.seen if e[0] == "train")
    end = result.final.time
    # The estimate made in epoch 1 (a quick-start epoch) foresees the later, slower epochs: it is not
    # the naive "epoch 1's pace times the epochs left", which a trial found 3.5x too short.
    assert first_train[2] >= 0.35 * (end - first_train[3])
