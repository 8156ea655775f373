"""Transfer Studio benchmark: the engine against the machine's limit and against the plain recipe.

    python bench/benchmark.py [DATA] [--quick] [--plain-epochs 2] [--image-size 224] [--json out.json]

One run, on the same data (default: the bundled 2,000 textile images), prints:
  1. the limit: the backbone's training throughput (frozen part without autograd, the rest forward +
     backward + step) and inference throughput on tensors already in memory, same resolution and batch;
  2. the engine's end-to-end training throughput at that setting, data loading included; the limit is
     measured just before and just after the engine run and averaged, so a change in machine load
     between them shows (both are printed) instead of skewing the ratio;
  3. the plain tutorial recipe (decode and transform every image every epoch with a DataLoader, full
     fine-tuning, SGD lr 1e-3 momentum 0.9, batch 64): validation accuracy after E epochs, and its time;
     twice: with the tutorials' RandomResizedCrop (default scale 0.08-1, which can cut small defects
     off) and, as the control, with resize + centre crop (the flip kept, so only the crop differs);
  4. the engine's time to reach the accuracy of the stronger of the two with its one-click defaults
     (speed-up = that recipe's time / the engine's);
  5. feature extraction (everything frozen): first epoch against later ones, 20 epochs against one
     inference pass over the training images;
  6. the ratios 2/1 and 3/4, each engine run's peak memory (RSS), the device and the machine load.
Each engine run happens in a child process, so its peak RSS is its own, not the plain recipe's.
--quick runs every section on a small share of the data (a smoke test, a few minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.core.device import describe_device, pick_device, plan_for  # noqa: E402
from transfer_core.data.datasets import demo_dataset_path, scan_dataset  # noqa: E402
from transfer_core.data.imagecache import ImageStore  # noqa: E402
from transfer_core.models.backbones import build_network, get_backbone  # noqa: E402
from transfer_core.models.freezing import apply_freeze, resolve_depth, set_train_mode  # noqa: E402

BACKBONE = "mobilenet_v2"


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage: a child started by fork + exec
    inherits its parent's ru_maxrss, but gets a fresh VmHWM."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def code_version() -> str:
    """The commit the figures come from, so a README table can say which engine it describes."""
    repo = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repo)]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    # The figures the benchmarks write (bench/results/) are not code: a grid resumed after its first part
    # wrote them is still measuring the same commit.
    dirty = subprocess.run(git + ["status", "--porcelain", "--", "transfer_core", "bench", ":!bench/results"],
                           capture_output=True, text=True).stdout.strip()
    return (head or "unknown") + (" with uncommitted changes" if dirty else "")


def load() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg() + f" on {os.cpu_count()} cores"


# ----------------------------------------------------------------------------- 1. the limit
def limit_throughput(freeze, size: int, batch: int, steps: int) -> tuple[float, float]:
    """Images/s on tensors in memory: training at this freeze depth, and inference through the whole net."""
    device = pick_device()
    torch.manual_seed(0)
    net = build_network(BACKBONE, 3).to(device)
    depth = resolve_depth(freeze, net.num_stages)
    apply_freeze(net, depth)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=device)
    if plan_for(device).channels_last:  # the same memory layout the engine uses on this device
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (batch,), device=device)
    start = depth if depth < net.num_stages else net.num_stages + 1

    def train_step():
        with torch.no_grad():  # the frozen part: no graph, no gradients
            h = net.run_stages(x, 0, depth)
            if depth >= net.num_stages:
                h = net.pool(h)
        loss = F.cross_entropy(net(h, start), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    set_train_mode(net, depth)
    train_rate = _rate(train_step, batch, steps)
    net.eval()
    with torch.no_grad():
        infer_rate = _rate(lambda: net(x), batch, steps)
    return train_rate, infer_rate


def _rate(step, batch: int, steps: int) -> float:
    step()  # warm-up: first-call allocations
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


# ----------------------------------------------------------------------------- engine runs (child processes)
def engine_child(config_json: str) -> None:
    """Runs in a child process: one engine run; prints one JSON line with its timings and peak RSS."""
    from transfer_core.core.events import DataReady, EpochEnd, RunFinished
    from transfer_core.training.callbacks import EventLog
    from transfer_core.workflows.train import train

    spec = json.loads(config_json)
    runs_dir = spec.pop("runs_dir")
    log = EventLog()
    t0 = time.time()
    result = train(TrainConfig.from_dict(spec), runs_dir=runs_dir, callbacks=[log])
    if not isinstance(result.final, RunFinished):
        raise SystemExit(f"engine run did not finish: {result.final}")
    events = log.snapshot()
    ready = next(e for e in events if isinstance(e, DataReady))
    # EpochEnd reports the rate of its training part; the rest of its `seconds` is validation.
    epochs = [{"epoch": e.epoch, "at": e.time - t0, "seconds": e.seconds, "images_per_sec": e.images_per_sec,
               "train_seconds": ready.num_train / max(e.images_per_sec, 1e-9), "val_accuracy": e.val_accuracy}
              for e in events if isinstance(e, EpochEnd)]
    print(json.dumps({"ready_s": ready.time - t0, "plan": ready.plan, "num_train": ready.num_train,
                      "num_val": ready.num_val, "epochs": epochs, "seconds": time.time() - t0,
                      "best": result.final.best_val_accuracy, "peak_rss_mb": peak_rss_mb()}))


def engine_run(runs: Path, **config) -> dict:
    # Per-epoch speed and curves: the fixed schedule, whose epochs all run (the one click's progressive
    # schedule is measured by bench/one_click.py, on test pictures).
    spec = TrainConfig(**{"schedule": "fixed", **config}).to_dict() | {"runs_dir": str(runs)}
    done = subprocess.run([sys.executable, __file__, "--engine-child", json.dumps(spec)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"engine run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def end_to_end_rates(run: dict) -> tuple[float, float]:
    """Training images/s (a) within the last epoch: batches from the cache, augmentation, frozen part,
    forward, backward, step; (b) over the whole run, validation left out: (a) plus scanning, building
    the model, decoding every image once and caching the frozen part's outputs."""
    epochs = run["epochs"]
    whole = run["num_train"] * len(epochs) / (run["ready_s"] + sum(e["train_seconds"] for e in epochs))
    return epochs[-1]["images_per_sec"], whole


