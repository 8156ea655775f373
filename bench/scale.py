"""Time and memory at 2,000, 20,000 and 100,000 pictures: the one click, the data check, Predict on a folder.

    python bench/scale.py [--sizes 2000 20000 100000] [--root /tmp/transfer-scale] [--out bench/results/scale.json]

The sets are made from the bundled demo by bench/scale_sets.py (variants of each picture: rotations, mirrors,
crops, re-encoding; on disk, never in the repo), each scored on the same 200 held-out demo originals that no
set contains. Per size, side by side in one run (the machine is noisy: compare the ratios):

- the one click through the app's queue and executor (a JobQueue on the default child-process executor, as
  the app runs it): seconds, seconds per 1,000 pictures, the time as a multiple of the smallest size's, the
  first model's seconds, the peak resident memory (VmHWM) of the training process and of the "server" (this
  process, which holds the queue and reads every event, as the app does), the engine's own test-share
  accuracy and the held-out originals' accuracy;
- the data check (python -m transfer_core check-data) and Predict on the set's folder (python -m
  transfer_core predict RUN FOLDER): seconds and peak memory of each command.

Every size starts from an empty picture store (its own TRANSFER_STUDIO_CACHE), so every picture is decoded
in the run measured, as on a data set's first run. The JSON gives the README's "Large data sets" table
(bench/readme_tables.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version, load, peak_rss_mb  # noqa: E402
from scale_sets import DEFAULT_ROOT, make_set, make_test  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def vm_hwm_mb(pid: int) -> float | None:
    """A live process's peak resident memory so far; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class PeakWatcher:
    """Samples a job's process until it ends: VmHWM only grows, so its last reading is the peak (to within
    the last half second of the process's life, when it is writing its final files)."""

    def __init__(self, job):
        self.job, self.peak, self.done = job, 0.0, threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        while not self.done.is_set():
            if self.job.pid:
                value = vm_hwm_mb(self.job.pid)
                self.peak = max(self.peak, value or 0.0)
            time.sleep(0.5)


def one_click(data: Path, runs: Path, budget_minutes: float = 0.0) -> dict:
    from transfer_core.core.config import TrainConfig
    from transfer_core.core.events import ModelReady, RunFinished
    from transfer_core.service.childjobs import ChildProcess
    from transfer_core.service.jobs import JobQueue

    queue = JobQueue(ChildProcess())
    t0 = time.time()
    job = queue.submit(TrainConfig(data=str(data), time_budget_minutes=budget_minutes), runs, owner="bench")
    watcher = PeakWatcher(job)
    queue.wait(job.id)
    seconds = time.time() - t0
    watcher.done.set()
    final = job.final
    ready = next((e for e in job.events() if isinstance(e, ModelReady)), None)
    return {"run_dir": str(runs / job.id), "status": type(final).__name__, "seconds": seconds,
            "first_model_seconds": ready.seconds if ready else None,
            "epochs": getattr(final, "epochs_run", None), "reason": getattr(final, "reason", None),
            "test_accuracy": getattr(final, "test_accuracy", None), "num_test": getattr(final, "num_test", None),
            "time_budget_minutes": budget_minutes, "train_peak_mb": watcher.peak, "server_peak_mb": peak_rss_mb(),
            "error": getattr(final, "error", None) if not isinstance(final, RunFinished) else None}


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds, peak MB of the command's process, its stdout)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO, text=True)
    out_chunks = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode})")
    return time.time() - t0, usage.ru_maxrss / 1024, "".join(out_chunks)


def accuracy_of(predict_lines: str) -> tuple[float, int]:
    rows = [json.loads(line) for line in predict_lines.splitlines() if line.startswith("{")]
    rows = [r for r in rows if "top" in r]
    right = sum(r["top"][0]["class"] == Path(r["image"]).parent.name for r in rows)
    return right / max(1, len(rows)), len(rows)


SCAN = ("import sys, time; from transfer_core.data.datasets import scan_dataset; t = time.time(); "
        "r = scan_dataset(sys.argv[1]); print(time.time() - t, len(r.train) + len(r.val) + len(r.test))")


