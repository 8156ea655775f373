"""The methods written on the loop's hooks (freeze_bn.py, ewc.py) beside plain fine-tuning, on a real small task,
judged only on its test folder.

    python bench/methods_small.py [--task textile-2] [--sizes 20 50] [--seeds 1 2] [--ewc 1.0]
                                  [--out bench/results/methods_small.json]

Every run is the fixed schedule bench/one_click.py calls "fixed (old default)" (4 epochs, the default's
stages frozen, 224 px), so fine-tuning does happen at every size; the ways differ by one setting only:
plain, freeze_bn on, ewc at --ewc. Same training seed, same validation split, same batches for the three
ways of a (size, seed). Each finished run is loaded from its folder as Predict loads it and scored on the
task's test folder (built with seed 0: one fixed test folder). Per (size, way) the seeds are pooled (every
test picture of every seed counted once) with a 95% Wilson interval; beside it the paired count against
plain fine-tuning on the same pictures (pictures only the method got right / only plain got right), and how
far the transferred weights moved from their pretrained values (Euclidean distance, as L2-SP's figure).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version, load  # noqa: E402  (bench/ is this script's own folder)
from one_click import right_on_test, save, wilson  # noqa: E402
from tasks import DEFAULT_CACHE, Task, build_task  # noqa: E402

from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.core.events import RunFinished  # noqa: E402
from transfer_core.inference.predict import load_model  # noqa: E402
from transfer_core.methods.l2sp import distance_to_start, transferred_parameters  # noqa: E402
from transfer_core.models.backbones import build_network  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

BASE = {"schedule": "fixed", "epochs": 4}  # bench/one_click.py's "fixed (old default)"


def ways(ewc: float) -> dict[str, dict]:
    return {"fine-tuning": {}, "freeze BatchNorm": {"freeze_bn": True}, f"EWC {ewc:g}": {"ewc": ewc}}


def run_one(task: Task, size: int, way: str, extra: dict, seed: int, runs: Path) -> dict:
    config = TrainConfig.from_settings({"data": str(task.train_dir(size)), **BASE, **extra, "seed": seed})
    t = time.time()
    result = train(config, runs_dir=runs)
    row = {"size": size, "way": way, "seed": seed, "seconds": round(time.time() - t, 1),
           "status": type(result.final).__name__}
    if not isinstance(result.final, RunFinished):
        return {**row, "error": getattr(result.final, "error", "")}
    start = {n: p.detach() for n, p in transferred_parameters(build_network(config.backbone, len(task.classes)))}
    right = right_on_test(result.run_dir, task.test_pictures())
    return {**row, "right": right, "test_accuracy": right.count("1") / len(right),
            "val_accuracy": result.final.best_val_accuracy, "epochs_run": result.final.epochs_run,
            "distance": round(distance_to_start(load_model(result.run_dir).net, start), 3)}


def summary(rows: list[dict], size: int, way: str, plain: str) -> dict:
    """The seeds pooled, and the paired count against plain fine-tuning on the same test pictures."""
    mine = sorted((r for r in rows if r["size"] == size and r["way"] == way and "right" in r), key=lambda r: r["seed"])
    base = {r["seed"]: r for r in rows if r["size"] == size and r["way"] == plain and "right" in r}
    right = "".join(r["right"] for r in mine)
    paired = [(a, b) for r in mine if r["seed"] in base for a, b in zip(r["right"], base[r["seed"]]["right"])]
    return {"size": size, "way": way, "seeds": [r["seed"] for r in mine],
            "accuracy": right.count("1") / max(1, len(right)), "interval": wilson(right.count("1"), len(right)),
            "per_seed": [round(r["test_accuracy"], 3) for r in mine],
            "only_this_right": sum(a == "1" and b == "0" for a, b in paired),
            "only_plain_right": sum(a == "0" and b == "1" for a, b in paired),
            "distance": [r["distance"] for r in mine]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="textile-2")
    ap.add_argument("--sizes", nargs="+", type=int, default=[20, 50])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--ewc", type=float, default=1.0)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=Path("bench/results/methods_small.json"))
    a = ap.parse_args(argv)
    task = build_task(a.task, a.cache, seed=0)
    out = {"kind": "methods-small", "command": "python bench/methods_small.py " + shlex.join(argv or sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d"), "commit": code_version(), "load_at_start": load(), "task": a.task,
           "description": task.description, "test_pictures": len(task.test_pictures()), "settings": BASE,
           "rows": [], "summary": []}
    plain, all_ways = "fine-tuning", ways(a.ewc)
    with tempfile.TemporaryDirectory(prefix="methods-small-") as runs:
        for size in a.sizes:
            for seed in a.seeds:
                for way, extra in all_ways.items():
                    row = run_one(task, size, way, extra, seed, Path(runs))
                    out["rows"].append(row)
                    nan = float("nan")
                    print(f"{a.task} {size}/class seed {seed} {way:18s}: test {row.get('test_accuracy', nan):.3f}"
                          f"  distance {row.get('distance', nan):.2f}  ({row['seconds']} s)", flush=True)
                    save(out, a.out)
    out["summary"] = [summary(out["rows"], size, way, plain) for size in a.sizes for way in all_ways]
    out["load_at_end"] = load()
    save(out, a.out)
    for s in out["summary"]:
        lo, hi = s["interval"]
        print(f"{s['size']}/class {s['way']:18s}: {s['accuracy']:.3f} [{lo:.3f}-{hi:.3f}] per seed {s['per_seed']}, "
              f"vs plain +{s['only_this_right']} / -{s['only_plain_right']} pictures, distance {s['distance']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
