"""The data check: duplicates, train/validation leakage and likely mislabelled images, in one report.

All three come from one pass of an ImageNet backbone over the images (embeddings.py), so they work before
any training:
- exact duplicates: identical file contents (a hash); near duplicates: resized, re-encoded or slightly
  edited copies (duplicates.py);
- leakage: a duplicate with one copy in training and one in validation makes the score look better
  than it is;
- likely mislabelled: pictures whose label classifiers that never saw them disagree with
  (suspect_labels.py).

What it finds is in findings.py; the review actions (move to another class, exclude, undo) in
review_actions.py.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from transfer_core.core.i18n import N_
from transfer_core.data.datasets import DatasetReport, scan_dataset
from transfer_core.quality.duplicates import find_duplicates
from transfer_core.quality.embeddings import cached_embeddings, file_digest
from transfer_core.quality.findings import (
    ImageEntry,
    ProgressFn,
    QualityReport,
    SuspectLabel,
)
from transfer_core.quality.suspect_labels import (
    MAX_SUSPECT_SHARE,
    label_probs,
    rank_suspects,
)


def check_dataset(source: str | Path, *, backbone: str = "mobilenet_v2", image_size: int | None = 128,
                  val_split: float = 0.2, seed: int = 0,
                  max_share: float = MAX_SUSPECT_SHARE, extract_to: str | Path | None = None,
                  progress: ProgressFn | None = None, stop: threading.Event | None = None) -> QualityReport:
    """Duplicates, train/validation leaks and likely mislabelled images of a data set (folder or .zip).

    Uses the same train/validation split as training with the same `val_split` and `seed`.
    image_size 128 keeps it quick on a CPU (2,000 images: 7.6 minutes on a busy 2-core machine); None: the
    backbone's own size. Features are cached by file contents, so checking again after a few moves is quick.
    """
    t0 = time.time()
    report = scan_dataset(source, val_split=val_split, seed=seed, extract_to=extract_to)
    entries = _entries(report)
    paths = [e.path for e in entries]
    digests = []
    for i, p in enumerate(paths):
        digests.append(file_digest(p))
        if progress and (i % 64 == 0 or i == len(paths) - 1):
            progress(N_("reading"), i + 1, len(paths))
    emb = cached_embeddings(paths, digests, backbone, image_size, progress, stop)
    labels = torch.tensor([e.label for e in entries])
    probs = label_probs(emb.features, labels, len(report.classes), seed=seed, progress=progress)
    suspects = [_suspect(entries[i], probs[i], report.classes) for i in rank_suspects(probs, labels, max_share)]
    notes = _notes(report, probs, labels)
    return QualityReport(root=str(report.root), classes=report.classes, images=tuple(entries),
                         duplicates=tuple(find_duplicates(entries, emb, digests)),
                         suspects=tuple(suspects),
                         out_of_fold_accuracy=round(float((probs.argmax(1) == labels).float().mean()), 4),
                         backbone=backbone, seconds=round(time.time() - t0, 1),
                         notes=tuple(notes))


def _entries(report: DatasetReport) -> list[ImageEntry]:
    def rel(p: Path) -> str:
        try:
            return str(Path(p).relative_to(report.root))
        except ValueError:
            return Path(p).name

    return ([ImageEntry(str(s.path), rel(s.path), s.label, "train") for s in report.train]
            + [ImageEntry(str(s.path), rel(s.path), s.label, "val") for s in report.val])


def _suspect(entry: ImageEntry, probs: torch.Tensor, classes: Sequence[str]) -> SuspectLabel:
    best = int(probs.argmax())
    return SuspectLabel(entry, classes[entry.label], classes[best], round(float(probs[entry.label]), 4),
                        round(float(probs[best]), 4))


def _notes(report: DatasetReport, probs: torch.Tensor, labels: torch.Tensor) -> list[str]:
    smallest = min(int((labels == c).sum()) for c in range(len(report.classes)))
    notes = []
    if smallest < 10:
        notes.append(N_("One class has only {smallest} picture(s): with so few, the label check is guesswork.").format(smallest=smallest))
    acc = float((probs.argmax(1) == labels).float().mean())
    if acc < 0.8:
        notes.append(N_("The classes look alike to an untrained network (it tells them apart {acc:.0%} of the "
                        "time), so some flagged pictures will be correct but hard: check before moving.").format(
                            acc=acc))
    return notes
