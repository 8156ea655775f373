"""How long "Do I need more pictures?" takes (quality/learning_curve.py), at a few sizes of the textile demo.

    python bench/learning_curve.py [--per-class 20 200] [--image-size 224] [--threads-too 20]

For each size: the pretrained features of `per-class` real pictures of each of the 3 classes (first pass, then
again from the feature cache), then the curve itself (5 folds, 25/50/75/100% of one class at a time), with the
verdict per class. --threads-too: at these sizes, the curve is timed again with torch's default thread count
instead of the one thread the curve uses. Writes bench/results/learning_curve.json. Times depend on the machine's load: the
JSON keeps the load average beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version  # noqa: E402

import transfer_core.quality.learning_curve as lc  # noqa: E402
from transfer_core.data.datasets import demo_dataset_path  # noqa: E402
from transfer_core.quality.embeddings import cached_embeddings, file_digest  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "learning_curve.json"


def measure(per_class: int, image_size: int | None, threads_too: bool) -> dict:
    root = demo_dataset_path()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = sorted((root / name).glob("*.jpg"))[:per_class]
        paths += [str(f) for f in files]
        labels += [c] * len(files)
    digests = [file_digest(p) for p in paths]
    t0 = time.time()
    features = cached_embeddings(paths, digests, "mobilenet_v2", image_size, None, None).features
    first = time.time() - t0
    t0 = time.time()
    cached_embeddings(paths, digests, "mobilenet_v2", image_size, None, None)
    again = time.time() - t0
    curve = lc.learning_curve(features, torch.tensor(labels), classes)
    row = {"per_class": per_class, "pictures": len(paths), "features_s": round(first, 1),
           "features_again_s": round(again, 2), "curve_s": curve.seconds, "folds": curve.folds,
           "verdicts": {c.name: c.verdict for c in curve.curves},
           "recall": {c.name: [round(p.recall, 3) for p in c.points] for c in curve.curves},
           "load_average": round(os.getloadavg()[0], 1)}
    if threads_too:
        real = lc._one_thread
        lc._one_thread = _unchanged
        try:
            row["curve_default_threads_s"] = lc.learning_curve(features, torch.tensor(labels), classes).seconds
            row["default_threads"] = torch.get_num_threads()
        finally:
            lc._one_thread = real
    print(json.dumps(row))
    return row


class _unchanged:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--image-size", type=int, default=None, help="default: the backbone's own (224)")
    parser.add_argument("--threads-too", type=int, nargs="*", default=[20])
    args = parser.parse_args()
    command = "python bench/learning_curve.py " + " ".join(sys.argv[1:])
    rows = [measure(n, args.image_size, n in args.threads_too) for n in args.per_class]
    result = {"kind": "learning-curve", "date": time.strftime("%Y-%m-%d"), "command": command.strip(),
              "commit": code_version(), "backbone": "mobilenet_v2", "image_size": args.image_size or 224,
              "cpu_threads": os.cpu_count(), "rows": rows}
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
