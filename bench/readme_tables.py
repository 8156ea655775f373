"""Write the README's tables of measured figures from the benchmarks' JSON output, never by hand.

    python bench/readme_tables.py [JSON ...] [--readme README.md] [--check]

Each table sits between marker comments, `<!-- table:NAME -->` ... `<!-- /table:NAME -->`, and is
rewritten whole: a line stamped with the command that measured it and the date, then the table.
Which tables a JSON file gives follows from its content (RENDERERS). Without arguments, the committed
files in bench/results/ are used, so `python bench/readme_tables.py` regenerates every table;
--check changes nothing and exits 1 when the README differs (tests/test_readme_tables.py does the same).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MARKER = re.compile(r"<!-- table:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /table:(?P=name) -->", re.S)


# ----------------------------------------------------------------------------- small formatting helpers
def stamp(data: dict, extra: str = "") -> str:
    """The line above every table: how to get these figures again, and when they were measured."""
    code = f", code of commit {data['commit']}" if data.get("commit") else ""
    return (f"*Measured {data['date']} with `{data['command']}`{code}{extra}. "
            f"Table written by `python bench/readme_tables.py` from `bench/results/`.*\n\n")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def interval(pair: list[float], signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"[{fmt.format(pair[0])} to {fmt.format(pair[1])}]" if signed else \
        f"[{fmt.format(pair[0])}-{fmt.format(pair[1])}]"


# ----------------------------------------------------------------------------- bench/benchmark.py
CROP_WORDS = {"random-resized": "`RandomResizedCrop` (scale 0.08-1) + flip",
              "centre": "resize + centre crop + flip (the control)"}


def throughput_rows(b: dict) -> list[list[str]]:
    rows = []
    for r in b["throughput"]:
        before, after = r["limit_train_before_after"]
        rows.append([f"{r['setting']}, {r['images']} images x {r['epochs']} epochs (no quick start): "
                     f"limit {before:.1f} / {after:.1f} img/s (before / after)",
                     f"engine {r['engine_epoch']:.1f} img/s within an epoch ({r['ratio_epoch']:.2f}x), "
                     f"{r['engine_whole_run']:.1f} over the whole run incl. decoding ({r['ratio_whole_run']:.2f}x)",
                     f">= 0.9x: within an epoch {met(r['ratio_epoch'] >= 0.9)}, "
                     f"whole run {met(r['ratio_whole_run'] >= 0.9)}"])
    return rows


def plain_rows(b: dict) -> list[list[str]]:
    rows = []
    for p in b["plain_recipes"]:
        strong = " (the stronger)" if p["crop"] == b["plain"]["crop"] else ""
        epochs = " / ".join(f"{a:.3f}" for a in p["per_epoch"])
        rows.append([f"plain recipe, {CROP_WORDS[p['crop']]}, {len(p['per_epoch'])} epochs on "
                     f"{p['num_train']:,} images{strong}",
                     f"val. accuracy {epochs} (per epoch), {p['accuracy']:.3f} after {p['seconds']:.0f} s", ""])
    return rows


def engine_row(b: dict) -> list[str]:
    e, plain = b["engine"], b["plain"]
    curve = " / ".join(f"{x['val_accuracy']:.3f}" for x in e["epochs"])
    times = " / ".join(f"{x['at']:.0f}" for x in e["epochs"])
    reach, ratio = e["time_to_plain_accuracy"], b.get("plain_over_engine")
    got = (f"reached at {reach:.0f} s: **{ratio:.1f}x faster**" if reach else "**not reached**")
    return [f"engine defaults (freeze 3, quick start), {len(e['epochs'])} epochs, to the stronger plain "
            f"recipe's {plain['accuracy']:.3f}", f"{got}; epochs {curve} at {times} s",
            f">= 5x: {met(bool(ratio) and ratio >= 5)}"]


def feature_row(b: dict) -> list[str]:
    f = b["feature_extraction"]
    return [f"feature extraction, {f['epochs']} epochs",
            f"later epochs {f['later_epoch_s']:.3f} s = {f['later_over_first']:.2%} of the first "
            f"({f['first_epoch_s']:.1f} s, decoding + features); {f['epochs']} epochs {f['total_s']:.1f} s = "
            f"**{f['total_over_pass']:.2f}x** one inference pass over the {f['num_train']:,} training images "
            f"({f['one_inference_pass_s']:.1f} s, mean of before / after)",
            f"< 5%: {met(f['later_over_first'] < 0.05)}; <= 1.3x: {met(f['total_over_pass'] <= 1.3)}"]


def render_benchmark(b: dict) -> str:
    rows = throughput_rows(b) + plain_rows(b) + [engine_row(b), feature_row(b)]
    rows.append([f"peak RSS, engine defaults, {b['engine']['num_train']:,} training images",
                 f"{b['engine']['peak_rss_mb']:,.0f} MB", f"< 3 GB: {met(b['engine']['peak_rss_mb'] < 3072)}"])
    extra = f" ({b['device']}; {b['load_start']} at the start, {b['load_end'].split(' on ')[0]} at the end)"
    return stamp(b, extra) + table(["figure", "measured", "target"], rows)


def render_defaults(b: dict) -> str:
    e = b["engine"]
    curve = " / ".join(f"{x['val_accuracy']:.3f}" for x in e["epochs"])
    times = " / ".join(f"{x['at']:.0f}" for x in e["epochs"])
    rows = [[f"**{b['image_size']} px, freeze 3, quick start, no augmentation (default)**, "
             f"{e['num_train']:,} training images", f"{curve} (best {e['best']:.3f})", times]]
    return stamp(b, ", section 4") + table(
        ["setting", f"val. accuracy after epoch 1 ... {len(e['epochs'])}", "reached at (s from the call)"], rows)


# ----------------------------------------------------------------------------- older, transcribed figures
def render_older_defaults(o: dict) -> str:
    rows = [[r["setting"], r["accuracy"], r["note"]] for r in o["rows"]]
    return (f"*Measured {o['date']} with `{o['command']}`, by {o['engine']}; {o['source']}. "
            f"Table written by `python bench/readme_tables.py` from `bench/results/`.*\n\n"
            + table(["setting (older engine)", "val. accuracy after epoch 1 / 2 / 4", "note"], rows))


# ----------------------------------------------------------------------------- bench/domain_shift.py
def verdict(change_interval: list[float], per_seed: list[float], none_per_seed: list[float]) -> str:
    """The interval covers the test pictures, not the training seed, so a method "helps" (or "hurts") only
    when its interval excludes 0 and it beat (or lost to) no adaptation with every seed."""
    ups = [m > n for m, n in zip(per_seed, none_per_seed)]
    if change_interval[0] > 0 or change_interval[1] < 0:
        if all(ups) and change_interval[0] > 0:
            return "helps"
        if not any(ups) and change_interval[1] < 0:
            return "hurts"
        return "unclear: the seeds disagree"
    return "no clear change"


def domain_rows(name: str, s: dict) -> list[list[str]]:
    rows = []
    base = s["results"]["none"]["per_seed"]
    for m, r in s["results"].items():
        word = verdict(r["change_interval"], r["per_seed"], base) if m != "none" else ""
        change = "" if m == "none" else \
            f"{r['change_vs_none']:+.3f} {interval(r['change_interval'], signed=True)}: **{word}**"
        seeds = " / ".join(f"{a:.2f}" for a in r["per_seed"])
        rows.append([name if m == "none" else "", m, f"{r['accuracy']:.3f} {interval(r['interval'])} ({seeds})",
                     change, f"{r['clean_accuracy']:.3f}"])
    return rows


def render_domain_shift(d: dict) -> str:
    sizes = d["sizes_per_class"]
    extra = (f" ({sizes['source']} labelled source, {sizes['adapt']} unlabelled target and {sizes['test']} "
             f"labelled target test pictures per class, {d['image_size']} px, {d['epochs']} epochs, seeds "
             f"{', '.join(map(str, d['seeds']))})")
    rows = [row for name, s in d["shifts"].items() for row in domain_rows(name, s)]
    shifts = "".join(f"- `{name}`: {s['description']} ({s['test_images']} test pictures)\n"
                     for name, s in d["shifts"].items())
    return stamp(d, extra) + shifts + "\n" + table(
        ["shift", "method", "target test accuracy [95%] (per seed)", "change against none [95%]",
         "same pictures unshifted"], rows)


# ----------------------------------------------------------------------------- bench/one_click.py
def one_click_cell(run: dict | None) -> str:
    if run is None:
        return ""
    if run["status"] != "RunFinished":
        return f"{run['status']}"
    first = run.get("first_model_seconds")
    return (f"{run['test_accuracy']:.3f} {interval(run['interval'])}, {run['seconds']:.0f} s"
            + (f" (first model {first:.0f} s)" if first is not None else ""))


def one_click_rows(d: dict) -> tuple[list[str], list[list[str]]]:
    """One row per task and training size, one column per setting; the header and the rows."""
    settings = list(d["settings"])
    runs = {(r["task"], r["size"], r["setting"]): r for r in d["runs"]}
    rows = []
    for name, task in d["tasks"].items():
        base = task["majority_baseline"]
        for i, size in enumerate(sorted({r["size"] for r in d["runs"] if r["task"] == name})):
            first = [name, str(size), f"{base['accuracy']:.3f} ({task['test_images']} test pictures)"]
            rows.append((first if i == 0 else ["", str(size), ""])
                        + [one_click_cell(runs.get((name, size, s))) for s in settings])
    return ["task", "training pictures per class", "majority class"] + settings, rows


def render_one_click(d: dict) -> str:
    quick = f"; smoke run: {', '.join(f'{k} {v}' for k, v in d['overrides'].items())}" if d.get("quick") else ""
    extra = (f" ({d['device']}, seed {d['seed']}{quick}; each cell: accuracy on the task's test pictures, which "
             f"no setting trained or chose anything on [95% Wilson interval], and the seconds training took)")
    tasks = "".join(f"- {name}: {t['description']}\n" for name, t in d["tasks"].items())
    settings = "".join(f"- `{name}`: " + (", ".join(f"{k}={v!r}" for k, v in over.items()) or "the engine's defaults")
                       + "\n" for name, over in d["settings"].items())
    targets = one_click_target_rows(d)
    return (stamp(d, extra) + tasks + settings + "\n" + table(*one_click_rows(d))
            + ("\nThe issue's targets for the default, per task and size (ratios to one plain inference pass over "
               "the same pictures, " + d.get("inference_pass", "decode + forward") + " as Predict does, measured in "
               "the same process right after the run; the whole-run target is set for a few hundred pictures; points of test accuracy):\n\n"
               + table(*targets) if targets[1] else "")
            + ("\nEvery setting held to the same \"within 1 point of the grid's best\" (the cells where it is "
               "further behind, and by how many points at most):\n\n" + table(*within_one_point_rows(d))
               if len(d["settings"]) > 1 else ""))


def within_one_point_rows(d: dict) -> tuple[list[str], list[list[str]]]:
    """For each setting: in how many task-and-size cells it is more than 1 point behind that cell's best."""
    cells: dict[tuple, dict[str, float]] = {}
    for r in d["runs"]:
        if r["status"] == "RunFinished":
            cells.setdefault((r["task"], r["size"]), {})[r["setting"]] = 100 * r["test_accuracy"]
    rows = []
    for setting in d["settings"]:
        gaps = [max(c.values()) - c[setting] for c in cells.values() if setting in c]
        missed = [g for g in gaps if g > 1 + 1e-9]
        rows.append([setting, f"{len(missed)} of {len(gaps)}", f"{max(missed):.1f}" if missed else ""])
    return ["setting", "cells more than 1 point behind the best", "most points behind"], rows


