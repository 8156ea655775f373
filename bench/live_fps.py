"""How many camera frames a second the Live page can classify, against classifying each frame as Predict does.

    python bench/live_fps.py [--run RUN_FOLDER] [--frame 640x480] [--rounds 5] [--per-round 30]

Without --run, trains a tiny real run first (mobilenet_v2, frozen, 1 epoch, 60 demo pictures per class,
224 px). The frames are real pictures as a 640x480 camera filming them sees them (tests/live_frames.py):
demo textile pictures and scikit-image's photos. Four ways of classifying one frame are timed in turns
(so a busy machine slows each the same), each the median of its rounds:
  predict   predict.answer on the frame as a PIL picture, with torch's default threads (the Predict page);
  predict-1 the same with live_threads(), to tell the thread count's share from the rest;
  live      live.LiveClassifier.classify (what the Live page runs), with live_threads();
  live-all  the same with torch's default threads, to show what the thread count does here.
Also checks that live and predict give the same answers. Prints a table, then a JSON line with "fps"
(the live path), and writes it to bench/results/live_fps.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version  # noqa: E402  (bench/ is this script's own folder)

from tests.live_frames import camera_frame  # noqa: E402 - the frames the tests film too
from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.data.datasets import demo_dataset_path  # noqa: E402
from transfer_core.inference.live import LiveClassifier, limit_this_thread  # noqa: E402
from transfer_core.inference.predict import answer, load_model  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "live_fps.json"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def frames(width: int, height: int, per_class: int = 8) -> list[np.ndarray]:
    root = demo_dataset_path()
    pictures = [Image.open(f) for c in sorted(p.name for p in root.iterdir() if p.is_dir())
                for f in sorted((root / c).glob("*.jpg"))[-per_class:]]
    pictures += [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
    return [camera_frame(p, width, height) for p in pictures]


def tiny_run(runs_dir: Path) -> Path:
    config = TrainConfig(data=str(demo_dataset_path()), freeze="all", epochs=1, max_images=60)
    return train(config, runs_dir=runs_dir).run_dir


def frames_per_second(classify, shots: list[np.ndarray], n: int, start: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        classify(shots[(start + i) % len(shots)])
    return n / (time.perf_counter() - t)


def measure(run_dir: Path, width: int, height: int, rounds: int, per_round: int) -> dict:
    model = load_model(run_dir)
    shots = frames(width, height)
    default = torch.get_num_threads()
    live, live_all = LiveClassifier(model), LiveClassifier(model, threads=default)

    def plain(frame, threads=default):  # the Predict page's script thread has torch's default
        limit_this_thread(threads)
        return answer(model, [Image.fromarray(frame)])[0]

    paths = {"predict": plain, "predict-1": lambda f: plain(f, live.threads),
             "live": lambda f: live.classify(f).answer, "live-all": lambda f: live_all.classify(f).answer}
    agree = [(live.classify(f).answer, plain(f)) for f in shots]  # also the warm-up of both
    for classify in paths.values():
        classify(shots[0])
    rates = {name: [] for name in paths}
    for r in range(rounds):
        for name, classify in paths.items():
            rates[name].append(frames_per_second(classify, shots, per_round, r * per_round))
    fps = {name: statistics.median(v) for name, v in rates.items()}
    desc = model.run.model_description()
    return {"kind": "live-fps", "date": time.strftime("%Y-%m-%d"), "command": "python bench/live_fps.py",
            "commit": code_version(),
            "backbone": desc.backbone, "input_px": model.prep.crop, "frame": f"{width}x{height}",
            "frames": len(shots), "rounds": rounds, "frames_per_round": per_round,
            "threads": {"live": live.threads, "torch_default": default},
            "fps": round(fps["live"], 2), "ms_per_frame": round(1000 / fps["live"], 1),
            "fps_by_path": {k: round(v, 2) for k, v in fps.items()},
            "fps_rounds": {k: [round(x, 2) for x in v] for k, v in rates.items()},
            "same_labels": sum(a.label == b.label for a, b in agree), "compared": len(agree),
            "max_probability_difference": max(abs(a.confidence - b.confidence) for a, b in agree),
            "cpu_cores": len(os.sched_getaffinity(0)), "load_average_1min": round(os.getloadavg()[0], 2),
            "torch": torch.__version__}


def table(result: dict) -> str:
    words = {"predict": "predict.answer per frame (Predict page)", "predict-1": "predict.answer, live threads",
             "live": "LiveClassifier (Live page)",
             "live-all": "LiveClassifier, torch's default threads"}
    threads = {"predict": result["threads"]["torch_default"], "predict-1": result["threads"]["live"],
               "live": result["threads"]["live"],
               "live-all": result["threads"]["torch_default"]}
    lines = [f"{result['backbone']} at {result['input_px']} px, {result['frame']} frames, "
             f"{result['cpu_cores']} cores (load {result['load_average_1min']})",
             f"{'path':<44}{'threads':>8}{'frames/s':>10}{'ms/frame':>10}"]
    for name, fps in result["fps_by_path"].items():
        lines.append(f"{words[name]:<44}{threads[name]:>8}{fps:>10.1f}{1000 / fps:>10.1f}")
    lines.append(f"same answer as predict.answer on {result['same_labels']} of {result['compared']} frames; "
                 f"largest probability difference {result['max_probability_difference']:.1e}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a trained run folder (default: train a tiny one first)")
    parser.add_argument("--frame", default="640x480", help="camera frame size, WIDTHxHEIGHT")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=30)
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args()
    width, height = (int(v) for v in args.frame.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run) if args.run else tiny_run(Path(tmp))
        result = measure(run_dir, width, height, args.rounds, args.per_round)
    result["run"] = args.run or "tiny run trained by the bench (freeze all, 1 epoch, 60 pictures per class)"
    print(table(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
