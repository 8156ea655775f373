"""Small real data (issue 28): the one click, the head alone and fine-tuning at 10-200 pictures per class,
judged only on each task's test folder, with the unfamiliar check's false alarms and misses beside.

    python bench/small_data.py [--tasks brain-mri ...] [--sizes 10 20 50 200] [--seeds 1 2 3]
                               [--ways default "head only" fine-tuning] [--time-budget-minutes 40]
                               [--out bench/results/small_data.json] [--append]

For every task (bench/tasks.py, built with seed 0: one fixed test folder), size, training seed and way
(WAYS), the engine trains on the task's train-<n> folder with the CLI's Python API as the one click
would, `seed` choosing its own validation split and everything random in training. Each finished run is
loaded from its folder (as Predict loads it) and scored on the test folder only:
- right or wrong per test picture (top class of the raw softmax) -> accuracy and balanced accuracy (the
  mean of the per-class recalls: on an imbalanced test, always answering the common class scores the
  majority baseline in accuracy but 1 / classes in balanced accuracy);
- the share of test pictures the run's unfamiliar check flags (inference.predict.familiarity, the verdict
  Predict shows): these are new pictures of the trained kind, so every flag is a false alarm;
- the share flagged among pictures that are not of the trained kind (UNFAMILIAR: random noise, flat
  colours, and pictures of another task, from bench/novelty.py), where every miss is a miss.
Beside it the engine's own validation accuracy of the kept model, which picked it: a validation figure
far above the test one is the figure a person would have been misled by.

Per (task, size, way), the seeds are pooled: every test picture of every seed counted once (accuracy and
flag shares), per-class recalls pooled the same way before averaging, the validation accuracy averaged.
The JSON (--out) is rewritten after every run. --time-budget-minutes: no new run starts past it (the one
under way finishes). --append keeps the rows already in --out and runs only the (task, size, way, seed)
it lacks, so the grid can be measured in pieces; the JSON then lists every command. What the default
does is whatever the engine's TrainConfig defaults say at the commit each row records.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version, load  # noqa: E402  (bench/ is this script's own folder)
from novelty import textiles, unfamiliar_sets  # noqa: E402
from one_click import config_for, majority_baseline, save, wilson  # noqa: E402
from tasks import DEFAULT_CACHE, TASKS, Task, build_task  # noqa: E402

from transfer_core.core.device import describe_device  # noqa: E402
from transfer_core.core.events import RunFinished  # noqa: E402
from transfer_core.inference.predict import familiarity, load_model, outputs  # noqa: E402
from transfer_core.runstore import runfiles  # noqa: E402
from transfer_core.runstore.runs import RunFolder  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

# way -> a setting of bench/one_click.py (what it changes from TrainConfig's defaults). "fine-tuning" is
# the fixed schedule bench/choose.py compares the default with: 4 epochs, the default's stages frozen.
WAYS = {"default": "default", "head only": "head only", "fine-tuning": "fixed (old default)"}
NEW_TASKS = ["brain-mri", "mnist-digits", "animal-silhouettes"]
UNFAMILIAR_PER_SET = 20


def unfamiliar_pictures(task: str) -> dict[str, list]:
    """Noise, flat colours and pictures of another task (bench/novelty.py's), the same for every run: the
    textile demo's pictures, or lfw's faces for the textile tasks, whose own kind the textiles are."""
    sets = unfamiliar_sets(UNFAMILIAR_PER_SET, np.random.default_rng(0))
    other = ("another task: faces (lfw)", sets["faces (lfw)"]) if task.startswith("textile") else \
        ("another task: textiles", textiles(0, UNFAMILIAR_PER_SET // 2))  # 10 of each of the 3 classes
    return {"random noise": sets["random noise"], "flat colours": sets["flat colours"], other[0]: other[1]}


def per_class_right(right: list[bool], classes: list[str]) -> dict[str, list[int]]:
    """class -> [right, pictures]: pooled over seeds by adding, so balanced accuracy pools honestly."""
    out: dict[str, list[int]] = {}
    for ok, c in zip(right, classes):
        out.setdefault(c, [0, 0])
        out[c][0] += int(ok)
        out[c][1] += 1
    return out


def balanced(per_class: dict[str, list[int]]) -> float:
    return float(np.mean([k / n for k, n in per_class.values()]))


@torch.no_grad()
def judge(run_dir: Path, tests: list[tuple[Path, str]], strangers: dict[str, list]) -> dict:
    """The finished run, loaded as Predict loads it, on the test folder and on the unfamiliar pictures."""
    model = load_model(run_dir, device="cpu")
    logits, features = outputs(model, [p for p, _ in tests])
    labels = [c for _, c in tests]
    right = (logits.argmax(1) == torch.tensor([model.classes.index(c) for c in labels])).tolist()
    out = {"test_images": len(tests), "correct": sum(right), "per_class": per_class_right(right, labels),
           "right": "".join("1" if r else "0" for r in right)}
    verdicts = familiarity(model, features=features)
    if verdicts is None:  # no check (no validation pictures): nothing to count
        out.update(test_flagged=None, unfamiliar_flagged=None)
        return out
    out["test_flagged"] = sum(v.unfamiliar for v in verdicts)
    out["unfamiliar_flagged"] = {name: [sum(v.unfamiliar for v in familiarity(model, pics)), len(pics)]
                                 for name, pics in strangers.items()}
    return out


def run_one(task: Task, size: int, way: str, seed: int, runs: Path, strangers: dict) -> dict:
    config = config_for(task, size, WAYS[way], seed, quick=False)
    t = time.time()
    result = train(config, runs_dir=runs)
    row = {"task": task.name, "size": size, "way": way, "seed": seed, "commit": code_version(),
           "seconds": round(time.time() - t, 1), "status": result.final.kind}
    f = result.final
    if not isinstance(f, RunFinished):
        row["error"] = getattr(f, "error", "") or "stopped"
        return row
    split = RunFolder(result.run_dir).read_json(runfiles.DATASET, {})
    row.update(val_accuracy=f.best_val_accuracy, val_images=split.get("num_val"), best_epoch=f.best_epoch,
               epochs_run=f.epochs_run, **judge(result.run_dir, task.test_pictures(), strangers))
    shutil.rmtree(result.run_dir, ignore_errors=True)
    return row


def pooled(rows: list[dict]) -> dict:
    """One (task, size, way)'s finished runs, pooled over their seeds."""
    n, k = sum(r["test_images"] for r in rows), sum(r["correct"] for r in rows)
    per_class: dict[str, list[int]] = {}
    for r in rows:
        for c, (right, total) in r["per_class"].items():
            per_class.setdefault(c, [0, 0])
            per_class[c][0] += right
            per_class[c][1] += total
    checked = [r for r in rows if r.get("test_flagged") is not None]
    strangers: dict[str, list[int]] = {}
    for r in checked:
        for name, (flagged, total) in r["unfamiliar_flagged"].items():
            strangers.setdefault(name, [0, 0])
            strangers[name][0] += flagged
            strangers[name][1] += total
    return {"seeds": sorted(r["seed"] for r in rows), "commits": sorted({r["commit"] for r in rows}),
            "accuracy": k / n, "interval": wilson(k, n), "test_images": n, "balanced_accuracy": balanced(per_class),
            "val_accuracy": float(np.mean([r["val_accuracy"] for r in rows])),
            "val_images": [r.get("val_images") for r in rows],
            "test_flagged": (sum(r["test_flagged"] for r in checked) / sum(r["test_images"] for r in checked)
                             if checked else None),
            "runs_without_check": len(rows) - len(checked),
            "unfamiliar_flagged": {name: f / t for name, (f, t) in strangers.items()},
            "fine_tuned_kept": sum(r["best_epoch"] > 0 for r in rows),
            "mean_seconds": round(float(np.mean([r["seconds"] for r in rows])), 1)}


def summary(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "RunFinished":
            groups.setdefault((r["task"], r["size"], r["way"]), []).append(r)
    order = {w: i for i, w in enumerate(WAYS)}
    return [{"task": t, "size": s, "way": w, **pooled(rs)}
            for (t, s, w), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]]))]