def mcnemar(a: str, b: str) -> tuple[int, int, float]:
    """Two settings on the same test pictures ("1" right, "0" wrong, in one order): the pictures only a got
    right, only b, and the exact two-sided p of McNemar's test (a binomial test on those pictures alone),
    the chance of a split at least this uneven if the two settings were equally good."""
    only_a = sum(x == "1" and y == "0" for x, y in zip(a, b, strict=True))
    only_b = sum(x == "0" and y == "1" for x, y in zip(a, b, strict=True))
    n, k = only_a + only_b, min(only_a, only_b)
    return only_a, only_b, min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0


def paired(default: str | None, other: str | None) -> str:
    """The default against another setting on the same pictures, when both runs kept which were right."""
    if not default or not other or default == other:
        return ""
    mine, theirs, p = mcnemar(default, other)
    return f"; right only with the default {mine}, only with the other {theirs}: p = {p:.2g}"


def one_click_target_rows(d: dict) -> tuple[list[str], list[list[str]]]:
    """The default run of each task and size against the issue's targets (runs with an inference pass)."""
    runs = {(r["task"], r["size"], r["setting"]): r for r in d["runs"] if r["status"] == "RunFinished"}
    rows = []
    for (task, size, setting), r in runs.items():
        if setting != "default" or not r.get("inference_pass_seconds") or r.get("first_model_seconds") is None:
            continue
        scores = {s: o["test_accuracy"] for (t, n, s), o in runs.items() if (t, n) == (task, size)}
        best = max(scores, key=lambda s: (scores[s], s == "default"))  # a tie with the default: the default
        behind, over_head = 100 * (scores[best] - r["test_accuracy"]), 100 * (r["test_accuracy"] - scores.get(
            "head only", r["test_accuracy"]))
        first, whole = r["first_model_seconds"] / r["inference_pass_seconds"], r["seconds"] / r["inference_pass_seconds"]
        right = {s: o.get("right") for (t, n, s), o in runs.items() if (t, n) == (task, size)}
        rows.append([task, str(size), f"{r['inference_pass_seconds']:.2g} s" if r["inference_pass_seconds"] < 10
                     else f"{r['inference_pass_seconds']:.0f} s",
                     f"{first:.2f}x (<= 1.5x: {met(first <= 1.5)})", f"{whole:.2f}x (<= 3x: {met(whole <= 3)})",
                     ("the best" if best == "default" else f"{behind:.1f} behind {best}")
                     + f" (<= 1: {met(behind <= 1)}{paired(right['default'], right[best])})",
                     f"{over_head:+.1f} ({met(over_head >= 0)}{paired(right['default'], right.get('head only'))})"
                     if "head only" in scores else ""])
    return ["task", "per class", "one inference pass", "first model", "whole run", "default against the best "
            "setting", "default against head only"], rows


