"""Domain adaptation on several realistic shifts: does AdaBN / CORAL / DANN help, and where not?

    python bench/domain_shift.py [--quick] [--shifts camera dim-noisy defocus] [--seeds 0 1 2]
                                 [--image-size 128] [--json out.json]

The bundled textile images (classes global, local, nominal), split by file so that no picture is used
twice:
  - source: labelled, unshifted pictures; the engine trains on them (its own train/validation split picks
    the best epoch: nothing is chosen on target pictures);
  - adaptation pool: other pictures under the shift, in one flat folder (no class folders, so the engine
    has no labels for them even to report), given as --target-data;
  - target test: yet other pictures under the same shift, with labels, used only to score the finished
    models; the same pictures unshifted score the cost of the shift ("clean" column).
Each shift is something a user meets when the camera or the light changes (see SHIFTS). Every method
runs with the engine's defaults except image size and batch (--image-size, 16), adapt_weight 1, and
several training seeds. Accuracy is the mean over the seeds; its 95% interval is a bootstrap over the
test pictures (paired across methods, so "change against none" has its own interval): "helps" /
"hurts" only when that interval excludes 0 and every seed moved the same way.
--quick: tiny sets, 64 px, one seed, one epoch: a smoke run of every path (about two minutes).
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version  # noqa: E402  (bench/ is this script's own folder)
from readme_tables import verdict  # noqa: E402

from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.core.events import RunFinished  # noqa: E402
from transfer_core.data.datasets import demo_dataset_path, load_rgb  # noqa: E402
from transfer_core.data.shift import shifted  # noqa: E402
from transfer_core.inference.predict import load_model, predict_probs  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

METHODS = ("none", "adabn", "coral", "dann")
BOOTSTRAP = 2000


# ----------------------------------------------------------------------------- the shifts
def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def other_camera(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The engine's own demo shift (methods.shift): warm cast, contrast halved, 1 px blur, JPEG 15."""
    return shifted(img)