# ----------------------------------------------------------------------------- 3. the plain recipe
def engine_subset(samples: list, max_images: int | None, seed: int = 0) -> list:
    """The training images the engine keeps with max_images (Trainer._scan: the first draw of its generator)."""
    if not max_images or len(samples) <= max_images:
        return samples
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))[:max_images]
    return [samples[i] for i in sorted(order.tolist())]


PLAIN_CROPS = ("random-resized", "centre")


def plain_recipe(data: str, epochs: int, size: int, *, crop: str = "random-resized", seed: int = 0,
                 max_train: int | None = None, val_split: float = 0.2) -> dict:
    """What tutorials teach: decode + transform every image every epoch, full fine-tuning, SGD, batch 64.
    crop "random-resized": RandomResizedCrop at its default scale (0.08-1); "centre": the control,
    resize + centre crop as for validation, so no defect is cropped away."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    report = scan_dataset(data, val_split=val_split, seed=seed)  # the same split as the engine's
    train_samples = engine_subset(list(report.train), max_train, seed)
    p = get_backbone(BACKBONE).preprocessing.at_size(size)
    norm = T.Normalize(p.mean, p.std)
    crop_tf = [T.RandomResizedCrop(p.crop)] if crop == "random-resized" else [T.Resize(p.resize), T.CenterCrop(p.crop)]
    train_tf = T.Compose([*crop_tf, T.RandomHorizontalFlip(), T.ToTensor(), norm])
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
    t0 = time.time()
    device = pick_device()
    net = build_network(BACKBONE, len(report.classes)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    train_dl = DataLoader(Files(train_samples, train_tf), batch_size=64, shuffle=True, num_workers=2)
    val_dl = DataLoader(Files(report.val, val_tf), batch_size=64, num_workers=2)
    accs = []
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
        print(f"  plain recipe ({crop} crop) epoch {len(accs)}: val accuracy {accs[-1]:.3f} "
              f"at {time.time() - t0:.0f}s", flush=True)
    return {"crop": crop, "accuracy": accs[-1], "seconds": time.time() - t0, "per_epoch": accs,
            "num_train": len(train_samples)}


def stronger(plains: list[dict]) -> dict:
    """The plain recipe with the higher final accuracy (the faster one on a tie): the one to beat."""
    return max(plains, key=lambda r: (r["accuracy"], -r["seconds"]))


def time_to_accuracy(run: dict, target: float) -> float | None:
    """Seconds from the engine's start (scan, decode, caching included) to the first epoch at `target`."""
    return next((e["at"] for e in run["epochs"] if e["val_accuracy"] >= target - 1e-9), None)


