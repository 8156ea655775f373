"""Transfer Studio benchmark: the engine against the machine's limit and against the plain recipe.

    python bench/benchmark.py [DATA] [--plain-epochs 3] [--engine-epochs 6] [--json out.json]

Everything runs in one process, one after the other, on the same data, so the ratios compare like
with like on a noisy machine. It prints:
  1. the limit: training (forward + backward at the given freeze depth) and inference throughput of the
     backbone on tensors already in memory, at the same resolution and batch size;
  2. the engine's end-to-end training throughput at that setting (decoding and augmentation included);
  3. the plain tutorial recipe (ImageFolder + DataLoader, decode and transform every image every epoch,
     full fine-tuning, SGD lr 1e-3 momentum 0.9, batch 64, 224 px): validation accuracy after E epochs, time;
  4. the engine's time to reach that accuracy with its default settings (one click in the app);
  5. the ratios 2/1 and 3/4, feature-extraction costs, peak memory (RSS) and the device.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transfer_core.backbones import build_network, get_backbone  # noqa: E402
from transfer_core.callbacks import EventLog  # noqa: E402
from transfer_core.config import TrainConfig  # noqa: E402
from transfer_core.datasets import demo_dataset_path, scan_dataset  # noqa: E402
from transfer_core.device import describe_device, pick_device  # noqa: E402
from transfer_core.events import DataReady, EpochEnd, RunFinished  # noqa: E402
from transfer_core.freezing import apply_freeze, resolve_depth, set_train_mode  # noqa: E402
from transfer_core.trainer import train  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ----------------------------------------------------------------------------- 1. the limit
def limit_throughput(backbone: str, freeze, size: int, batch: int, steps: int = 4) -> tuple[float, float]:
    """Images/s for training (frozen part without autograd, rest forward + backward + step) and inference."""
    device = pick_device()
    net = build_network(backbone, 3).to(device)
    depth = resolve_depth(freeze, net.num_stages)
    apply_freeze(net, depth)
    set_train_mode(net, depth)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 3, (batch,), device=device)

    def step():
        with torch.no_grad():
            h = net.run_stages(x, 0, depth)
            if depth >= net.num_stages:
                h = net.pool(h)
        loss = F.cross_entropy(net(h, depth if depth < net.num_stages else net.num_stages + 1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    train_rate = batch * steps / (time.perf_counter() - t)
    net.eval()
    with torch.no_grad():
        net(x)
        t = time.perf_counter()
        for _ in range(steps):
            net(x)
    return train_rate, batch * steps / (time.perf_counter() - t)


# ----------------------------------------------------------------------------- 2/4. the engine
def engine_run(config: TrainConfig, runs_dir: Path) -> dict:
    log = EventLog()
    t0 = time.time()
    result = train(config, runs_dir=runs_dir, callbacks=[log])
    events = log.snapshot()
    if not isinstance(result.final, RunFinished):
        raise SystemExit(f"engine run did not finish: {result.final}")
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    ready = next(e for e in events if isinstance(e, DataReady))
    return {"t0": t0, "epochs": epochs, "ready_s": ready.time - t0, "plan": ready.plan,
            "seconds": time.time() - t0, "best": result.final.best_val_accuracy}


def engine_throughput(data: str, backbone: str, freeze, size: int, batch: int, augment: str, runs: Path) -> float:
    """Training images/s in the engine's epochs (decoding happens once, before, and is reported apart)."""
    cfg = TrainConfig(data=data, backbone=backbone, freeze=freeze, image_size=size, batch_size=batch,
                      augment=augment, epochs=1, max_images=batch * 6)
    run = engine_run(cfg, runs)
    return run["epochs"][-1].images_per_sec


