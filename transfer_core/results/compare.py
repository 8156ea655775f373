"""Comparing runs: their curves side by side, what differs in their settings, and whether the
validation set is big enough to say one is really better.

An accuracy measured on n images is only known to within its Wilson interval (metrics.py). On 20
images, 85% and 90% are one image apart: both could come from the same model. Saying so in plain
words keeps people from picking a "winner" by chance.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from transfer_core.core.i18n import _
from transfer_core.core.config import TrainConfig
from transfer_core.core.metrics import wilson_interval
from transfer_core.data.datarefs import labelled_config
from transfer_core.runstore import runfiles
from transfer_core.core.events import ModelReady
from transfer_core.runstore.runs import RunFolder, kept_model

CURVE_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds")


# ----------------------------------------------------------------------------- can they be told apart?
@dataclass(frozen=True)
class AccuracyComparison:
    accuracies: tuple[float, float]
    totals: tuple[int, int]
    intervals: tuple[tuple[float, float], tuple[float, float]]
    distinguishable: bool
    message: str


def _counts(accuracy: float, total: int) -> int:
    return round(accuracy * total)


def tell_apart(accuracy_a: float, total_a: int, accuracy_b: float, total_b: int) -> AccuracyComparison:
    """Can two accuracies be told apart, given how many validation images each was measured on?

    Yes when their 95% Wilson intervals do not overlap. This is deliberately cautious: a smaller gap
    can be real, but the numbers alone cannot show it.
    """
    ia = wilson_interval(_counts(accuracy_a, total_a), total_a)
    ib = wilson_interval(_counts(accuracy_b, total_b), total_b)
    apart = ia[1] < ib[0] or ib[1] < ia[0]
    return AccuracyComparison((accuracy_a, accuracy_b), (total_a, total_b), (ia, ib), apart,
                              _explain(accuracy_a, total_a, ia, accuracy_b, total_b, ib, apart))


def _explain(acc_a: float, n_a: int, ia, acc_b: float, n_b: int, ib, apart: bool) -> str:
    ranges = _("{acc_a:.0%} (really somewhere in {low_a:.0%}-{high_a:.0%}, from {n_a} images) and "
               "{acc_b:.0%} (in {low_b:.0%}-{high_b:.0%}, from {n_b} images)").format(
                   acc_a=acc_a, low_a=ia[0], high_a=ia[1], n_a=n_a, acc_b=acc_b, low_b=ib[0], high_b=ib[1], n_b=n_b)
    if apart:
        return _("The difference is real: {ranges} do not overlap.").format(ranges=ranges)
    needed = images_needed(acc_a, acc_b)
    more = (_("To tell {acc_a:.0%} from {acc_b:.0%} apart you need about {needed} validation images "
              "per run.").format(acc_a=acc_a, acc_b=acc_b, needed=needed)
            if needed else _("These two accuracies are too close to tell apart with any practical number of images."))
    return _("Too few validation images to tell these runs apart: {ranges} overlap.").format(
        ranges=ranges) + " " + more


def images_needed(accuracy_a: float, accuracy_b: float, limit: int = 100_000) -> int | None:
    """The smallest validation set (same size for both) on which the two accuracies' intervals separate."""
    if accuracy_a == accuracy_b:
        return None

    def separate(n: int) -> bool:
        ia = wilson_interval(_counts(accuracy_a, n), n)
        ib = wilson_interval(_counts(accuracy_b, n), n)
        return ia[1] < ib[0] or ib[1] < ia[0]

    n = 10
    while n <= limit and not separate(n):
        n = int(n * 1.25) + 1
    if n > limit:
        return None
    low = max(10, int((n - 1) / 1.25))  # refine within the last step: rounding makes this nearly monotone
    return next((m for m in range(low, n + 1) if separate(m)), n)


# ----------------------------------------------------------------------------- curves and settings
@dataclass(frozen=True)
class RunCurves:
    run_id: str
    label: str  # short name for a legend: the run id unless tagged
    epochs: list[int]  # 0: the first model (fitted before any epoch; only its validation figures)
    values: dict[str, list[float | None]]  # metric -> one value per epoch, in CURVE_METRICS (None: not measured)


@dataclass(frozen=True)
class RunComparison:
    runs: list[RunCurves]
    differences: dict[str, list]  # setting -> its value in each run (same order as `runs`)
    best: list[tuple[float | None, int]]  # each run's kept model's validation accuracy and its validation set size
    verdict: AccuracyComparison | None  # best run vs the runner-up on the same pictures; else None
    # Set when some runs were measured on other validation pictures (other data, share or seed): their
    # accuracies say nothing about each other, so no verdict is drawn across them.
    not_comparable: str | None = None

    def long_rows(self) -> list[dict]:
        """One row per run and epoch ({run, epoch, metric...}): the form chart libraries overlay by run."""
        return [{"run": r.label, "epoch": e, **{m: r.values[m][i] for m in CURVE_METRICS}}
                for r in self.runs for i, e in enumerate(r.epochs)]

    def aligned(self, metric: str = "val_accuracy") -> dict:
        """{"epoch": [first..max], run label: [value or None per epoch]}: runs of different lengths side by side
        (from epoch 0 when a run has a first model)."""
        last = max((max(r.epochs) for r in self.runs if r.epochs), default=0)
        first = min((min(r.epochs) for r in self.runs if r.epochs), default=1)
        table: dict = {"epoch": list(range(min(first, 1), last + 1))}
        for r in self.runs:
            by_epoch = dict(zip(r.epochs, r.values[metric]))
            table[r.label] = [by_epoch.get(e) for e in table["epoch"]]
        return table