# ----------------------------------------------------------------------------- bench/live_fps.py
LIVE_PATHS = {"predict": "`predict.answer` per frame, as the Predict page", "predict-1": "the same, live threads",
              "live": "`LiveClassifier.classify`, as the Live page", "live-all": "the same, torch's default threads"}


# ----------------------------------------------------------------------------- bench/choose.py
def render_choose(d: dict) -> str:
    extra = (" (each row: the kept model's accuracy on the engine's held-out share of the task's training folder, "
             "which no run chose anything on, pooled over the training seeds [95% Wilson interval; the seeds' shares "
             "overlap, so it is too narrow]; how many seeds kept a fine-tuned model rather than the first; mean "
             "seconds per run; the test folders are not read)")
    rows = [[s["task"], str(s["size"]), s["setting"], s["commit"] or "",
             f"{s['held_out_accuracy']:.3f} {interval(s['interval'])} of {s['held_out']}",
             f"{s['fine_tuned_kept']} of {s['seeds']}", f"{s['mean_seconds']:.0f}"]
            for s in sorted(d["summary"], key=lambda s: (s["task"], s["size"]))]
    return stamp(d, extra) + table(["task", "per class", "setting", "code", "held-out accuracy", "fine-tuned kept",
                                    "seconds"], rows)


