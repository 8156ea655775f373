"""How many deliberately flipped labels the data check finds, over several random flips.

    python bench/label_check.py [--per-class 80] [--share 0.05] [--seeds 6] [--image-size 128]

Takes `per-class` real textile images of each class, computes the backbone features once (as
check_dataset does), then for each seed flips `share` of the labels to another class at random and
counts how many of them the check flags (at most 15% of the images are flagged).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transfer_core.data.datasets import demo_dataset_path  # noqa: E402
from transfer_core.quality.embeddings import embed_images  # noqa: E402
from transfer_core.quality.suspect_labels import label_probs, rank_suspects  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=80)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()
    root = demo_dataset_path()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = sorted((root / name).glob("*.jpg"))[:args.per_class]
        paths += files
        labels += [c] * len(files)
    t0 = time.time()
    features = embed_images(paths, image_size=args.image_size).features
    true = torch.tensor(labels)
    print(f"{len(paths)} images, features in {time.time() - t0:.0f}s")
    found, flagged = [], []
    for seed in range(args.seeds):
        rng = random.Random(seed)
        flips = rng.sample(range(len(true)), round(args.share * len(true)))
        given = true.clone()
        for i in flips:
            given[i] = rng.choice([c for c in range(len(classes)) if c != true[i]])
        suspects = rank_suspects(label_probs(features, given, len(classes), seed=seed), given)
        found.append(len(set(suspects) & set(flips)) / len(flips))
        flagged.append(len(suspects))
        print(f"seed {seed}: {len(set(suspects) & set(flips))}/{len(flips)} flipped labels among {len(suspects)} flagged")
    print(f"mean share found {statistics.mean(found):.2f}, lowest {min(found):.2f}, "
          f"flagged {statistics.mean(flagged):.0f} of {len(true)}")


if __name__ == "__main__":
    main()