def run_curves(run_dir: str | Path) -> RunCurves:
    """Each epoch's figures; the first model (the progressive schedule's, before any epoch) as epoch 0, with
    its validation figures only: a run that ends at it is one point, not an empty chart."""
    run = RunFolder(run_dir)
    events = run.events()
    # A resumed run can repeat an epoch: the last report of each epoch wins.
    last = {e.epoch: e for e in events if e.kind == "EpochEnd"}
    ordered = [last[k] for k in sorted(last)]
    values = {m: [float(getattr(e, m)) for e in ordered] for m in CURVE_METRICS}
    ready = next((e for e in events if isinstance(e, ModelReady)), None)
    if ready is None:
        return RunCurves(run.id, run.id, [e.epoch for e in ordered], values)
    first = {"val_accuracy": ready.val_accuracy, "val_loss": ready.val_loss}
    return RunCurves(run.id, run.id, [0] + [e.epoch for e in ordered],
                     {m: [first.get(m)] + values[m] for m in CURVE_METRICS})


def setting_differences(configs: list[TrainConfig]) -> dict[str, list]:
    """Settings whose value is not the same in every run: {setting: [value in run 1, run 2, ...]}."""
    keys: list[str] = []
    for other in configs[1:]:
        keys += [k for k in configs[0].differences(other) if k not in keys]
    dicts = [labelled_config(c).flat() for c in configs]  # data as labels, never server paths
    return {k: [d.get(k) for d in dicts] for k in keys}  # a removed method's setting: None elsewhere


def _validation_size(run: RunFolder) -> int:
    return len((run.read_json(runfiles.VALIDATION) or {}).get("labels", []))


def compare_runs(run_dirs: list[str | Path]) -> RunComparison:
    """Two or more runs: curves by epoch, differing settings, and whether their best accuracies differ really."""
    if len(run_dirs) < 2:
        raise ValueError(_("Pick at least two runs to compare."))
    folders = [RunFolder(d) for d in run_dirs]
    missing = [f.id for f in folders if not (f.path / runfiles.CONFIG).is_file()]
    if missing:
        raise FileNotFoundError(f"Not a run folder: {', '.join(missing)}")
    curves = _unique_labels([run_curves(f.path) for f in folders])
    best = [(kept_model(f.events())[0], _validation_size(f)) for f in folders]
    pictures = [_validation_pictures(f) for f in folders]
    ranked = sorted((b + (i,) for i, b in enumerate(best) if b[1] > 0 and b[0] is not None), reverse=True)
    alike = [r for r in ranked if pictures[r[2]] == pictures[ranked[0][2]]] if ranked else []
    verdict = tell_apart(alike[0][0], alike[0][1], alike[1][0], alike[1][1]) if len(alike) >= 2 else None
    apart = [curves[r[2]].label for r in ranked if pictures[r[2]] != pictures[ranked[0][2]]]
    note = None
    if apart:
        note = ((_("{runs} was measured on other validation pictures than {label} (other data, or "
                   "another share or shuffle), so their accuracies cannot be compared. Compare runs trained "
                   "on the same pictures with the same split.") if len(apart) == 1 else
                 _("{runs} were measured on other validation pictures than {label} (other data, or "
                   "another share or shuffle), so their accuracies cannot be compared. Compare runs trained "
                   "on the same pictures with the same split.")).format(runs=", ".join(apart),
                                                                         label=curves[ranked[0][2]].label))
    return RunComparison(curves, setting_differences([f.config for f in folders]), best, verdict, note)


def _validation_pictures(run: RunFolder) -> str:
    """Identifies the pictures a run was validated on (and their labels)."""
    val = run.read_json(runfiles.VALIDATION) or {}
    record = [val.get("root"), val.get("names"), val.get("labels")]
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()


def _unique_labels(curves: list[RunCurves]) -> list[RunCurves]:
    """Runs with the same folder name (from different run directories) get a number, so legends differ."""
    seen: dict[str, int] = {}
    out = []
    for c in curves:
        seen[c.label] = seen.get(c.label, 0) + 1
        label = c.label if seen[c.label] == 1 else f"{c.label} ({seen[c.label]})"
        out.append(RunCurves(c.run_id, label, c.epochs, c.values))
    return out
