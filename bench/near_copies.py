"""How well the split's near-copy rule (transfer_core/data/nearcopies.py) tells copies from distinct pictures.

    python bench/near_copies.py [--per-class 300] [--out bench/results/near_copies.json]

For real pictures of several tasks (bench/tasks.py), each picture gets one made copy, as a burst or a phone
makes them: shifted by up to 4% of its size and 0.8-1.2x as bright. Printed per task:
- copies caught: the share of (picture, its copy) pairs whose thumbprints correlate at NEAR_COPY or more;
- distinct joined: the share of pairs of distinct pictures of one class that do (joined by mistake);
- grouped: the share of the task's plain pictures (no copies added) that group_ids puts in a group of more
  than one, i.e. how much freedom the split loses on data without copies;
and the correlation ranges behind them (copies: minimum and median; distinct: maximum).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tasks import TASKS  # noqa: E402
from transfer_core.data.nearcopies import NEAR_COPY, _normalised, group_ids, thumbprint  # noqa: E402

SHIFT, BRIGHTNESS = 0.04, (0.8, 1.2)


def made_copy(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    dx, dy = (int(rng.integers(-int(SHIFT * s), int(SHIFT * s) + 1)) for s in (w, h))
    moved = image.crop((max(dx, 0), max(dy, 0), w + min(dx, 0), h + min(dy, 0))).resize((w, h))
    return ImageEnhance.Brightness(moved).enhance(float(rng.uniform(*BRIGHTNESS)))


def task_images(name: str, per_class: int, rng: np.random.Generator) -> dict[str, list[Image.Image]]:
    split = TASKS[name].split(np.random.default_rng(0))
    out = {}
    for cls, (test, pool) in split.items():
        pics = (test + pool)[:per_class]
        out[cls] = [Image.open(p.source).convert("RGB") if p.source is not None else
                    Image.fromarray(p.pixels).convert("RGB") for p in pics]
    return out


def measure(name: str, per_class: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    caught, copy_corr, distinct_corr, grouped, total = [], [], [], 0, 0
    for images in task_images(name, per_class, rng).values():
        prints = [thumbprint(im) for im in images]
        copies = [thumbprint(made_copy(im, rng)) for im in images]
        x, c = _normalised(prints), _normalised(copies)
        pair = (x * c).sum(1)
        copy_corr += pair.tolist()
        caught += (pair >= NEAR_COPY).tolist()
        sims = x @ x.T
        distinct_corr += sims[np.triu_indices(len(images), 1)].tolist()
        ids = group_ids([Path(f"{i}.png") for i in range(len(images))], [""] * len(images), prints)
        counts = np.bincount(ids)
        grouped += int(counts[counts > 1].sum())
        total += len(images)
    distinct = np.array(distinct_corr)
    return {"task": name, "pictures": total, "copies_caught": float(np.mean(caught)),
            "distinct_joined": float((distinct >= NEAR_COPY).mean()), "grouped": grouped / total,
            "copy_min": float(np.min(copy_corr)), "copy_median": float(np.median(copy_corr)),
            "distinct_max": float(distinct.max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "near_copies.json"))
    args = ap.parse_args(argv)
    rows = []
    for name in args.tasks:
        row = measure(name, args.per_class)
        rows.append(row)
        print(f"{name:12s} {row['pictures']:5d} pictures: copies caught {row['copies_caught']:.1%} "
              f"(corr min {row['copy_min']:.2f}, median {row['copy_median']:.2f}); distinct pairs joined "
              f"{row['distinct_joined']:.3%} (max {row['distinct_max']:.2f}); plain pictures grouped {row['grouped']:.1%}")
    Path(args.out).write_text(json.dumps({
        "command": "python bench/near_copies.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"), "near_copy": NEAR_COPY, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
