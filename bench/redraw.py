"""What a page redraw reads, before and after the indexes (runstore/index.py, data/folder_index.py).

    python bench/redraw.py [--runs 10 100 1000] [--files 2000 20000] [--repeats 5] [--out bench/results/redraw.json]

Runs: one real small run is trained once (the demo pictures, head only, 3 epochs), then copied N times into
a runs folder (its small files copied, its weights hard-linked). "Before" is the run list as the pages read
it until now (workspaces.list_runs_for: every run's event log parsed on every redraw), written out here as
it was; "after" is list_runs_for now, through the run index, on a redraw where nothing changed. Both are
called side by side in this one process, and their summaries compared.

Data: a folder of F small files (one real demo JPEG, hard-linked) in 4 class folders. "Before" is what the
Train page did on every redraw (datasets.class_folders: a walk of every class folder) plus the Data page's
folder signature as it was; "after" is both through the folder index.

Printed and written: the median time of one redraw's reads, the ratio before / after, event logs parsed
and os.walk calls per redraw (counted, not timed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.data import folder_index  # noqa: E402
from transfer_core.data.datasets import class_folders, demo_dataset_path  # noqa: E402
from transfer_core.runstore import index, runfiles  # noqa: E402
from transfer_core.runstore.runs import RunFolder, summarize  # noqa: E402
from transfer_core.service import workspaces  # noqa: E402
from transfer_core.service.workspaces import OwnedRun, list_runs_for, new_token  # noqa: E402


# ----------------------------------------------------------------------------- the reads as they were
def old_list_runs_for(token: str, runs_dir: Path) -> list[OwnedRun]:
    """workspaces.list_runs_for before the run index (commit 1430360)."""
    ws = workspaces
    seen = [p for p in runs_dir.iterdir() if (p / runfiles.CONFIG).is_file() and ws.may_see(p, token)]
    summaries = sorted((summarize(RunFolder(p)) for p in seen), key=lambda s: s.created, reverse=True)
    return [OwnedRun(s, ws.run_owner_is(s.path, token), ws.run_name(s.path) or s.id, ws.sharing(s.path),
                     ws.may_see_pictures(s.path, token)) for s in summaries]


def old_summaries(runs_dir: Path) -> list:
    """runs.list_runs (the same as before the index): every run summarised."""
    runs = [RunFolder(p) for p in runs_dir.iterdir() if (p / runfiles.CONFIG).is_file()]
    return sorted((summarize(r) for r in runs), key=lambda s: s.created, reverse=True)


_walked: dict = {}


def old_signature(path: str) -> tuple[int, float]:
    """ui/data_view.py's _signature before the folder index (commit 1430360)."""
    def mtime_ns(folder):
        try:
            return os.stat(folder).st_mtime_ns
        except OSError:
            return -1
    known = _walked.get(path)
    if known is not None and all(mtime_ns(d) == t for d, t in known[0]):
        return known[1]
    count, latest, folders = 0, 0.0, []
    for dirpath, _dirs, files in os.walk(path):
        count += len(files)
        folders.append((dirpath, mtime_ns(dirpath)))
        latest = max(latest, os.stat(dirpath).st_mtime)
    _walked[path] = (tuple(folders), (count, latest))
    return count, latest


def new_signature(path: str) -> tuple[int, float]:
    counts = folder_index.folder_counts(path)
    return (counts.files, counts.latest)


# ----------------------------------------------------------------------------- counting and timing
class Counter:
    """Event logs parsed and folders walked while it is on."""

    def __init__(self):
        self.parses = self.walks = 0
        self._events, self._walk = RunFolder.events, os.walk

    def __enter__(self):
        def events(run):
            self.parses += 1
            return self._events(run)

        def walk(*a, **kw):
            self.walks += 1
            return self._walk(*a, **kw)
        RunFolder.events, os.walk = events, walk
        return self

    def __exit__(self, *exc):
        RunFolder.events, os.walk = self._events, self._walk


def redraw(read, repeats: int) -> dict:
    """One warm-up read (the index's first fill, as on the app's first page), then `repeats` timed redraws."""
    read()
    times = []
    with Counter() as counted:
        for _ in range(repeats):
            t = time.perf_counter()
            read()
            times.append(time.perf_counter() - t)
    return {"ms": statistics.median(times) * 1000, "parses_per_redraw": counted.parses / repeats,
            "walks_per_redraw": counted.walks / repeats}