def _from_pool(d: dict) -> bool:
    return any(s.get("yardstick") == "pool" for s in d["summary"])


def render_choose_pool(d: dict) -> str:
    """bench/choose.py --from-pool: small sizes, scored on pool pictures no run trained on."""
    extra = (" (each row: a draw of that many training pictures per class from the task's pool, one per training "
             "seed; the kept model's accuracy on other pool pictures, pooled over the seeds [95% Wilson interval]; "
             "mean seconds per run; the test folders are not read)")
    rows = [[s["task"], str(s["size"]), s["setting"], s["commit"] or "",
             f"{s['held_out_accuracy']:.3f} {interval(s['interval'])} of {s['held_out']}", f"{s['mean_seconds']:.0f}"]
            for s in sorted(d["summary"], key=lambda s: (s["task"], s["size"]))]
    return stamp(d, extra) + table(["task", "per class", "setting", "code", "accuracy on other pool pictures",
                                    "seconds"], rows)


def render_live_fps(d: dict) -> str:
    threads = {"predict": d["threads"]["torch_default"], "predict-1": d["threads"]["live"],
               "live": d["threads"]["live"], "live-all": d["threads"]["torch_default"]}
    extra = (f" ({d['backbone']} at {d['input_px']} px, {d['frames']} real pictures as {d['frame']} camera frames, "
             f"{d['cpu_cores']} cores, load average {d['load_average_1min']} at the end; median of "
             f"{d['rounds']} rounds of {d['frames_per_round']} frames; Live and Predict gave the same answer on "
             f"{d['same_labels']} of {d['compared']} frames, probabilities at most "
             f"{d['max_probability_difference']:.1e} apart)")
    rows = [[LIVE_PATHS[k], str(threads[k]), f"{fps:.1f}", f"{1000 / fps:.0f}"] for k, fps in d["fps_by_path"].items()]
    return stamp(d, extra) + table(["one frame classified by", "torch threads", "frames/s", "ms per frame"], rows)


# ----------------------------------------------------------------------------- bench/class_load.py
MODE_WORDS = {"in-process": "in-process (the default)", "ray-1": "local Ray, 1 slot", "ray-2": "local Ray, 2 slots"}


def class_load_rows(d: dict) -> list[list[str]]:
    rows = []
    for m in d["modes"]:
        ray = (f"{m['ray_start_seconds']:.1f} s; app {m['app_mb_before_ray']:.0f} -> {m['app_mb_with_ray']:.0f} MB, "
               f"Ray's processes {m['ray_processes_mb']:.0f} MB" if "ray_start_seconds" in m else "-")
        rows.append([MODE_WORDS.get(m["mode"], m["mode"]), str(m["slots"]), f"{m['finished']}/{m['jobs']}",
                     str(m["lost"]), f"{m['wait_p50_s']:.0f} / {m['wait_p95_s']:.0f}", f"{m['total_s']:.0f}"]
                    + ([f"{m['total_vs_first']:.2f}"] if _paired_rounds(d) else [])
                    + [f"{m['runs_per_min']:.2f}", ", ".join(map(str, m["eager_extra_start_places"])), ray])
    return rows


