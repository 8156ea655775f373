"""Which look the unfamiliar check should read after fine-tuning on a few pictures (issue 28, novelty.py).

    python bench/novelty_looks.py [--tasks brain-mri mnist-digits animal-silhouettes] [--seeds 2 3]
                                  [--size 10] [--out bench/results/novelty_looks.json]

For each task and seed, one real run fine-tunes (freeze 3, 4 epochs: small_data.py's "fine-tuning" way) on
`size` pictures per class. Then, on the run's own training pictures (the reference, near-copy groups as in
the run) and validation pictures (the threshold, novelty.fit: conformal quantile of validation and
leave-one-group-out scores), three checks are fitted and judged on the task's test folder (new pictures of
the trained kind: every flag is a false alarm) and on noise, flat colours and another task's pictures
(small_data.unfamiliar_pictures: every miss is a miss):
- "pooled features": the first look alone (the check before the middle look);
- "middle stage": the pooled output of the first novelty.middle_stage(...) stages alone;
- "both (the engine)": the mean of the two, each scaled by its normal pictures' median (what runs do).
Nothing is tuned on the test folder or the unfamiliar pictures.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import load  # noqa: E402  (bench/ is this script's own folder)
from one_click import save  # noqa: E402
from small_data import WAYS, config_for, unfamiliar_pictures  # noqa: E402
from tasks import DEFAULT_CACHE, build_task  # noqa: E402

from transfer_core.data.datasets import scan_dataset  # noqa: E402
from transfer_core.inference import novelty  # noqa: E402
from transfer_core.inference.predict import load_model, outputs  # noqa: E402
from transfer_core.runstore.runs import RunFolder  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "novelty_looks.json"


def checks(model, config, run_dir: Path) -> dict:
    """name -> (detector, which columns of the looks it reads), all fitted on the run's own pictures."""
    report = scan_dataset(config.data, val_split=config.val_split, seed=config.seed)
    ref = outputs(model, [s.path for s in report.train])[1]
    val = outputs(model, RunFolder(run_dir).validation_images())[1]
    groups = torch.tensor([s.group if s.group >= 0 else -2 - i for i, s in enumerate(report.train)])
    d = model.net.feature_dim
    cols = {"pooled features": slice(0, d), "middle stage": slice(d, None), "both (the engine)": slice(None)}
    return {name: (novelty.fit(ref[:, c], val[:, c], groups=groups,
                               split=d if name.startswith("both") else None, mid=model.novelty.score.mid), c)
            for name, c in cols.items()}


def judge(task, seed: int, size: int, runs: Path) -> dict:
    config = config_for(task, size, WAYS["fine-tuning"], seed, quick=False)
    result = train(config, runs_dir=runs)
    model = load_model(result.run_dir, device="cpu")
    tests = outputs(model, [p for p, _ in task.test_pictures()])[1]
    strangers = {name: outputs(model, pics)[1] for name, pics in unfamiliar_pictures(task.name).items()}
    row = {"task": task.name, "seed": seed, "size": size, "test_images": len(tests), "checks": {}}
    for name, (det, c) in checks(model, config, result.run_dir).items():
        row["checks"][name] = {"test_flagged": float(det.unfamiliar(det.scores(tests[:, c])).float().mean()),
                               **{k: float(det.unfamiliar(det.scores(v[:, c])).float().mean())
                                  for k, v in strangers.items()}}
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["brain-mri", "mnist-digits", "animal-silhouettes"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[2, 3])
    ap.add_argument("--size", type=int, default=10)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    out = {"kind": "novelty-looks", "command": shlex.join(["python", "bench/novelty_looks.py", *(argv or sys.argv[1:])]),
           "date": time.strftime("%Y-%m-%d"), "load_start": load(), "rows": []}
    with tempfile.TemporaryDirectory(prefix="novelty-looks-") as runs:
        for name in a.tasks:
            task = build_task(name, DEFAULT_CACHE)
            for seed in a.seeds:
                row = judge(task, seed, a.size, Path(runs))
                out["rows"].append(row)
                save(out, a.out)
                for check, figures in row["checks"].items():
                    print(f"{name} seed {seed} {check:18s} " + " | ".join(f"{k} {v:.2f}" for k, v in figures.items()),
                          flush=True)
    out["load_end"] = load()
    save(out, a.out)
    return out


if __name__ == "__main__":
    main()
