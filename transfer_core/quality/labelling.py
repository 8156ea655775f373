"""Label a pile of pictures with help: learn from the few a person labelled by hand, propose a class for
each of the rest, and ask about the least certain first (active learning by uncertainty).

The frozen pretrained backbone sees each picture once (embeddings.py, cached by file contents, so suggesting
again after a few answers only fits the head again); the head is the instant model's (training/instant.py).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from transfer_core.data.imagecache import Stopped
from transfer_core.data.unlabelled import require_ready
from transfer_core.quality.embeddings import cached_embeddings, file_digest
from transfer_core.quality.findings import ProgressFn
from transfer_core.training.instant import fit_head


@dataclass(frozen=True)
class Suggestion:
    path: Path
    label: str  # the class proposed
    confidence: float  # the head's probability for it
    margin: float  # how far it is ahead of the runner-up: small means torn between two classes


def suggest(labelled: dict[str, Sequence[Path]], unlabelled: Sequence[Path], *, backbone: str = "mobilenet_v2",
            image_size: int | None = None, progress: ProgressFn | None = None,
            stop: threading.Event | None = None) -> list[Suggestion]:
    """A proposed class for each unlabelled picture, the least certain first (the answers that teach most).

    Only classes with pictures can be proposed. The backbone's own size by default: on small details (a
    scratch on cloth) 224 pixels tell classes apart clearly better than the data check's 128."""
    require_ready(labelled)
    filled = {c: list(p) for c, p in labelled.items() if p}
    if not unlabelled:
        return []
    classes = list(filled)
    train = [p for c in classes for p in filled[c]]
    y = torch.tensor([i for i, c in enumerate(classes) for _ in filled[c]])
    paths = [str(p) for p in train + list(unlabelled)]
    features = cached_embeddings(paths, [file_digest(p) for p in paths], backbone, image_size,
                                 progress, stop).features
    probs = _fit_and_predict(features[:len(train)], y, features[len(train):], len(classes), stop)
    return rank(probs, classes, unlabelled)


def _fit_and_predict(x: torch.Tensor, y: torch.Tensor, pile: torch.Tensor, num_classes: int,
                     stop: threading.Event | None) -> torch.Tensor:
    head = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(head.weight)  # the same start every time: the same labels give the same proposals
    nn.init.zeros_(head.bias)
    # No validation share: a handful of labels cannot choose the penalty, so fit_head keeps the strongest
    # (simplest) one, which also keeps confidences modest instead of near 100% on three examples.
    fit_head(head, x, y, x[:0], y[:0], num_classes, check_stop=lambda: _check(stop))
    with torch.no_grad():
        return head(pile).float().softmax(1)


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Stopped()


def rank(probs: torch.Tensor, classes: Sequence[str], paths: Sequence[Path]) -> list[Suggestion]:
    """Suggestions from class probabilities (one row per picture), sorted by ascending confidence, then
    margin."""
    top = probs.topk(min(2, probs.shape[1]), dim=1)
    second = top.values[:, 1] if probs.shape[1] > 1 else torch.zeros(len(probs))
    found = [Suggestion(Path(p), classes[int(i)], float(v), float(v - s))
             for p, i, v, s in zip(paths, top.indices[:, 0], top.values[:, 0], second)]
    return sorted(found, key=lambda s: (s.confidence, s.margin, str(s.path)))
