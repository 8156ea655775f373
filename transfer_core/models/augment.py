"""Augmentation on batches of tensors, one affine warp per batch (no per-image PIL work).

Images are cached once as uint8 squares of side `resize`; a training view is a random zoomed,
shifted (and for "strong": rotated, sheared, colour-jittered) crop of `crop` pixels, drawn with a
single `grid_sample`. Validation takes the centre crop, which equals "resize, then centre crop".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from transfer_core.models.preprocessing import Preprocessing

# (min, max) share of the cached square a training view covers; flip probability 0.5.
# Mild for "light": small details (a defect near the edge) must survive the crop.
_ZOOM = {"light": (0.8, 1.0), "strong": (0.5, 1.0)}
_ROTATE_DEG, _SHEAR_DEG = 15.0, 10.0
_JITTER = 0.3  # brightness, contrast and saturation each vary by up to +-30%


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _affine(n: int, preset: str, g: torch.Generator) -> torch.Tensor:
    """Nx2x3 matrices mapping output to input coordinates (affine_grid convention)."""
    zoom = _uniform(n, *_ZOOM[preset], g).sqrt()  # side fraction from an area fraction
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    angle = torch.zeros(n)
    shear = torch.zeros(n)
    if preset == "strong":
        angle = _uniform(n, -_ROTATE_DEG, _ROTATE_DEG, g) * math.pi / 180
        shear = _uniform(n, -_SHEAR_DEG, _SHEAR_DEG, g) * math.pi / 180
    cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # rotation
    a = a @ torch.stack([torch.stack([torch.ones(n), tan], -1),
                         torch.stack([torch.zeros(n), torch.ones(n)], -1)], -2)  # shear
    a = a * zoom.view(n, 1, 1)
    a[:, :, 0] *= flip.view(n, 1)
    room = (1 - zoom).clamp(min=0)  # shift the view anywhere it still fits
    shift = torch.stack([_uniform(n, -1, 1, g) * room, _uniform(n, -1, 1, g) * room], -1)
    return torch.cat([a, shift.unsqueeze(-1)], dim=-1)


def _jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    f = [(_uniform(n, 1 - _JITTER, 1 + _JITTER, g).to(x.device)).view(n, 1, 1, 1) for _ in range(3)]
    x = x * f[0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * f[1] + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - grey) * f[2] + grey
    return x.clamp(0, 1)


def train_view(batch: torch.Tensor, prep: Preprocessing, preset: str, g: torch.Generator) -> torch.Tensor:
    """uint8 NxCxSxS (any device) -> normalised float NxCxcropxcrop training view."""
    if preset == "none":
        return prep.normalize(prep.center_crop(batch))
    x = batch.float() / 255.0
    n = x.shape[0]
    theta = _affine(n, preset, g).to(x.device)
    # Scale so that zoom 1.0 covers the whole cached square while the output is `crop` pixels.
    grid = F.affine_grid(theta, [n, 3, prep.crop, prep.crop], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if preset == "strong":
        x = _jitter(x, g)
    mean = torch.tensor(prep.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def eval_view(batch: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    return prep.normalize(prep.center_crop(batch))