def compare(before, after, repeats: int) -> dict:
    b, a = redraw(before, repeats), redraw(after, repeats)
    return {"before": b, "after": a, "ratio": b["ms"] / a["ms"] if a["ms"] else None}


# ----------------------------------------------------------------------------- the folders
def small_run(where: Path) -> Path:
    from transfer_core.workflows.train import train

    config = TrainConfig(data=str(demo_dataset_path()), freeze="all", epochs=3, max_images=60)
    return train(config, runs_dir=where).run_dir


def runs_folder(seed_run: Path, n: int, where: Path) -> Path:
    where.mkdir(parents=True)
    for i in range(n):
        copy = where / f"{seed_run.name}-{i:04d}"
        shutil.copytree(seed_run, copy, copy_function=lambda s, d: os.link(s, d) if s.endswith(".pt")
                        else shutil.copy2(s, d))
    return where


def data_folder(n_files: int, where: Path) -> Path:
    picture = next((demo_dataset_path() / "nominal").glob("*.jpg"))
    classes = [where / f"class_{c}" for c in range(4)]
    for c in classes:
        c.mkdir(parents=True)
    for i in range(n_files):
        os.link(picture, classes[i % 4] / f"{i:05d}.jpg")
    time.sleep(folder_index.RACY_S)
    return where


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--files", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "redraw.json")
    a = ap.parse_args(argv)
    out = {"kind": "redraw", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
           "command": "python bench/redraw.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent).stdout.strip(),
           "cpu_cores": os.cpu_count(), "python": platform.python_version(), "runs": [], "data": []}
    out["command"] = out["command"].strip()
    token = new_token()
    with tempfile.TemporaryDirectory(prefix="bench-redraw-") as tmp:
        tmp = Path(tmp)
        seed = small_run(tmp / "seed")
        out["events_per_run"] = len(RunFolder(seed).events())
        for n in a.runs:
            runs_dir = runs_folder(seed, n, tmp / f"runs-{n}")
            time.sleep(index.RACY_S)  # a folder changed this moment is listed again: measure the steady state
            same = sorted((o.summary for o in old_list_runs_for(token, runs_dir)), key=lambda s: s.id) == \
                sorted((o.summary for o in list_runs_for(token, runs_dir)), key=lambda s: s.id)
            row = {"n": n, "same_summaries": same, **compare(lambda: old_list_runs_for(token, runs_dir),
                                                               lambda: list_runs_for(token, runs_dir), a.repeats)}
            # the index's own part, without the privacy files' reads that list_runs_for adds
            row["summaries_only"] = compare(lambda: old_summaries(runs_dir),
                                            lambda: index.run_index(runs_dir).summaries(), a.repeats)
            out["runs"].append(row)
            print(f"{n:5d} runs: {row['before']['ms']:8.1f} ms -> {row['after']['ms']:6.1f} ms "
                  f"(x{row['ratio']:.1f}; summaries alone x{row['summaries_only']['ratio']:.1f}); event logs "
                  f"parsed per redraw {row['before']['parses_per_redraw']:.0f} -> "
                  f"{row['after']['parses_per_redraw']:.0f}; same summaries: {same}", flush=True)
            shutil.rmtree(runs_dir)
        for f in a.files:
            data = data_folder(f, tmp / f"data-{f}")

            def before(data=data):
                return class_folders(data), old_signature(str(data))

            def after(data=data):
                return folder_index.class_folders(data), new_signature(str(data))
            same = before()[0] == after()[0] and before()[1][0] == after()[1][0]
            row = {"files": f, "same_classes_and_counts": same, **compare(before, after, a.repeats)}
            out["data"].append(row)
            print(f"{f:6d} files: {row['before']['ms']:8.1f} ms -> {row['after']['ms']:6.2f} ms "
                  f"(x{row['ratio']:.0f}); walks per redraw {row['before']['walks_per_redraw']:.0f} -> "
                  f"{row['after']['walks_per_redraw']:.0f}; same answers: {same}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
