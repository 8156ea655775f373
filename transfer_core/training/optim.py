"""Optimizer parameter groups and the learning-rate schedule, as small pure functions.

Groups follow the network's stages (fastai's "splitter" idea): freezing, gradual unfreezing and
discriminative learning rates are all "which stages, at which rate".
"""
from __future__ import annotations

import math

import torch
from torch import nn

from transfer_core.core.config import TrainConfig
from transfer_core.models.network import TransferNet


def stage_lr(config: TrainConfig, stage: int, num_stages: int) -> float:
    """Discriminative rates: the head gets lr; stage i gets lr * factor^(num_stages - i)."""
    return config.lr * config.lr_group_factor ** (num_stages - stage)


def _decayed(params: list[nn.Parameter]) -> tuple[list, list]:
    """Weight decay applies to weight matrices/kernels, not to biases and norm scales (usual practice)."""
    decay = [p for p in params if p.ndim > 1]
    plain = [p for p in params if p.ndim <= 1]
    return decay, plain


def stage_groups(net: TransferNet, config: TrainConfig, stages: range) -> list[dict]:
    groups = []
    for i in stages:
        params = [p for p in net.stages[i].parameters() if p.requires_grad]
        if i == net.num_stages - 1:
            params += [p for p in net.pool.parameters() if p.requires_grad]
        decay, plain = _decayed(params)
        lr = stage_lr(config, i, net.num_stages)
        groups += [{"params": decay, "lr": lr, "base_lr": lr, "weight_decay": config.weight_decay, "stage": i},
                   {"params": plain, "lr": lr, "base_lr": lr, "weight_decay": 0.0, "stage": i}]
    return [g for g in groups if g["params"]]


def build_optimizer(net: TransferNet, config: TrainConfig, depth: int) -> torch.optim.Optimizer:
    head_decay, head_plain = _decayed([p for p in net.head.parameters() if p.requires_grad])
    groups = [{"params": head_decay, "lr": config.lr, "base_lr": config.lr, "weight_decay": config.weight_decay,
               "stage": net.num_stages},
              {"params": head_plain, "lr": config.lr, "base_lr": config.lr, "weight_decay": 0.0,
               "stage": net.num_stages}]
    groups = [g for g in groups if g["params"]]
    # Methods may change a group's decay before each epoch (L2-SP turns it off for transferred weights).
    groups += stage_groups(net, config, range(depth, net.num_stages))
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    return torch.optim.AdamW(groups, lr=config.lr)


def add_stage(optimizer: torch.optim.Optimizer, net: TransferNet, config: TrainConfig, stage: int) -> None:
    """Gradual unfreezing: the optimizer gains a newly thawed stage's parameters."""
    for g in stage_groups(net, config, range(stage, stage + 1)):
        optimizer.add_param_group(g)


def lr_multiplier(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero: the usual fine-tuning schedule."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> float:
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * multiplier
    return optimizer.param_groups[0]["lr"]
