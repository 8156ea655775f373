"""A class of 30 pressing Start: the real queue, with the in-process default and on a local Ray cluster.

    python bench/class_load.py [--people 30] [--eager 5] [--per-class 8] [--epochs 2] [--rounds 1]
                               [--modes in-process ray-1 ray-2] [--out bench/results/class_load.json]

Each person submits one run with the default settings (the one click) on a small real subset of the demo
(--per-class pictures of each class), at most --epochs epochs so the whole class fits in minutes; one
eager person first submits --eager runs more, to show that the line still takes turns across people.
Every mode gets the same submissions in the same order, one mode after the other:
  in-process  the default: one job at a time in this process
  ray-N       a local Ray cluster started here with N `transfer_slot`s (N jobs at once)
--rounds R runs every mode R times, the modes' order turning by one each round (A B C, B C A, C A B), so
a machine growing busier or quieter during the run weighs on every mode alike; each mode's figures are then
medians over the rounds, and its total time is also given as a ratio to the first mode's in the same round
(the median of those ratios: the side-by-side comparison).
Reported per mode: queue wait (submit to start) p50 / p95 over everyone's first run, where the eager
person's extra runs ended up in the start order, total time from the first submit to the last end,
throughput, and jobs lost (submitted but not finished); for Ray also the cluster's start-up time and the
memory of this process and of Ray's own processes. Prints a table and writes the JSON (README table via
bench/readme_tables.py). On a 2-core machine two CPU slots share the same cores: the figures show
scheduling, fairness and that nothing is lost, not speed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import RunFinished, RunStarted
from transfer_core.data.datasets import demo_dataset_path
from transfer_core.service.jobs import JobQueue


def subset(folder: Path, per_class: int) -> Path:
    """The first `per_class` demo pictures of each class, copied (the demo is never written)."""
    for cls in sorted(p for p in demo_dataset_path().iterdir() if p.is_dir()):
        (folder / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy(f, folder / cls.name / f.name)
    return folder


def rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def ray_processes_mb() -> float:
    """Resident memory of Ray's own processes on this machine (GCS, raylet, agents, idle workers)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"site-packages/ray/" in cmd or cmd.startswith(b"ray::"):
                total += rss_mb(proc.name)
    return total


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def start_executor(mode: str) -> tuple[object, dict]:
    if mode == "in-process":
        return None, {}
    import ray

    from transfer_core.service.rayjobs import RayExecutor

    before = rss_mb()
    t0 = time.perf_counter()
    executor = RayExecutor("local", slots=int(mode.split("-")[1]))
    return executor, {"ray_start_seconds": time.perf_counter() - t0, "app_mb_before_ray": before,
                      "app_mb_with_ray": rss_mb(), "ray_processes_mb": ray_processes_mb(),
                      "ray_version": ray.__version__}


def one_mode(mode: str, data: Path, args, runs: Path) -> dict:
    executor, extra = start_executor(mode)
    queue = JobQueue(executor)
    config = TrainConfig(data=str(data), epochs=args.epochs)
    people = [f"person-{i:02d}" for i in range(args.people)]
    t0 = time.time()
    jobs = [queue.submit(config, runs, owner=people[0]) for _ in range(args.eager)]
    jobs += [queue.submit(config, runs, owner=p) for p in people]
    for job in jobs:
        queue.wait(job.id)
    end = max(j.final.time for j in jobs if j.final is not None)
    started = {j.id: next(e.time for e in j.events() if isinstance(e, RunStarted)) for j in jobs
               if any(isinstance(e, RunStarted) for e in j.events())}
    firsts = [jobs[0]] + jobs[args.eager + 1:]  # everyone's first run (the eager person's is jobs[0])
    waits = [started[j.id] - j.submitted for j in firsts if j.id in started]
    order = sorted(started, key=started.get)
    extras = [order.index(j.id) + 1 for j in jobs[1:args.eager + 1] if j.id in started]
    if executor is not None:
        import ray

        extra["ray_processes_mb_end"] = ray_processes_mb()
        ray.shutdown()
    return {"mode": mode, "slots": queue.slots(), "jobs": len(jobs),
            "finished": sum(isinstance(j.final, RunFinished) for j in jobs),
            "lost": sum(j.final is None for j in jobs),
            "wait_p50_s": statistics.median(waits), "wait_p95_s": pct(waits, 0.95),
            "total_s": end - t0, "runs_per_min": len(jobs) / (end - t0) * 60,
            "eager_extra_start_places": extras, **extra}