def describe(task: Task) -> dict:
    tests = task.test_pictures()
    return {"description": task.description, "classes": list(task.classes),
            "test_per_class": dict(Counter(c for _, c in tests)), "majority_baseline": majority_baseline(tests)}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=NEW_TASKS)
    ap.add_argument("--sizes", nargs="+", type=int, default=[10, 20, 50, 200], help="training pictures per class")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="training seeds")
    ap.add_argument("--ways", nargs="+", choices=list(WAYS), default=list(WAYS))
    ap.add_argument("--time-budget-minutes", type=float, default=None, help="start no run past this")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the tasks are built (kept)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "small_data.json")
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out; run only the others")
    a = ap.parse_args(argv)
    a.argv = sys.argv[1:] if argv is None else list(argv)
    return a


def grid(a: argparse.Namespace, tasks: list[Task]) -> list[tuple[Task, int, int, str]]:
    """Small sizes first, so a budget that runs out leaves whole sizes; the ways alternate within a seed,
    so machine load hits them alike."""
    return [(t, size, seed, way) for size in sorted(a.sizes) for seed in a.seeds for t in tasks
            if size in t.sizes for way in a.ways]


def print_summary(out: dict) -> None:
    for s in out["summary"]:
        base = out["tasks"][s["task"]]["majority_baseline"]["accuracy"]
        flagged = "-" if s["test_flagged"] is None else f"{s['test_flagged']:.1%}"
        missed = min(s["unfamiliar_flagged"].values(), default=float("nan"))
        print(f"{s['task']:>18} {s['size']:>3}/class {s['way']:<12} test {s['accuracy']:.3f} "
              f"(balanced {s['balanced_accuracy']:.3f}, majority {base:.3f}) val {s['val_accuracy']:.3f} "
              f"| test flagged {flagged}, unfamiliar flagged >= {missed:.0%} | seeds {len(s['seeds'])}, "
              f"{s['mean_seconds']:.0f} s", flush=True)


