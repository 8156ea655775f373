"""One-click training settings compared on several real tasks, judged on test pictures nothing was tuned on.

    python bench/one_click.py [--tasks textile-3 ...] [--sizes 10 20 ...] [--settings default "head only" ...]
                              [--seed 0] [--cache /tmp/transfer-bench-tasks] [--out bench/results/one_click.json]
                              [--quick] [--keep-runs] [--resume]

For every task (bench/tasks.py), training size per class and setting (SETTINGS), the engine trains on the
task's train-<n> folder exactly as the app's one click would (its own validation split of that folder
picks the best epoch and fits the confidence), then the finished run is loaded from its folder
(inference.predict) and scored on the task's test folder: the same unseen pictures for every setting.
Per run: test accuracy with a 95% Wilson score interval over the test pictures (it covers which
pictures were drawn for the test, not the training seed), wall seconds of the engine's train() call,
and the engine's own validation figure. Per task: the majority-class baseline, the accuracy of always
answering the test folder's most common class.

The JSON (--out) is rewritten after every run, so a long run that stops keeps what it measured; the
last printed line is the same JSON. bench/readme_tables.py renders it as the README table "one-click".
--quick: the smoke run (lfw-faces, 10 per class, default and head only, 64 px, 2 epochs) unless
--tasks / --sizes / --settings say otherwise; every setting then runs at 64 px and at most 2 epochs.
--resume: keep the runs already in --out (a run that was stopped, or another grid measured before) and run
only the task, size and setting combinations it lacks; the JSON's command then lists every command.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version, load  # noqa: E402  (bench/ is this script's own folder)
from readme_tables import one_click_rows, table  # noqa: E402
from tasks import DEFAULT_CACHE, TASKS, Task, build_task  # noqa: E402

from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.core.device import describe_device  # noqa: E402
from transfer_core.core.metrics import wilson_interval as wilson  # noqa: E402  (the engine's one interval)
from transfer_core.core.events import (
    ModelReady,  # noqa: E402
    RunFinished,  # noqa: E402
)
from transfer_core.inference.predict import load_model, predict_probs  # noqa: E402
from transfer_core.runstore import runfiles  # noqa: E402
from transfer_core.runstore.runs import RunFolder  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

# name -> TrainConfig fields that differ from the engine's defaults. Add a setting by adding a line.
# Each setting is what it changes from TrainConfig's defaults (the one click: progressive, at most 8 epochs).
# Results measured before commit "One click is progressive" name the then default (fixed, freeze 3, quick
# start, 4 epochs) "default"; their JSON keeps the settings as they were then.
SETTINGS: dict[str, dict] = {
    "default": {},
    "progressive freeze 2": {"freeze": 2},
    "head only": {"freeze": "all"},
    "fixed (old default)": {"schedule": "fixed", "epochs": 4},
    "fixed, head only": {"schedule": "fixed", "epochs": 4, "freeze": "all"},
    "fixed, freeze 2": {"schedule": "fixed", "epochs": 4, "freeze": 2},
    "fixed, freeze 4": {"schedule": "fixed", "epochs": 4, "freeze": 4},
    "fixed, everything trains": {"schedule": "fixed", "epochs": 4, "freeze": 0},
    "fixed, 8 epochs": {"schedule": "fixed", "epochs": 8},
    # Small data: the head fitted on 4 augmented views of each training picture (bench/choose.py --from-pool).
    "head only, 4 light views": {"freeze": "all", "augment": "light", "feature_views": 4},
    "head only, 4 strong views": {"freeze": "all", "augment": "strong", "feature_views": 4},
}
QUICK = {"image_size": 64, "epochs": 2}  # the smoke run: every setting shrinks to this
QUICK_DEFAULTS = {"tasks": ["lfw-faces"], "sizes": [10], "settings": ["default", "fixed (old default)"]}


def majority_baseline(tests: list[tuple[Path, str]]) -> dict:
    """Accuracy of always answering the test folder's most common class (the best any one answer does)."""
    counts = Counter(c for _, c in tests)
    cls, k = max(sorted(counts.items()), key=lambda kv: kv[1])
    return {"class": cls, "accuracy": k / len(tests), "interval": wilson(k, len(tests))}


def config_for(task: Task, size: int, setting: str, seed: int, quick: bool) -> TrainConfig:
    fields = {**SETTINGS[setting], "seed": seed}
    if quick:
        fields.update(QUICK, epochs=min(fields.get("epochs", QUICK["epochs"]), QUICK["epochs"]))
    return TrainConfig(data=str(task.train_dir(size)), **fields)


