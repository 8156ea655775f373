"""Do I need more pictures, and of which class? A per-class learning curve on the pretrained features.

The new classifier alone (the run's first model: training/instant.py's fit_head on the frozen network's pooled
features) is trained again and again on fewer of a class's pictures, and scored on pictures it never saw
(k stratified folds; exact copies of a file stay on one side). If the share of a class's pictures it gets
right still climbs over the last doubling of that class's pictures, more of them are likely to help.

One class at a time, the others kept whole: the question is "more pictures of WHICH class?", so only that
class's count moves. Shrinking every class together would mix two effects: a class's right answers also
rise when its neighbours get more pictures (their border sharpens), and the curve could not say whose
pictures did it. The price: 1 + classes x 3 fits per fold instead of 4 (a fraction of a second each).

With a few dozen pictures a class, the folds' test pictures are few and the verdict is often "too few to tell":
that is the honest answer (see `verdict`), and the curve still shows which class is right least often.

Only the training and validation pictures are used: the test share stays untouched, so its figure on the
Evaluate page stays the honest one. The fine-tuned network is not used either: its features have already
seen the pictures the folds would test on.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from transfer_core.core.i18n import N_
from transfer_core.data.datarefs import resolved_config
from transfer_core.data.datasets import Sample, scan_dataset
from transfer_core.data.imagecache import Stopped
from transfer_core.inference.live import limit_this_thread
from transfer_core.models.network import make_head
from transfer_core.quality.embeddings import cached_embeddings, file_digest
from transfer_core.quality.findings import ProgressFn
from transfer_core.quality.suspect_labels import fold_ids
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder
from transfer_core.training.instant import fit_head

SHARES = (0.25, 0.5, 0.75, 1.0)  # of each class's training pictures in a fold
FOLDS = 5
# Pictures per class measured at most (drawn at random): at 200 per class (3 classes) the curve took 24 s and the
# features 94 s the first time (bench/results/learning_curve.json), 1 MB of features per class (1,280 numbers a
# picture); beyond, the time grows with the pictures and the curve's shape at its end changes little.
MAX_PER_CLASS = 200
# Under 8 pictures a class's 50% point rests on 3 pictures and each test fold holds 1 or 2 of them (right answers
# of 0, 50 or 100%): no curve to read.
MIN_PICTURES = 8
# A doubling of a class's pictures that buys fewer right answers than this is not worth a teacher's afternoon.
MIN_RISE = 0.05
# Every 5th picture group of a fold's pictures chooses the classifier's penalty, as the app's default 20%
# validation share does.
CHOOSE_EVERY = 5

MORE, LEVELLED, UNCLEAR, TOO_FEW = "more", "levelled", "unclear", "too few"


@dataclass(frozen=True)
class CurvePoint:
    share: float  # of the class's training pictures in each fold
    pictures: float  # pictures of the class learned from (fit + penalty choice), mean over folds
    recall: float  # share of the class's test pictures answered right, pooled over folds
    recall_spread: float  # standard deviation over folds
    accuracy: float  # right answers over all classes' test pictures, pooled over folds
    accuracy_spread: float


@dataclass(frozen=True)
class ClassCurve:
    name: str
    pictures: int  # measured (after the cap)
    total: int  # the class's training and validation pictures (before the cap)
    points: tuple[CurvePoint, ...]
    verdict: str  # MORE | LEVELLED | UNCLEAR | TOO_FEW
    rise: float  # right answers gained over the last doubling
    noise: float  # how much the folds alone could move that rise (see verdict)

    def describe(self) -> str:
        """The verdict in words (English, marked: translated where shown, with retranslate)."""
        before, after = self.points[_half_of_last(self.points)], self.points[-1]
        values = dict(name=self.name, before=f"{before.recall:.0%}", after=f"{after.recall:.0%}",
                      n_before=f"{before.pictures:.0f}", n_after=f"{after.pictures:.0f}",
                      change=f"{self.rise * 100:+.0f}", n=self.pictures, min=MIN_PICTURES)
        return _WORDS[self.verdict].format(**values)


_WORDS = {
    MORE: N_("More pictures of {name} are likely to help: the share of them it gets right rose from {before} to "
             "{after} over the last doubling ({n_before} to {n_after} pictures)."),
    LEVELLED: N_("{name} has levelled off: doubling its pictures from {n_before} to {n_after} changed the share "
                 "it gets right by {change} points ({after} now). More pictures like these will help little."),
    UNCLEAR: N_("Too few pictures of {name} to tell: the share it gets right moved from {before} to {after} over "
                "the last doubling, no more than chance alone moves it."),
    TOO_FEW: N_("Too few pictures of {name} to tell ({n}); from {min} on the curve can say more."),
}


@dataclass(frozen=True)
class LearningCurve:
    curves: tuple[ClassCurve, ...]
    folds: int
    seconds: float
    same_pictures: bool = True  # False: the data set changed since the run; the curve is for it as it is now

    def needs_more(self) -> list[str]:
        return [c.name for c in self.curves if c.verdict == MORE]

    def capped(self) -> list[ClassCurve]:
        return [c for c in self.curves if c.pictures < c.total]

    def to_dict(self) -> dict:
        return {**asdict(self), "needs_more": self.needs_more(),
                "words": {c.name: c.describe() for c in self.curves}}


# ---------------------------------------------------------------------------------------------- the curve
def learning_curve(features: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                   groups: torch.Tensor | None = None, *, folds: int = FOLDS, shares: Sequence[float] = SHARES,
                   seed: int = 0, new_head: Callable[[], nn.Module] | None = None,
                   totals: Sequence[int] | None = None, progress: ProgressFn | None = None,
                   check_stop: Callable[[], None] = lambda: None) -> LearningCurve:
    """Per class: right answers on held-out folds when the head learns from `shares` of that class's pictures
    (the other classes whole). groups: pictures with one id (copies) always share a fold."""
    t0 = time.time()
    n_classes = len(classes)
    groups = torch.arange(len(labels)) if groups is None else groups
    new_head = new_head or (lambda: _linear(features.shape[1], n_classes))
    fold = group_folds(labels, groups, folds, seed)
    k = int(fold.max()) + 1
    shares = tuple(sorted(set(shares) | {1.0}))  # the whole set is the curve's last point
    plan = [(None, 1.0)] + [(c, s) for c in range(n_classes) for s in shares if s < 1.0]
    tally = {}  # (class varied or None, share, fold) -> (per-class right, per-class count, pictures per class)
    with _one_thread():
        for f in range(k):
            orders = _class_orders(labels, groups, fold != f, n_classes, seed + f)
            test = torch.nonzero(fold == f).flatten()
            strength = _choose_strength(features, labels, orders, n_classes, new_head, check_stop)
            for step, (varied, share) in enumerate(plan):
                if progress:
                    progress(N_("learning from fewer pictures"), f * len(plan) + step, k * len(plan))
                used = _take(orders, varied, share)
                head = new_head()
                fit_head(head, features[used], labels[used], features[:0], labels[:0], n_classes, check_stop,
                         strengths=(strength,))
                with torch.no_grad():
                    right = head(features[test]).argmax(1) == labels[test]
                count = torch.bincount(labels[test], minlength=n_classes)
                tally[varied, share, f] = (torch.bincount(labels[test][right], minlength=n_classes), count,
                                           torch.bincount(labels[used], minlength=n_classes))
    sizes = torch.bincount(labels, minlength=n_classes).tolist()
    curves = tuple(_class_curve(c, classes[c], tally, shares, k, sizes[c], (totals or sizes)[c])
                   for c in range(n_classes))
    return LearningCurve(curves, k, round(time.time() - t0, 2))


def _linear(dim: int, n_classes: int) -> nn.Module:
    head = nn.Linear(dim, n_classes)
    nn.init.zeros_(head.weight)  # the same start every time: the problem is convex, the fit reproducible
    nn.init.zeros_(head.bias)
    return head


def group_folds(labels: torch.Tensor, groups: torch.Tensor, folds: int, seed: int = 0) -> torch.Tensor:
    """Each picture's fold: stratified by class over groups (a group takes its first picture's class), never
    more folds than the smallest class has groups (a fold without a class's pictures cannot score it)."""
    ids, inverse = torch.unique(groups, return_inverse=True)
    first = torch.full((len(ids),), len(labels), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(labels)), reduce="amin")
    group_labels = labels[first]
    smallest = int(torch.bincount(group_labels)[torch.bincount(group_labels) > 0].min())
    k = max(2, min(folds, smallest))
    return fold_ids(group_labels, k, seed)[inverse]


