"""TransferNet: any registered backbone, cut into ordered stages, a pooling step and a head.

Every backbone is reshaped into the same form so that freezing ("the first N stages"), caching the
output of frozen stages, Grad-CAM (the last stage's feature map) and feature-level methods
(distillation, domain adaptation) are one code path instead of one per architecture.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Split:
    """What a backbone spec returns when it cuts an ImageNet model apart."""

    stages: list[tuple[str, nn.Module]]  # ordered: stem ... last stage
    pool: nn.Module  # feature map -> flat feature vector (may hold pretrained layers, e.g. VGG's fc)
    head: nn.Module  # the ImageNet classifier, kept so tests can check the weights are right
    feature_dim: int


def make_head(feature_dim: int, num_classes: int, *, kind: str = "linear",
              hidden: int = 512, dropout: float = 0.2) -> nn.Module:
    """The new classifier. "mlp" is the classic Keras recipe: Dense(hidden, relu) -> Dropout -> Dense."""
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))
    if kind == "mlp":
        return nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True),
                             nn.Dropout(dropout), nn.Linear(hidden, num_classes))
    raise ValueError(f"unknown head {kind!r}: use 'linear' or 'mlp'")


class TransferNet(nn.Module):
    def __init__(self, split: Split, head: nn.Module | None = None):
        super().__init__()
        self.stage_names = [name for name, _ in split.stages]
        self.stages = nn.ModuleList(module for _, module in split.stages)
        self.pool = split.pool
        self.head = split.head if head is None else head
        self.feature_dim = split.feature_dim

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def run_stages(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for stage in self.stages[start:stop]:
            x = stage(x)
        return x

    def features(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Flat feature vector; `start` > 0 means x is already the output of stage start-1."""
        return self.pool(self.run_stages(x, start))

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """start = num_stages + 1 means x is already a pooled feature vector (cached features)."""
        if start > self.num_stages:
            return self.head(x)
        return self.head(self.features(x, start))