def main(argv=None) -> dict:
    a = parse_args(argv)
    t0 = time.time()
    tasks = [build_task(name, a.cache) for name in a.tasks]
    command = shlex.join(["python", "bench/small_data.py", *a.argv])
    out = {"kind": "small-data", "command": command, "date": time.strftime("%Y-%m-%d"), "device": describe_device(),
           "load_start": load(), "ways": {w: WAYS[w] for w in WAYS}, "tasks": {}, "rows": [], "summary": []}
    if a.append and a.out.is_file():
        before = json.loads(a.out.read_text())
        out.update(rows=before["rows"], tasks=before["tasks"], command=f"{before['command']} && {command}",
                   date=f"{before['date']}, {out['date']}" if before["date"] != out["date"] else out["date"])
    out["tasks"].update({t.name: describe(t) for t in tasks})
    out["stopped_by_budget"] = False
    done = {(r["task"], r["size"], r["way"], r["seed"]) for r in out["rows"] if r["status"] == "RunFinished"}
    work = Path(tempfile.mkdtemp(prefix="small-data-"))
    strangers = {t.name: unfamiliar_pictures(t.name) for t in tasks}
    try:
        for task, size, seed, way in grid(a, tasks):
            if (task.name, size, way, seed) in done:
                continue
            if a.time_budget_minutes is not None and time.time() - t0 > a.time_budget_minutes * 60:
                print(f"time budget of {a.time_budget_minutes} minutes spent: no new run started", flush=True)
                out["stopped_by_budget"] = True
                break
            row = run_one(task, size, way, seed, work, strangers[task.name])
            out["rows"].append(row)
            out["summary"] = summary(out["rows"])
            save(out, a.out)
            print(json.dumps({k: v for k, v in row.items() if k not in ("right", "per_class")}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.update(summary=summary(out["rows"]), load_end=load())
    save(out, a.out)
    print_summary(out)
    return out


if __name__ == "__main__":
    main()
