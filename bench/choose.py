"""Compare settings on shares of the training folders, over several training seeds: where defaults are chosen.

    python bench/choose.py [--tasks textile-3 textile-2] [--sizes 200] [--settings default "fixed (old default)"]
                           [--train-seeds 1 2 3] [--out bench/results/choose.json] [--append]

bench/one_click.py judges settings on each task's test folder, so nothing may be chosen there. This script
is where they are chosen: for every task, size, setting and training seed, the engine trains on the task's
train-<n> folder as the one click would. The seed picks the engine's own split of that folder into
training, validation and a held-out share (the engine's "test" share, which the run never chooses
anything on), and everything random in training. Per run it records the validation accuracy of the model
kept, the kept model's accuracy on the held-out share, which epoch was kept (0: the first model, the
classifier alone) and the seconds. Per task, size and setting it prints the held-out accuracy pooled over
the seeds (every held-out picture of every seed counted once) and how often a fine-tuned epoch was kept.
The test folders are never read. --append keeps the runs already in --out (another setting, or the same
at another commit: each run records the commit of the code it ran) and lists both commands.

--from-pool is for small sizes, whose own held-out share is empty or a handful of pictures: per seed, the
training pictures are `size` per class drawn from the task's pool (the pictures its train-<n> folders are
cut from), and the kept model is scored on --held-out-per-class other pool pictures per class. The pool
never holds test pictures. Texture patches of one region overlap, so on textures that share flatters.
"""
from __future__ import annotations

import argparse
import json
import random
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version
from one_click import SETTINGS, config_for, right_on_test, save, wilson
from tasks import DEFAULT_CACHE, TASKS, Task, build_task, link_picture

from transfer_core.core.events import RunFinished
from transfer_core.workflows.train import train


def run_one(task, size: int, setting: str, seed: int, runs: Path, commit: str, held_per_class: int = 0) -> dict:
    """One training run scored on the engine's own held-out share, or (held_per_class > 0) trained on a draw
    from the task's pool and scored on other pool pictures (draw_from_pool)."""
    config = config_for(task, size, setting, seed, quick=False)
    pool_held: list[tuple[Path, str]] = []
    if held_per_class:
        drawn = runs / f"drawn-{task.name}-{size}-{seed}"
        pool_held = draw_from_pool(task, size, seed, drawn, held_per_class)
        config = replace(config, data=str(drawn))
    t = time.time()
    result = train(config, runs_dir=runs)
    f = result.final
    row = {"task": task.name, "size": size, "setting": setting, "commit": commit, "train_seed": seed,
           "seconds": round(time.time() - t, 1), "status": f.kind,
           "yardstick": "pool" if held_per_class else "engine share"}
    if isinstance(f, RunFinished):
        row.update(val_accuracy=f.best_val_accuracy, best_epoch=f.best_epoch, epochs_run=f.epochs_run,
                   held_out=f.num_test, held_out_correct=round((f.test_accuracy or 0) * f.num_test))
        if held_per_class:
            right = right_on_test(result.run_dir, pool_held)
            row.update(held_out=len(right), held_out_correct=right.count("1"))
    shutil.rmtree(result.run_dir, ignore_errors=True)
    return row


def draw_from_pool(task: Task, size: int, seed: int, folder: Path, held_per_class: int) -> list[tuple[Path, str]]:
    """Link `size` pool pictures per class, drawn with `seed`, into folder/<class>/; return (file, class) of
    `held_per_class` other pool pictures per class, the share the kept model is scored on."""
    rng, held = random.Random(seed), []
    for c in task.classes:
        files = sorted((task.pool_dir / c).iterdir())
        if len(files) < size + held_per_class:
            raise SystemExit(f"{task.name}: class {c} has {len(files)} pool pictures, fewer than "
                             f"{size} + {held_per_class}")
        rng.shuffle(files)
        (folder / c).mkdir(parents=True, exist_ok=True)
        for f in files[:size]:
            if not (folder / c / f.name).exists():  # every setting of a seed trains on the same draw
                link_picture(f, folder / c / f.name)
        held += [(f, c) for f in files[size:size + held_per_class]]
    return held


def summary(rows: list[dict]) -> list[dict]:
    """Per task, size, setting and commit: held-out accuracy pooled over the seeds, fine-tuned epochs kept."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "RunFinished":
            key = (r["task"], r["size"], r["setting"], r.get("commit"), r.get("yardstick", "engine share"))
            groups.setdefault(key, []).append(r)
    out = []
    for (task, size, setting, commit, yardstick), rs in groups.items():
        n, k = sum(r["held_out"] for r in rs), sum(r["held_out_correct"] for r in rs)
        out.append({"task": task, "size": size, "setting": setting, "commit": commit, "yardstick": yardstick,
                    "seeds": len(rs),
                    "held_out_accuracy": k / max(1, n), "interval": wilson(k, n), "held_out": n,
                    "fine_tuned_kept": sum(r["best_epoch"] > 0 for r in rs),
                    "mean_seconds": round(sum(r["seconds"] for r in rs) / len(rs), 1)})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["textile-3", "textile-2"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[200])
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["default", "fixed (old default)"])
    ap.add_argument("--train-seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the tasks are built (kept)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "choose.json")
    ap.add_argument("--append", action="store_true", help="keep the runs already in --out")
    ap.add_argument("--from-pool", action="store_true", help="train on a draw from the pool, score on other pool "
                                                            "pictures (small sizes)")
    ap.add_argument("--held-out-per-class", type=int, default=60, help="with --from-pool: pictures scored per class")
    a = ap.parse_args(argv)
    command = "python bench/choose.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = {"kind": "choose", "command": command, "date": time.strftime("%Y-%m-%d"), "rows": [], "summary": []}
    if a.append and a.out.exists():
        before = json.loads(a.out.read_text())
        out.update(rows=before["rows"], command=f"{before['command']} && {command}")
    commit = code_version()
    with tempfile.TemporaryDirectory(prefix="choose-") as runs:
        for name in a.tasks:
            task = build_task(name, a.cache)
            for size in a.sizes:
                for seed in a.train_seeds:
                    for setting in a.settings:  # settings alternate within a seed: machine load hits them alike
                        row = run_one(task, size, setting, seed, Path(runs), commit,
                                      a.held_out_per_class if a.from_pool else 0)
                        out["rows"].append(row)
                        out["summary"] = summary(out["rows"])
                        save(out, a.out)
                        print(json.dumps(row), flush=True)
    for s in out["summary"]:
        print(f"{s['task']:>10} {s['size']:>4}/class {s['setting']:<28} {s['commit']} {s['yardstick']:>12} "
              f"held-out {s['held_out_accuracy']:.3f} "
              f"of {s['held_out']} over {s['seeds']} seeds; fine-tuned kept {s['fine_tuned_kept']}/{s['seeds']}; "
              f"{s['mean_seconds']} s")
    return out


if __name__ == "__main__":
    main()