# ----------------------------------------------------------------------------- 3. the plain recipe
def plain_recipe(data: str, epochs: int, seed: int = 0) -> dict:
    """What tutorials teach: ImageFolder-style decoding every epoch, full fine-tuning, SGD, batch 64."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    report = scan_dataset(data, val_split=0.2, seed=seed)  # the same split as the engine uses
    spec = get_backbone("mobilenet_v2")
    p = spec.preprocessing
    norm = T.Normalize(p.mean, p.std)
    train_tf = T.Compose([T.RandomResizedCrop(p.crop), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val_tf = T.Compose([T.Resize(p.resize), T.CenterCrop(p.crop), T.ToTensor(), norm])

    class Files(Dataset):
        def __init__(self, samples, tf):
            self.samples, self.tf = samples, tf

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, i):
            s = self.samples[i]
            return self.tf(Image.open(s.path).convert("RGB")), s.label

    torch.manual_seed(seed)
    device = pick_device()
    net = build_network("mobilenet_v2", len(report.classes)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    train_dl = DataLoader(Files(report.train, train_tf), batch_size=64, shuffle=True, num_workers=2)
    val_dl = DataLoader(Files(report.val, val_tf), batch_size=64, num_workers=2)
    t0, accs = time.time(), []
    for _ in range(epochs):
        net.train()
        for x, y in train_dl:
            loss = F.cross_entropy(net(x.to(device)), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_dl:
                correct += int((net(x.to(device)).argmax(1).cpu() == y).sum())
        accs.append(correct / len(report.val))
        print(f"  plain recipe epoch {len(accs)}: val accuracy {accs[-1]:.3f} at {time.time() - t0:.0f}s", flush=True)
    return {"accuracy": accs[-1], "seconds": time.time() - t0, "per_epoch": accs}


def time_to_accuracy(run: dict, target: float) -> float | None:
    for e in run["epochs"]:
        if e.val_accuracy >= target:
            return e.time - run["t0"]
    return None


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=None, help="image folder (default: the bundled textile images)")
    ap.add_argument("--plain-epochs", type=int, default=3)
    ap.add_argument("--engine-epochs", type=int, default=None, help="default: the app's default epochs")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    data = str(args.data or demo_dataset_path())
    d = TrainConfig(data=data)
    default_cfg = TrainConfig(data=data, epochs=args.engine_epochs or d.epochs)
    size = default_cfg.image_size or get_backbone(default_cfg.backbone).preprocessing.crop
    out: dict = {"device": describe_device(), "data": data}
    runs = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    print(f"device: {out['device']}\ndata: {data}\n")

    print("1/2. limit vs engine throughput (images/s), same backbone, resolution, batch and freeze depth")
    rows = []
    for label, freeze, sz, aug in [("full fine-tuning, 224px", 0, 224, "light"),
                                    (f"default: freeze {d.freeze}, {size}px", d.freeze, size, d.augment)]:
        lim_train, lim_infer = limit_throughput(d.backbone, freeze, sz, d.batch_size)
        eng = engine_throughput(data, d.backbone, freeze, sz, d.batch_size, aug, runs)
        rows.append({"setting": label, "limit_train": lim_train, "limit_infer": lim_infer, "engine_train": eng,
                     "ratio": eng / lim_train})
        print(f"  {label:<28} limit train {lim_train:7.1f}  inference {lim_infer:7.1f}  "
              f"engine end-to-end {eng:7.1f}  ratio engine/limit {eng / lim_train:.2f}x", flush=True)
    out["throughput"] = rows

    print(f"\n3. plain recipe, {args.plain_epochs} epochs (full fine-tuning, SGD 1e-3, batch 64, 224px)")
    plain = plain_recipe(data, args.plain_epochs)
    out["plain"] = plain

    print(f"\n4. engine with its one-click defaults ({default_cfg.epochs} epochs)")
    run = engine_run(default_cfg, runs)
    for e in run["epochs"]:
        print(f"  engine epoch {e.epoch}: val accuracy {e.val_accuracy:.3f} at {e.time - run['t0']:.0f}s")
    reach = time_to_accuracy(run, plain["accuracy"])
    out["engine"] = {"seconds": run["seconds"], "best": run["best"], "time_to_plain_accuracy": reach,
                     "plan": run["plan"]}

    print("\n5. feature extraction (everything frozen, no augmentation), 20 epochs")
    fe = engine_run(TrainConfig(data=data, freeze="all", augment="none", epochs=20), runs)
    first = fe["epochs"][0].seconds + fe["ready_s"]
    later = sum(e.seconds for e in fe["epochs"][1:]) / max(1, len(fe["epochs"]) - 1)
    n_train = sum(1 for _ in scan_dataset(data).train)
    _, infer = limit_throughput(d.backbone, "all", size, 64)
    one_pass = n_train / infer
    out["feature_extraction"] = {"first_epoch_s": first, "later_epoch_s": later, "total_s": fe["seconds"],
                                 "one_inference_pass_s": one_pass, "best": fe["best"]}
    print(f"  first epoch (incl. decoding + features) {first:.1f}s, later epochs {later:.3f}s each "
          f"({later / first:.1%} of the first); 20 epochs {fe['seconds']:.1f}s = "
          f"{fe['seconds'] / one_pass:.2f}x one inference pass over the training images ({one_pass:.1f}s)")

    print("\nSummary")
    print(f"  device: {out['device']}")
    for r in rows:
        print(f"  engine/limit training throughput [{r['setting']}]: {r['ratio']:.2f}x")
    if reach:
        print(f"  plain recipe reached {plain['accuracy']:.3f} in {plain['seconds']:.0f}s; engine defaults reached it "
              f"in {reach:.0f}s: {plain['seconds'] / reach:.1f}x faster")
    else:
        print(f"  engine defaults did NOT reach the plain recipe's {plain['accuracy']:.3f} (best {run['best']:.3f})")
    out["peak_rss_mb"] = peak_rss_mb()
    print(f"  peak memory (RSS): {out['peak_rss_mb']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