# ----------------------------------------------------------------------------- 5. one inference pass
def inference_pass_seconds(data: str, size: int, batch: int = 64, max_train: int | None = None,
                           val_split: float = 0.2) -> float:
    """What "classify every training image once" costs: decode, resize, forward, nothing kept."""
    samples = engine_subset(list(scan_dataset(data, val_split=val_split).train), max_train)  # the engine's own
    prep = get_backbone(BACKBONE).preprocessing.at_size(size)
    net = build_network(BACKBONE, 3).eval()
    layout = torch.channels_last if plan_for(pick_device()).channels_last else torch.contiguous_format
    net = net.to(memory_format=layout)  # done as well as the engine does it
    store = ImageStore([s.path for s in samples], prep, budget_bytes=0)  # streams: decodes each batch
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(samples), batch):
            images = store.batch(torch.arange(i, min(i + batch, len(samples))))
            net(prep.normalize(prep.center_crop(images)).contiguous(memory_format=layout))
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- main
def speed_probe(size: int, batch: int) -> float:
    """Inference images/s right now: printed beside long phases, to show if the machine's load changed."""
    return limit_throughput("all", size, batch, steps=2)[1]


def throughput_row(data: str, runs: Path, label: str, freeze, augment: str, a: argparse.Namespace) -> dict:
    lim_before = limit_throughput(freeze, a.size, a.batch, a.limit_steps)
    # quick_start_epochs=0: every epoch at this very depth, the one the limit is measured at.
    run = engine_run(runs, data=data, freeze=freeze, augment=augment, image_size=a.size, batch_size=a.batch,
                     epochs=a.tp_epochs, max_images=a.tp_images, val_split=0.05, quick_start_epochs=0)
    lim_after = limit_throughput(freeze, a.size, a.batch, a.limit_steps)
    lim_train = (lim_before[0] + lim_after[0]) / 2
    per_epoch, whole = end_to_end_rates(run)
    print(f"  {label}\n    limit: training {lim_before[0]:.1f} before / {lim_after[0]:.1f} after the engine run "
          f"(inference {lim_before[1]:.1f} / {lim_after[1]:.1f})\n"
          f"    engine: {per_epoch:.1f} within an epoch = {per_epoch / lim_train:.2f}x the limit; "
          f"{whole:.1f} over the whole run incl. decoding + caching = {whole / lim_train:.2f}x "
          f"({run['num_train']} images, {len(run['epochs'])} epochs, peak RSS {run['peak_rss_mb']:.0f} MB)\n"
          f"    plan: {run['plan']}", flush=True)
    return {"setting": label, "limit_train": lim_train, "limit_train_before_after": [lim_before[0], lim_after[0]],
            "limit_infer": (lim_before[1] + lim_after[1]) / 2, "engine_epoch": per_epoch, "engine_whole_run": whole,
            "ratio_epoch": per_epoch / lim_train, "ratio_whole_run": whole / lim_train, "images": run["num_train"],
            "epochs": len(run["epochs"])}