def _paired_rounds(d: dict) -> bool:
    """Measured in 2 or more rounds of turning order: each mode's total is also a paired ratio."""
    return d.get("rounds", 1) > 1 and all("total_vs_first" in m for m in d["modes"])


def render_class_load(d: dict) -> str:
    extra = (f" ({d['cores']} cores; {d['people']} people, one of whom first queued {d['eager']} runs more; each run "
             f"the default settings, at most {d['epochs']} epochs, on {d['per_class']} demo pictures per class)")
    header = ["executor", "jobs at once", "finished", "lost", "queue wait p50 / p95 (s)", "total (s)"]
    if _paired_rounds(d):
        extra = extra[:-1] + (f"; {d['rounds']} rounds, the modes' order turning each round: figures are medians "
                              f"over the rounds, and the ratio is to the first mode's total in the same round)")
        header.append(f"total / {MODE_WORDS.get(d['modes'][0]['mode'], d['modes'][0]['mode'])}'s, same round")
    header += ["runs/min", "eager person's extra runs started as number", "Ray start-up; memory"]
    return stamp(d, extra) + table(header, class_load_rows(d))


# ----------------------------------------------------------------------------- bench/scale.py
SCALE_TARGET_MB, SCALE_TARGET_TIMES = 4096, 12  # issue #27: at 20,000 pictures, <= 4 GB and <= 12x the 2,000 run


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.2f} GB" if value >= 1024 else f"{value:.0f} MB"


def scale_rows(d: dict) -> list[list[str]]:
    rows, base = [], d["rows"][0]
    for r in d["rows"]:
        c = r["one_click"]
        times = c["seconds"] / base["one_click"]["seconds"]
        budget = f" ({c['time_budget_minutes']:g}-min budget)" if c.get("time_budget_minutes") else ""
        acc = "-" if c["test_accuracy"] is None else f"{c['test_accuracy']:.3f} ({c['num_test']:,})"
        rows.append([f"{r['pictures']:,}", f"{c['seconds']:.0f} s ({1000 * c['seconds'] / r['pictures']:.1f} s; "
                     f"{times:.1f}x){budget}", f"{c['first_model_seconds']:.0f} s", f"{c['epochs']}",
                     _mb(c["train_peak_mb"]), _mb(c["server_peak_mb"]), acc,
                     f"{r['held_out']['accuracy']:.3f} ({r['held_out']['pictures']})",
                     f"{r['data_check']['seconds']:.0f} s, {_mb(r['data_check']['peak_mb'])}"
                     if r.get("data_check") else "-",
                     f"{r['predict_folder']['seconds']:.0f} s, {_mb(r['predict_folder']['peak_mb'])}"
                     if r.get("predict_folder") else "-",
                     f"{r['scan']['first']['seconds']:.1f} s / {r['scan']['again']['seconds']:.1f} s"
                     if r.get("scan") else "-",
                     f"{r['picture_store_gb']:.1f} GB"])
    return rows


def scale_targets(d: dict) -> str:
    by_size = {r["pictures"]: r for r in d["rows"]}
    if 2000 not in by_size or 20000 not in by_size:
        return ""
    small, big = by_size[2000]["one_click"], by_size[20000]["one_click"]
    times = big["seconds"] / small["seconds"]
    return (f"\nAt 20,000 pictures: peak memory of the training process {_mb(big['train_peak_mb'])} "
            f"(target at most 4 GB: {met(big['train_peak_mb'] <= SCALE_TARGET_MB)}); one click {times:.1f}x the "
            f"2,000-picture run's time (target at most {SCALE_TARGET_TIMES}x: {met(times <= SCALE_TARGET_TIMES)}).\n")


def scale_stamp(d: dict) -> str:
    """One line per command the rows were measured with (--append adds sizes measured another time)."""
    stamps: dict[tuple, list[int]] = {}
    for r in d["rows"]:
        m = r.get("measured", d)
        stamps.setdefault((m["date"], m["command"], m["commit"], m["load"]), []).append(r["pictures"])
    lines = [f"*{' and '.join(f'{n:,}' for n in sizes)} pictures: measured {day} with `{command}`, code of commit "
             f"{commit}, {load} at the start.*" for (day, command, commit, load), sizes in stamps.items()]
    return "\n".join(lines) + ("\n*Table written by `python bench/readme_tables.py` from `bench/results/`.*\n\n")


