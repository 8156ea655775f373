"""How much memory one training step holds, and how to keep it under a budget.

Backpropagation keeps every trainable layer's activations until the backward pass. For MobileNetV2
trained through its whole depth at 224 px that is about 75 MB per image, so a batch of 32 holds more
than 2 GB. When a batch would need more than the budget, the trainer runs it in parts and adds their
gradients before the one optimizer step (gradient accumulation): the same update from a smaller peak.
The only difference: BatchNorm layers that learn see each part's statistics instead of the whole batch's.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from transfer_core.core.i18n import _


def saved_bytes(net: nn.Module, x: torch.Tensor, start: int) -> int:
    """Bytes autograd keeps for the backward pass of net(x, start), counted while it records them."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    training = {m: m.training for m in net.modules()}
    net.eval()  # eval: this probe must not move BatchNorm's running statistics
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(x, start)
    finally:
        for m, mode in training.items():
            m.training = mode
    return total


def bytes_per_image(net: nn.Module, x2: torch.Tensor, start: int) -> int:
    """Activation bytes one more image adds to a step. Two probes (1 and 2 images) so that what a step
    keeps once whatever its size (weights saved for backward) is not counted per image."""
    one, two = saved_bytes(net, x2[:1], start), saved_bytes(net, x2[:2], start)
    return max(1, two - one)


def part_size(batch_size: int, per_image: int, budget_mb: int) -> int:
    """Images per forward/backward part: the whole batch when it fits the budget (or budget 0 = off);
    never fewer than 2, because a learning BatchNorm layer cannot normalise a single image."""
    if budget_mb <= 0:
        return batch_size
    fits = (budget_mb * 2 ** 20) // per_image
    return max(2, min(batch_size, int(fits)))


def split_count(n: int, size: int) -> int:
    """Into how many near-equal parts a batch of n goes, each at most `size` and at least 2 images."""
    return max(1, min(math.ceil(n / size), n // 2))


def part_size_for(net: nn.Module, run_frozen, crop: int, depth: int, device: torch.device, batch_size: int,
                  budget_mb: int) -> int:
    """Images per part at this freeze depth, measured on a probe through the frozen part (`run_frozen`).
    Every stage frozen: only the classifier learns, on pooled features a few KB each, so a batch is one part
    (no probe: at 10 pictures per class it was 3% of the time to the first model)."""
    if depth >= net.num_stages:
        return batch_size
    probe = torch.zeros(2, 3, crop, crop, device=device)
    x, start = run_frozen(probe, depth)
    return part_size(batch_size, bytes_per_image(net, x, start), budget_mb)


def parts_words(batch_size: int, size: int, budget_mb: int) -> str:
    n = split_count(batch_size, size)
    return "" if n == 1 else " " + _("To stay within {budget} MB, each batch of {batch} is learned from in {n} parts "
                                     "(same update, less memory).").format(budget=budget_mb, batch=batch_size, n=n)
