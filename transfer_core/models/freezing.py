"""Freezing: "freeze depth N" keeps the first N stages of a TransferNet at their pretrained values.

Frozen stages stay in eval mode, so BatchNorm keeps its ImageNet running statistics (training mode
would overwrite them with small-batch estimates even though no weight changes).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from transfer_core.core.i18n import N_, _, sentences
from transfer_core.models.network import TransferNet

# The names of the backbones' parts (backbones.py), for the catalogs: the engine keeps them in English (they
# name stages in run folders and events); the app shows them translated with i18n.retranslate.
STAGE_WORDS = (N_("stem"), N_("stage {n}"), N_("stage {n} ({px}px)"), N_("last conv"), N_("patch embedding"),
               N_("blocks {first}-{last}"), N_("new classifier"))


def resolve_depth(freeze: int | str, num_stages: int) -> int:
    """'all' -> every stage (only the head trains); an int is clamped to the number of stages."""
    if freeze == "all":
        return num_stages
    return max(0, min(int(freeze), num_stages))


def frozen_modules(net: TransferNet, depth: int) -> list[nn.Module]:
    mods = list(net.stages[:depth])
    if depth >= net.num_stages:
        mods.append(net.pool)  # pool may hold pretrained layers (VGG fc, MobileNetV3's 1280-d layer)
    return mods


def apply_freeze(net: TransferNet, depth: int) -> None:
    frozen = {id(p) for m in frozen_modules(net, depth) for p in m.parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) not in frozen)


def set_train_mode(net: TransferNet, depth: int) -> None:
    """net.train(), except frozen parts, which stay in eval mode (BatchNorm statistics, dropout)."""
    net.train()
    for m in frozen_modules(net, depth):
        m.eval()


def count_params(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@dataclass(frozen=True)
class FreezePlan:
    depth: int
    num_stages: int
    training: tuple[str, ...]  # names of the parts that learn
    frozen: tuple[str, ...]
    trainable_params: int
    total_params: int

    def describe(self) -> str:
        share = self.trainable_params / max(1, self.total_params)
        if self.depth >= self.num_stages:
            what = _("Feature extraction: every pretrained layer is kept; only the new classifier learns.")
        elif self.depth == 0:
            what = _("Full fine-tuning: every layer adapts to your images.")
        else:
            what = _("The first {depth} of {stages} stages are kept; the rest adapt to your images.").format(
                depth=self.depth, stages=self.num_stages)
        return sentences(what, _("{trainable} of {total} weights train ({share}).").format(
            trainable=f"{self.trainable_params:,}", total=f"{self.total_params:,}", share=f"{share:.1%}"))


def describe_model_first(plan: FreezePlan, first: FreezePlan) -> str:
    """The one-click plan (training/progressive.py) in words: its first model trains only the new classifier
    (`first`: the plan with every stage kept); the stages `plan` leaves free may learn afterwards, while the
    validation pictures improve (and, with few of them, only if trial runs say it helps)."""
    if plan.depth >= plan.num_stages:
        return plan.describe()
    share = first.trainable_params / max(1, first.total_params)
    upto = plan.trainable_params / max(1, plan.total_params)
    return sentences(
        _("First model: only the new classifier learns ({trainable} of {total} weights, {share}).").format(
            trainable=f"{first.trainable_params:,}", total=f"{first.total_params:,}", share=f"{share:.1%}"),
        _("Then the layers you do not keep may learn too, while the validation pictures get better: up to "
          "{trainable} weights ({share}).").format(trainable=f"{plan.trainable_params:,}", share=f"{upto:.1%}"))


def describe_freeze(net: TransferNet, freeze: int | str) -> FreezePlan:
    depth = resolve_depth(freeze, net.num_stages)
    names = list(net.stage_names)
    trainable = count_params(net.stages[depth:]) + count_params([net.head])
    if depth < net.num_stages:
        trainable += count_params([net.pool])
    return FreezePlan(depth=depth, num_stages=net.num_stages, training=tuple(names[depth:]) + (STAGE_WORDS[-1],),
                      frozen=tuple(names[:depth]), trainable_params=trainable,
                      total_params=count_params([net]))
