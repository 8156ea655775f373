"""Grad-CAM: which part of the picture made the model choose a class (Selvaraju et al., 2017).

The heat is the last stage's feature map weighted by how much each channel raises the class score.
Every backbone is a TransferNet with ordered stages (network.py), so one function serves them all.
Vision transformers have tokens instead of a feature map: their patch tokens are laid back on the
patch grid. The heat is over the model's own view of the image (resized and centre-cropped, exactly
what predict.py feeds the network).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from transfer_core.core.i18n import _
from transfer_core.inference.predict import ImageInput, LoadedModel, to_rgb
from transfer_core.models.network import TransferNet

# A perceptually ordered dark-blue -> cyan -> yellow -> red ramp, so the hottest part reads as red.
_RAMP = np.array([[0, 0, 96], [0, 96, 255], [0, 224, 224], [255, 230, 0], [255, 96, 0], [200, 0, 0]],
                 dtype=np.float32)


def _split_last_stage(net: TransferNet, x: torch.Tensor) -> tuple[torch.Tensor, nn.Module]:
    """The map to explain, and what turns it into the last stage's output.

    For a convolutional stage the map is the stage's output. A transformer's final block is skipped:
    only the class token leaves it, so its output patch tokens have no gradient; the patch tokens
    entering that block are the standard choice (as in pytorch-grad-cam for ViT).
    """
    last = net.stages[-1]
    if x.dim() == 3 and isinstance(last, nn.Sequential) and len(last) > 1:
        return last[:-1](x), last[-1]
    return last(x), nn.Identity()


def _tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """N x tokens x D -> N x D x g x g, dropping a leading class token when there is one."""
    n_tokens = tokens.shape[1]
    side = math.isqrt(n_tokens)
    if side * side != n_tokens:
        side = math.isqrt(n_tokens - 1)
        if side * side != n_tokens - 1:
            raise ValueError(f"cannot lay {n_tokens} tokens on a square patch grid")
        tokens = tokens[:, 1:]
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def gradcam(net: TransferNet, x: torch.Tensor, target: int | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """Heat (H x W float32 in [0, 1], the size of x) for class `target` (default: the predicted one), and logits.

    x is one preprocessed image, 1 x 3 x H x W. The network is used in eval mode and left unchanged.
    """
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():  # the earlier stages need no gradient: only the explained map does
            before = net.run_stages(x, 0, net.num_stages - 1)
            fmap, rest = _split_last_stage(net, before)
        fmap = fmap.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = net.head(net.pool(rest(fmap)))
            cls = int(logits[0].argmax()) if target is None else int(target)
            (grad,) = torch.autograd.grad(logits[0, cls], fmap)
    finally:
        net.train(was_training)
    if fmap.dim() == 3:
        fmap, grad = _tokens_to_grid(fmap), _tokens_to_grid(grad)
    weights = grad.mean(dim=(2, 3), keepdim=True)  # one importance per channel
    cam = F.relu((weights * fmap).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return _normalise(cam.float().cpu().numpy()), logits.detach()


def _normalise(cam: np.ndarray) -> np.ndarray:
    cam = np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(cam.min()), float(cam.max())
    # Relative test: a randomly initialised network can have tiny but meaningful activations (1e-14).
    if high <= 0 or high - low <= 1e-6 * abs(high):  # nothing raises the class score: no region to show
        return np.zeros_like(cam, dtype=np.float32)
    return ((cam - low) / (high - low)).astype(np.float32)


def colourise(heat: np.ndarray) -> np.ndarray:
    """H x W in [0, 1] -> H x W x 3 uint8 colours along _RAMP."""
    pos = np.clip(heat, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


def overlay(view: Image.Image, heat: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The image with the heat drawn over it; cold parts stay mostly visible, hot parts turn red."""
    base = np.asarray(view.convert("RGB").resize(heat.shape[::-1]), dtype=np.float32)
    a = (alpha * (0.25 + 0.75 * np.clip(heat, 0, 1)))[..., None]  # cold regions: a light tint only
    return Image.fromarray((base * (1 - a) + colourise(heat).astype(np.float32) * a).astype(np.uint8))


@dataclass(frozen=True)
class Explanation:
    heat: np.ndarray  # H x W in [0, 1] over `view`
    view: Image.Image  # the picture as the model saw it (resized, centre-cropped)
    class_index: int
    class_name: str
    probability: float  # calibrated, as predict() reports it

    def overlay(self, alpha: float = 0.5) -> Image.Image:
        return overlay(self.view, self.heat, alpha)


def model_view(model: LoadedModel, image: ImageInput) -> Image.Image:
    """The centre square the network actually sees, at its input size."""
    prep = model.prep
    arr = prep.resized_square(to_rgb(image))
    off = (prep.resize - prep.crop) // 2
    return Image.fromarray(arr[off:off + prep.crop, off:off + prep.crop])


def explain(model: LoadedModel, image: ImageInput, target: int | str | None = None) -> Explanation:
    """Grad-CAM for one image with a trained run's model; target: a class name or index (default: predicted)."""
    if isinstance(target, str):
        if target not in model.classes:
            raise ValueError(_("{target!r} is not one of this model's classes: {value}").format(
                target=target, value=', '.join(model.classes)))
        target = model.classes.index(target)
    x = model.tensor(image).unsqueeze(0).to(model.device)
    heat, logits = gradcam(model.net, x, target)
    probs = (logits[0] / model.temperature).softmax(0)
    cls = int(probs.argmax()) if target is None else int(target)
    return Explanation(heat, model_view(model, image), cls, model.classes[cls], float(probs[cls]))
