"""How often the "does not look like your training pictures" check fires, on normal and on unfamiliar pictures.

    python bench/novelty.py [--quick] [--per-class 200] [--image-size 160] [--freeze all] [--out FILE]

Trains a small real run (mobilenet_v2 on the textile demo pictures), then scores, with the run's final
model: its validation and test pictures, unseen textile pictures (all three should be flagged ~5%), and
pictures of other kinds that ship offline (random noise, flat colours, scikit-image's photos cut into
crops, lfw faces, brick/grass/gravel textures) and near misses (textiles heavily blurred or inverted).
Several detectors are compared on the same features, each with its threshold chosen on the validation
pictures only (95th percentile); "engine" is what the run folder's novelty files say, through
predict.familiarity (it must equal its detector's column). Prints a table and a final JSON line.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image, ImageFilter, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.data.datasets import demo_dataset_path  # noqa: E402
from transfer_core.inference import novelty  # noqa: E402
from transfer_core.inference.predict import familiarity, load_model, outputs  # noqa: E402
from transfer_core.runstore.runs import RunFolder  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

CLASSES = ("global", "local", "nominal")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field",
          "immunohistochemistry", "moon", "page", "text", "retina")


# ---------------------------------------------------------------------------------------------- pictures
def textiles(offset: int, per_class: int) -> list[Path]:
    root = demo_dataset_path()
    return [f for c in CLASSES for f in sorted((root / c).glob("*.jpg"))[offset:offset + per_class]]


def crops(array: np.ndarray, grid: int) -> list[Image.Image]:
    """The whole picture and a grid x grid cut of it."""
    img = Image.fromarray(array).convert("RGB")
    w, h = img.size
    out = [img]
    for i in range(grid):
        for j in range(grid):
            out.append(img.crop((j * w // grid, i * h // grid, (j + 1) * w // grid, (i + 1) * h // grid)))
    return out


def unfamiliar_sets(n: int, rng: np.random.Generator) -> dict[str, list[Image.Image]]:
    noise = [Image.fromarray(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)) for _ in range(n // 2)]
    noise += [Image.fromarray(rng.integers(0, 256, (250, 250), dtype=np.uint8)).convert("RGB")
              for _ in range(n - n // 2)]
    flat = [Image.new("RGB", (250, 250), tuple(int(v) for v in rng.integers(0, 256, 3))) for _ in range(n)]
    faces = (skimage.data.lfw_subset()[:n * 2] * 255).astype(np.uint8)
    return {"random noise": noise, "flat colours": flat,
            "photos (skimage)": [c for name in PHOTOS for c in crops(getattr(skimage.data, name)(), 2)],
            "faces (lfw)": [Image.fromarray(f).convert("RGB") for f in faces],
            "textures (brick/grass/gravel)": [c for name in ("brick", "grass", "gravel")
                                              for c in crops(getattr(skimage.data, name)(), 3)]}


def near_sets(paths: list[Path]) -> dict[str, list[Image.Image]]:
    pics = [Image.open(p).convert("RGB") for p in paths]
    return {"near: textiles blurred": [p.filter(ImageFilter.GaussianBlur(6)) for p in pics],
            "near: textiles lightly blurred": [p.filter(ImageFilter.GaussianBlur(1.5)) for p in pics],
            "near: textiles inverted": [ImageOps.invert(p) for p in pics]}


# ---------------------------------------------------------------------------------------------- detectors
def ledoit_wolf(x: torch.Tensor) -> torch.Tensor:
    """Shrunk covariance of centred rows x (Ledoit & Wolf 2004), as sklearn.covariance.ledoit_wolf."""
    n, d = x.shape
    cov = x.T @ x / n
    mu = cov.trace() / d
    delta = ((cov - mu * torch.eye(d, dtype=x.dtype)) ** 2).sum() / d
    beta = ((x ** 2).T @ (x ** 2)).sum() / n / n - (cov ** 2).sum() / n
    shrink = float(min(beta / d, delta) / delta) if delta > 0 else 1.0
    return (1 - shrink) * cov + shrink * mu * torch.eye(d, dtype=x.dtype)


def mahalanobis(train: torch.Tensor, labels: torch.Tensor):
    """Lee et al. 2018 on pooled features: distance to the closest class mean, shared shrunk covariance."""
    x = train.double()
    means = torch.stack([x[labels == c].mean(0) for c in labels.unique()])
    centred = x - means[labels]  # labels are 0..C-1, each present
    whiten = torch.linalg.cholesky(torch.linalg.inv(ledoit_wolf(centred)))
    mz = means @ whiten
    return lambda f: torch.cdist(f.double() @ whiten, mz).min(1).values.float()


def detectors(train_f: torch.Tensor, train_y: torch.Tensor) -> dict:
    """name -> score(logits, features), higher = less like the training pictures."""
    out = {f"knn k={k}": (lambda lg, f, s=novelty.NoveltyScore(train_f, k).eval(): s(f)) for k in (1, 5, 10)}
    maha = mahalanobis(train_f, train_y)
    out["mahalanobis"] = lambda lg, f: maha(f)
    out["energy"] = lambda lg, f: -torch.logsumexp(lg, 1)  # Liu et al. 2020, from the logits alone
    return out


# ---------------------------------------------------------------------------------------------- the run
def train_run(tmp: Path, per_class: int, image_size: int, freeze) -> Path:
    data = tmp / "data"
    for path in textiles(0, per_class):
        (data / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / path.parent.name / path.name)
    cfg = TrainConfig(data=str(data), backbone="mobilenet_v2", freeze=freeze, image_size=image_size,
                      epochs=2, batch_size=32, seed=0)
    result = train(cfg, runs_dir=tmp / "runs")
    if result.final.kind != "RunFinished":
        raise SystemExit(f"training failed: {result.final}")
    return result.run_dir


def training_pictures(run_dir: Path) -> tuple[list[str], torch.Tensor]:
    run = RunFolder(run_dir)
    held = {Path(p).resolve() for name in ("validation.json", "test.json") for p in run.validation_images(name)}
    data = Path(run.config.data)
    paths = [p for c in CLASSES for p in sorted((data / c).glob("*.jpg")) if p.resolve() not in held]
    return [str(p) for p in paths], torch.tensor([CLASSES.index(Path(p).parent.name) for p in paths])


def measure(args) -> dict:
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="novelty-bench-"))
    try:
        run_dir = train_run(tmp, args.per_class, args.image_size, args.freeze)
        model = load_model(run_dir, device="cpu")
        run = RunFolder(run_dir)
        train_paths, train_y = training_pictures(run_dir)
        unseen = textiles(args.per_class, args.unseen)
        sets = {"validation (sets the threshold)": run.validation_images(),
                "test share": run.validation_images("test.json"), "unseen textiles": unseen,
                **unfamiliar_sets(args.n, np.random.default_rng(0)), **near_sets(unseen)}
        feats = {name: outputs(model, pics) for name, pics in sets.items()}
        train_f = outputs(model, train_paths)[1]
        d = model.net.feature_dim  # the detectors compared here read the pooled features (the first look)
        table, auroc = score_table({k: (lg, f[:, :d]) for k, (lg, f) in feats.items()}, train_f[:, :d], train_y)
        table["engine"] = {name: _rate([v.unfamiliar for v in familiarity(model, features=f)])
                           for name, (_, f) in feats.items()}
        return {"date": time.strftime("%Y-%m-%d"), "command": "python bench/novelty.py" + args.shown,
                "backbone": "mobilenet_v2", "freeze": args.freeze, "image_size": args.image_size,
                "training_pictures": len(train_paths), "images": {k: len(v) for k, v in sets.items()},
                "engine_detector": json.loads((run_dir / novelty.NOVELTY_FILE).read_text()),
                "flagged": table, "auroc_vs_unseen_textiles": auroc, "seconds": round(time.time() - t0, 1)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def score_table(feats: dict, train_f: torch.Tensor, train_y: torch.Tensor) -> tuple[dict, dict]:
    """Share flagged per detector and picture set, each threshold from the validation pictures alone; and
    AUROC against the unseen textiles (threshold-free: 1.0 = every such picture scores above every normal one)."""
    table, auroc = {}, {}
    val_name = next(iter(feats))
    for name, score in detectors(train_f, train_y).items():
        with torch.no_grad():
            scores = {k: score(*v) for k, v in feats.items()}
        threshold = novelty.choose_threshold(scores[val_name])
        table[name] = {k: _rate((s > threshold).tolist()) for k, s in scores.items()}
        normal = scores["unseen textiles"]
        auroc[name] = {k: round(_auroc(s, normal), 3) for k, s in scores.items() if k != "unseen textiles"}
    return table, auroc


def _auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    above = (positive[:, None] > negative[None]).double().mean()
    ties = (positive[:, None] == negative[None]).double().mean()
    return float(above + ties / 2)


def _rate(flags) -> float:
    return round(sum(flags) / max(1, len(flags)), 3)


def print_table(result: dict) -> None:
    table = result["flagged"]
    names = list(table)
    print(f"{'pictures':34} {'n':>5} " + " ".join(f"{n:>11}" for n in names))
    for row, n in result["images"].items():
        print(f"{row:34} {n:5d} " + " ".join(f"{table[d][row]:11.0%}" for d in names))
    print("AUROC against the unseen textiles (1.0 = fully separated, 0.5 = no better than chance)")
    for row in next(iter(result["auroc_vs_unseen_textiles"].values())):
        print(f"{row:40} " + " ".join(f"{result['auroc_vs_unseen_textiles'][d][row]:11.3f}"
                                      for d in result["auroc_vs_unseen_textiles"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pictures (about a minute)")
    parser.add_argument("--per-class", type=int, default=None, help="training + held-out textiles per class")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--freeze", default="all", help='"all" or a number of stages')
    parser.add_argument("--out", default=None, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    args.shown = " ".join([""] + (argv if argv is not None else sys.argv[1:]))
    args.freeze = args.freeze if args.freeze == "all" else int(args.freeze)
    args.per_class = args.per_class or (100 if args.quick else 200)
    args.unseen, args.n = (30, 20) if args.quick else (100, 40)
    result = measure(args)
    print_table(result)
    line = json.dumps(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
