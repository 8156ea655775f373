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

Two looks, not one. After fine-tuning on a few dozen pictures, the pooled features have been bent to the
classes: noise, flat colours and other tasks' pictures land among them (a fine-tuned brain-MRI model at 10
pictures per class flagged none of 70 such pictures, one at 10 per class on MNIST 1 of 20 flat colours).
The middle stage's output (middle_stage: at the default freeze depth, layers fine-tuning never changes) still sees
pictures as the pretrained network does, and sets them far apart there. So the score is the mean of the two
k-NN scores, each divided by its normal pictures' median (so neither dominates by its scale). Fine-tuned
runs at 10 pictures per class (brain MRI, MNIST, animal silhouettes; seeds 2 and 3; python
bench/novelty_looks.py, bench/results/novelty_looks.json, 2026-12-07): the two looks flagged every one of
the 70 unfamiliar pictures of all six runs, with 0-2% of 300-1000 new pictures of the trained kind flagged;
the pooled features alone missed all 70 on one run and 75-85% of the flat colours on two; the middle look
alone flagged up to 9% of the new pictures. Over the benchmark's grid: bench/small_data.py.
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
MIN_STAGES_FOR_MID = 4  # a network cut into fewer stages has no middle one apart from its stem and its end


def middle_stage(num_stages: int) -> int:
    """How many stages run before the middle look is taken (0: the pooled features alone)."""
    return num_stages // 2 if num_stages >= MIN_STAGES_FOR_MID else 0


def pool_any(x: torch.Tensor) -> torch.Tensor:
    """A stage's output as one vector per picture: the mean over places (N C H W) or tokens (N T D)."""
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x.mean(dim=1) if x.dim() == 3 else x