def _class_orders(labels: torch.Tensor, groups: torch.Tensor, pool: torch.Tensor, n_classes: int,
                  seed: int) -> list[list[torch.Tensor]]:
    """Per class, its pool pictures as groups in a seeded random order (each group: its pictures' indices).
    A share takes a prefix, so the 25% pictures are among the 50% ones: the curve's steps differ only by
    the pictures added, not by a new draw."""
    rng = random.Random(seed)
    orders = []
    for c in range(n_classes):
        idx = torch.nonzero(pool & (labels == c)).flatten()
        by_group: dict[int, list[int]] = {}
        for i in idx.tolist():
            by_group.setdefault(int(groups[i]), []).append(i)
        members = [torch.tensor(m) for m in by_group.values()]
        rng.shuffle(members)
        orders.append(members)
    return orders


@contextmanager
def _one_thread():
    """Thousands of small L-BFGS steps: on the shared 2-core machine two torch threads waited on each other,
    127 s against 3.9 s at 20 pictures per class (python bench/learning_curve.py, 2026-12-07,
    bench/results/learning_curve.json). Only this thread changes; it is put back after."""
    before = torch.get_num_threads()
    limit_this_thread(1)
    try:
        yield
    finally:
        limit_this_thread(before)


def _choose_strength(features: torch.Tensor, labels: torch.Tensor, orders: list[list[torch.Tensor]],
                     n_classes: int, new_head: Callable[[], nn.Module], check_stop: Callable[[], None]) -> float:
    """The penalty the app would choose on this fold's pictures (fit_head's path, every 5th group choosing),
    chosen once per fold and kept for every share: a path per share cost 2.5x the time and moved the points by a
    few pictures' worth (textile at 128 px, 40 per class, 2 seeds: every recall within 0.07)."""
    fit, choose = _split_choice(orders, None, 1.0)
    return fit_head(new_head(), features[fit], labels[fit], features[choose], labels[choose], n_classes,
                    check_stop).strength


