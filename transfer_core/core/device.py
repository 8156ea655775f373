"""Which device trains, and the settings that only pay off on a GPU, chosen from the device alone."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from transfer_core.core.i18n import _


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class DevicePlan:
    """How to feed and run the network on one device."""

    amp: bool  # mixed precision (float16 autocast + gradient scaling)
    channels_last: bool  # NHWC memory layout, which GPU tensor cores and oneDNN's CPU kernels prefer
    pin_memory: bool  # batches leave the CPU from page-locked memory, so copies can overlap compute


def plan_for(device: torch.device) -> DevicePlan:
    # On a GPU, mixed precision and NHWC let convolutions use tensor cores, and pinned memory lets the
    # host-to-device copy overlap compute. On a CPU, autocast is slower than float32 (no half-precision
    # units on common CPUs) and pinning only helps copies to a GPU, but NHWC pays too: oneDNN's CPU
    # convolutions run MobileNetV2 about 1.6x faster for inference and 1.2x for full training on this
    # 2-core machine (python bench/cpu_kernels.py).
    gpu = device.type == "cuda"
    return DevicePlan(amp=gpu, channels_last=True, pin_memory=gpu)


def use_amp(device: torch.device) -> bool:
    return plan_for(device).amp


def describe_device(device: torch.device | None = None) -> str:
    device = device or pick_device()
    if device.type == "cuda":
        return _("GPU: {name}").format(name=torch.cuda.get_device_name(device))
    return _("CPU ({n} threads)").format(n=torch.get_num_threads())