def looks(net, images: torch.Tensor, mid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass: the pooled features (what the head classifies) and what the check reads (them, with the
    pooled output of the first `mid` stages appended; the features alone when `mid` is 0)."""
    if not mid:
        features = net.features(images)
        return features, features
    early = net.run_stages(images, 0, mid)
    features = net.features(early, mid)
    return features, torch.cat([features, pool_any(early).to(features.dtype)], dim=1)


class NoveltyScore(nn.Module):
    """What the check reads (N x D, from `looks`) -> one score per picture, higher = less like the training
    pictures: per look, one minus the cosine similarity to the k-th closest reference picture, divided by
    that look's `scales` entry; the mean over looks. `split`: where the pooled features end and the middle
    look begins (None: one look); `mid`: the stages run before the middle look (for `looks`).

    A module, so the exported bundle runs exactly this computation inside model.onnx / model.torchscript.pt."""

    def __init__(self, reference: torch.Tensor, k: int = KNN_K, split: int | None = None, mid: int = 0,
                 scales: torch.Tensor | None = None):
        super().__init__()
        self.split, self.mid = split, mid
        self.register_buffer("reference", torch.cat([F.normalize(r.float(), dim=1) for r in self._cut(reference)], 1))
        n_looks = 1 if split is None else 2
        self.register_buffer("scales", torch.ones(n_looks) if scales is None else scales.float().reshape(n_looks))
        self.k = max(1, min(k, len(reference)))

    def _cut(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x] if self.split is None else [x[:, :self.split], x[:, self.split:]]

    def look_scores(self, looks: torch.Tensor) -> torch.Tensor:
        """Looks x N: each look's k-NN score, not yet scaled."""
        rows = [1.0 - (F.normalize(x.float(), dim=1) @ r.T).topk(self.k, dim=1).values[:, -1]
                for x, r in zip(self._cut(looks), self._cut(self.reference))]
        return torch.stack(rows)

    def forward(self, looks: torch.Tensor) -> torch.Tensor:
        return (self.look_scores(looks) / self.scales[:, None]).mean(0)


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

    def looks_words(self) -> str:
        if self.score.split is None:
            return "the pooled features"
        return f"the pooled features and the pooled output of the first {self.score.mid} stages, each scaled " \
               "by its normal pictures' median, averaged"

    def summary(self) -> dict:
        return {"method": "knn; threshold: conformal quantile of validation and leave-one-group-out training "
                          "scores", "k": self.score.k, "looks": self.looks_words(), "split": self.score.split,
                "mid_stages": self.score.mid, "scales": [round(float(v), 6) for v in self.score.scales], "threshold": self.threshold,
                "validation_rate": self.validation_rate, "validation_images": len(self.validation_scores),
                "reference_images": len(self.score.reference), "flag_share": FLAG_SHARE}


def fit(reference: torch.Tensor, validation: torch.Tensor, k: int = KNN_K,
        groups: torch.Tensor | None = None, split: int | None = None, mid: int = 0) -> Detector:
    """Reference = training pictures' looks (`groups`: their near-copy groups); the threshold from the
    validation pictures' scores and the training pictures' own, each without its group. Each look is scaled
    by the median of its normal scores, so the two looks weigh the same."""
    score = NoveltyScore(reference, k, split, mid).eval()
    with torch.no_grad():
        per_look = torch.cat([score.look_scores(validation.float()), left_out_scores(score, groups)], dim=1)
    if per_look.shape[1]:
        score.scales = per_look.median(dim=1).values.clamp_min(1e-6)
    normal = torch.sort((per_look / score.scales[:, None]).mean(0)).values
    threshold = choose_threshold(normal)
    rate = float((normal > threshold).float().mean()) if len(normal) else 0.0
    return Detector(score, threshold, normal, rate)


def left_out_scores(score: NoveltyScore, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Looks x M: each reference picture's scores against the rest of the reference, its own group left out (a
    picture is its own group when `groups` is None), not yet scaled: as a new picture of the trained kind
    would score. A picture whose group is most of the reference has too few neighbours and is left out."""
    n = len(score.reference)
    groups = torch.arange(n) if groups is None else groups
    k = min(score.k, n - 1)
    if k < 1:
        return torch.zeros(len(score.scales), 0)
    same = groups[:, None] == groups[None, :]
    rows = []
    for ref in score._cut(score.reference):
        sims = ref @ ref.T
        sims[same] = -2.0  # below any cosine similarity: never a neighbour
        rows.append(sims.topk(k, dim=1).values[:, -1])
    kth = torch.stack(rows)
    return 1.0 - kth[:, kth[0] > -2.0]  # the same pictures lack neighbours in every look (same groups, same k)


def choose_threshold(normal: torch.Tensor, share: float = FLAG_SHARE) -> float:
    """The conformal (1 - share) quantile of normal pictures' scores: the ceil((n+1)(1 - share))-th smallest,
    so a new normal picture is above it with probability at most `share` (the largest when n is small)."""
    if len(normal) == 0:
        return float("inf")
    s = torch.sort(normal.double()).values
    return float(s[min(len(s), math.ceil((len(s) + 1) * (1.0 - share))) - 1])


# ---------------------------------------------------------------------------------------------- features
@torch.no_grad()
def store_features(net, store, prep, device, idx: torch.Tensor, batch_size: int = 64, mid: int = 0) -> torch.Tensor:
    """The looks (pooled features, and the middle look when `mid` > 0) of the pictures `idx` of a trainer's
    ImageStore, seen as Predict sees them (centre crop)."""
    net.eval()
    parts = []
    for chunk in idx.split(batch_size):
        images = eval_view(store.batch(chunk).to(device), prep)
        parts.append(looks(net, images, mid)[1].float().cpu())
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
    torch.save({"reference": detector.score.reference.cpu(), "validation_scores": detector.validation_scores.cpu(),
                "scales": detector.score.scales.cpu()}, run_dir / NOVELTY_WEIGHTS)
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
    score = NoveltyScore(tensors["reference"], int(info.get("k", KNN_K)), info.get("split"),  # runs before the
                         int(info.get("mid_stages", 0)), tensors.get("scales")).eval()  # middle look: one look
    return Detector(score, float(info["threshold"]), tensors["validation_scores"], float(info["validation_rate"]))


def fit_and_save(run_dir: str | Path, reference: torch.Tensor, validation: torch.Tensor,
                 groups: torch.Tensor | None = None, split: int | None = None, mid: int = 0) -> Detector | None:
    """At the end of training. Fewer than MIN_NORMAL normal scores: no honest threshold, so no check (no files)."""
    if len(reference) == 0:
        return None
    detector = fit(reference, validation, groups=groups, split=split, mid=mid)
    if len(detector.validation_scores) < MIN_NORMAL:
        return None
    save(run_dir, detector)
    return detector
