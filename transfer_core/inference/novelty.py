"""Does a picture look like the training pictures? The check behind "this does not look like your pictures".

Calibration (calibration.py) makes the confidence honest on pictures like the validation ones; it says
nothing about pictures unlike anything the model was trained on: random noise can get "100% sure". So at
the end of training, the pooled features (the vector the head classifies) of the training pictures are
kept as a reference, and a new picture whose features are far from all of them is called unfamiliar.

The distance is k-nearest-neighbour on L2-normalised features (Sun et al., ICML 2022): one minus the
cosine similarity to the k-th closest training picture. Chosen by measurement (python bench/novelty.py,
bench/results/novelty.json): on the textile demo it and a class-conditional Mahalanobis distance with a
shrunk shared covariance both flagged all the noise, flat colours, photos, faces, textures and blurred
textiles at ~5% of normal pictures flagged, while the energy score (from the logits alone) missed all flat
colours and a quarter of the photos. Between the two equals, k-NN needs no covariance of 1,000+ feature
dimensions estimated from a few dozen pictures (nor classes shaped like one blob each), so it behaves the
same with 30 training pictures or 2,000. None of them notices colour-inverted textiles (still fabric).

The threshold is chosen on normal pictures only, never on unfamiliar ones, and on as many as there are: the
validation pictures scored against the training reference, and every training picture scored against the
others with itself and its near-copies left out (leave-one-group-out: data.nearcopies), so each score is that
of a picture the reference does not hold, as a new one is. The threshold is the conformal quantile of those
scores (the ceil((n+1)(1 - FLAG_SHARE))-th smallest), and the share of them above it is what the pages say.
The 95th percentile of the 8-16 validation pictures of a class's small set, as before, flagged 26-35% of
unseen pictures of the trained kind at 10 pictures per class (42% and 53% in a classroom): with all the
labelled pictures 1-8% (one-off runs on textile-2 at 10, 20 and 50 per class, 2026-12-07; the benchmark's
figures: bench/small_data.py).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transfer_core.models.augment import eval_view
from transfer_core.runstore import runfiles

NOVELTY_WEIGHTS, NOVELTY_FILE = runfiles.NOVELTY_WEIGHTS, runfiles.NOVELTY
FLAG_SHARE = 0.05  # share of normal pictures flagged: fewer misses of unfamiliar ones costs more of these
MAX_REFERENCE = 2000  # training pictures kept as the reference: enough to cover each class, small to ship
MIN_NORMAL = 10  # normal pictures' scores needed for a threshold: with fewer, even the largest is a guess
KNN_K = 5  # the 5th neighbour, not the 1st: one odd training picture does not make its neighbourhood familiar


class NoveltyScore(nn.Module):
    """Pooled features (N x D) -> one score per picture, higher = less like the training pictures.

    A module, so the exported bundle runs exactly this computation inside model.onnx / model.torchscript.pt."""

    def __init__(self, reference: torch.Tensor, k: int = KNN_K):
        super().__init__()
        self.register_buffer("reference", F.normalize(reference.float(), dim=1))
        self.k = max(1, min(k, len(reference)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        similarity = F.normalize(features.float(), dim=1) @ self.reference.T
        return 1.0 - similarity.topk(self.k, dim=1).values[:, -1]


@dataclass
class Detector:
    score: NoveltyScore
    threshold: float  # scores above it are unfamiliar
    validation_scores: torch.Tensor  # normal pictures' scores (validation and left-out training), sorted
    validation_rate: float  # the measured share of those above the threshold (about FLAG_SHARE)

    @torch.no_grad()
    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(features.cpu())

    def unfamiliar(self, scores: torch.Tensor) -> torch.Tensor:
        return scores > self.threshold

    def more_unusual_than(self, score: float) -> float:
        """Share of the normal pictures (validation, and training ones left out) this score is above."""
        n = len(self.validation_scores)
        return float((self.validation_scores < score).sum()) / n if n else 1.0

    def summary(self) -> dict:
        return {"method": "knn; threshold: conformal quantile of validation and leave-one-group-out training "
                          "scores", "k": self.score.k, "threshold": self.threshold,
                "validation_rate": self.validation_rate, "validation_images": len(self.validation_scores),
                "reference_images": len(self.score.reference), "flag_share": FLAG_SHARE}


def fit(reference: torch.Tensor, validation: torch.Tensor, k: int = KNN_K,
        groups: torch.Tensor | None = None) -> Detector:
    """Reference = training pictures' features (`groups`: their near-copy groups); the threshold from the
    validation pictures' scores and the training pictures' own, each without its group."""
    score = NoveltyScore(reference, k).eval()
    with torch.no_grad():
        normal = torch.cat([score(validation.float()), left_out_scores(score, groups)])
    normal = torch.sort(normal).values
    threshold = choose_threshold(normal)
    rate = float((normal > threshold).float().mean()) if len(normal) else 0.0
    return Detector(score, threshold, normal, rate)


def left_out_scores(score: NoveltyScore, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Each reference picture's score against the rest of the reference, its own group left out (a picture
    is its own group when `groups` is None): as a new picture of the trained kind would score."""
    ref = score.reference
    groups = torch.arange(len(ref)) if groups is None else groups
    k = min(score.k, len(ref) - 1)
    if k < 1:
        return torch.zeros(0)
    sims = ref @ ref.T
    sims[groups[:, None] == groups[None, :]] = -2.0  # below any cosine similarity: never a neighbour
    kth = sims.topk(k, dim=1).values[:, -1]
    return 1.0 - kth[kth > -2.0]  # a picture whose group is most of the reference has too few neighbours


