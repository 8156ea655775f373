"""Head only or fine-tuning? With a small validation share, chosen by cross-validation on every labelled picture.

With 8-16 validation pictures one picture is 6-12 points: no run can show there that fine-tuning beat the
first model (the classifier fitted on the frozen features), so the old rule kept the first model below 20
validation pictures, and on a hard task far from ImageNet photos (grey-scale industrial parts, 60 pictures per
class) it threw away fine-tuning's 7 points (issue #28). Now, below CV_BELOW validation pictures, the run asks
the data: FOLDS runs of the same kind on folds of all its labelled pictures (training and validation, near-copy
groups kept whole, classes in proportion), each making the first model and then fine-tuning for FOLD_EPOCHS
epochs. Every picture is held out once, so the two ways are compared on all of them (40 to 250 pictures,
not 8 to 16), each fold's fine-tuning judged at its last epoch (nothing chosen on the pictures judged).
Fine-tuning is kept only when it beat the first model beyond chance, picture by picture: of the pictures
one got right and the other wrong, fine-tuning must win by at least sqrt(their number) (and by 1), a
one-sided sign test at about one standard deviation. On 10 MRI slices per class, "more right" alone chose
fine-tuning on one more picture of 20 and lost 18 points on the test folder (bench/small_data.py, seed 3).
The run then fine-tunes the same way, and keeps its last epoch (its own few validation pictures cannot
overrule the folds).

The folds are runs of the trainer's own class on folders of copies of the pictures (at most a few hundred
small files: the choice is only made below CV_BELOW validation pictures), in a temporary folder removed
afterwards.
"""
from __future__ import annotations

import math
import random
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from transfer_core.core.events import RunFinished
from transfer_core.core.i18n import N_
from transfer_core.runstore.runs import RunFolder

CV_BELOW = 50  # validation pictures under which the choice is cross-validated
FOLDS = 3
FOLD_EPOCHS = 4  # fine-tuning epochs in each fold, and in the run when fine-tuning is chosen
FOLD_TAG = "cross-validation fold"
LAST_EPOCH = "fold_last_epoch.json"  # a fold run's answers on its held-out pictures at its last epoch  # in a fold run's config.tags: it fine-tunes FOLD_EPOCHS, nothing else

CHOSE_HEAD = N_("cross-validated on all {n} labelled pictures ({folds} folds): the first model got {head} right, "
                "fine-tuning {fine}, not better beyond chance, so the first model is kept")
CHOSE_FINE = N_("cross-validated on all {n} labelled pictures ({folds} folds): fine-tuning got {fine} right, the "
                "first model {head}, so the run fine-tunes for {epochs} epochs")


@dataclass(frozen=True)
class Choice:
    fine_tune: bool
    head_right: int  # held-out pictures the first model got right, over all folds
    fine_right: int  # held-out pictures fine-tuning got right at its last epoch
    pictures: int  # held-out pictures over all folds: every labelled picture once

    def words(self) -> str:
        """Why, in English (kept in events; shown through retranslate)."""
        return (CHOSE_FINE if self.fine_tune else CHOSE_HEAD).format(
            n=self.pictures, folds=FOLDS, head=self.head_right, fine=self.fine_right, epochs=FOLD_EPOCHS)


def is_fold_run(config) -> bool:
    return FOLD_TAG in config.tags


def can_fold(samples: list) -> bool:
    """Every class has FOLDS pictures or groups of near-copies: each fold holds out some of each class."""
    groups: dict[int, set] = defaultdict(set)
    for i, s in enumerate(samples):
        groups[s.label].add(s.group if s.group >= 0 else -1 - i)
    return len(groups) >= 2 and all(len(g) >= FOLDS for g in groups.values())


def fold_of_each(samples: list, folds: int, seed: int) -> list[int]:
    """A fold number per sample: within each class, whole near-copy groups dealt in turn to the fold that
    holds the fewest of that class's pictures so far (largest groups first), so classes stay in proportion."""
    fold = [0] * len(samples)
    by_class: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, s in enumerate(samples):
        by_class[s.label][s.group if s.group >= 0 else -1 - i].append(i)
    rng = random.Random(seed)
    for label in sorted(by_class):
        groups = list(by_class[label].values())
        rng.shuffle(groups)
        groups.sort(key=len, reverse=True)  # stable: equal sizes keep the shuffled order
        held = [0] * folds
        for group in groups:
            f = min(range(folds), key=lambda j: (held[j], j))
            held[f] += len(group)
            for i in group:
                fold[i] = f
    return fold


def choose(trainer) -> Choice:
    """Run the folds (trainer: the run asking; its Stop stops them) and compare the two ways."""
    samples = list(trainer.train_samples) + list(trainer.val_samples)
    fold = fold_of_each(samples, FOLDS, trainer.config.seed)
    head = fine = seen = wins = losses = 0
    with tempfile.TemporaryDirectory(prefix="transfer-folds-") as tmp:
        for f in range(FOLDS):
            trainer.report_progress("choosing", f, FOLDS, part="choose")
            data = _fold_folder(Path(tmp) / f"fold{f + 1}", samples, [x == f for x in fold], trainer.classes)
            config = replace(trainer.config, data=str(data), epochs=FOLD_EPOCHS, max_images=0, test_share=False,
                             time_budget_minutes=0, early_stopping=0,
                             tags={**trainer.config.tags, FOLD_TAG: f"{f + 1}/{FOLDS}"})
            result = type(trainer)(config, runs_dir=Path(tmp) / "runs", stop=trainer.stop).run_training()
            trainer.check_stop()
            first, last = _fold_rightness(result)
            head, fine, seen = head + sum(first), fine + sum(last), seen + len(first)
            wins += sum(b and not a for a, b in zip(first, last))
            losses += sum(a and not b for a, b in zip(first, last))
    trainer.report_progress("choosing", FOLDS, FOLDS, part="choose")
    return Choice(beats(fine - head, wins + losses), head, fine, seen)


def beats(lead: int, differing: int) -> bool:
    """Does fine-tuning's lead over the first model (pictures it alone got right, less those the first model
    alone got right) pass chance, out of `differing` pictures on which the two disagree in rightness?"""
    return lead >= max(1.0, math.sqrt(differing))


def _fold_folder(root: Path, samples: list, held_out: list[bool], classes: list[str]) -> Path:
    """train/<class>/ and val/<class>/ with copies of the pictures. Copies, not hard links: a link changes the
    original's inode change time, and the scan cache would then read every picture of the person's again."""
    for i, (s, out) in enumerate(zip(samples, held_out)):
        target = root / ("val" if out else "train") / classes[s.label] / f"{i:05d}-{s.path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s.path, target)
    return root


def _fold_rightness(result) -> tuple[list[bool], list[bool]]:
    """Per held-out picture of a finished fold run: was the first model right, was the last epoch right?"""
    if not isinstance(result.final, RunFinished) or result.run_dir is None:
        raise RuntimeError(f"a cross-validation fold did not finish: {getattr(result.final, 'error', result.final)}")
    run = RunFolder(result.run_dir)
    first = run.predictions()  # the first model's, saved when it was made (progressive.instant_model)
    last = run.read_json(LAST_EPOCH) or []  # the last epoch's answers (training.finish, for fold runs)
    if first is None or len(last) != len(first.labels):
        raise RuntimeError("a cross-validation fold left no answers to compare")
    right = [max(range(len(p)), key=p.__getitem__) == y for p, y in zip(first.probs, first.labels)]
    return right, [a == y for a, y in zip(last, first.labels)]
