#!/usr/bin/env python3
"""Classify images with this exported model, outside Transfer Studio.

    python predict.py IMAGE [IMAGE...] [--top-k 3] [--json] [--runtime auto|onnx|torch]

Needs either onnxruntime, numpy and pillow (model.onnx), or torch, numpy and pillow (model.torchscript.pt);
"auto" uses ONNX when onnxruntime is installed, else TorchScript. Prints one line per image that starts
with the most likely class; when the picture does not look like the training pictures (the model's
"novelty" output is above model_card.json's novelty threshold), the line ends with UNFAMILIAR and --json
says "unfamiliar": true: do not trust the class then.

The model files take the picture's pixels (uint8, N x H x W x 3, RGB, the size model_card.json's "input"
names) and return calibrated probabilities: normalising and the temperature are inside them. This script
only reads and resizes each picture, with resize_rule.py beside it, the app's own rule (the web page's
resize_rule.js is a port of it); the export checked that both give the same answers and verdicts (see
model_card.json, "parity").
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent


def _load_resize_rule():
    """resize_rule.py from beside this file (in the bundle), or from Transfer Studio's source tree (where
    this file lives before export). Loaded by path: `python -I` does not put this folder on sys.path."""
    for path in (HERE / "resize_rule.py", HERE.parent / "models" / "resize_rule.py"):
        if path.is_file():
            spec = importlib.util.spec_from_file_location(f"resize_rule_{abs(hash(str(path)))}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f"resize_rule.py is missing beside {__file__}")


resize_rule = _load_resize_rule()


def load_card(folder: Path = HERE) -> dict:
    return json.loads((folder / "model_card.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- images
def load_rgb(path: str | Path) -> Image.Image:
    """8-bit RGB, upright by its EXIF tag, transparent parts on white: as the app reads pictures."""
    with Image.open(path) as im:
        im.load()
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # broken EXIF: the pixels are still fine
            pass
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            im = im.point(lambda v: v * (1 / 256)).convert("L")  # 16-bit greyscale to 8 bits, not clipped
        if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
            rgba = im.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        return im.convert("RGB")


def as_numpy(paths, prep: dict):
    """The model's input: N x crop x crop x 3 uint8 pixels, each picture resized by the app's rule."""
    import numpy as np

    return np.stack([resize_rule.model_input(load_rgb(p), prep["resize"], prep["crop"], prep["interpolation"])
                     for p in paths])


def as_torch(paths, prep: dict):
    import torch

    return torch.from_numpy(as_numpy(paths, prep))


# ---------------------------------------------------------------------------------------------- models
def pick_runtime(requested: str = "auto", folder: Path = HERE) -> str:
    if requested != "auto":
        return requested
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
        if (folder / "model.onnx").is_file():
            return "onnx"
    except ImportError:
        pass
    return "torch"


def outputs(paths, runtime: str = "auto", folder: Path = HERE, batch_size: int = 16) -> list[tuple[list, float | None]]:
    """(calibrated probabilities, novelty score or None) per image; None for models exported without the check."""
    card = load_card(folder)
    runtime = pick_runtime(runtime, folder)
    name = card["input"]["name"]
    if runtime == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        run = lambda chunk: session.run(None, {name: as_numpy(chunk, card["preprocessing"])})  # noqa: E731
    else:
        import torch

        model = torch.jit.load(str(folder / "model.torchscript.pt"), map_location="cpu").eval()

        def run(chunk):
            with torch.no_grad():
                out = model(as_torch(chunk, card["preprocessing"]))
            return list(out) if isinstance(out, (tuple, list)) else [out]
    paths, rows = list(paths), []
    for i in range(0, len(paths), batch_size):
        out = run(paths[i:i + batch_size])
        scores = out[1].tolist() if len(out) > 1 else [None] * len(out[0])
        rows += list(zip(out[0].tolist(), scores))
    return rows


def verdict(score: float | None, card: dict) -> dict:
    """Does the picture look like the training pictures? "unfamiliar": None when the model has no check."""
    check = card.get("novelty")
    if score is None or not check:
        return {"unfamiliar": None, "novelty": None}
    return {"unfamiliar": score > check["threshold"], "novelty": score}


def verdicts(paths, runtime: str = "auto", folder: Path = HERE) -> list[dict]:
    card = load_card(folder)
    return [verdict(score, card) for _, score in outputs(paths, runtime, folder)]


def probabilities(paths, runtime: str = "auto", folder: Path = HERE) -> list[list[float]]:
    """Class probabilities per image, calibrated (the run's temperature is inside the model)."""
    return [row for row, _ in outputs(paths, runtime, folder)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Classify images with this exported model.")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--top-k", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runtime", choices=["auto", "onnx", "torch"], default="auto")
    args = parser.parse_args(argv)
    card = load_card()
    classes = card["classes"]
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    for path, (probs, score) in zip(args.images, outputs(args.images, args.runtime)):
        check = verdict(score, card)
        ranked = sorted(range(len(classes)), key=lambda i: -probs[i])[:max(1, args.top_k)]
        if args.json:
            print(json.dumps({"class": classes[ranked[0]], "image": path, **check,
                              "top": [{"class": classes[i], "probability": round(probs[i], 6)} for i in ranked]}))
        else:
            note = ["UNFAMILIAR: does not look like the training pictures"] if check["unfamiliar"] else []
            print("\t".join([classes[ranked[0]], f"{probs[ranked[0]]:.4f}", path]
                            + [f"{classes[i]} {probs[i]:.4f}" for i in ranked[1:]] + note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