def feature_extraction(data: str, runs: Path, a: argparse.Namespace) -> dict:
    pass_before = inference_pass_seconds(data, a.size, max_train=a.max_images, val_split=a.val_split)
    fe = engine_run(runs, data=data, freeze="all", augment="none", epochs=a.fe_epochs, image_size=a.size,
                    max_images=a.max_images, val_split=a.val_split)
    pass_after = inference_pass_seconds(data, a.size, max_train=a.max_images, val_split=a.val_split)
    one_pass = (pass_before + pass_after) / 2
    ep = fe["epochs"]
    first = fe["ready_s"] + ep[0]["seconds"]  # scan, decode, features once, then the first epoch
    later = sum(e["seconds"] for e in ep[1:]) / max(1, len(ep) - 1)
    total = ep[-1]["at"]
    print(f"  {fe['num_train']} training + {fe['num_val']} validation images; plan: {fe['plan']}\n"
          f"  first epoch (incl. decoding + features) {first:.1f}s; later epochs {later:.3f}s each "
          f"= {later / first:.2%} of the first\n"
          f"  {len(ep)} epochs {total:.1f}s; one inference pass over the training images (decode + forward) "
          f"{pass_before:.1f}s before / {pass_after:.1f}s after: ratio {total / one_pass:.2f}x\n"
          f"  best validation accuracy {fe['best']:.3f}, peak RSS {fe['peak_rss_mb']:.0f} MB", flush=True)
    return {"first_epoch_s": first, "later_epoch_s": later, "later_over_first": later / first, "epochs": len(ep),
            "total_s": total, "one_inference_pass_s": one_pass, "total_over_pass": total / one_pass,
            "best": fe["best"], "peak_rss_mb": fe["peak_rss_mb"], "num_train": fe["num_train"]}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=None, help="image folder (default: the bundled textile images)")
    ap.add_argument("--quick", action="store_true", help="every section on a small share of the data (~2 min)")
    ap.add_argument("--plain-epochs", type=int, default=None, help="E for the plain recipe (default 2; quick 1)")
    ap.add_argument("--image-size", dest="size", type=int, default=None, help="default: the backbone's 224")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--engine-child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    d = TrainConfig(data="")
    a.size = a.size or d.image_size or get_backbone(d.backbone).preprocessing.crop
    a.batch = d.batch_size
    a.plain_epochs = a.plain_epochs or (1 if a.quick else 2)
    a.max_images = 96 if a.quick else None  # training images for the plain, default and feature runs
    a.val_split = 0.05 if a.quick else d.val_split  # the same validation images for all three
    a.default_epochs = 2 if a.quick else 4  # the fixed schedule's recipe (the one click before progressive)
    # Throughput runs: at least 2 epochs, the figure is the last one's (the first pays one-time warm-up).
    a.tp_images, a.tp_epochs = (16, 2) if a.quick else (320, 4)
    a.limit_steps = 1 if a.quick else 4
    a.fe_epochs = 3 if a.quick else 20
    return a


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.engine_child:
        engine_child(a.engine_child)
        return {}
    import tempfile

    data = str(a.data or demo_dataset_path())
    d = TrainConfig(data=data)
    runs = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    out: dict = {"device": describe_device(), "data": data, "image_size": a.size, "batch": a.batch,
                 "quick": a.quick, "load_start": load()}
    print(f"device: {out['device']}; {out['load_start']}\ndata: {data}\n"
          f"{BACKBONE} at {a.size} px, batch {a.batch}{' (quick)' if a.quick else ''}\n", flush=True)

    print("1/2. the limit (tensors in memory) vs the engine end to end, training images/s, same freeze depth")
    out["throughput"] = [throughput_row(data, runs, "full fine-tuning (freeze 0), light augmentation", 0, "light", a),
                         throughput_row(data, runs, f"default: freeze {d.freeze}, augmentation {d.augment}",
                                        d.freeze, d.augment, a)]

    out["plain_recipes"] = []
    for crop in PLAIN_CROPS:
        print(f"\n3. plain recipe, {crop} crop, {a.plain_epochs} epochs (DataLoader decoding every epoch, full "
              f"fine-tuning, SGD 1e-3 momentum 0.9, batch 64, {a.size} px); "
              f"speed probe {speed_probe(a.size, a.batch):.1f} img/s", flush=True)
        out["plain_recipes"].append(plain_recipe(data, a.plain_epochs, a.size, crop=crop, max_train=a.max_images,
                                                 val_split=a.val_split))
    out["plain"] = plain = stronger(out["plain_recipes"])

    print(f"\n4. engine, one-click defaults (freeze {d.freeze}, {a.default_epochs} epochs, augmentation {d.augment}); "
          f"speed probe {speed_probe(a.size, a.batch):.1f} img/s", flush=True)
    run = engine_run(runs, data=data, image_size=a.size, max_images=a.max_images, epochs=a.default_epochs,
                     val_split=a.val_split)
    for e in run["epochs"]:
        print(f"  engine epoch {e['epoch']}: val accuracy {e['val_accuracy']:.3f} at {e['at']:.0f}s")
    reach = time_to_accuracy(run, plain["accuracy"])
    out["engine"] = {"seconds": run["seconds"], "best": run["best"], "time_to_plain_accuracy": reach,
                     "plan": run["plan"], "peak_rss_mb": run["peak_rss_mb"], "num_train": run["num_train"],
                     "epochs": run["epochs"]}

    print(f"\n5. feature extraction (everything frozen, no augmentation), {a.fe_epochs} epochs", flush=True)
    out["feature_extraction"] = fe = feature_extraction(data, runs, a)
    out["load_end"] = load()
    summarize(out, plain, reach, run, fe)
    if a.json:
        out["command"] = "python bench/benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv)
        out["date"] = time.strftime("%Y-%m-%d", time.gmtime())
        out["commit"] = code_version()
        Path(a.json).write_text(json.dumps(out, indent=2, default=str))
    return out


