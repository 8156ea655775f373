"""The commands that advise on the pictures: `check-data` (duplicates, leaks, likely wrong labels:
quality/checks.py) and `learning-curve` (would more pictures help, and of which class: quality/learning_curve.py)."""
from __future__ import annotations

import argparse
import json
import sys


def run_check_data(args: argparse.Namespace) -> int:
    from transfer_core.quality.checks import check_dataset

    def progress(phase, done, total):
        sys.stderr.write(f"\r{phase:>10} {done}/{total}   ")
        sys.stderr.flush()

    report = check_dataset(args.data, backbone=args.backbone, image_size=args.image_size,
                           val_split=args.val_split, seed=args.seed, progress=progress)
    sys.stderr.write("\n")
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    print("\n".join(report.summary()))
    for d in report.duplicates:
        kind = "same file" if d.exact else f"near duplicate ({d.similarity:.3f})"
        print(f"{'LEAK ' if d.leak else ''}{kind}: {d.a.name} ({d.a.split}) = {d.b.name} ({d.b.split})")
    for s in report.suspects:
        print(f"label? {s.image.name}: labelled {s.given} ({s.given_probability:.0%}), "
              f"looks like {s.suggested} ({s.suggested_probability:.0%})")
    return 0


def report_learning_curve(run_dir: str, as_json: bool) -> int:
    from transfer_core.quality.learning_curve import run_learning_curve

    curve = run_learning_curve(run_dir)
    print(json.dumps(curve.to_dict()) if as_json else "\n".join(c.describe() for c in curve.curves))
    return 0
