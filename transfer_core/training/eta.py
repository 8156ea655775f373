"""Time left for a whole run, from its first second: a plan of its parts (reading the pictures, computing the
frozen layers' outputs once, fitting the first model's classifier, each epoch's training and validation, the
end), priced by a quick timing of the network, then corrected by what the parts
done so far really took: each kind of part by its own measured/priced ratio, a kind not yet seen by that of
the network's parts seen so far (the machine's load and the batch's speed-up show in both).

Why a plan and not the current pace: the pace of the first batch said "29 s left" for a run that took
102 s, because the quick start's first epoch is several times faster than the later ones, and the 18 s of
preparation came before any batch at all.

Why a range: a run that may stop early (patience, early stopping) ends somewhere between its soonest end and
its last epoch (or its time budget). One figure priced every epoch: "about 46 s left" for a one-click run
that ended at 7 s (issue 28). While it may stop early, the time left is the pair (soonest, latest); once its
plan is fixed, one figure.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

BACKWARD = 2.0  # a backward pass costs about twice the forward one
DECODE_GUESS_S = 0.004  # seconds to read one picture, until the first ones are timed
# Passes the probe times after its warm-up; each stage's price is their median. One timed pass priced the
# frozen layers' pass over 30 pictures at 15.6 s when it took 2.8 s: in a new process the passes after the
# first are still slow (kernels chosen per shape), and a loaded machine stalls single ones (one probe's
# per-picture figure was 0.81 s, the next two 0.13 s and 0.11 s; 2 cores at load 6.5, 2026-12-07).
PROBE_PASSES = 3
MIN_TIMED_S = 0.5  # a part's done share corrects prices once it has run this long (see RunClock._so_far)
RATIO_FLOOR = 0.1  # measured/priced is never taken below this: the slowest probe seen was 10x too slow
# The first model (progressive.instant_model: the classifier's fit, instant.fit_head, a path of 5 to 7
# strengths and 258 to 500 L-BFGS evaluations of tiny steps, then its validation, calibration and files) costs
# about as much as this many pictures through the whole network, plus this many per training picture: on
# textile at 10 to 200 pictures per class it took 2.4-6.7 s at 24 to 120 pictures and 16.6 s at 480, while the
# frozen pass took 0.09-0.13 s a picture (2 cores at load 4-6, 2026-12-07). Priced so, the machine's load and
# speed show in it through the network's measured/priced ratio; a probe of the fit's own steps varied 50-fold
# within a minute (0.5 to 47 ms an evaluation), too much to price from.
FIT_PICTURES, FIT_PER_PICTURE = 40.0, 0.24


@torch.no_grad()
def stage_seconds(net, crop: int, device: torch.device, batch: int = 2,
                  passes: int = PROBE_PASSES) -> list[float]:
    """Forward seconds per image of each stage, then of pooling + head (the last entry), on a probe batch:
    the median of `passes` timed passes after a warm-up. A small batch: the plan is corrected by the parts'
    real times as they come (a batch of 32 runs faster per picture: the frozen pass's measured ratio says how
    much), and at 10 pictures per class the probe is a fraction of the time to the first model."""
    was_training = net.training
    net.eval()
    x0 = torch.zeros(batch, 3, crop, crop, device=device)
    net(x0)  # warm-up: the first call pays for allocation and kernel choice
    runs = []
    for _ in range(max(1, passes)):
        x, times = x0, []
        for stage in [*net.stages, lambda y: net.head(net.pool(y))]:
            t = time.perf_counter()
            x = stage(x)
            times.append((time.perf_counter() - t) / batch)
        runs.append(times)
    net.train(was_training)
    return [statistics.median(column) for column in zip(*runs)]


@dataclass
class Part:
    name: str
    units: int  # pictures (or 1 for a lump)
    guess: float  # seconds per unit before anything of this kind was timed
    # Parts of a kind share one measured/priced ratio: "decode" (reading pictures), "frozen" (the frozen layers'
    # outputs, batched, without gradients), "fit" (the first model's classifier), "choose" (the folds that
    # choose whether to fine-tune: crossval.py), "train" (epochs), "finish".
    kind: str = "compute"
    epoch: int = 0  # the epoch it belongs to (0: before or after the epochs: preparation, the end)
    by_units: bool = False  # its progress counts its units (pictures) over several passes, not steps of one
    # A part made of others' kinds (a fold: its own setup, frozen pass, fit and epochs): (kind, seconds per
    # unit) each, priced by its kind's ratio until the part's own pace is known.
    made_of: tuple[tuple[str, float], ...] = ()


# Kinds not priced by the network probe: a ratio of theirs says nothing of the network's parts ("setup": a
# run's scan and network, timed before the plan).
OWN_PACE_KINDS = ("decode", "setup")


@dataclass
class RunClock:
    """Seconds left, updated as the run reports which part it is in and how far."""
    parts: list[Part]
    now: callable = time.monotonic
    _current: int = -1
    _started: float = 0.0
    _actual: dict = field(default_factory=lambda: defaultdict(float))
    _guessed: dict = field(default_factory=lambda: defaultdict(float))
    _passes: tuple[int, int, int] = (0, 0, 0)  # in the current part: earlier passes' steps, the last step, of
    _share: float = 0.0  # how much of the current part is done, as last reported
    _rethawing: bool = False  # the last report named an earlier part: a thaw's recomputing, in the next epoch
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
        """The run is in part `name`, `step` of `steps` done: seconds left for the whole run. An earlier part's
        name is a thaw recomputing frozen outputs (reported as "cache"): the next epoch has begun."""
        index = next((i for i, p in enumerate(self.parts) if p.name == name), None)
        if index is not None and index < self._current:
            if self._rethawing:
                return self.left()
            index = next((i for i, p in enumerate(self.parts) if p.epoch > self._epoch() and i > self._current), None)
            if index is None:
                return self.left()
            self._close_until(index)
            self._rethawing = True
            return self.left()
        if index is None:
            return self.left()
        self._rethawing = False
        if index != self._current:
            if self._current >= 0 and self.parts[self._current].kind == "choose" and self.epochs:
                self.epochs = (self.epochs[1], self.epochs[1])  # the folds chose fine-tuning: every planned epoch
            self._close_until(index)
        done, last, of = self._passes
        self._passes = (done + last if step < last or steps != of else done, step, steps)  # a new pass: the
        # frozen outputs of the validation pictures, then of the training ones
        self._share = self._fraction(self.parts[index], step, steps)
        return self.left(step, steps)

    def skip_to(self, name: str) -> None:
        """Continue a resumed run at part `name`: the parts before it were done by an earlier process."""
        index = next((i for i, p in enumerate(self.parts) if p.name == name), None)
        if index is not None:
            self._current, self._started, self._passes, self._share = index, self.now(), (0, 0, 0), 0.0

    def left(self, step: int = 0, steps: int = 0) -> float:
        """Seconds left if the run trains every epoch it may (the latest end)."""
        return self._left(step, steps, self.epochs[1] if self.epochs else None)

    def soonest(self, step: int = 0, steps: int = 0) -> float:
        """Seconds left if the run stops at its first chance: after the fewest epochs, or this one if later."""
        if self.epochs is None:
            return self.left(step, steps)
        return min(self._left(step, steps, max(self.epochs[0], self._epoch())), self.left(step, steps))

    @property
    def part(self) -> str | None:
        """The name of the part the run is in (None before the first report)."""
        return self.parts[self._current].name if self._current >= 0 else None

    def measured(self, kind: str) -> float:
        """Seconds the parts of this kind that are done took."""
        return self._actual.get(kind, 0.0)

    def ratio(self, kind: str) -> float:
        """Measured/priced seconds of the parts of this kind done so far, the current one's done share
        included; before any, that of the network's parts (the probe's small batch against real batches, and
        the machine's load, show in all of them). A probe 10 times too slow (a new process's first passes)
        is so corrected within the first chunk of pictures, not only once the frozen pass is over."""
        actual, guessed = self._so_far()
        if guessed[kind] > 0:
            return max(actual[kind] / guessed[kind], RATIO_FLOOR)
        if kind in OWN_PACE_KINDS:
            return 1.0
        network = [k for k, g in guessed.items() if g > 0 and k not in OWN_PACE_KINDS]
        total = sum(guessed[k] for k in network)
        return max(sum(actual[k] for k in network) / total, RATIO_FLOOR) if total else 1.0

    def _so_far(self) -> tuple[dict, dict]:
        """Measured and priced seconds per kind: the parts done, and the current one's done share once it has
        been timed for MIN_TIMED_S (a chunk reported done at once, its outputs already on disk, measured 0 s:
        every price of the network borrowed that 0, and a run with 37 s to go showed 0 s, then 4 s)."""
        actual, guessed = defaultdict(float, self._actual), defaultdict(float, self._guessed)
        if self._share > 0 and self.now() - self._started >= MIN_TIMED_S:
            part = self.parts[self._current]
            actual[part.kind] += self.now() - self._started
            guessed[part.kind] += part.units * part.guess * self._share
        return actual, guessed

    def _epoch(self) -> int:
        return self.parts[self._current].epoch if self._current >= 0 else 0

    def _left(self, step: int, steps: int, last_epoch: int | None) -> float:
        """The current part's rest and the later parts' prices, those of epochs after `last_epoch` left out."""
        def rest(parts):
            return sum(self._price(p) for p in parts if last_epoch is None or p.epoch <= last_epoch)
        if self._current < 0:
            return self._within_budget(rest(self.parts))
        part = self.parts[self._current]
        elapsed, price = self.now() - self._started, self._price(part)
        done = self._fraction(part, step, steps)
        if done > 0:  # its own pace, trusted as it goes: f x the pace's rest + (1 - f) x the price's rest
            here = (1 - done) * (elapsed + (1 - done) * price)
        else:
            here = max(price - elapsed, 0.0)
        return self._within_budget(here + rest(self.parts[self._current + 1:]))

    def _fraction(self, part: Part, step: int, steps: int) -> float:
        """How much of the current part is done: steps of one pass, or pictures over its passes (by_units)."""
        if part.by_units:
            return min((self._passes[0] + step) / max(part.units, 1), 1.0)
        return min(step / steps, 1.0) if steps > 0 else 0.0

    def _within_budget(self, planned: float) -> float:
        """At most the budget's time left plus the end of the run (the plan's last part). Not when folds choose
        (crossval.py): neither they nor the epochs they choose are cut by the budget (Progressive.on_event)."""
        if self.training_ends is None or self._current == len(self.parts) - 1 or \
                any(p.kind == "choose" for p in self.parts):
            return planned
        return min(planned, max(self.training_ends - self.now(), 0.0) + self._price(self.parts[-1]))

    def _close_until(self, index: int) -> None:
        """Parts before `index` are done: what they took corrects the price of the rest. The time since the
        last change is shared among the current part and the rest of its epoch (validation reports no part
        of its own) in proportion to their guesses; epochs jumped over (the run stopped early) never ran."""
        now = self.now()
        if self._current >= 0:
            epoch = self.parts[self._current].epoch
            done = [p for p in self.parts[self._current:index] if p.epoch == epoch]
            total = sum(p.units * p.guess for p in done) or 1.0
            for p in done:
                self._actual[p.kind] += (now - self._started) * p.units * p.guess / total
                self._guessed[p.kind] += p.units * p.guess
        self._current, self._started, self._passes, self._share = index, now, (0, 0, 0), 0.0

    def _price(self, part: Part) -> float:
        if part.made_of and not self._so_far()[1][part.kind]:
            return part.units * sum(seconds * self.ratio(kind) for kind, seconds in part.made_of)
        return part.units * part.guess * self.ratio(part.kind)


def plan_run(stage_s: list[float], *, n_train: int, n_val: int, n_test: int, epochs: int,
             depths: list[int], cached: bool, views: int = 1, decode_s: float = DECODE_GUESS_S,
             start_depth: int | None = None, first_model: bool = False, final_depth: int | None = None,
             folds: int = 0, fold_epochs: int = 0, setup_s: float = 0.0) -> list[Part]:
    """The parts of a run. `stage_s` from stage_seconds; `depths[e]` is the number of frozen stages in
    epoch e+1 (the quick start and gradual unfreezing change it); `cached`: frozen outputs computed once.
    `start_depth`: the frozen stages whose outputs are computed before the first epoch (default depths[0];
    the progressive schedule's is every stage, for its first model); `first_model`: the first model's classifier
    is fitted before any epoch (progressive); `final_depth`: the kept model's (default the last epoch's);
    `folds` > 0: whether to fine-tune is then cross-validated (crossval.choose), by that many runs on folds of
    all the pictures, each a first model and `fold_epochs` epochs, after a set-up as long as this run's
    (`setup_s`: the scan and the network's building)."""
    def frozen(d):
        return sum(stage_s[:d])

    def learning(d):
        return sum(stage_s[d:])
    start = start_depth if start_depth is not None else (depths[0] if depths else 0)
    parts = [Part("decode", n_train + n_val, decode_s, "decode")]
    if cached and start > 0:
        parts.append(Part("cache", n_train * max(views, 1) + n_val, frozen(start), "frozen", by_units=True))
    if first_model:  # about 9 s of a 19 s run at 10 pictures per class: unpriced, every figure was short by it
        n_fit = n_train * max(views, 1)  # every cached view is an example (progressive._training_features)
        parts.append(Part("fit", 1, (FIT_PICTURES + FIT_PER_PICTURE * n_fit) * sum(stage_s), "fit"))
    if folds:  # each fold's share of it: its pictures are decoded already, and it has no end
        fold = plan_run(stage_s, n_train=n_train + n_val - (n_train + n_val) // folds, n_val=(n_train + n_val) // folds,
                        n_test=0, epochs=fold_epochs, depths=depths[:fold_epochs], cached=cached, views=views,
                        start_depth=start, first_model=True)
        kinds = defaultdict(float, setup=setup_s)
        for p in fold[1:-1]:
            kinds[p.kind] += p.units * p.guess
        parts.append(Part("choose", folds, sum(kinds.values()), "choose", made_of=tuple(kinds.items())))
    for e, d in enumerate(depths, start=1):
        per_image = (1 + BACKWARD) * learning(d) + (0 if cached and d > 0 else frozen(d))
        parts.append(Part(f"train{e}", n_train, per_image, "train", epoch=e))
        parts.append(Part(f"val{e}", n_val, learning(d) + (0 if cached and d > 0 else frozen(d)), "train", epoch=e))
    last = final_depth if final_depth is not None else (depths[-1] if depths else start)
    # At the end: the kept model's validation pass and the unfamiliar-picture check's features of up to 2,000
    # training pictures, from the cached outputs where there are some (only the layers that learn run: the
    # whole network priced there, 12.9 s at 10 pictures per class, took about 1 s), and the test share read and
    # classified by the saved model.
    per_image = learning(last) if cached and last > 0 else sum(stage_s)
    parts.append(Part("finish", 1, (min(n_train, 2000) + 2 * n_val) * per_image + n_test * (sum(stage_s) + decode_s),
                      "finish"))
    return parts


# A range narrower than this is shown as one figure: a few seconds apart say nothing a person can use.
RANGE_MIN_S, RANGE_MIN_SHARE = 3.0, 0.15


def shown_as_range(soonest: float | None, latest: float) -> bool:
    """Whether the time left is shown as "between soonest and latest" rather than one figure."""
    return soonest is not None and latest - soonest >= max(RANGE_MIN_S, RANGE_MIN_SHARE * latest)
