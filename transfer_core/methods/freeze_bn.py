"""Freeze BatchNorm only: the pretrained network fine-tunes, its BatchNorm layers stay as they came.

A BatchNorm layer holds, per channel, the running mean and variance of ImageNet's activations and a scale
and shift learned with them. With few pictures per class, statistics re-estimated on small batches of the
new pictures are noisy, and a change in them moves every later layer's input at once. The Keras fine-tuning
guide keeps BatchNorm in inference mode when it unfreezes a model; Lightning's `BaseFinetuning.freeze(...,
train_bn=False)` does the same. Here every BatchNorm layer of the transferred part stays in eval mode (its
statistics unchanged) and its scale and shift are left out of every step, while the other weights learn.

Two hooks of the loop do it: after_train_mode (the loop puts learning stages in train mode each epoch; the
BatchNorm layers go back to eval) and before_optimizer_step (their gradients are dropped: AdamW and SGD skip
a parameter without a gradient, so neither the step nor the weight decay moves it).
"""
from __future__ import annotations

from torch import nn

from transfer_core.core.i18n import N_
from transfer_core.core.settings import Setting
from transfer_core.methods.registry import Control, Figure, MethodSpec, Option, register
from transfer_core.models.network import TransferNet
from transfer_core.training.callbacks import Callback


def transferred_batch_norms(net: TransferNet) -> list[nn.Module]:
    """The BatchNorm layers that came from pretraining (stages and pooling part; a new head's are its own)."""
    return [m for part in (net.stages, net.pool) for m in part.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class FreezeBatchNorm(Callback):
    def __init__(self):
        self.layers: list[nn.Module] = []
        self.params: list[nn.Parameter] = []

    def before_fit(self, trainer) -> None:
        self.layers = transferred_batch_norms(trainer.net)
        self.params = [p for m in self.layers for p in m.parameters()]

    def after_train_mode(self, trainer) -> None:
        for m in self.layers:
            m.eval()

    def before_optimizer_step(self, trainer) -> None:
        for p in self.params:
            p.grad = None

    def after_fit(self, trainer) -> None:
        trainer.final_extra["frozen_batchnorm_layers"] = len(self.layers)


def _yes_no(text: str) -> bool:
    if text.lower() not in ("yes", "no", "true", "false", "on", "off", "1", "0"):
        raise ValueError(f"yes or no, not {text!r}")
    return text.lower() in ("yes", "true", "on", "1")


SPEC = register(MethodSpec(
    name="freeze_bn", order=15, title=N_("Freeze BatchNorm: keep the pretrained normalisation as it is"),
    help=(
        N_("Fine-tune the network but keep its normalisation layers (BatchNorm) exactly as they came from "
           "ImageNet: their measured averages and their own weights do not change, while every other layer "
           "learns. With few pictures per class, or small batches, re-measuring those averages on your "
           "pictures is noisy and can shift the whole network at once; keeping them is a known transfer "
           "trick. Networks without BatchNorm (e.g. vision transformers) are not changed by it.")),
    options=(Option("freeze_bn", Control(N_("Keep BatchNorm layers frozen"), "choice", values=(False, True),
                                         words={False: N_("off"), True: N_("on")}),
                    new=Setting(N_("keep the pretrained BatchNorm layers frozen while the rest fine-tunes "
                                   "(yes or no)"), name="freeze_bn", default=False, choices=(False, True),
                                metavar="yes|no", parse=_yes_no)),),
    build=lambda config: FreezeBatchNorm() if config.setting("freeze_bn") else None,
    figures=(Figure("frozen_batchnorm_layers", N_("BatchNorm layers kept frozen"), "{}"),),
))
