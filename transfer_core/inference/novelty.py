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

The threshold is chosen on the validation pictures, never on unfamiliar ones: the score that FLAG_SHARE
of them exceed. So about 5% of normal pictures are flagged too; that is the price of the check.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transfer_core.models.augment import eval_view
from transfer_core.runstore import runfiles

NOVELTY_WEIGHTS, NOVELTY_FILE = runfiles.NOVELTY_WEIGHTS, runfiles.NOVELTY
FLAG_SHARE = 0.05  # share of validation pictures flagged: fewer misses of unfamiliar ones costs more of these
MAX_REFERENCE = 2000  # training pictures kept as the reference: enough to cover each class, small to ship
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
    validation_scores: torch.Tensor  # sorted; to say how unusual a picture is in words
    validation_rate: float  # share of validation pictures above the threshold (about FLAG_SHARE)

    @torch.no_grad()
    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(features.cpu())

    def unfamiliar(self, scores: torch.Tensor) -> torch.Tensor:
        return scores > self.threshold

    def more_unusual_than(self, score: float) -> float:
        """Share of the validation pictures this score is above: 1.0 = more unusual than all of them."""
        n = len(self.validation_scores)
        return float((self.validation_scores < score).sum()) / n if n else 1.0

    def summary(self) -> dict:
        return {"method": "knn", "k": self.score.k, "threshold": self.threshold,
                "validation_rate": self.validation_rate, "validation_images": len(self.validation_scores),
                "reference_images": len(self.score.reference), "flag_share": FLAG_SHARE}


def fit(reference: torch.Tensor, validation: torch.Tensor, k: int = KNN_K) -> Detector:
    """Reference = training pictures' features; threshold = where validation scores pass 1 - FLAG_SHARE."""
    score = NoveltyScore(reference, k).eval()
    val_scores = torch.sort(score(validation.float()).detach()).values
    threshold = choose_threshold(val_scores)
    rate = float((val_scores > threshold).float().mean()) if len(val_scores) else 0.0
    return Detector(score, threshold, val_scores, rate)


def choose_threshold(val_scores: torch.Tensor, share: float = FLAG_SHARE) -> float:
    """The (1 - share) quantile of the held-out normal pictures' scores (never of unfamiliar ones)."""
    return float(torch.quantile(val_scores.double(), 1.0 - share))


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


def fit_and_save(run_dir: str | Path, reference: torch.Tensor, validation: torch.Tensor) -> Detector | None:
    """At the end of training. No validation pictures: no honest threshold, so no check (and no files)."""
    if len(reference) == 0 or len(validation) == 0:
        return None
    detector = fit(reference, validation)
    save(run_dir, detector)
    return detector