@torch.no_grad()
def right_on_test(run_dir: Path, tests: list[tuple[Path, str]]) -> str:
    """Which test pictures the finished run's top class gets right, "1"/"0" in the tests' order (raw
    softmax: the temperature fitted on validation pictures does not change the top class). Kept per
    picture so two settings can be compared on the same pictures (readme_tables.mcnemar)."""
    model = load_model(run_dir)
    probs = predict_probs(model, [p for p, _ in tests], calibrated=False)
    missing = {c for _, c in tests} - set(model.classes)
    if missing:
        raise SystemExit(f"{run_dir}: the model has no class {sorted(missing)}")
    labels = torch.tensor([model.classes.index(c) for _, c in tests])
    return "".join("1" if ok else "0" for ok in (probs.argmax(1) == labels).tolist())


def run_one(task: Task, size: int, setting: str, a: argparse.Namespace, runs: Path) -> dict:
    config = config_for(task, size, setting, a.seed, a.quick)
    t = time.time()
    result = train(config, runs_dir=runs)
    row = {"task": task.name, "size": size, "setting": setting, "seconds": round(time.time() - t, 2),
           "status": result.final.kind}
    if not isinstance(result.final, RunFinished):
        row["error"] = getattr(result.final, "error", "") or "stopped"
        return row
    tests = task.test_pictures()
    t = time.time()
    right = right_on_test(result.run_dir, tests)
    k = right.count("1")
    data = RunFolder(result.run_dir).read_json(runfiles.DATASET, {})
    f = result.final
    row.update(test_accuracy=k / len(tests), interval=wilson(k, len(tests)), correct=k, test_images=len(tests), right=right,
               score_seconds=round(time.time() - t, 1), val_accuracy=f.best_val_accuracy, best_epoch=f.best_epoch,
               epochs_run=f.epochs_run, engine_test_accuracy=f.test_accuracy,
               engine_split={s: data.get(f"num_{s}") for s in ("train", "val", "test")})
    row.update(first_model_seconds=first_model_seconds(result.run_dir),
               inference_pass_seconds=inference_pass_seconds(result.run_dir, task.train_dir(size)))
    if not a.keep_runs:
        shutil.rmtree(result.run_dir, ignore_errors=True)
    return row


def warm_up(config: TrainConfig, runs: Path) -> None:
    """One untimed run first: the process's first run pays once for what every later one finds ready (torch's
    kernels and thread pools, imports), and it would be the first setting's, while every inference pass is
    measured after a run. Seen on 2026-12-02: the first run's first model at 1.4x the pass, the next at 1.0x."""
    train(config, runs_dir=runs)
    shutil.rmtree(runs, ignore_errors=True)


def first_model_seconds(run_dir: Path) -> float | None:
    """Seconds from the start of the run to its first usable model (ModelReady; None: fixed schedule)."""
    ready = next((e for e in RunFolder(run_dir).events() if isinstance(e, ModelReady)), None)
    return round(ready.seconds, 2) if ready else None


@torch.no_grad()
def inference_pass_seconds(run_dir: Path, folder: Path) -> float:
    """One plain inference pass over the run's pictures, as Predict makes it from a saved model (load the
    network, decode, forward), measured in the same process right after the run: the yardstick of the
    issue's targets (first model within 1.5x of it, the whole run within 3x), side by side, so machine
    load affects both alike. Loading counts because the run's first model pays for building its network
    too; at 10 pictures per class it is a large share of both."""
    pictures = sorted(p for p in folder.rglob("*") if p.is_file())
    t = time.time()
    predict_probs(load_model(run_dir), pictures, calibrated=False)
    return round(time.time() - t, 2)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=None, help="default: every task")
    ap.add_argument("--sizes", nargs="+", type=int, default=None,
                    help="training pictures per class (default: every size each task has)")
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=None, help="default: every setting")
    ap.add_argument("--seed", type=int, default=0, help="chooses the test and training pictures, and training")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the tasks are built (kept)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "one_click.json")
    ap.add_argument("--quick", action="store_true", help="smoke run: " + ", ".join(f"{k} {v}" for k, v in
                                                                                   {**QUICK_DEFAULTS, **QUICK}.items()))
    ap.add_argument("--keep-runs", action="store_true", help="keep the run folders (default: deleted once scored)")
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --out; run only the others")
    a = ap.parse_args(argv)
    a.argv = sys.argv[1:] if argv is None else list(argv)
    for key, every in (("tasks", list(TASKS)), ("sizes", None), ("settings", list(SETTINGS))):
        if getattr(a, key) is None:
            setattr(a, key, QUICK_DEFAULTS[key] if a.quick else every)
    return a