def scans(data: Path, env: dict) -> dict:
    """The Data page's scan of the set: first (every picture opened), then again in a new process (only the
    files' stat against the answers kept on disk: the scan is incremental)."""
    out = {}
    for name in ("first", "again"):
        seconds, mb, printed = timed([sys.executable, "-c", SCAN, str(data)], env)
        out[name] = {"seconds": float(printed.split()[0]), "process_seconds": seconds, "peak_mb": mb}
    return out


def measure(n: int, root: Path, keep_cache: bool, extras: bool = True, budget_minutes: float = 0.0) -> dict:
    data, test = make_set(root, n), make_test(root)
    cache = root / f"cache-{n}"
    if not keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    os.environ["TRANSFER_STUDIO_CACHE"] = str(cache)  # before the fork server starts: it passes it on anyway
    env = {**os.environ}
    runs = root / f"runs-{n}"
    runs.mkdir(parents=True, exist_ok=True)
    print(f"--- {n:,} pictures: one click through the queue", flush=True)
    row = {"pictures": n, "one_click": one_click(data, runs, budget_minutes)}
    row["picture_store_gb"] = sum(f.stat().st_size for f in cache.glob("pictures-*")) / 2 ** 30
    print(json.dumps(row["one_click"]), flush=True)
    py = sys.executable
    run_dir = row["one_click"]["run_dir"]
    s, mb, out = timed([py, "-m", "transfer_core", "predict", run_dir, str(test), "--json"], env)
    acc, count = accuracy_of(out)
    row["held_out"] = {"accuracy": acc, "pictures": count}
    print(f"--- the Data page's scan, first and again ({n:,})", flush=True)
    shutil.rmtree(cache, ignore_errors=True)  # the scan's answers too: its first time
    row["scan"] = scans(data, env)
    if not extras:
        return row
    print(f"--- predict on the set's folder ({n:,})", flush=True)
    s, mb, out = timed([py, "-m", "transfer_core", "predict", run_dir, str(data), "--json"], env)
    row["predict_folder"] = {"seconds": s, "peak_mb": mb, "pictures": accuracy_of(out)[1]}
    print(f"--- data check ({n:,})", flush=True)
    s, mb, _ = timed([py, "-m", "transfer_core", "check-data", str(data), "--json"], env)
    row["data_check"] = {"seconds": s, "peak_mb": mb}
    print(json.dumps(row), flush=True)
    return row


def earlier_rows(path: Path) -> list[dict]:
    """The rows of an earlier run, each with the stamp (command, date, commit, load) it was measured with."""
    data = json.loads(path.read_text())
    top = {k: data[k] for k in ("date", "commit", "load", "command") if k in data}
    return [{**r, "measured": r.get("measured", top)} for r in data["rows"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json")
    ap.add_argument("--keep-cache", action="store_true", help="reuse decoded pictures from an earlier run")
    ap.add_argument("--append", action="store_true", help="add these sizes to the rows already in --out")
    ap.add_argument("--one-click-only", type=int, nargs="*", default=[], metavar="N",
                    help="sizes measured for the one click and the scan alone (no Predict nor data check)")
    ap.add_argument("--time-budget-minutes", type=float, default=0.0,
                    help="the one click's time budget (0: automatic, as in the app)")
    a = ap.parse_args()
    rows = earlier_rows(a.out) if a.append and a.out.exists() else []
    stamp = {"date": str(date.today()), "commit": code_version(), "load": load(),
             "command": "python bench/scale.py " + " ".join(sys.argv[1:])}
    for n in a.sizes:
        row = measure(n, a.root, a.keep_cache, n not in a.one_click_only, a.time_budget_minutes)
        rows = sorted([r for r in rows if r["pictures"] != n] + [{**row, "measured": stamp}],
                      key=lambda r: r["pictures"])
        a.out.write_text(json.dumps({"kind": "scale", **stamp, "rows": rows}, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
