"""LiteRT float and int8 files against the app, on real tasks: agreement, probability gaps, sizes, export time.

    python bench/export_formats.py [--tasks textile-2 brain-mri] [--per-class 50] [--image-size 128]
                                   [--cache /tmp/transfer-bench-tasks] [--out bench/results/export_formats.json]

For each task (bench/tasks.py), one run trains on its train-<per-class> folder with the app's one-click
settings (at --image-size), then export_run writes the whole bundle (ONNX, TorchScript, web page, LiteRT
float and int8, Core ML) and times it. The card's figures are over the run's validation pictures; the bench
adds the task's test pictures (never trained or chosen on), each run by ai-edge-litert from the bundle's
files and compared with the engine's predict_probs: share of the same top class, largest probability gap.
Prints a table and writes the JSON that bench/readme_tables.py renders as the README table "export-formats".
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version, load  # noqa: E402  (bench/ is this script's own folder)
from tasks import DEFAULT_CACHE, build_task  # noqa: E402

from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.core.device import describe_device  # noqa: E402
from transfer_core.inference.predict import load_model, predict_probs  # noqa: E402
from transfer_core.results import export_devices, export_litert  # noqa: E402
from transfer_core.results.export import compare, export_run  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

FILES = {"float": export_devices.FLOAT_FILE, "int8": export_devices.INT8_FILE}


def measure_task(name: str, per_class: int, image_size: int, cache: Path, work: Path) -> dict:
    task = build_task(name, cache)
    t0 = time.time()
    run_dir = train(TrainConfig(data=str(task.train_dir(per_class)), image_size=image_size, seed=0),
                    runs_dir=work / "runs").run_dir
    train_seconds = time.time() - t0
    t0 = time.time()
    card = export_run(run_dir, work / f"bundle-{name}").card
    row = {"task": name, "description": task.description, "per_class": per_class, "classes": len(task.classes),
           "train_seconds": round(train_seconds), "export_seconds": round(time.time() - t0),
           "onnx_bytes": (work / f"bundle-{name}" / "model.onnx").stat().st_size,
           "coreml": {k: card["coreml"].get(k) for k in ("bytes", "seconds", "checked", "note")}}
    model = load_model(run_dir, device="cpu")
    tests = [str(p) for p, _ in task.test_pictures()]
    engine = predict_probs(model, tests)
    pixels = export_devices.pixels(tests, model.prep)
    for kind, file in FILES.items():
        entry = card["litert"][kind]
        row[kind] = {k: entry.get(k) for k in ("bytes", "seconds", "passed", "runtime", "calibration_pictures",
                                                "note")}
        row[kind]["validation"] = entry.get("parity")
        if "parity" in entry:
            probs, _ = export_litert.run(work / f"bundle-{name}" / file, pixels)
            row[kind]["test"] = compare(engine, torch.from_numpy(probs))
            row[kind]["test"]["app_test_accuracy"] = _accuracy(engine.numpy(), task, tests)
            row[kind]["test"]["file_test_accuracy"] = _accuracy(probs, task, tests)
    return row


def _accuracy(probs: np.ndarray, task, tests: list[str]) -> float:
    truth = [task.classes.index(Path(p).parent.name) for p in tests]
    return round(float((probs.argmax(1) == np.array(truth)).mean()), 4)


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        for kind in FILES:
            e, t = r[kind], r[kind].get("test") or {}
            print(f"{r['task']:<10} {kind:<5} {e.get('bytes') or 0:>10,} B  test agree {t.get('top1_agreement')}"
                  f"  gap {t.get('max_probability_difference')}  conversion {e.get('seconds')} s"
                  f"  {e.get('note') or ''}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["textile-2", "brain-mri"])
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--cache", type=Path, default=Path(DEFAULT_CACHE))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "export_formats.json")
    a = ap.parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else argv
    out = {"kind": "export-formats", "command": shlex.join(["python", "bench/export_formats.py", *argv_used]),
           "date": time.strftime("%Y-%m-%d"), "commit": code_version(), "device": describe_device(),
           "image_size": a.image_size, "int8_top1_at_least": export_devices.INT8_TOP1, "load_start": load(),
           "tasks": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.tasks:
            out["tasks"].append(measure_task(name, a.per_class, a.image_size, a.cache, Path(tmp) / name))
            print_rows(out["tasks"][-1:])
            a.out.write_text(json.dumps(out, indent=1))
    out["load_end"] = load()
    a.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