def _take(orders: list[list[torch.Tensor]], varied: int | None, share: float) -> torch.Tensor:
    """Class `varied` at `share` of its groups (at least one), every other class whole."""
    fit, choose = _split_choice(orders, varied, share)
    return torch.cat([fit, choose])


def _split_choice(orders: list[list[torch.Tensor]], varied: int | None, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pictures to fit on and pictures choosing the penalty: class `varied` at `share` of its groups (at least
    one), every other class whole."""
    fit, choose = [], []
    for c, members in enumerate(orders):
        used = members if c != varied else members[:max(1, round(share * len(members)))]
        for position, group in enumerate(used):
            (choose if position % CHOOSE_EVERY == CHOOSE_EVERY - 1 else fit).append(group)
    empty = torch.zeros(0, dtype=torch.long)
    return (torch.cat(fit) if fit else empty), (torch.cat(choose) if choose else empty)


# ---------------------------------------------------------------------------------------------- the verdict
def _class_curve(c: int, name: str, tally: dict, shares: tuple[float, ...], k: int, size: int,
                 total: int) -> ClassCurve:
    points, per_fold = [], []
    for share in shares:
        rows = [tally[None if share >= 1.0 else c, share, f] for f in range(k)]
        right = torch.stack([r[0] for r in rows]).float()
        count = torch.stack([r[1] for r in rows]).float()
        recall = right[:, c] / count[:, c].clamp(min=1)
        accuracy = right.sum(1) / count.sum(1).clamp(min=1)
        has = count[:, c] > 0
        per_fold.append((recall, has))
        points.append(CurvePoint(share, float(torch.stack([r[2][c] for r in rows]).float().mean()),
                                 float(right[:, c].sum() / count[:, c].sum().clamp(min=1)), _spread(recall[has]),
                                 float(right.sum() / count.sum().clamp(min=1)), _spread(accuracy)))
    half = _half_of_last(points)
    rise = points[-1].recall - points[half].recall
    (last, has), (before, _) = per_fold[-1], per_fold[half]
    noise = _noise(last[has] - before[has], k)
    return ClassCurve(name, size, total, tuple(points), verdict(rise, noise, size), round(rise, 4), round(noise, 4))


def verdict(rise: float, noise: float, pictures: int) -> str:
    """MORE: the last doubling bought at least MIN_RISE and more than the folds alone could move it;
    LEVELLED: even the hopeful reading (rise + noise) stays under MIN_RISE; otherwise the folds cannot tell."""
    if pictures < MIN_PICTURES:
        return TOO_FEW
    if rise >= MIN_RISE and rise > noise:
        return MORE
    if rise + noise < MIN_RISE:
        return LEVELLED
    return UNCLEAR


def _noise(differences: torch.Tensor, k: int) -> float:
    """Twice the standard error of the mean fold-by-fold rise, with Nadeau & Bengio's (2003) correction
    (1/k + n_test/n_train instead of 1/k): folds share most of their training pictures, so their differences
    are not independent and the plain 1/k would be too sure. Twice: about a 95% one-sided margin."""
    if len(differences) < 2:
        return 1.0  # one fold: no spread to measure, nothing can be claimed
    return float(2 * (differences.var() * (1 / k + 1 / (k - 1))).sqrt())


def _spread(values: torch.Tensor) -> float:
    return round(float(values.std()), 4) if len(values) > 1 else 0.0


def _half_of_last(points: Sequence[CurvePoint]) -> int:
    """The point at about half the last one's share: the start of the last doubling."""
    return min(range(len(points)), key=lambda i: abs(points[i].share - points[-1].share / 2))


# ---------------------------------------------------------------------------------------------- a run
def run_learning_curve(run_dir: str | Path, *, cap: int = MAX_PER_CLASS, folds: int = FOLDS, seed: int = 0,
                       progress: ProgressFn | None = None,
                       stop: threading.Event | None = None) -> LearningCurve:
    """The learning curve of a finished run's data set: its training and validation pictures (at most `cap`
    per class, drawn at random), seen by the run's pretrained network at the run's size, and its head."""
    run = RunFolder(run_dir)
    config = resolved_config(run.config, run.path.parent)
    say = progress or (lambda phase, done, total: None)
    report = scan_dataset(config.data, val_split=config.val_split, seed=config.seed, extract_to=run.path / "data",
                          test_share=config.test_share, progress=lambda done, n: say(N_("reading"), done, n))
    samples, totals = cap_per_class(list(report.train) + list(report.val), len(report.classes), cap, seed)
    paths = [str(s.path) for s in samples]
    digests = [file_digest(p) for p in paths]
    features = cached_embeddings(paths, digests, config.backbone, config.image_size, progress, stop).features
    labels = torch.tensor([s.label for s in samples])
    first: dict[object, int] = {}  # near-copies (the split's groups: data.nearcopies), else exact copies: one group
    groups = torch.tensor([first.setdefault(s.group if s.group >= 0 else d, len(first))
                           for s, d in zip(samples, digests)])
    described = run.model_description()
    head_kind = dict(kind=described.head, hidden=described.mlp_hidden, dropout=described.dropout)

    def new_head() -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # the same start for every fit, the caller's RNG untouched
            torch.manual_seed(seed)
            return make_head(features.shape[1], len(report.classes), **head_kind)

    curve = learning_curve(features, labels, report.classes, groups, folds=folds, seed=seed, new_head=new_head,
                           totals=totals, progress=progress, check_stop=lambda: _check(stop))
    recorded = (run.read_json(runfiles.DATASET) or {}).get("fingerprint")
    return LearningCurve(curve.curves, curve.folds, curve.seconds, recorded in (None, report.fingerprint()))


def cap_per_class(samples: Sequence[Sample], n_classes: int, cap: int, seed: int = 0) -> tuple[list[Sample], list[int]]:
    """At most `cap` pictures of each class (a seeded random draw, in the given order), and each class's total."""
    by_class = [[s for s in samples if s.label == c] for c in range(n_classes)]
    kept = []
    for c, members in enumerate(by_class):
        kept += random.Random(f"{seed}/{c}").sample(members, cap) if len(members) > cap else members
    order = {id(s): i for i, s in enumerate(samples)}
    return sorted(kept, key=lambda s: order[id(s)]), [len(m) for m in by_class]


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Stopped()
