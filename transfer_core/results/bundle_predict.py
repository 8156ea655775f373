#!/usr/bin/env python3
"""Classify images with this exported model, outside Transfer Studio.

    python predict.py IMAGE [IMAGE...] [--top-k 3] [--json] [--runtime auto|onnx|torch]

Needs either onnxruntime, numpy and pillow (model.onnx), or torch and pillow (model.torchscript.pt);
"auto" uses ONNX when onnxruntime is installed, else TorchScript. Prints one line per image that starts
with the most likely class; when the picture does not look like the training pictures (the model's
"novelty" output is above model_card.json's novelty threshold), the line ends with UNFAMILIAR and --json
says "unfamiliar": true: do not trust the class then. The preprocessing below is the app's own (resize
the shorter side, cut the centre, normalise), re-written here so this folder needs nothing from Transfer
Studio; the export checked that both give the same answers and verdicts (see model_card.json, "parity").
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST}


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


def centre_crop(img: Image.Image, prep: dict) -> Image.Image:
    """Shorter side to prep["resize"], then the centred prep["crop"] square (the app's eval transform)."""
    side, crop = prep["resize"], prep["crop"]
    w, h = img.size
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    img = img.resize((nw, nh), _RESAMPLE[prep["interpolation"]])
    off = (side - crop) // 2
    left, top = (nw - side) // 2 + off, (nh - side) // 2 + off
    return img.crop((left, top, left + crop, top + crop))


def as_numpy(paths, prep: dict):
    import numpy as np

    mean = np.asarray(prep["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(prep["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    batch = np.stack([np.asarray(centre_crop(load_rgb(p), prep), dtype=np.uint8) for p in paths])
    return (batch.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0) - mean) / std


def as_torch(paths, prep: dict):
    import torch

    mean = torch.tensor(prep["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(prep["std"], dtype=torch.float32).view(1, 3, 1, 1)
    crops = [centre_crop(load_rgb(p), prep) for p in paths]
    batch = torch.stack([torch.frombuffer(bytearray(c.tobytes()), dtype=torch.uint8).view(c.height, c.width, 3)
                         for c in crops])
    return (batch.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


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
    """(logits, novelty score or None) per image; the score is None for models exported without the check."""
    card = load_card(folder)
    runtime = pick_runtime(runtime, folder)
    if runtime == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        run = lambda chunk: session.run(None, {"images": as_numpy(chunk, card["preprocessing"])})  # noqa: E731
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


def logits(paths, runtime: str = "auto", folder: Path = HERE, batch_size: int = 16) -> list[list[float]]:
    return [row for row, _ in outputs(paths, runtime, folder, batch_size)]


def verdict(score: float | None, card: dict) -> dict:
    """Does the picture look like the training pictures? "unfamiliar": None when the model has no check."""
    check = card.get("novelty")
    if score is None or not check:
        return {"unfamiliar": None, "novelty": None}
    return {"unfamiliar": score > check["threshold"], "novelty": score}


def verdicts(paths, runtime: str = "auto", folder: Path = HERE) -> list[dict]:
    card = load_card(folder)
    return [verdict(score, card) for _, score in outputs(paths, runtime, folder)]


def softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    top = max(row)
    exps = [math.exp((v - top) / temperature) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def probabilities(paths, runtime: str = "auto", folder: Path = HERE, temperature: float | None = None):
    """Class probabilities per image; temperature None: the calibrated one from the model card (or 1)."""
    t = temperature if temperature is not None else load_card(folder).get("temperature") or 1.0
    return [softmax(row, t) for row in logits(paths, runtime, folder)]


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
    t = card.get("temperature") or 1.0
    for path, (row, score) in zip(args.images, outputs(args.images, args.runtime)):
        probs, check = softmax(row, t), verdict(score, card)
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
