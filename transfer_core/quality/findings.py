"""What the data check finds, as plain records: duplicate pairs, suspected labels, and the report that holds
them with its findings in words (QualityReport.summary). No computing here: checks.py fills them in."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from transfer_core.core.i18n import _

# progress(phase, done, total); phases: "reading", "features", "labels"
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ImageEntry:
    path: str
    name: str  # path inside the data set, for display
    label: int
    split: str  # "train" or "val"


@dataclass(frozen=True)
class DuplicatePair:
    a: ImageEntry
    b: ImageEntry
    similarity: float  # 1.0 for identical files
    exact: bool

    @property
    def leak(self) -> bool:
        """One copy trains, the other is used to check: the validation score is inflated."""
        return self.a.split != self.b.split

    @property
    def conflicting_labels(self) -> bool:
        return self.a.label != self.b.label


@dataclass(frozen=True)
class SuspectLabel:
    image: ImageEntry
    given: str
    suggested: str
    given_probability: float  # out-of-fold probability of the label it has
    suggested_probability: float


@dataclass(frozen=True)
class QualityReport:
    root: str
    classes: tuple[str, ...]
    images: tuple[ImageEntry, ...]
    duplicates: tuple[DuplicatePair, ...]
    suspects: tuple[SuspectLabel, ...]  # most suspect first
    out_of_fold_accuracy: float  # how well a linear classifier on the features separates the classes
    backbone: str
    seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def leaks(self) -> list[DuplicatePair]:
        return [d for d in self.duplicates if d.leak]

    def summary(self) -> list[str]:
        """Plain-words findings, most important first."""
        n = len(self.images)
        lines = []
        if self.leaks:
            lines.append(_("{n} picture(s) are in training and (as a copy) in validation: the validation score will "
                           "look better than it is. Exclude one copy of each.").format(n=len(self.leaks)))
        conflicts = [d for d in self.duplicates if d.conflicting_labels]
        if conflicts:
            lines.append(_("{n} pair(s) of (near-)identical pictures carry different labels.").format(
                n=len(conflicts)))
        same = len(self.duplicates) - len(self.leaks)
        if same > 0:
            lines.append(_("{same} pair(s) of (near-)duplicate pictures within training or within validation.").format(same=same))
        if self.suspects:
            lines.append(_("{n} of {n2} picture(s) may have the wrong label: a classifier that never saw them "
                           "disagrees with their folder. Review them, most suspect first.").format(
                               n=len(self.suspects), n2=n))
        if not lines:
            lines.append(_("No duplicates and no likely label mistakes found among {n} pictures.").format(n=n))
        return lines + list(self.notes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["leaks"] = len(self.leaks)
        d["summary"] = self.summary()
        for pair, row in zip(self.duplicates, d["duplicates"]):
            row["leak"], row["conflicting_labels"] = pair.leak, pair.conflicting_labels
        return d
