"""Two kernel choices the engine makes, each measured side by side in one run on this device.

    python bench/cpu_kernels.py [--backbone mobilenet_v2] [--batch 32] [--steps 3]

1. Memory layout: NCHW (PyTorch's default) against channels-last (NHWC): images/s for inference and for
   one training step at freeze depths 0, 3 and 4 (frozen part precomputed, as the engine caches it).
   device.plan_for uses the answer.
2. Frozen stages 0-2 (what the default caches) as they are against with BatchNorm folded into the
   convolutions (features.frozen_part), both channels-last, under no_grad.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transfer_core.core.device import describe_device, pick_device  # noqa: E402
from transfer_core.models.backbones import build_network  # noqa: E402
from transfer_core.models.freezing import apply_freeze, set_train_mode  # noqa: E402
from transfer_core.training.features import frozen_part  # noqa: E402


def rate(step, batch: int, steps: int) -> float:
    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def setup(name: str, batch: int, layout, depth: int | None):
    device = pick_device()
    torch.manual_seed(0)
    net = build_network(name, 3).to(device).to(memory_format=layout)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=layout)
    if depth is None:
        net.eval()
        return lambda: net(x)
    apply_freeze(net, depth)
    set_train_mode(net, depth)
    with torch.no_grad():
        h = net.run_stages(x, 0, depth)
    y = torch.randint(0, 3, (batch,), device=device)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)

    def step():
        loss = F.cross_entropy(net(h, depth), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    print(f"{a.backbone}, batch {a.batch}, 224 px, {describe_device()}")
    for label, depth in (("inference", None), ("training, freeze 0", 0), ("training, freeze 3", 3),
                         ("training, freeze 4", 4)):
        rates = []
        for layout in (torch.contiguous_format, torch.channels_last):  # side by side, same process
            step = setup(a.backbone, a.batch, layout, depth)
            ctx = torch.inference_mode() if depth is None else torch.enable_grad()
            with ctx:
                rates.append(rate(step, a.batch, a.steps))
        print(f"  {label:20s} NCHW {rates[0]:6.1f} img/s   channels-last {rates[1]:6.1f} img/s   "
              f"ratio {rates[1] / rates[0]:.2f}x")
    net = build_network(a.backbone, 3).to(pick_device()).eval().to(memory_format=torch.channels_last)
    x = torch.randn(a.batch, 3, 224, 224, device=pick_device()).contiguous(memory_format=torch.channels_last)
    rates = []
    for part in (torch.nn.Sequential(*net.stages[:3]), frozen_part(net, 0, 3, channels_last=True)):
        with torch.inference_mode():
            rates.append(rate(lambda: part(x), a.batch, a.steps))
    print(f"  {'frozen stages 0-2':20s} as is {rates[0]:6.1f} img/s   BatchNorm folded {rates[1]:6.1f} img/s   "
          f"ratio {rates[1] / rates[0]:.2f}x")


if __name__ == "__main__":
    main()
