"""How far the time left shown during a run is from the truth (issue 28, part 8).

    python bench/time_left.py [--sizes 10 20 50 200] [--seeds 0 1] [--settings one-click fixed]
                              [--time-budget-minutes 20] [--out bench/results/time_left.json]

A grid of small real runs on the bundled textile pictures (3 classes; `size` pictures per class, a different
draw per seed), each trained as the app trains it: "one-click" is the default (progressive) schedule,
"fixed" is "Exactly as set" for FIXED_EPOCHS epochs. Runs go in grid order, smallest first, until the time
budget is spent (the JSON says which ran). From each run's events.jsonl, at 25% and 50% of its length (from
RunStarted to its final event), the time left the Train page showed then (the last Progress event before
that moment, counted down as the page does) is set against the truth (the run's end minus that moment):
- shown as a range (the run may stop early: eta.shown_as_range): is the truth inside it?
- one figure: the relative error, (shown - truth) / truth; the target is within 30%.
Beside it, the latest end alone (what a single figure would have said) with its relative error.
The JSON is rewritten after every run; bench/readme_tables.py renders it as the README table "time-left".
--before keeps another run of the grid (on the code before a change) in the JSON, under "before".
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version, load  # noqa: E402  (bench/ is this script's own folder)

from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.core.events import FINAL_EVENTS, Progress, RunStarted  # noqa: E402
from transfer_core.runstore.runs import RunFolder  # noqa: E402
from transfer_core.training.eta import shown_as_range  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

CLASSES = ("global", "local", "nominal")
FIXED_EPOCHS = 3
SETTINGS = {"one-click": {}, "fixed": {"schedule": "fixed", "epochs": FIXED_EPOCHS}}
FRACTIONS = (0.25, 0.5)
TARGET = 0.30  # a single figure within 30% of the truth


def textile_root() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("conformal_clip_data")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "textile_images" / "simulated"


def copy_textile(dest: Path, per_class: int, seed: int) -> Path:
    """`per_class` real textile pictures per class, a different slice of the sorted files per seed."""
    for cls in CLASSES:
        files = sorted((textile_root() / cls).glob("*.jpg"))
        start = (seed * per_class) % max(1, len(files) - per_class)
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for f in files[start:start + per_class]:
            shutil.copy(f, dest / cls / f.name)
    return dest


def shown_at(progress: list[Progress], moment: float) -> dict | None:
    """What the page showed at `moment`: the last Progress with a figure before it, counted down since."""
    last = next((p for p in reversed(progress) if p.time <= moment and p.eta_seconds > 0), None)
    if last is None:
        return None  # still "estimating the time left"
    since = moment - last.time
    latest = max(last.eta_seconds - since, 0.0)
    soonest = None if last.eta_soonest_seconds is None else max(last.eta_soonest_seconds - since, 0.0)
    return {"latest": latest, "soonest": soonest, "range": shown_as_range(soonest, latest)}


def judge(events: list, fraction: float) -> dict:
    start = next(e.time for e in events if isinstance(e, RunStarted))
    end = next(e.time for e in reversed(events) if isinstance(e, FINAL_EVENTS))
    moment = start + fraction * (end - start)
    truth = end - moment
    shown = shown_at([e for e in events if isinstance(e, Progress)], moment)
    row = {"fraction": fraction, "truth_s": round(truth, 2), "shown": None}
    if shown is None:
        return row
    row["shown"] = "range" if shown["range"] else "figure"
    row["latest_s"] = round(shown["latest"], 2)
    row["latest_error"] = round((shown["latest"] - truth) / truth, 3) if truth > 0 else None
    if shown["range"]:
        row["soonest_s"] = round(shown["soonest"], 2)
        row["inside"] = shown["soonest"] <= truth <= shown["latest"]
    else:
        row["within_target"] = row["latest_error"] is not None and abs(row["latest_error"]) <= TARGET
    return row


def run_one(setting: str, size: int, seed: int, work: Path) -> dict:
    data = copy_textile(work / f"data-{size}-{seed}", size, seed)
    t = time.time()
    result = train(TrainConfig(data=str(data), seed=seed, **SETTINGS[setting]), runs_dir=work / "runs")
    events = RunFolder(result.run_dir).events()
    final = result.final
    return {"setting": setting, "per_class": size, "seed": seed, "seconds": round(time.time() - t, 1),
            "final": final.kind, "epochs_run": getattr(final, "epochs_run", None),
            "reason": getattr(final, "reason", None), "at": [judge(events, f) for f in FRACTIONS]}


def summary(runs: list[dict]) -> dict:
    """Per setting: ranges with the truth inside, single figures within the target, and the worst errors."""
    out = {}
    for setting in dict.fromkeys(r["setting"] for r in runs):
        rows = [a for r in runs if r["setting"] == setting for a in r["at"] if a["shown"]]
        ranges = [a for a in rows if a["shown"] == "range"]
        figures = [a for a in rows if a["shown"] == "figure"]
        out[setting] = {"estimating": sum(not a["shown"] for r in runs if r["setting"] == setting for a in r["at"]),
                        "ranges": len(ranges), "inside": sum(a["inside"] for a in ranges),
                        "figures": len(figures), "within_target": sum(a["within_target"] for a in figures),
                        "worst_figure_error": max((abs(a["latest_error"]) for a in figures
                                                   if a["latest_error"] is not None), default=None),
                        "worst_latest_error": max((abs(a["latest_error"]) for a in rows
                                                   if a["latest_error"] is not None), default=None)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50, 200])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--time-budget-minutes", type=float, default=20.0,
                    help="start no run after this many minutes (the grid runs smallest first)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "time_left.json")
    ap.add_argument("--before", type=Path, help="a JSON this script wrote on other code: kept beside, for comparison")
    a = ap.parse_args(argv)
    grid = [(s, n, seed) for n in a.sizes for seed in a.seeds for s in a.settings]
    doc = {"kind": "time-left", "command": "python bench/time_left.py " + shlex.join(argv or sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d"), "commit": code_version(), "load_before": load(),
           "task": "textile-3 (bundled textile pictures, 3 classes)", "fixed_epochs": FIXED_EPOCHS,
           "target": TARGET, "fractions": list(FRACTIONS), "planned": len(grid), "runs": []}
    if a.before:  # the same grid on the code before a change, run just before on the same machine
        before = json.loads(a.before.read_text())
        doc["before"] = {k: before.get(k) for k in ("command", "date", "commit", "load_before", "load_after",
                                                     "summary", "runs")}
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="time-left-") as tmp:
        for setting, size, seed in grid:
            if time.time() - t0 > 60 * a.time_budget_minutes:
                print(f"time budget spent: {len(doc['runs'])} of {len(grid)} runs", flush=True)
                break
            row = run_one(setting, size, seed, Path(tmp))
            doc["runs"].append(row)
            doc["summary"] = summary(doc["runs"])
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(doc, indent=1) + "\n")
            print(json.dumps(row), flush=True)
    doc["load_after"] = load()
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
