"""L2-SP (Li, Grandvalet & Davoine, 2018): regularise toward the starting point, not toward zero.

Loss += lambda * ||theta - theta_pretrained||^2 over the transferred (backbone) weights that train.
The new head has no starting point worth keeping, so it keeps plain weight decay; optim.py already
turns decay off for transferred weights when L2-SP is on, so the two pulls do not fight.
"""
from __future__ import annotations

import torch
from torch import nn

from transfer_core.models.network import TransferNet
from transfer_core.training.callbacks import Callback


def transferred_parameters(net: TransferNet) -> list[tuple[str, nn.Parameter]]:
    """Every weight that came from pretraining: the stages and the pooling part, not the new head."""
    stages = [(f"stages.{n}", p) for n, p in net.stages.named_parameters()]
    return stages + [(f"pool.{n}", p) for n, p in net.pool.named_parameters()]


def distance_to_start(net: TransferNet, start: dict[str, torch.Tensor]) -> float:
    """Euclidean distance of all transferred weights from their starting values."""
    with torch.no_grad():
        total = sum(float((p - start[n]).pow(2).sum()) for n, p in transferred_parameters(net))
    return total ** 0.5


class L2SP(Callback):
    def __init__(self, strength: float):
        self.strength = strength
        self.start: dict[str, torch.Tensor] = {}
        self.training: list[tuple[torch.Tensor, nn.Parameter]] = []

    def before_fit(self, trainer) -> None:
        self.start = {n: p.detach().clone() for n, p in transferred_parameters(trainer.net)}

    def before_epoch(self, trainer, epoch: int) -> None:
        # Recomputed each epoch: gradual unfreezing may have thawed another stage.
        self.training = [(self.start[n], p) for n, p in transferred_parameters(trainer.net) if p.requires_grad]

    def extra_loss(self, trainer, batch, logits) -> torch.Tensor | None:
        if not self.training:
            return None
        return self.strength * sum((p - p0).pow(2).sum() for p0, p in self.training)

    def after_epoch(self, trainer, epoch: int, extra: dict) -> None:
        extra["l2sp_distance"] = round(distance_to_start(trainer.net, self.start), 6)

    def after_fit(self, trainer) -> None:
        trainer.final_extra["l2sp_distance"] = round(distance_to_start(trainer.net, self.start), 6)
