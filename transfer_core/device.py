"""Which device trains, and the settings that only pay off on a GPU."""
from __future__ import annotations

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_amp(device: torch.device) -> bool:
    # Mixed precision roughly doubles GPU throughput; on a CPU it is slower than float32.
    return device.type == "cuda"


def describe_device(device: torch.device | None = None) -> str:
    device = device or pick_device()
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"
