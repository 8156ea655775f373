"""Time left for a whole run, from its first second: a plan of its parts (reading the pictures, computing the
frozen layers' outputs once, each epoch's training and validation, the end), priced by a quick timing of
the network, then corrected by what the parts done so far really took.

Why a plan and not the current pace: the pace of the first batch said "29 s left" for a run that took
102 s, because the quick start's first epoch is several times faster than the later ones, and the 18 s of
preparation came before any batch at all.

Why a range: a run that may stop early (patience, early stopping) ends somewhere between its soonest end and
its last epoch (or its time budget). One figure priced every epoch: "about 46 s left" for a one-click run
that ended at 7 s (issue 28). While it may stop early, the time left is the pair (soonest, latest); once its
plan is fixed, one figure.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

BACKWARD = 2.0  # a backward pass costs about twice the forward one
DECODE_GUESS_S = 0.004  # seconds to read one picture, until the first ones are timed


@torch.no_grad()
def stage_seconds(net, crop: int, device: torch.device, batch: int = 2) -> list[float]:
    """Forward seconds per image of each stage, then of pooling + head (the last entry), on a probe batch.
    A small one: the plan is corrected by the parts' real times as they come, and at 10 pictures per class
    this probe (two passes, warm-up and timed) was a tenth of the time to the first model with 4 images."""
    was_training = net.training
    net.eval()
    x = torch.zeros(batch, 3, crop, crop, device=device)
    net(x)  # warm-up: the first call pays for allocation and kernel choice
    times = []
    for stage in [*net.stages, lambda y: net.head(net.pool(y))]:
        t = time.perf_counter()
        x = stage(x)
        times.append((time.perf_counter() - t) / batch)
    net.train(was_training)
    return times


@dataclass
class Part:
    name: str
    units: int  # pictures (or 1 for a lump)
    guess: float  # seconds per unit before anything of this kind was timed
    kind: str = "compute"  # "decode" parts are priced by the timed decoding, the rest by the network's pace
    epoch: int = 0  # the epoch it belongs to (0: before or after the epochs: preparation, the end)


@dataclass
class RunClock:
    """Seconds left, updated as the run reports which part it is in and how far."""
    parts: list[Part]
    now: callable = time.monotonic
    _current: int = -1
    _started: float = 0.0
    _actual: dict = field(default_factory=lambda: {"decode": 0.0, "compute": 0.0})
    _guessed: dict = field(default_factory=lambda: {"decode": 0.0, "compute": 0.0})
    training_ends: float | None = None  # a time budget: training ends by then, whatever the plan's epochs
    epochs: tuple[int, int] | None = None  # (fewest, most) epochs the run may train; None: every planned one

    def may_train(self, fewest: int, most: int) -> None:
        """The run may end after `fewest` epochs (it stops when it stops improving) and trains at most `most`
        (0, 0: it ends at its first model): the parts of later epochs are not priced."""
        self.epochs = (max(0, min(fewest, most)), max(0, most))

    def may_stop_early(self) -> bool:
        """Whether the run's end is still open: then its time left is a range (soonest, left)."""
        return (self.epochs is not None and self.epochs[0] < self.epochs[1] and self._epoch() < self.epochs[1]
                and self._current < len(self.parts) - 1)  # the end of the run has come

    def end_training_by(self, seconds_from_now: float) -> None:
        """The run's time budget is known: the epochs it would pass will not come, the end of the run will."""
        self.training_ends = self.now() + max(seconds_from_now, 0.0)

    def at(self, name: str, step: int = 0, steps: int = 0) -> float:
        """The run is in part `name`, `step` of `steps` done: seconds left for the whole run."""
        index = next((i for i, p in enumerate(self.parts) if p.name == name), None)
        if index is None:
            return self.left()
        if index != self._current:
            self._close_until(index)
        return self.left(step, steps)

    def skip_to(self, name: str) -> None:
        """Continue a resumed run at part `name`: the parts before it were done by an earlier process."""
        index = next((i for i, p in enumerate(self.parts) if p.name == name), None)
        if index is not None:
            self._current, self._started = index, self.now()

    def left(self, step: int = 0, steps: int = 0) -> float:
        """Seconds left if the run trains every epoch it may (the latest end)."""
        return self._left(step, steps, self.epochs[1] if self.epochs else None)

    def soonest(self, step: int = 0, steps: int = 0) -> float:
        """Seconds left if the run stops at its first chance: after the fewest epochs, or this one if later."""
        if self.epochs is None:
            return self.left(step, steps)
        return min(self._left(step, steps, max(self.epochs[0], self._epoch())), self.left(step, steps))

    def _epoch(self) -> int:
        return self.parts[self._current].epoch if self._current >= 0 else 0

    def _left(self, step: int, steps: int, last_epoch: int | None) -> float:
        """The current part's rest and the later parts' prices, those of epochs after `last_epoch` left out."""
        def rest(parts):
            return sum(self._price(p) for p in parts if last_epoch is None or p.epoch <= last_epoch)
        if self._current < 0:
            return self._within_budget(rest(self.parts))
        part = self.parts[self._current]
        elapsed = self.now() - self._started
        if step > 0 and steps > step and elapsed > 0.5:  # its own pace, once it has one
            here = elapsed * (steps - step) / step
        else:
            here = max(self._price(part) - elapsed, 0.0)
        return self._within_budget(here + rest(self.parts[self._current + 1:]))

    def _within_budget(self, planned: float) -> float:
        """At most the budget's time left plus the end of the run (the plan's last part)."""
        if self.training_ends is None or self._current == len(self.parts) - 1:
            return planned
        return min(planned, max(self.training_ends - self.now(), 0.0) + self._price(self.parts[-1]))

    def _close_until(self, index: int) -> None:
        """Parts before `index` are done: what they took corrects the price of the rest."""
        now = self.now()
        if self._current >= 0:
            done = self.parts[self._current:index]
            guessed = {kind: sum(p.units * p.guess for p in done if p.kind == kind) for kind in self._actual}
            total = sum(guessed.values()) or 1.0
            for kind in self._actual:  # the time since the last change, shared in proportion to the guesses
                self._actual[kind] += (now - self._started) * guessed[kind] / total
                self._guessed[kind] += guessed[kind]
        self._current, self._started = index, now

    def _price(self, part: Part) -> float:
        guessed = self._guessed[part.kind]
        ratio = self._actual[part.kind] / guessed if guessed > 0 else 1.0
        return part.units * part.guess * ratio


