"""Predicting with a trained run: its folder alone is enough (no pretrained download, no training code)."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

import torch
from PIL import Image

from transfer_core.core.i18n import _
from transfer_core.core.device import pick_device
from transfer_core.data.datasets import load_rgb
from transfer_core.inference import novelty
from transfer_core.inference.calibration import load_temperature
from transfer_core.models.backbones import build_network
from transfer_core.models.network import TransferNet
from transfer_core.models.preprocessing import Preprocessing
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder

ImageInput = Union[str, Path, bytes, Image.Image]


@dataclass
class LoadedModel:
    run: RunFolder
    net: TransferNet
    classes: list[str]
    prep: Preprocessing
    device: torch.device
    temperature: float = 1.0  # from calibration.json: logits are divided by it (1.0 = as trained)
    novelty: novelty.Detector | None = None  # from novelty.pt/.json; None: trained before the check existed

    def tensor(self, image: ImageInput) -> torch.Tensor:
        return self.prep.eval_tensor(to_rgb(image))


def to_rgb(image: ImageInput) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    if isinstance(image, bytes):
        return load_rgb(io.BytesIO(image))
    return load_rgb(image)


def load_model(run_dir: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    run = RunFolder(run_dir)
    if not run.has_model():
        raise FileNotFoundError(_("{path} has no trained model yet (it needs best.pt and model.json).").format(
            path=run.path))
    desc = run.model_description()
    net = build_network(desc.backbone, desc.num_classes, pretrained=False, head=desc.head,
                        hidden=desc.mlp_hidden, dropout=desc.dropout)
    net.load_state_dict(torch.load(run.path / runfiles.BEST, map_location="cpu", weights_only=True))
    dev = pick_device(str(device) if device else None)
    return LoadedModel(run, net.to(dev).eval(), run.read_json(runfiles.CLASSES),
                       Preprocessing.from_dict(run.read_json(runfiles.PREPROCESSING)), dev, load_temperature(run.path),
                       novelty.load(run.path))


@torch.no_grad()
def outputs(model: LoadedModel, images: Iterable[ImageInput],
            batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits as trained (N x classes) and what the familiarity check reads (N x D: the pooled features, with
    the middle look appended when the run's check has one, novelty.looks): one pass gives answer and familiarity."""
    logits, features, batch = [], [], []
    mid = model.novelty.score.mid if model.novelty is not None else 0

    def run():
        f, seen = novelty.looks(model.net, torch.stack(batch).to(model.device), mid)
        logits.append(model.net.head(f).float().cpu())
        features.append(seen.float().cpu())
        batch.clear()

    for img in images:
        batch.append(model.tensor(img))
        if len(batch) == batch_size:
            run()
    if batch:
        run()
    if not logits:
        return torch.zeros(0, len(model.classes)), torch.zeros(0, 0)
    return torch.cat(logits), torch.cat(features)


def predict_probs(model: LoadedModel, images: Iterable[ImageInput], batch_size: int = 32,
                  calibrated: bool = True) -> torch.Tensor:
    """Class probabilities, one row per image (N x classes); calibrated=False: the network's raw softmax."""
    t = model.temperature if calibrated else 1.0
    return (outputs(model, images, batch_size)[0] / t).softmax(1)


@dataclass(frozen=True)
class Familiarity:
    """Whether a picture looks like the training pictures (novelty.py)."""

    unfamiliar: bool
    score: float  # higher = less like the training pictures; unfamiliar above the run's threshold
    more_unusual_than: float  # share of the validation pictures it is more unusual than (1.0 = all)


def familiarity(model: LoadedModel, images: Iterable[ImageInput] = (),
                features: torch.Tensor | None = None) -> list[Familiarity] | None:
    """One verdict per image (or per row of already computed pooled features); None when the run has no
    check (trained before it existed). Pure, no UI: for Predict, the command line or a live camera preview."""
    detector = model.novelty
    if detector is None:
        return None
    if features is None:
        features = outputs(model, images)[1]
    scores = detector.scores(features)
    return [Familiarity(bool(flag), float(s), detector.more_unusual_than(float(s)))
            for s, flag in zip(scores.tolist(), detector.unfamiliar(scores).tolist())]


def top_k(probs: torch.Tensor, classes: list[str], k: int) -> list[list[tuple[str, float]]]:
    k = max(1, min(k, len(classes)))
    values, indices = probs.topk(k, dim=1)
    return [[(classes[i], float(v)) for v, i in zip(vs, ix)] for vs, ix in zip(values.tolist(), indices.tolist())]


def predict(run: str | Path | LoadedModel, images: Iterable[ImageInput], k: int = 3) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) for each image, most likely first."""
    model = run if isinstance(run, LoadedModel) else load_model(run)
    return top_k(predict_probs(model, images), model.classes, k)


NOT_SURE = "not sure"
UNFAMILIAR = "unfamiliar"  # the answer for a picture that does not look like the training pictures


@dataclass(frozen=True)
class Answer:
    """One image's answer: its most likely class; "not sure" below the user's confidence threshold;
    "unfamiliar" when it does not look like the training pictures (whatever the confidence)."""

    label: str  # a class name, NOT_SURE or UNFAMILIAR
    confidence: float  # calibrated probability of the most likely class
    sure: bool  # confident enough and not unfamiliar: an answer to act on
    top: list[tuple[str, float]]  # the top-k (class, probability), whatever the answer
    unfamiliar: bool | None = None  # None: the run has no familiarity check (trained before it existed)
    novelty: Familiarity | None = None


def answer(run: str | Path | LoadedModel, images: Iterable[ImageInput], threshold: float = 0.0,
           k: int = 3) -> list[Answer]:
    """Like predict, but answers "not sure" when the calibrated top probability is below `threshold`,
    and "unfamiliar" when the picture does not look like the training pictures (see familiarity).

    calibration.ThresholdEffect shows what a threshold does on the validation images.
    """
    check_threshold(threshold)
    model = run if isinstance(run, LoadedModel) else load_model(run)
    return answers_from(model, *outputs(model, images), threshold=threshold, k=k)


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(_("the confidence threshold must be between 0 and 1 (e.g. 0.8), not {threshold}").format(
            threshold=threshold))


def answers_from(model: LoadedModel, logits: torch.Tensor, features: torch.Tensor, threshold: float = 0.0,
                 k: int = 3) -> list[Answer]:
    """The answers for logits and pooled features already computed (by outputs(), or by live.py's faster
    path for video frames): one place decides "not sure" and "unfamiliar" for every way of predicting."""
    verdicts = familiarity(model, features=features) or [None] * len(logits)
    out = []
    for top, verdict in zip(top_k((logits / model.temperature).softmax(1), model.classes, k), verdicts):
        unfamiliar = verdict.unfamiliar if verdict else None
        sure = top[0][1] >= threshold and not unfamiliar
        label = UNFAMILIAR if unfamiliar else top[0][0] if sure else NOT_SURE
        out.append(Answer(label, top[0][1], sure, top, unfamiliar, verdict))
    return out