def summarize(out: dict, plain: dict, reach: float | None, run: dict, fe: dict) -> None:
    print(f"\nSummary ({out['device']}; start: {out['load_start']}; end: {out['load_end']})")
    for r in out["throughput"]:
        print(f"  2/1 engine/limit training throughput [{r['setting']}]: {r['ratio_epoch']:.2f}x within an epoch, "
              f"{r['ratio_whole_run']:.2f}x over the whole run incl. decoding (target >= 0.9x)")
    for p in out["plain_recipes"]:
        print(f"  3. plain recipe, {p['crop']} crop: {p['accuracy']:.3f} after {len(p['per_epoch'])} epochs, "
              f"{p['seconds']:.0f}s")
    if reach:
        out["plain_over_engine"] = plain["seconds"] / reach
        print(f"  3/4 the stronger plain recipe ({plain['crop']} crop) reached {plain['accuracy']:.3f} in "
              f"{plain['seconds']:.0f}s; the engine's defaults reached it in {reach:.0f}s: "
              f"{out['plain_over_engine']:.1f}x faster (target >= 5x)")
    else:
        out["plain_over_engine"] = None
        print(f"  3/4 the engine's defaults did NOT reach the plain recipe's {plain['accuracy']:.3f} "
              f"(best {run['best']:.3f}) (target: reach it >= 5x faster)")
    print(f"  feature extraction: later epoch {fe['later_over_first']:.2%} of the first (target < 5%); "
          f"{fe['epochs']} epochs = {fe['total_over_pass']:.2f}x one inference pass (target <= 1.3x)")
    out["peak_rss_mb"] = max(run["peak_rss_mb"], fe["peak_rss_mb"])
    print(f"  peak memory (RSS) of an engine run on {run['num_train']} training images: "
          f"{run['peak_rss_mb']:.0f} MB (default), {fe['peak_rss_mb']:.0f} MB (feature extraction) (target < 3 GB); "
          f"this process (plain recipe): {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
