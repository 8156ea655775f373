"""Domain adaptation with unlabelled target images (where the model will be used).

- DANN (Ganin et al., 2016): a small domain classifier tells source from target pooled features; a
  gradient-reversal layer makes the trainable layers work *against* it, so their features stop
  carrying "which place is this picture from" and the classifier transfers.
- Deep CORAL (Sun & Saenko, 2016): matches the covariance of source and target pooled features.
- AdaBN (Li et al., 2016): after training, every BatchNorm layer is re-set so that target images leave it
  distributed as source images do (see adapt_batchnorm). No extra training; works with every stage frozen.

If the target folder has class sub-folders named like the training classes, their labels are used
only to report target accuracy (per epoch in EpochEnd.extra, and at the end), never to train.
"""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transfer_core.core.config import ConfigError, TrainConfig
from transfer_core.data.datasets import scan_unlabelled
from transfer_core.data.imagecache import ImageStore
from transfer_core.methods.registry import Control, Figure, MethodSpec, Option, register
from transfer_core.models.augment import eval_view
from transfer_core.models.freezing import set_train_mode
from transfer_core.models.network import TransferNet
from transfer_core.training.callbacks import Callback
from transfer_core.training.features import entry_point
from transfer_core.core.i18n import N_, _

_DOMAIN_HIDDEN = 256
# The paper's CORAL loss is divided by 4 d^2 (d = 1280 for most backbones here), so at weight 1 it is
# ~0.002 against a classification loss ~1 and changes nothing (measured: target accuracy 0.34 vs 0.33).
# Scaled by 100, adapt_weight = 1 is the setting measured in the README (0.39).
_CORAL_SCALE = 100.0
_ADABN_IMAGES = 64  # images per domain for AdaBN's statistics (one batch: ~0.3 GB at 224 px for MobileNetV2)


# ---------------------------------------------------------------------------------- pure pieces
class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff: float):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """Identity going forward; multiplies the gradient by -coeff going back (DANN's GRL)."""
    return _ReverseGradient.apply(x, coeff)


def dann_coefficient(progress: float) -> float:
    """DANN's schedule: 0 at the start (the domain classifier is still random), rising to 1."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||C_s - C_t||_F^2 / (4 d^2), the Deep CORAL loss, on N x d feature batches."""
    d = source.shape[1]

    def cov(f):
        f = f.float() - f.float().mean(0, keepdim=True)
        return f.T @ f / max(1, f.shape[0] - 1)

    return (cov(source) - cov(target)).pow(2).sum() / (4 * d * d)


def target_labels(paths: Sequence[Path], classes: Sequence[str]) -> torch.Tensor | None:
    """Labels from class folders named like the training classes, or None when the images are unlabelled."""
    index = {unicodedata.normalize("NFC", c): i for i, c in enumerate(classes)}
    labels = [index.get(unicodedata.normalize("NFC", Path(p).parent.name)) for p in paths]
    if not labels or any(label is None for label in labels):
        return None
    return torch.tensor(labels)


def _norm_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _input_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [0] + list(range(2, x.dim()))
    return x.mean(dims), x.var(dims, unbiased=False)


@torch.no_grad()
def input_statistics(net: TransferNet, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and variance of what every BatchNorm layer receives, for one batch of images."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: seen.append(_input_moments(args[0])))
             for m in _norm_layers(net)]
    try:
        net.eval()
        net.features(images)
    finally:
        for h in hooks:
            h.remove()
    return seen


