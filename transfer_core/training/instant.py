"""The instant model: the new classifier fitted to convergence on the frozen network's pooled features.

The frozen network's features are computed once (the feature cache), so fitting the head is a small convex
problem (for the linear head: multinomial logistic regression) solved in seconds with L-BFGS, full batch.
Few pictures per class is where this matters most, so the fit is regularised on purpose:
- an L2 penalty whose strength is chosen on the validation share, preferring the stronger one (the simpler
  model) unless a weaker one is clearly better, since a small validation share cannot tell close ones apart;
- class-balanced weights, so a large class does not drown a small one;
- every cached augmented view of a picture counts as a training example (cheap augmentation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# L2 strengths tried, strongest (simplest) first. Very strong penalties shrink the classifier toward the
# difference of the class means, which holds up best with a handful of pictures per class: starting the path at
# 3 rather than 0.1 was 3.5 points better on nominal vs defect at 10 pictures per class and 1.5 at 50, and
# within 0.4 elsewhere (6 draws from each task's pool, scored on 60 other pool pictures per class; bench/choose.py
# --from-pool, 2026-12-02, bench/results/archive/choose-strengths.json; README, "Defaults").
STRENGTHS = (3.0, 1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4)
_CLEARLY_BETTER = 0.98  # a weaker penalty must lower the validation loss by 2% to be preferred
# The path stops once the validation loss has risen this many strengths in a row: weaker penalties fit the
# training pictures ever more closely, and past the lowest loss they only overfit. With few pictures per class
# the lowest loss is often the strongest penalty, so half the fits were spent past it.
_RISES_TO_STOP = 2
_MAX_ITER = 200


@dataclass(frozen=True)
class HeadFit:
    strength: float  # the L2 strength chosen
    val_loss: float
    val_accuracy: float


def class_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (classes x n_c): every class weighs the same in total (a class with no example weighs 0)."""
    counts = torch.bincount(y, minlength=num_classes).float()
    return torch.where(counts > 0, len(y) / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))


def fit_head(head: nn.Module, x: torch.Tensor, y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
             num_classes: int, check_stop: Callable[[], None] = lambda: None,
             strengths: tuple[float, ...] = STRENGTHS) -> HeadFit:
    """Fit `head` (features -> logits) on (x, y); choose the L2 strength on (val_x, val_y). `head` ends with
    the chosen fit's weights. Deterministic. Each strength starts from the previous (stronger) one's fit:
    the problem is strictly convex, so the optimum is the same, and from nearby it is reached in fewer steps
    (a regularisation path). The path ends early once the validation loss keeps rising (_RISES_TO_STOP).
    strengths: the path; one strength fits at it with no choice (quality/learning_curve.py's many refits)."""
    weights = class_weights(y, num_classes).to(x.device)
    fits = []
    for strength in strengths:
        check_stop()
        fit_penalised(head, x, y, weights, strength)
        loss, acc = _validate(head, val_x, val_y)
        fits.append((HeadFit(strength, loss, acc), {k: v.clone() for k, v in head.state_dict().items()}))
        if _rising(fits):
            break
    chosen, state = _simplest_good(fits)
    head.load_state_dict(state)
    return chosen


def fit_penalised(head: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None, strength: float,
                  max_iter: int = _MAX_ITER) -> None:
    """The project's one L-BFGS fit of a classifier on features: weighted cross-entropy plus
    0.5 x strength x the squared weights (not the biases), from `head`'s current weights. Used by the first
    model here and by the data check's out-of-fold classifiers (quality/suspect_labels.py)."""
    head.eval()  # no dropout: the penalty is the regulariser, and L-BFGS needs the same function each call
    params = [p for p in head.parameters() if p.requires_grad]
    penalised = [p for p in params if p.dim() > 1]  # weights, not biases
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x).float(), y, weight=weights)
        loss = loss + 0.5 * strength * sum(p.pow(2).sum() for p in penalised)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)


@torch.no_grad()
def _validate(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    if len(y) == 0:
        return 0.0, 0.0
    logits = head(x).float()
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def _rising(fits: list) -> bool:
    """Has the validation loss risen for the last _RISES_TO_STOP strengths in a row?"""
    losses = [f.val_loss for f, _ in fits[-_RISES_TO_STOP - 1:]]
    return len(losses) > _RISES_TO_STOP and all(a < b for a, b in zip(losses, losses[1:]))


def _simplest_good(fits: list) -> tuple[HeadFit, dict]:
    """The strongest penalty whose validation loss is within 2% of the best one's."""
    best = min(f.val_loss for f, _ in fits)
    return next((f, s) for f, s in fits if f.val_loss <= best / _CLEARLY_BETTER)