def describe_tasks(tasks: list[Task]) -> dict:
    out = {}
    for t in tasks:
        tests = t.test_pictures()
        out[t.name] = {"description": t.description, "classes": list(t.classes), "sizes": list(t.sizes),
                       "test_images": len(tests), "test_per_class": dict(Counter(c for _, c in tests)),
                       "majority_baseline": majority_baseline(tests)}
    return out


def save(out: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(out, indent=1, default=str))
    tmp.replace(path)


def print_run(row: dict) -> None:
    if row["status"] != "RunFinished":
        print(f"  {row['task']} {row['size']}/class {row['setting']}: {row['status']} {row.get('error', '')}")
        return
    lo, hi = row["interval"]
    print(f"  {row['task']} {row['size']}/class {row['setting']:18s}: test {row['test_accuracy']:.3f} "
          f"[{lo:.3f}-{hi:.3f}] ({row['correct']}/{row['test_images']}), val {row['val_accuracy']:.3f}, "
          f"{row['epochs_run']} epochs, {row['seconds']:.0f} s{_against_pass(row)}", flush=True)


def _against_pass(row: dict) -> str:
    """The issue's targets, as ratios to one inference pass measured in the same run."""
    base = row.get("inference_pass_seconds") or 0
    if not base:
        return ""
    first = row.get("first_model_seconds")
    return (f" ({row['seconds'] / base:.1f}x an inference pass"
            + (f"; first model at {first / base:.1f}x" if first is not None else "") + ")")


def resumed(before: dict, now: dict) -> dict:
    """`now` (a new run's header) with the runs `before` measured; settings and tasks of both, every command.
    A setting whose fields changed since is measured again. Both commits are named when they differ."""
    same = [s for s, fields in before["settings"].items() if now["settings"].get(s, fields) == fields]
    commits = list(dict.fromkeys(c for c in (before.get("commit"), now.get("commit")) if c))
    return {**now, "command": f"{before['command']} && {now['command']}", "load_start": before["load_start"],
            "commit": ", then ".join(commits) or now.get("commit"),
            "settings": {**{s: before["settings"][s] for s in same}, **now["settings"]},  # in the order measured
            "tasks": {**before["tasks"], **now["tasks"]},
            "runs": [r for r in before["runs"] if r["setting"] in same]}


def main(argv=None) -> dict:
    a = parse_args(argv)
    tasks = [build_task(name, a.cache, a.seed) for name in a.tasks]
    out = {"kind": "one-click", "command": shlex.join(["python", "bench/one_click.py", *a.argv]),
           "date": time.strftime("%Y-%m-%d"), "commit": code_version(), "device": describe_device(),
           "load_start": load(), "seed": a.seed, "quick": a.quick, "overrides": QUICK if a.quick else {},
           "settings": {s: SETTINGS[s] for s in a.settings}, "tasks": describe_tasks(tasks), "runs": [],
           "inference_pass": "load + decode + forward"}  # what inference_pass_seconds times
    if a.resume and a.out.is_file():
        out = resumed(json.loads(a.out.read_text()), out)
    done = {(r["task"], r["size"], r["setting"]) for r in out["runs"]}
    work = Path(tempfile.mkdtemp(prefix="one-click-"))
    t0 = time.time()
    print(f"{len(tasks)} tasks, settings {', '.join(a.settings)}; tasks in {a.cache}, runs in {work}", flush=True)
    try:
        warm_up(config_for(tasks[0], min(tasks[0].sizes), "default", a.seed, a.quick), work / "warm-up")
        for task in tasks:
            lacking = [s for s in a.sizes or () if s not in task.sizes]
            if lacking:  # lfw-faces has 60 training pictures per class: no 200
                print(f"  {task.name}: no size {', '.join(map(str, lacking))} (it has {task.sizes})", flush=True)
            for size in (s for s in task.sizes if a.sizes is None or s in a.sizes):
                for setting in (s for s in a.settings if (task.name, size, s) not in done):
                    out["runs"].append(run_one(task, size, setting, a, work / "runs"))
                    print_run(out["runs"][-1])
                    save(out, a.out)
    finally:
        if not a.keep_runs:
            shutil.rmtree(work, ignore_errors=True)
    out.update(seconds=round(time.time() - t0), load_end=load())
    save(out, a.out)
    header, rows = one_click_rows(out)
    print(f"\nTest accuracy [95% Wilson interval], seconds of training; {out['seconds']} s in all, {out['device']}")
    print(table(header, rows), end="")
    print(json.dumps(out, default=str))
    return out


if __name__ == "__main__":
    main()