def plan_run(stage_s: list[float], *, n_train: int, n_val: int, n_test: int, epochs: int,
             depths: list[int], cached: bool, views: int = 1, decode_s: float = DECODE_GUESS_S) -> list[Part]:
    """The parts of a run. `stage_s` from stage_seconds; `depths[e]` is the number of frozen stages in
    epoch e+1 (the quick start and gradual unfreezing change it); `cached`: frozen outputs computed once."""
    def frozen(d):
        return sum(stage_s[:d])

    def learning(d):
        return sum(stage_s[d:])
    parts = [Part("decode", n_train + n_val, decode_s, "decode")]
    if cached and depths[0] > 0:
        parts.append(Part("cache", n_train * max(views, 1) + n_val, frozen(depths[0])))
    for e, d in enumerate(depths, start=1):
        per_image = (1 + BACKWARD) * learning(d) + (0 if cached and d > 0 else frozen(d))
        parts.append(Part(f"train{e}", n_train, per_image, epoch=e))
        parts.append(Part(f"val{e}", n_val, learning(d) + (0 if cached and d > 0 else frozen(d)), epoch=e))
    full = sum(stage_s)
    # At the end: the test share read and classified, the training pictures' features for the
    # unfamiliar-picture check (up to 2,000 of them).
    parts.append(Part("finish", 1, n_test * (full + decode_s) + min(n_train, 2000) * full))
    return parts


# A range narrower than this is shown as one figure: a few seconds apart say nothing a person can use.
RANGE_MIN_S, RANGE_MIN_SHARE = 3.0, 0.15


def shown_as_range(soonest: float | None, latest: float) -> bool:
    """Whether the time left is shown as "between soonest and latest" rather than one figure."""
    return soonest is not None and latest - soonest >= max(RANGE_MIN_S, RANGE_MIN_SHARE * latest)
