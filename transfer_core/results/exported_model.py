"""The network as every exported file carries it: a picture's pixels in, calibrated probabilities out.

    ExportedModel(net, prep, temperature=1.0, novelty_score=None)
        forward(pixels: uint8 N x H x W x 3, RGB, H = W = prep.crop)
            -> probabilities (N x classes, softmax(logits / temperature))
            -> (probabilities, novelty) when `novelty_score` is given (N scores; see inference/novelty.py)

The caller only resizes (transfer_core/models/resize_rule.py, copied into every bundle and ported to the
web page): the float conversion, the backbone's mean/std and the run's temperature are inside the model,
so no runtime (onnxruntime, onnxruntime-web, TorchScript, LiteRT, Core ML) can normalise differently.
`ExportedModel.example(prep)` is an input of the right shape and dtype, for tracing and converters.
"""
from __future__ import annotations

import torch
from torch import nn

from transfer_core.inference.novelty import looks
from transfer_core.models.preprocessing import Preprocessing

INPUT_NAME = "pixels"
OUTPUT_NAMES = ("probabilities", "novelty")


class ExportedModel(nn.Module):
    """uint8 NHWC pixels -> calibrated probabilities (and the novelty score), for export. Without
    TransferNet's cached-input branch (not traceable); the novelty score is the engine's own module and
    its two looks (novelty.looks), so every runtime gives the engine's verdict."""

    def __init__(self, net: nn.Module, prep: Preprocessing, temperature: float = 1.0,
                 novelty_score: nn.Module | None = None):
        super().__init__()
        self.net, self.novelty = net, novelty_score
        self.register_buffer("mean", torch.tensor(prep.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(prep.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("temperature", torch.tensor(float(temperature or 1.0), dtype=torch.float32))
        self.crop = prep.crop

    @staticmethod
    def example(prep: Preprocessing, batch: int = 2) -> torch.Tensor:
        return torch.zeros(batch, prep.crop, prep.crop, 3, dtype=torch.uint8)

    def forward(self, pixels: torch.Tensor):
        # The same operations, in the same order, as Preprocessing.normalize: float, /255, -mean, /std.
        images = (pixels.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
        features, seen = looks(self.net, images, self.novelty.mid if self.novelty is not None else 0)
        probs = (self.net.head(features) / self.temperature).softmax(dim=1)
        return probs if self.novelty is None else (probs, self.novelty(seen))
