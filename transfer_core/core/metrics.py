"""Evaluation figures as pure functions of true labels and predictions."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """cm[i, j] = images of true class i predicted as j."""
    idx = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


@dataclass(frozen=True)
class ClassScores:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


def per_class_scores(cm: torch.Tensor, classes: list[str]) -> list[ClassScores]:
    out = []
    for i, name in enumerate(classes):
        tp = float(cm[i, i])
        predicted, actual = float(cm[:, i].sum()), float(cm[i].sum())
        p = tp / predicted if predicted else 0.0
        r = tp / actual if actual else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out.append(ClassScores(name, p, r, f1, int(actual)))
    return out


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of an accuracy measured on `total` images (Wilson score interval)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Evaluation:
    classes: list[str]
    accuracy: float
    interval: tuple[float, float]
    confusion: torch.Tensor
    scores: list[ClassScores]
    macro_f1: float
    total: int


def evaluate_predictions(y_true: torch.Tensor, probs: torch.Tensor, classes: list[str]) -> Evaluation:
    y_pred = probs.argmax(1)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    scores = per_class_scores(cm, classes)
    correct, total = int((y_pred == y_true).sum()), len(y_true)
    return Evaluation(classes=classes, accuracy=correct / max(total, 1), interval=wilson_interval(correct, total),
                      confusion=cm, scores=scores, macro_f1=sum(s.f1 for s in scores) / max(len(scores), 1),
                      total=total)