def render_scale(d: dict) -> str:
    header = ["pictures", "one click (per 1,000; x the smallest)", "first model", "epochs",
              "peak memory, training process", "peak memory, app process", "test share (near-copies)",
              "held-out originals", "data check", "Predict on the folder", "scan: first / again",
              "picture store on disk"]
    return scale_stamp(d) + table(header, scale_rows(d)) + scale_targets(d)


# ----------------------------------------------------------------------------- bench/time_left.py
def time_left_cell(a: dict) -> str:
    """What the page showed at one moment of one run against the truth."""
    if not a["shown"]:
        return f"estimating (truth {a['truth_s']:.0f} s)"
    if a["shown"] == "range":
        return (f"{a['soonest_s']:.0f}-{a['latest_s']:.0f} s, truth {a['truth_s']:.0f} s: "
                f"{'inside' if a['inside'] else '**outside**'}")
    err = a["latest_error"]
    return (f"{a['latest_s']:.0f} s, truth {a['truth_s']:.0f} s: {err:+.0%}"
            + ("" if a["within_target"] else " (**over 30%**)"))


def time_left_rows(d: dict) -> list[list[str]]:
    rows = []
    for r in d["runs"]:
        ended = f"{r['epochs_run']} epochs" if r["final"] == "RunFinished" else r["final"]
        rows.append([r["setting"], str(r["per_class"]), str(r["seed"]), f"{r['seconds']:.0f} s, {ended}",
                     *(time_left_cell(a) for a in r["at"])])
    return rows


def time_left_targets(d: dict) -> str:
    lines = []
    for setting, s in d.get("summary", {}).items():
        parts = []
        if s["ranges"]:
            parts.append(f"ranges with the truth inside: {s['inside']} of {s['ranges']} "
                         f"({met(s['inside'] == s['ranges'])})")
        if s["figures"]:
            parts.append(f"single figures within {d['target']:.0%}: {s['within_target']} of {s['figures']}, worst "
                         f"{s['worst_figure_error']:.0%} ({met(s['within_target'] == s['figures'])})")
        lines.append(f"- {setting}: " + "; ".join(parts or ["no figure shown"]))
    ran = f"{len(d['runs'])} of {d['planned']} planned runs ran within the time budget."
    return "\n" + "\n".join(lines) + "\n\n" + ran + "\n"


def render_time_left(d: dict) -> str:
    extra = (f" ({d['task']}; fixed: {d['fixed_epochs']} epochs; {d['load_before']} at the start; the time left the "
             "Train page showed at 25% and 50% of each run, against the truth)")
    header = ["setting", "pictures per class", "seed", "run", *(f"at {f:.0%} of the run" for f in d["fractions"])]
    return stamp(d, extra) + table(header, time_left_rows(d)) + time_left_targets(d)


# ----------------------------------------------------------------------------- bench/small_data.py
SMALL_WAYS = ("default", "head only", "fine-tuning")


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def small_data_cell(s: dict | None) -> str:
    """Test accuracy (balanced accuracy), then the validation figure the run chose its model on."""
    if s is None:
        return ""
    return f"{s['accuracy']:.3f} ({s['balanced_accuracy']:.3f}); val {s['val_accuracy']:.3f}"


def small_data_gap(cells: dict[str, dict]) -> str:
    """Issue 28's target: the default within 1 point of the better of head only and fine-tuning (test accuracy
    pooled over the seeds); within 1 point of the better is also never more than 2 behind either."""
    if not all(w in cells for w in SMALL_WAYS):
        return ""
    gap = 100 * (cells["default"]["accuracy"] - max(cells["head only"]["accuracy"], cells["fine-tuning"]["accuracy"]))
    return f"{gap:+.1f} pts: {met(gap >= -1)}"


def small_data_rows(d: dict) -> tuple[list[str], list[list[str]]]:
    """One row per task and size: the three ways side by side, then the unfamiliar check of each way."""
    cells = {(s["task"], s["size"], s["way"]): s for s in d["summary"]}
    rows = []
    for name in sorted({s["task"] for s in d["summary"]}):
        base = d["tasks"][name]["majority_baseline"]["accuracy"]
        for size in sorted({s["size"] for s in d["summary"] if s["task"] == name}):
            by_way = {w: cells[(name, size, w)] for w in SMALL_WAYS if (name, size, w) in cells}
            counts = [str(len(by_way[w]["seeds"])) if w in by_way else "0" for w in SMALL_WAYS]
            seeds = counts[0] if len(set(counts)) == 1 else " / ".join(counts)  # unequal: the gap is not paired
            flagged = " / ".join(_pct(by_way[w]["test_flagged"]) if w in by_way else "" for w in SMALL_WAYS)
            caught = " / ".join(_pct(min(by_way[w]["unfamiliar_flagged"].values(), default=None)) if w in by_way
                                else "" for w in SMALL_WAYS)
            rows.append([name, str(size), seeds, f"{base:.3f}"]
                        + [small_data_cell(by_way.get(w)) for w in SMALL_WAYS]
                        + [small_data_gap(by_way), flagged, caught])
    header = ["task", "per class", "seeds", "always the common class", *SMALL_WAYS, "default against the better other",
              "test pictures flagged unfamiliar", "unfamiliar pictures flagged (worst kind)"]
    return header, rows