def round_order(modes: list[str], round_no: int) -> list[str]:
    """The modes in the order round `round_no` runs them: turned by one each round."""
    k = round_no % len(modes)
    return modes[k:] + modes[:k]


def summarise(rows: list[dict], modes: list[str]) -> list[dict]:
    """One row per mode from its rounds (rows carry "round"): counts added up, times and rates the median
    over the rounds, places seen in any round; total_vs_first: the median over rounds of this mode's total
    time over the first mode's in the same round (paired, so load that changes between rounds cancels)."""
    first = {r["round"]: r["total_s"] for r in rows if r["mode"] == modes[0]}
    out = []
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        row = {**mine[0], **{k: sum(r[k] for r in mine) for k in ("jobs", "finished", "lost")},
               **{k: statistics.median(r[k] for r in mine) for k in ("wait_p50_s", "wait_p95_s", "total_s",
                                                                     "runs_per_min", "ray_start_seconds")
                  if all(k in r for r in mine)},
               "eager_extra_start_places": sorted({p for r in mine for p in r["eager_extra_start_places"]}),
               "rounds": len(mine)}
        row.pop("round", None)
        ratios = [r["total_s"] / first[r["round"]] for r in mine if first.get(r["round"])]
        if ratios:
            row["total_vs_first"] = statistics.median(ratios)
        out.append(row)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--eager", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["in-process", "ray-1", "ray-2"])
    parser.add_argument("--rounds", type=int, default=1, help="every mode this many times, in turning order")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "class_load.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = subset(Path(tmp) / "data", args.per_class)
        warm = JobQueue()  # loads the weights and fills the scan cache once, so no mode pays for it
        warm.wait(warm.submit(TrainConfig(data=str(data), epochs=1), Path(tmp) / "runs" / "warm-up").id)
        results = []
        for round_no in range(args.rounds):
            for mode in round_order(args.modes, round_no):
                results.append({**one_mode(mode, data, args, Path(tmp) / "runs" / f"{mode}-{round_no}"),
                                "round": round_no})
                print_mode(results[-1])
    command = "python bench/class_load.py" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if k not in ("modes", "out") and v != parser.get_default(k))
    summary = summarise(results, args.modes)
    out = {"kind": "class-load", "date": time.strftime("%Y-%m-%d"), "command": command, "commit": code_version(),
           "people": args.people, "eager": args.eager, "per_class": args.per_class, "epochs": args.epochs,
           "cores": os.cpu_count(), "rounds": args.rounds, "modes": summary, "each_round": results}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({"modes": [(r["mode"], round(r["wait_p95_s"]), r["lost"], round(r.get("total_vs_first", 1), 2))
                                for r in summary]}))
    return 0


def print_mode(r: dict) -> None:
    ray = (f"  ray start {r['ray_start_seconds']:.1f} s, app {r['app_mb_before_ray']:.0f}->{r['app_mb_with_ray']:.0f} "
           f"MB, ray processes {r['ray_processes_mb']:.0f} MB" if "ray_start_seconds" in r else "")
    print(f"round {r['round'] + 1} {r['mode']:11s} slots {r['slots']}  {r['finished']}/{r['jobs']} finished, "
          f"{r['lost']} lost  wait p50 {r['wait_p50_s']:.0f} s p95 {r['wait_p95_s']:.0f} s  total {r['total_s']:.0f} s  "
          f"{r['runs_per_min']:.2f} runs/min  eager extras started at {r['eager_extra_start_places']}{ray}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