def choose_threshold(normal: torch.Tensor, share: float = FLAG_SHARE) -> float:
    """The conformal (1 - share) quantile of normal pictures' scores: the ceil((n+1)(1 - share))-th smallest,
    so a new normal picture is above it with probability at most `share` (the largest when n is small)."""
    if len(normal) == 0:
        return float("inf")
    s = torch.sort(normal.double()).values
    return float(s[min(len(s), math.ceil((len(s) + 1) * (1.0 - share))) - 1])


# ---------------------------------------------------------------------------------------------- features
@torch.no_grad()
def store_features(net, store, prep, device, idx: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Pooled features of the pictures `idx` of a trainer's ImageStore, seen as Predict sees them (centre crop)."""
    net.eval()
    parts = []
    for chunk in idx.split(batch_size):
        images = eval_view(store.batch(chunk).to(device), prep)
        parts.append(net.features(images).float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, net.feature_dim)


def reference_sample(n: int, seed: int, cap: int = MAX_REFERENCE) -> torch.Tensor:
    """Which training pictures form the reference: all, or `cap` of them drawn at random (sorted)."""
    if n <= cap:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


# ---------------------------------------------------------------------------------------------- files
def save(run_dir: str | Path, detector: Detector) -> None:
    """novelty.pt (plain tensors: loads with weights_only) and novelty.json (threshold, rate, in words)."""
    run_dir = Path(run_dir)
    torch.save({"reference": detector.score.reference.cpu(), "validation_scores": detector.validation_scores.cpu()},
               run_dir / NOVELTY_WEIGHTS)
    summary = {**detector.summary(), "meaning": "a picture whose score is above the threshold does not look like "
                                                "the training pictures; validation_rate: share of the validation "
                                                "pictures above it"}
    (run_dir / NOVELTY_FILE).write_text(json.dumps(summary, indent=2))


def load(run_dir: str | Path) -> Detector | None:
    """The run's detector; None for runs trained before the check existed (or without validation pictures)."""
    run_dir = Path(run_dir)
    if not (run_dir / NOVELTY_WEIGHTS).is_file() or not (run_dir / NOVELTY_FILE).is_file():
        return None
    info = json.loads((run_dir / NOVELTY_FILE).read_text())
    tensors = torch.load(run_dir / NOVELTY_WEIGHTS, map_location="cpu", weights_only=True)
    score = NoveltyScore(tensors["reference"], int(info.get("k", KNN_K))).eval()
    return Detector(score, float(info["threshold"]), tensors["validation_scores"], float(info["validation_rate"]))


def fit_and_save(run_dir: str | Path, reference: torch.Tensor, validation: torch.Tensor,
                 groups: torch.Tensor | None = None) -> Detector | None:
    """At the end of training. Fewer than MIN_NORMAL normal scores: no honest threshold, so no check (no files)."""
    if len(reference) == 0:
        return None
    detector = fit(reference, validation, groups=groups)
    if len(detector.validation_scores) < MIN_NORMAL:
        return None
    save(run_dir, detector)
    return detector