def render_small_data(d: dict) -> str:
    commits = sorted({c for s in d["summary"] for c in s["commits"]})
    extra = (f", code of commit {', '.join(commits)} ({d['device']}; each cell: accuracy on the task's test "
             "pictures, which no run trained or chose anything on, pooled over the training seeds, with the "
             "balanced accuracy (mean of the per-class recalls) in brackets, then the engine's own validation "
             "accuracy of the model it kept, averaged over the seeds; the last two columns give default / head "
             "only / fine-tuning: the share of the test pictures (new pictures of the trained kind) the unfamiliar "
             "check flags, and the lowest share it flags of random noise, flat colours and another task's pictures)")
    tasks = "".join(f"- {name}: {t['description']}\n" for name, t in sorted(d["tasks"].items()))
    ways = "".join(f"- {w}: bench/one_click.py's setting `{setting}`\n" for w, setting in d["ways"].items())
    unfinished = " Stopped by its time budget: the grid is not complete." if d.get("stopped_by_budget") else ""
    return (f"*Measured {d['date']} with `{d['command']}`{extra}.{unfinished} Table written by "
            "`python bench/readme_tables.py` from `bench/results/`.*\n\n" + tasks + ways + "\n"
            + table(*small_data_rows(d)))


# ----------------------------------------------------------------------------- bench/serve_load.py
SERVE_WAYS = {"predict": "`predict` in-process, one picture per call", "serve-1": "`serve`, 1 replica",
              "serve-2": "`serve`, 2 replicas"}


def render_serve_load(d: dict) -> str:
    ways = d["ways"]
    served = [w for name, w in ways.items() if name != "predict"]
    extra = (f" ({d['backbone']}, {d['pictures']} real demo pictures sent as JPEG bytes, {d['cpu_cores']} cores, "
             f"load average {d['load_average_1min']} at the end; the server's {served[0]['clients']} client threads "
             f"on the same machine; served answers the same as in-process on "
             + ", ".join(f"{w['same_answers']} of {w['compared']}" for w in served) + " pictures)")
    rows = []
    for name, w in ways.items():
        ratio = "1" if name == "predict" else f"{w['requests_per_s_vs_predict']:.2f}"
        rows.append([SERVE_WAYS.get(name, name), str(w["requests_done"]), f"{w['requests_per_s']:.1f}", ratio,
                     f"{w['p50_ms']:.0f}", f"{w['p95_ms']:.0f}",
                     f"{w['start_seconds']:.0f} s" if "start_seconds" in w else "-"])
    return stamp(d, extra) + table(["answered by", "requests", "requests/s", "x predict", "p50 ms", "p95 ms",
                                    "start-up"], rows)



# ----------------------------------------------------------------------------- bench/redraw.py
def render_redraw(d: dict) -> str:
    extra = (f" ({d['cpu_cores']} cores; each run a copy of one real run of {d['events_per_run']} events; "
             "before: the reads as they were, called side by side in the same process; median of the redraws)")
    rows = [[f"{r['n']:,} runs (Runs, Evaluate, Predict pages)", f"{r['before']['ms']:.1f}",
             f"{r['after']['ms']:.1f}", f"{r['ratio']:.1f} ({r['summaries_only']['ratio']:.0f} for the summaries)",
             f"{r['before']['parses_per_redraw']:.0f} -> {r['after']['parses_per_redraw']:.0f}", "-"]
            for r in d["runs"]]
    rows += [[f"{r['files']:,} pictures in 4 classes (Data and Train pages)", f"{r['before']['ms']:.1f}",
              f"{r['after']['ms']:.2f}", f"{r['ratio']:.0f}", "-",
              f"{r['before']['walks_per_redraw']:.0f} -> {r['after']['walks_per_redraw']:.0f}"] for r in d["data"]]
    return stamp(d, extra) + table(["one redraw reads", "before ms", "after ms", "x faster",
                                    "event logs parsed", "folders walked"], rows)

