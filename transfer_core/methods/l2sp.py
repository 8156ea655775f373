"""L2-SP (Li, Grandvalet & Davoine, 2018): regularise toward the starting point, not toward zero.

Loss += lambda * ||theta - theta_pretrained||^2 over the transferred (backbone) weights that train.
The new head has no starting point worth keeping, so it keeps plain weight decay; the transferred
weights' decay is turned off while L2-SP is on, so the two pulls do not fight.
"""
from __future__ import annotations

import torch
from torch import nn

from transfer_core.core.config import TrainConfig
from transfer_core.methods.registry import Control, Figure, MethodSpec, Option, register
from transfer_core.models.network import TransferNet
from transfer_core.training.callbacks import Callback
from transfer_core.core.i18n import N_


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
        # Recomputed each epoch: gradual unfreezing may have thawed another stage (and added its group).
        self.training = [(self.start[n], p) for n, p in transferred_parameters(trainer.net) if p.requires_grad]
        no_transferred_decay(trainer.optimizer, trainer.net.num_stages)

    def extra_loss(self, trainer, batch, logits) -> torch.Tensor | None:
        if not self.training:
            return None
        return self.strength * sum((p - p0).pow(2).sum() for p0, p in self.training)

    def after_epoch(self, trainer, epoch: int, extra: dict) -> None:
        extra["l2sp_distance"] = round(distance_to_start(trainer.net, self.start), 6)

    def after_fit(self, trainer) -> None:
        trainer.final_extra["l2sp_distance"] = round(distance_to_start(trainer.net, self.start), 6)


def no_transferred_decay(optimizer: torch.optim.Optimizer, num_stages: int) -> None:
    """Decay toward zero would fight the pull toward the start: only the head's groups keep it."""
    for group in optimizer.param_groups:
        if isinstance(group.get("stage"), int) and group["stage"] < num_stages:
            group["weight_decay"] = 0.0


def _build(config: TrainConfig) -> L2SP | None:
    # From random weights there is nothing to stay close to.
    return L2SP(config.l2sp) if config.l2sp > 0 and config.pretrained else None


SPEC = register(MethodSpec(
    name="l2sp", order=10, title=N_("L2-SP: stay close to the pretrained weights"),
    help=(
        N_("Stay close to what the network already knows. Instead of pulling every weight toward zero (plain "
        "weight decay), L2-SP pulls the pretrained weights back toward their ImageNet values, so only the new "
        "classifier is free to move far. It helps most with few pictures per class, where fine-tuning tends "
        "to forget useful general features. Strength: 0 = off; 0.1 to 0.5 (measured with AdamW: 0.5 keeps the "
        "weights about a third closer to where they started).")),
    options=(Option("l2sp", Control(N_("Stay close to the pretrained weights (L2-SP strength)"), "levels",
                                    values=(0.0, 0.01, 0.1, 0.3, 0.5), words={0.0: N_("off")})),),
    build=_build,
    figures=(Figure("l2sp_distance", N_("Distance from the pretrained weights"), "{:.3f}"),),
))