@torch.no_grad()
def adapt_batchnorm(net: TransferNet, source: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> int:
    """AdaBN: re-set every BatchNorm layer so target images leave it distributed as source images do.

    Plain AdaBN swaps in the target's statistics, assuming the layer's running statistics are the
    source's. Here frozen layers keep ImageNet's statistics, which are not the source's, and swapping
    them changes what the trained head sees even for in-domain images (measured: accuracy fell to
    chance). So each layer is moved by the source-to-target difference instead:
        var' = var * var_t / var_s,    mean' = mean_t - (mean_s - mean) * sqrt(var' / var)
    which is plain AdaBN when (mean, var) = (mean_s, var_s). Layers are adjusted in order during one
    pass over the target batch, so each sees the target through the already-adapted layers before it.
    Returns the number of layers adjusted.
    """
    src = input_statistics(net, source)
    layers = _norm_layers(net)
    position = {id(m): i for i, m in enumerate(layers)}

    def align(m, args):
        mean_s, var_s = src[position[id(m)]]
        mean_t, var_t = _input_moments(args[0])
        scale = ((var_t + eps) / (var_s + eps)).sqrt()
        mean = mean_t - (mean_s - m.running_mean) * scale
        m.running_var.mul_(scale.pow(2))
        m.running_mean.copy_(mean)

    hooks = [m.register_forward_pre_hook(align) for m in layers]
    try:
        net.eval()
        net.features(target)
    finally:
        for h in hooks:
            h.remove()
    return len(layers)


@contextmanager
def _evaluating(trainer):
    """Eval mode inside; afterwards the trainer's own mode again (frozen parts stay in eval mode)."""
    was_training = trainer.net.training
    trainer.net.eval()
    try:
        yield
    finally:
        if was_training:
            set_train_mode(trainer.net, trainer.depth)


# ---------------------------------------------------------------------------------- the kinds of adaptation
class NoAdaptation:
    """Target images without adaptation: they only score the model (when they have class folders)."""
    name = "none"
    trains_layers = False  # True: a loss trains the layers against the gap, so some layer must be trainable
    cannot_resume: str | None = None

    def before_fit(self, trainer) -> None: ...

    def before_epoch(self, trainer, epoch: int) -> None: ...

    def loss(self, trainer, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # only asked of kinds that train the layers

    def after_fit(self, trainer, domain: TargetDomain) -> None: ...


class Dann(NoAdaptation):
    """A domain classifier tells source from target features; reversed gradients make the layers fool it."""
    name = "dann"
    trains_layers = True
    cannot_resume = N_("Runs with DANN domain adaptation cannot be resumed; start this one again.")  # (its classifier
    # and that classifier's optimizer state are not saved)

    def before_fit(self, trainer) -> None:
        self.head = nn.Sequential(nn.Linear(trainer.net.feature_dim, _DOMAIN_HIDDEN), nn.ReLU(),
                                  nn.Linear(_DOMAIN_HIDDEN, 1)).to(trainer.device)

    def before_epoch(self, trainer, epoch: int) -> None:
        if epoch == 1:  # the trainer builds its optimizer after before_fit
            lr = trainer.config.lr
            trainer.optimizer.add_param_group({"params": list(self.head.parameters()), "lr": lr, "base_lr": lr,
                                               "weight_decay": trainer.config.weight_decay,
                                               "stage": "domain classifier"})
        self.head.train()

    def loss(self, trainer, source, target):
        coeff = dann_coefficient(trainer.step / max(1, trainer.total_steps))
        feats = reverse_gradient(torch.cat([source, target]).float(), coeff)
        domain = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(feats.device)
        return F.binary_cross_entropy_with_logits(self.head(feats).squeeze(1), domain)


class Coral(NoAdaptation):
    """Matches the covariance of source and target features."""
    name = "coral"
    trains_layers = True

    def loss(self, trainer, source, target):
        return _CORAL_SCALE * coral_loss(source, target)


class AdaBN(NoAdaptation):
    """No extra training: after it, BatchNorm statistics are moved from source to target images."""
    name = "adabn"

    def after_fit(self, trainer, domain: TargetDomain) -> None:
        adapt_batchnorm(trainer.net, domain.sample(trainer.train_store, trainer), domain.sample(domain.store, trainer))
        # Every cached frozen-layer output was computed with the old statistics.
        trainer.feature_cache.train = trainer.feature_cache.val = None
        domain.cached_depth = -1


KINDS = {kind.name: kind for kind in (Dann, Coral, AdaBN)}  # TrainConfig.adapt's choices (config.ADAPTS)


def adaptation_kind(config: TrainConfig) -> NoAdaptation:
    return KINDS[config.adapt]() if config.adapt else NoAdaptation()


# ---------------------------------------------------------------------------------- the callback
class TargetDomain(Callback):
    """Target images: adaptation (if asked for) and target accuracy (if the folder has class folders)."""

    def __init__(self, config: TrainConfig):
        self.source = config.target_data
        self.kind = adaptation_kind(config)
        self.weight = config.adapt_weight
        self.gen = torch.Generator().manual_seed(config.seed + 1)  # apart from the source batch order
        self.cache: torch.Tensor | None = None
        self.cached_depth = -1
        self.losses: list[float] = []

    @property
    def domain_head(self) -> nn.Module | None:
        """DANN's domain classifier (None for the other kinds)."""
        return getattr(self.kind, "head", None)

    # ---- set-up
    def before_fit(self, trainer) -> None:
        paths, _skipped = scan_unlabelled(self.source, extract_to=trainer.run.path / "target")
        self.labels = target_labels(paths, trainer.classes)
        used = trainer.train_store.nbytes + trainer.val_store.nbytes
        self.store = ImageStore(paths, trainer.prep, budget_bytes=max(0, trainer.cache_mb * 2 ** 20 - used),
                                stop=trainer.stop)
        if self.kind.trains_layers and trainer.depth >= trainer.net.num_stages and not trainer.thaw_epochs():
            raise ConfigError(_("{method} adapts the network's layers, but every layer is frozen. Freeze fewer stages, or "
                                "choose AdaBN, which works with everything frozen.").format(
                                    method=self.kind.name.upper()))
        self.kind.before_fit(trainer)

    def before_epoch(self, trainer, epoch: int) -> None:
        self.kind.before_epoch(trainer, epoch)
        self.losses = []

    # ---- target inputs: the frozen part's output for each target image, computed once per depth
    def _inputs(self, trainer, idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        if self.cached_depth != trainer.depth:
            self.cache, self.cached_depth = self._frozen_outputs(trainer), trainer.depth
        if self.cache is not None:
            return self.cache[idx].to(trainer.device), entry_point(trainer.net, trainer.depth)
        images = eval_view(self.store.batch(idx).to(trainer.device), trainer.prep)
        return trainer.feature_cache.run_frozen(images, trainer.depth)

    @torch.no_grad()
    def _frozen_outputs(self, trainer) -> torch.Tensor | None:
        if trainer.depth == 0:
            return None  # nothing frozen: the images go through the whole network each time
        with _evaluating(trainer):
            parts = [trainer.feature_cache.run_frozen(eval_view(self.store.batch(idx).to(trainer.device),
                                                                trainer.prep), trainer.depth)[0].cpu()
                     for idx in torch.arange(len(self.store)).split(32)]
        return torch.cat(parts)

    def _target_features(self, trainer, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.store), (n,), generator=self.gen)
        x, start = self._inputs(trainer, idx)
        return x if start > trainer.net.num_stages else trainer.net.features(x, start)

    # ---- training
    def extra_loss(self, trainer, batch, logits) -> torch.Tensor | None:
        if not self.kind.trains_layers or self.weight == 0:
            return None
        loss = self.kind.loss(trainer, batch.features, self._target_features(trainer, len(batch.y)))
        self.losses.append(float(loss.detach()))
        return self.weight * loss

    # ---- reporting and AdaBN
    def after_epoch(self, trainer, epoch: int, extra: dict) -> None:
        if self.losses:
            extra[f"{self.kind.name}_loss"] = round(sum(self.losses) / len(self.losses), 6)
        if self.labels is not None:
            extra["target_accuracy"] = round(self.accuracy(trainer), 4)

    def after_fit(self, trainer) -> None:
        self.kind.after_fit(trainer, self)
        trainer.final_extra["target_images"] = len(self.store)
        if self.labels is not None:
            trainer.final_extra["target_accuracy"] = round(self.accuracy(trainer), 4)

    def sample(self, store: ImageStore, trainer, limit: int = _ADABN_IMAGES) -> torch.Tensor:
        """Up to `limit` images as one batch: statistics need a sample, and one batch keeps the pass exact."""
        idx = torch.randperm(len(store), generator=torch.Generator().manual_seed(0))[:limit].sort().values
        return eval_view(store.batch(idx).to(trainer.device), trainer.prep)

    @torch.no_grad()
    def accuracy(self, trainer) -> float:
        """Share of target images classified as their (hidden from training) class folder says."""
        correct = 0
        with _evaluating(trainer):
            for idx in torch.arange(len(self.store)).split(64):
                x, start = self._inputs(trainer, idx)
                correct += int((trainer.net(x, start).argmax(1).cpu() == self.labels[idx]).sum())
        return correct / max(1, len(self.store))


SPEC = register(MethodSpec(
    name="adaptation", order=30,
    title=N_("Domain adaptation: unlabelled pictures from where the model will be used"),
    help=(
        N_("Your model will be used somewhere your pictures do not come from: another camera, other lighting, "
        "another factory. Add a folder of unlabelled pictures from there. DANN trains the network so that it "
        "cannot tell the two places apart; Deep CORAL matches the statistics of their features; AdaBN (cheap, "
        "no extra training) re-measures the network's normalisation statistics on the new pictures. If that "
        "folder has class sub-folders, their labels are used only to report accuracy there, never to train.")),
    options=(Option("adapt", Control(N_("Adapt to pictures from where the model will be used (domain adaptation)"),
                                     "choice", words={"": N_("no adaptation")})),
             Option("target_data", Control(N_("Folder of unlabelled pictures from there"), "folder")),
             Option("adapt_weight")),
    build=lambda config: TargetDomain(config) if config.target_data else None,
    figures=(Figure("target_accuracy", N_("Accuracy on the target pictures"), "{:.1%}"),
             Figure("dann_loss", N_("Domain confusion loss (DANN)"), "{:.3f}"),
             Figure("coral_loss", N_("Feature-statistics gap (CORAL)"), "{:.4f}"),
             Figure("target_images", N_("Target pictures"), "{}")),
    first=True,  # AdaBN adjusts the model before the other methods measure it at the end
    cannot_resume=lambda config: adaptation_kind(config).cannot_resume,
))