# ----------------------------------------------------------------------------- bench/export_formats.py
def _agreement(part: dict | None) -> str:
    if not part:
        return "-"
    return (f"{part['top1_agreement']:.1%} of {part['images']} (largest probability gap "
            f"{part['max_probability_difference']:.1e})")


def render_export_formats(d: dict) -> str:
    extra = (f" ({d['device']}; one run per task with the one-click settings at {d['image_size']} px; each file run "
             "by ai-edge-litert from the bundle and compared with the app's own predictions: the same top class, "
             "on the run's validation pictures (the card's check) and on the task's test pictures (never trained "
             f"or chosen on); int8 passes at {d['int8_top1_at_least']:.0%} top-class agreement)")
    rows = []
    for t in d["tasks"]:
        for kind in ("float", "int8"):
            e = t[kind]
            size = f"{e['bytes'] / 1e6:.1f} MB" if e.get("bytes") else "-"
            made = (f"{e['seconds']:.0f} s, " + ("passed" if e["passed"] else "**not passed**")
                    if e.get("bytes") else str(e.get("note")))
            rows.append([f"{t['task']}, {t['per_class']} per class (whole export {t['export_seconds']} s)",
                         f"LiteRT {kind}", size,
                         _agreement(e.get("validation")), _agreement(e.get("test")), made])
        rows.append([f"{t['task']}, {t['per_class']} per class (whole export {t['export_seconds']} s)",
                     "Core ML (not run: macOS only)",
                     f"{t['coreml']['bytes'] / 1e6:.1f} MB" if t["coreml"].get("bytes") else "-", "-", "-",
                     f"{t['coreml']['seconds']:.0f} s" if t["coreml"].get("seconds") else str(t["coreml"].get("note"))])
    return stamp(d, extra) + table(["task", "file", "size", "same top class as the app: validation",
                                    "same top class as the app: test", "conversion"], rows)


RENDERERS: list[tuple[str, Callable[[dict], bool], Callable[[dict], str]]] = [
    ("scale", lambda d: d.get("kind") == "scale", render_scale),
    ("benchmark", lambda d: "throughput" in d, render_benchmark),
    ("defaults", lambda d: "throughput" in d, render_defaults),
    ("defaults-older", lambda d: d.get("kind") == "older-defaults", render_older_defaults),
    ("domain-shift", lambda d: "shifts" in d, render_domain_shift),
    ("one-click", lambda d: d.get("kind") == "one-click", render_one_click),
    ("choose", lambda d: d.get("kind") == "choose" and not _from_pool(d), render_choose),
    ("choose-pool", lambda d: d.get("kind") == "choose" and _from_pool(d), render_choose_pool),
    ("live-fps", lambda d: d.get("kind") == "live-fps", render_live_fps),
    ("class-load", lambda d: d.get("kind") == "class-load", render_class_load),
    ("time-left", lambda d: d.get("kind") == "time-left", render_time_left),
    ("small-data", lambda d: d.get("kind") == "small-data", render_small_data),
    ("redraw", lambda d: d.get("kind") == "redraw", render_redraw),
    ("serve-load", lambda d: d.get("kind") == "serve-load", render_serve_load),
    ("export-formats", lambda d: d.get("kind") == "export-formats", render_export_formats),
]


# ----------------------------------------------------------------------------- the README
def render(paths: list[Path]) -> dict[str, str]:
    """{table name: its text between the markers}, from every JSON file given."""
    tables: dict[str, str] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for name, applies, fn in RENDERERS:
            if applies(data):
                if name in tables:
                    raise SystemExit(f"two JSON files give the table {name!r}: keep one in bench/results/")
                tables[name] = fn(data)
    return tables


def marker_tables(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in MARKER.finditer(text)}


def rewrite(text: str, tables: dict[str, str]) -> str:
    missing = set(tables) - set(marker_tables(text))
    if missing:
        raise SystemExit(f"README has no markers for {sorted(missing)}: add <!-- table:NAME --> <!-- /table:NAME -->")
    return MARKER.sub(lambda m: f"<!-- table:{m['name']} -->\n{tables.get(m['name'], m['body'])}"
                                f"<!-- /table:{m['name']} -->", text)


def committed_results() -> list[Path]:
    return sorted(RESULTS.glob("*.json"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="*", type=Path, help="benchmark JSON files (default: bench/results/*.json)")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a table differs")
    a = ap.parse_args(argv)
    text = a.readme.read_text()
    new = rewrite(text, render(a.json or committed_results()))
    if a.check:
        print("README tables match" if new == text else "README tables differ from the JSON: run bench/readme_tables.py")
        return int(new != text)
    a.readme.write_text(new)
    print(f"rewrote {len(marker_tables(new))} tables in {a.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