def dim_noisy(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Night shift under dim light: the sensor catches few photons (shot noise, Poisson, ~40 at white)
    plus read noise (3), the camera's gain brings the picture only to 70% brightness, JPEG 70."""
    photons = 40.0
    x = np.asarray(img, dtype=np.float64) / 255 * photons
    x = rng.poisson(x) + rng.normal(0, 3.0, x.shape)
    x = np.clip(x / photons * 0.7 * 255, 0, 255).astype(np.uint8)
    return _jpeg(Image.fromarray(x), 70)


def defocus(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A camera slightly out of focus in brighter light: blur 2 px, brightness +25%, JPEG 85."""
    img = ImageEnhance.Brightness(img.filter(ImageFilter.GaussianBlur(2.0))).enhance(1.25)
    return _jpeg(img, 85)


@dataclass(frozen=True)
class Shift:
    name: str
    description: str
    apply: Callable[[Image.Image, np.random.Generator], Image.Image]


SHIFTS = {s.name: s for s in (
    Shift("camera", "other camera, warm light: colour cast, contrast x0.5, 1 px blur, JPEG 15", other_camera),
    Shift("dim-noisy", "dim light: sensor shot + read noise, 70% brightness, JPEG 70", dim_noisy),
    Shift("defocus", "out of focus, brighter light: 2 px blur, brightness x1.25, JPEG 85", defocus),
)}


# ----------------------------------------------------------------------------- the data
@dataclass(frozen=True)
class Sizes:
    source: int  # labelled source pictures per class (the engine's own 80/20 split of them)
    adapt: int  # unlabelled target pictures per class
    test: int  # labelled target test pictures per class


def class_files(root: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}


def split_files(files: dict[str, list[Path]], sizes: Sizes) -> dict[str, dict[str, list[Path]]]:
    """Disjoint slices of every class's sorted files: source, then adaptation pool, then test."""
    cut = (0, sizes.source, sizes.source + sizes.adapt, sizes.source + sizes.adapt + sizes.test)
    parts = {}
    for i, part in enumerate(("source", "adapt", "test")):
        parts[part] = {c: fs[cut[i]:cut[i + 1]] for c, fs in files.items()}
        if any(len(fs) < cut[i + 1] - cut[i] for fs in parts[part].values()):
            raise SystemExit(f"not enough images per class for {sizes}")
    return parts


def copy_source(parts: dict, dest: Path) -> Path:
    for c, fs in parts["source"].items():
        (dest / c).mkdir(parents=True, exist_ok=True)
        for f in fs:
            shutil.copy(f, dest / c / f.name)
    return dest


def write_shifted(shift: Shift, parts: dict, dest: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """The adaptation pool (flat, anonymous names: no label can leak) and the labelled test pictures.
    PNG, so the shift's own JPEG step is the only compression. Noise is seeded per picture."""
    pool, tests = dest / "adapt", []
    pool.mkdir(parents=True)
    k = 0
    for c, fs in parts["adapt"].items():
        for f in fs:
            k += 1
            shift.apply(load_rgb(f), np.random.default_rng([1, k])).save(pool / f"t{k:05d}.png")
    for c, fs in parts["test"].items():
        (dest / "test" / c).mkdir(parents=True, exist_ok=True)
        for f in fs:
            k += 1
            out = dest / "test" / c / f"{f.stem}.png"
            shift.apply(load_rgb(f), np.random.default_rng([2, k])).save(out)
            tests.append((out, c))
    return pool, tests


# ----------------------------------------------------------------------------- runs and scores
def train_run(source: Path, pool: Path | None, method: str, seed: int, a: argparse.Namespace, runs: Path) -> dict:
    adapt = None if method == "none" else method
    config = TrainConfig(data=str(source), image_size=a.image_size, batch_size=16, epochs=a.epochs, seed=seed,
                         target_data=str(pool) if adapt else None, adapt=adapt)
    t = time.time()
    result = train(config, runs_dir=runs)
    if not isinstance(result.final, RunFinished):
        raise SystemExit(f"{method} seed {seed} did not finish: {result.final}")
    return {"run_dir": result.run_dir, "source_val_accuracy": result.final.best_val_accuracy,
            "seconds": time.time() - t}


def correct(run_dir: Path, tests: list[tuple[Path, str]]) -> np.ndarray:
    """1 where the finished model's top class is the picture's class, else 0 (raw softmax, no threshold)."""
    model = load_model(run_dir)
    probs = predict_probs(model, [p for p, _ in tests], calibrated=False)
    labels = torch.tensor([model.classes.index(c) for _, c in tests])
    return (probs.argmax(1) == labels).numpy().astype(np.float64)


def bootstrap_interval(per_image: np.ndarray, rng: np.random.Generator) -> list[float]:
    """95% percentile interval of the mean of per-image values, resampling the test pictures."""
    idx = rng.integers(0, len(per_image), (BOOTSTRAP, len(per_image)))
    means = per_image[idx].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summarize_method(scores: np.ndarray, base: np.ndarray, clean: np.ndarray, runs: list[dict]) -> dict:
    """scores, base, clean: seeds x test pictures (0/1). The same resampled pictures for both intervals."""
    mean, change = scores.mean(0), scores.mean(0) - base.mean(0)
    return {"accuracy": float(mean.mean()), "interval": bootstrap_interval(mean, np.random.default_rng(0)),
            "per_seed": [float(s.mean()) for s in scores],
            "change_vs_none": float(change.mean()),
            "change_interval": bootstrap_interval(change, np.random.default_rng(0)),
            "clean_accuracy": float(clean.mean()),
            "source_val_accuracy": [r["source_val_accuracy"] for r in runs],
            "train_seconds": [round(r["seconds"], 1) for r in runs]}


# ----------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sets, 64 px, one seed, one epoch (smoke run)")
    ap.add_argument("--shifts", nargs="+", choices=sorted(SHIFTS), default=list(SHIFTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (default 0 1 2; quick: 0)")
    ap.add_argument("--image-size", type=int, default=None, help="default 128 (quick: 64)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the engine's 4 (quick: 1)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args(argv)
    a.argv = sys.argv[1:] if argv is None else list(argv)
    a.seeds = a.seeds or ([0] if a.quick else [0, 1, 2])
    a.image_size = a.image_size or (64 if a.quick else 128)
    a.epochs = a.epochs or (1 if a.quick else TrainConfig(data="").epochs)
    a.sizes = Sizes(8, 4, 6) if a.quick else Sizes(60, 40, 100)
    return a


def run_shift(shift: Shift, parts: dict, source: Path, base: dict, a, work: Path) -> dict:
    """Every adapting method on one shift; `base` holds the unadapted runs (one per seed, shift-free)."""
    pool, tests = write_shifted(shift, parts, work / shift.name)
    clean_tests = [(f, c) for c, fs in parts["test"].items() for f in fs]  # the same pictures, unshifted
    score = {m: [] for m in METHODS}
    clean = {m: [] for m in METHODS}
    runs = {m: [] for m in METHODS}
    for seed in a.seeds:
        for m in METHODS:
            run = base[seed] if m == "none" else train_run(source, pool, m, seed, a, work / "runs")
            runs[m].append(run)
            score[m].append(correct(run["run_dir"], tests))
            clean[m].append(correct(run["run_dir"], clean_tests))
            print(f"  {shift.name} seed {seed} {m:5s}: target test {score[m][-1].mean():.3f}, "
                  f"clean {clean[m][-1].mean():.3f}, source val {run['source_val_accuracy']:.3f}", flush=True)
    results = {m: summarize_method(np.array(score[m]), np.array(score["none"]), np.array(clean[m]), runs[m])
               for m in METHODS}
    for m in METHODS[1:]:  # the README's rule (bench/readme_tables.py): the seeds must agree too
        results[m]["verdict"] = verdict(results[m]["change_interval"], results[m]["per_seed"],
                                        results["none"]["per_seed"])
    return {"description": shift.description, "test_images": len(tests), "results": results}


def main(argv=None) -> dict:
    a = parse_args(argv)
    parts = split_files(class_files(Path(demo_dataset_path())), a.sizes)
    work = Path(tempfile.mkdtemp(prefix="domain-shift-"))
    source = copy_source(parts, work / "source")
    print(f"textile images: {a.sizes}, {a.image_size} px, {a.epochs} epochs, seeds {a.seeds}; work dir {work}",
          flush=True)
    t0 = time.time()
    base = {seed: train_run(source, None, "none", seed, a, work / "runs") for seed in a.seeds}
    out = {"command": "python bench/domain_shift.py " + " ".join(a.argv), "date": time.strftime("%Y-%m-%d"),
           "commit": code_version(),
           "image_size": a.image_size, "epochs": a.epochs, "seeds": a.seeds, "batch_size": 16,
           "sizes_per_class": asdict(a.sizes), "shifts": {}}
    for name in a.shifts:
        print(f"\nshift {name}: {SHIFTS[name].description}", flush=True)
        out["shifts"][name] = run_shift(SHIFTS[name], parts, source, base, a, work)
    out["seconds"] = round(time.time() - t0)
    report(out)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2, default=str))
    shutil.rmtree(work, ignore_errors=True)
    return out


def report(out: dict) -> None:
    print(f"\nSummary: target test accuracy, mean of seeds {out['seeds']} [95% interval over test pictures]; "
          f"change against no adaptation [95% interval]; {out['seconds']} s")
    for name, s in out["shifts"].items():
        print(f"  {name} ({s['test_images']} test pictures): {s['description']}")
        for m, r in s["results"].items():
            lo, hi = r["interval"]
            line = f"    {m:5s} {r['accuracy']:.3f} [{lo:.3f}-{hi:.3f}], clean {r['clean_accuracy']:.3f}"
            if m != "none":
                clo, chi = r["change_interval"]
                line += f"; change {r['change_vs_none']:+.3f} [{clo:+.3f} to {chi:+.3f}]: {r['verdict']}"
            print(line)


if __name__ == "__main__":
    main()
