"""EWC, elastic weight consolidation (Kirkpatrick et al., 2017), toward the pretrained weights.

L2-SP (l2sp.py) pulls every transferred weight back toward its start equally. EWC weighs the pull by how
much each weight matters to what the network computes: the diagonal of the Fisher information,
F_i = E[(d log p(y|x) / d theta_i)^2], large where a small change moves the answers much. Here:

    loss += strength * sum_i F~_i (theta_i - theta_i*)^2,   F~ = F / mean(F)

theta* the pretrained weights; F estimated once, before the first epoch, on up to FISHER_PICTURES training
pictures (one at a time, centre view, the network in eval mode), y drawn from the network's own answers (the
Fisher proper, not the labels' "empirical" one), with a generator seeded from the run's seed so that a run,
resumed or not, gets the same F. Dividing by the mean makes `strength` read as L2-SP's does: the same pull
on average, moved onto the weights that matter. Only the stages the run may train are measured (autograd
then skips the frozen part).

The pull's gradient, 2 * strength * F~ * (theta - theta*), is added in before_optimizer_step, not through the
loss: no extra graph per step, and the training loss shown stays the pictures' own.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from transfer_core.core.config import TrainConfig
from transfer_core.core.i18n import N_
from transfer_core.core.settings import Setting
from transfer_core.methods.l2sp import distance_to_start, transferred_parameters
from transfer_core.methods.registry import Control, Figure, MethodSpec, Option, register
from transfer_core.models.augment import eval_view
from transfer_core.models.freezing import resolve_depth
from transfer_core.models.network import TransferNet
from transfer_core.training.callbacks import Callback

FISHER_PICTURES = 64  # enough for a stable diagonal's ranking; one forward and backward pass each


def may_train(net: TransferNet, config: TrainConfig) -> list[tuple[str, nn.Parameter]]:
    """The transferred weights a run of `config` may train: stages from the chosen freeze depth (less the
    gradual unfreezing's thaws) and the pooling part."""
    lowest = max(0, resolve_depth(config.freeze, net.num_stages) - len(config.unfreeze_at))
    keep = tuple(f"stages.{i}." for i in range(lowest, net.num_stages)) + ("pool.",)
    return [(n, p) for n, p in transferred_parameters(net) if n.startswith(keep)]


def fisher_diagonal(net: TransferNet, params: list[nn.Parameter], images: torch.Tensor, gen: torch.Generator,
                    each: Callable[[], None] = lambda: None) -> list[torch.Tensor]:
    """Mean squared gradient of log p(y|x) per weight, y drawn from the network's answer for each picture.
    `each` is called before each picture (the run's Stop check)."""
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    totals = [torch.zeros_like(p) for p in params]
    net.eval()  # the BatchNorm statistics are read, not re-estimated from one picture
    try:
        with torch.enable_grad():
            for x in images.split(1):
                each()
                log_p = net(x).float().log_softmax(1)
                y = torch.multinomial(log_p.detach().exp().cpu(), 1, generator=gen).item()
                for total, g in zip(totals, torch.autograd.grad(log_p[0, y], params, allow_unused=True)):
                    if g is not None:
                        total += g.detach() ** 2
    finally:
        for p, w in zip(params, was):
            p.requires_grad_(w)
    return [t / max(1, len(images)) for t in totals]


def normalised(fisher: list[torch.Tensor]) -> list[torch.Tensor]:
    """F / mean(F) over every measured weight (all ones when nothing was measured to matter)."""
    mean = sum(float(f.sum()) for f in fisher) / max(1, sum(f.numel() for f in fisher))
    return [f / mean if mean > 0 else torch.ones_like(f) for f in fisher]


class EWC(Callback):
    def __init__(self, strength: float):
        self.strength = strength
        self.start: dict[str, torch.Tensor] = {}
        self.pulls: list[tuple[str, nn.Parameter, torch.Tensor, torch.Tensor]] = []  # (name, weight, start, F~)

    def before_fit(self, trainer) -> None:
        self.start = {n: p.detach().clone() for n, p in transferred_parameters(trainer.net)}
        named = may_train(trainer.net, trainer.config)
        gen = torch.Generator().manual_seed(trainer.config.seed)  # its own: the run's random draws stay as they were
        fisher = fisher_diagonal(trainer.net, [p for _, p in named], self._pictures(trainer), gen, trainer.check_stop)
        fisher = normalised(fisher)
        self.pulls = [(n, p, self.start[n], f) for (n, p), f in zip(named, fisher)]

    @staticmethod
    def _pictures(trainer) -> torch.Tensor:
        n = min(FISHER_PICTURES, len(trainer.train_samples))
        idx = torch.linspace(0, len(trainer.train_samples) - 1, n).long()  # evenly over the list (all when fewer)
        return eval_view(trainer.train_store.batch(idx).to(trainer.device), trainer.prep)

    def before_optimizer_step(self, trainer) -> None:
        with torch.no_grad():
            for _name, p, p0, f in self.pulls:
                if p.grad is not None:  # frozen now, or kept out of this step by another method
                    p.grad.add_(f * (p - p0), alpha=2 * self.strength)

    def weighted_distance(self, net: TransferNet) -> float:
        """sum F~ (theta - theta*)^2 of `net`'s weights: what the pull keeps small (net: this run's, or another
        run's network of the same backbone, compared on this run's F~)."""
        weights = dict(net.named_parameters())
        with torch.no_grad():
            return sum(float((f * (weights[n] - p0).pow(2)).sum()) for n, _p, p0, f in self.pulls)

    def after_epoch(self, trainer, epoch: int, extra: dict) -> None:
        extra["ewc_distance"] = round(distance_to_start(trainer.net, self.start), 6)

    def after_fit(self, trainer) -> None:
        trainer.final_extra["ewc_distance"] = round(distance_to_start(trainer.net, self.start), 6)


def _build(config: TrainConfig) -> EWC | None:
    # From random weights there is nothing to keep; at 0 nothing is estimated (no cost at all).
    strength = config.setting("ewc")
    return EWC(strength) if strength > 0 and config.pretrained else None


SPEC = register(MethodSpec(
    name="ewc", order=12, title=N_("EWC: keep the pretrained weights that matter"),
    help=(
        N_("Like L2-SP, pull the pretrained weights back toward their ImageNet values, but hardest on the "
           "weights that matter most to what the network sees, and hardly at all on the others (elastic weight "
           "consolidation). How much each weight matters is measured once, before training, on up to 64 of "
           "your training pictures (a few seconds). It helps when fine-tuning on few pictures would otherwise "
           "forget useful general features. Strength: 0 = off; 0.1 to 1 is usual.")),
    options=(Option("ewc", Control(N_("Keep the weights that matter (EWC strength)"), "levels",
                                   values=(0.0, 0.1, 0.3, 1.0, 3.0), words={0.0: N_("off")}),
                    new=Setting(N_("EWC strength: pull the pretrained weights toward their start, weighted by "
                                   "how much each matters (0 = off)"), name="ewc", default=0.0, low=0, high=100)),),
    build=_build,
    figures=(Figure("ewc_distance", N_("Distance from the pretrained weights"), "{:.3f}"),),
))
