"""The bundle's web/ folder: the exported model running in a browser, with no server beyond a static one.

    web/index.html, app.js       the page: pictures from a file or the camera, "not sure" and "unfamiliar" as
                                 in the app, English and Chinese (a tiny dictionary in app.js)
        resize_rule.js           resize_rule.py ported (Pillow's resampling), so the page crops as the app does
        model.onnx, model_card.json
        ort/                     onnxruntime-web's WebAssembly build (the npm package, vendored: no CDN)
        selftest/                a few held-out pictures and the engine's answers: index.html?selftest=1
                                 runs them in the page and writes "parity: N of N agree"

onnxruntime-web comes from the npm registry once per machine (the tarball's sha512 checked) into the cache
folder, and is copied into each bundle from there. Only its plain WebAssembly build is taken (the WebGPU,
WebGL and JSEP builds would add ~50 MB). Its loader is renamed .mjs -> .js: some static servers (Python's
before 3.12 on some systems) send .mjs with a MIME type browsers refuse for modules.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from transfer_core.data.picturestore import cache_root

ORT_WEB_VERSION = "1.31.1"
ORT_WEB_URL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
ORT_WEB_SHA512 = "5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
# package file -> name in web/ort/
ORT_FILES = {"dist/ort.wasm.min.js": "ort.wasm.min.js", "dist/ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.js",
             "dist/ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
             "package.json": "package.json"}  # its version and licence (MIT)
PAGE = Path(__file__).with_name("web")
SELFTEST_PICTURES = 8  # enough to see the page agree; few enough to keep the bundle small
NOT_SURE_BELOW = 0.5  # the page's starting "not sure" threshold (a slider there, as in the app)


class WebRuntimeError(RuntimeError):
    """onnxruntime-web could not be fetched; the message says why."""


def ort_web(cache: Path | None = None) -> Path:
    """The folder holding onnxruntime-web's files (fetched from the npm registry the first time)."""
    folder = (cache or cache_root()) / f"onnxruntime-web-{ORT_WEB_VERSION}"
    if all((folder / name).is_file() for name in ORT_FILES.values()):
        return folder
    try:
        with urllib.request.urlopen(ORT_WEB_URL, timeout=120) as response:
            data = response.read()
    except OSError as exc:
        raise WebRuntimeError(f"could not fetch onnxruntime-web {ORT_WEB_VERSION} from the npm registry: {exc}")
    if base64.b64encode(hashlib.sha512(data).digest()).decode() != ORT_WEB_SHA512:
        raise WebRuntimeError(f"onnxruntime-web {ORT_WEB_VERSION} from the npm registry is not the expected file")
    part = folder.with_name(f"{folder.name}.part{os.getpid()}")  # one per process: two exports may fetch at once
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, name in ORT_FILES.items():
            (part / name).write_bytes(tar.extractfile(f"package/{member}").read())
    try:
        part.rename(folder)  # whole or absent: a second process never sees half a folder
    except OSError:  # another process put the same files there first
        shutil.rmtree(part, ignore_errors=True)
    return folder


def write_web(bundle: Path, model, images: Sequence[str], threshold_tolerance: float,
              max_probability_difference: float) -> dict:
    """web/ inside `bundle` (model.onnx and model_card.json must be there already); what the card says of it."""
    web = bundle / "web"
    try:
        runtime = ort_web()
    except WebRuntimeError as exc:  # offline before the first export: the rest of the bundle still works
        return {"folder": None, "note": str(exc)}
    shutil.copytree(PAGE, web, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(runtime, web / "ort")
    shutil.copy(bundle / "model.onnx", web / "model.onnx")
    _selftest(web / "selftest", model, images[:SELFTEST_PICTURES], threshold_tolerance, max_probability_difference)
    size = sum(p.stat().st_size for p in web.rglob("*") if p.is_file())
    return {"folder": "web/", "page": "web/index.html", "runtime": f"onnxruntime-web {ORT_WEB_VERSION} (WebAssembly)",
            "size_mb": round(size / 1e6, 1), "selftest": "web/index.html?selftest=1",
            "selftest_pictures": min(len(images), SELFTEST_PICTURES),
            "how": "serve the web folder with any static file server (python -m http.server) and open index.html"}


def _selftest(folder: Path, model, images: Sequence[str], tolerance: float, max_diff: float) -> None:
    """Copies of a few held-out pictures and the engine's answers to them, for index.html?selftest=1."""
    from transfer_core.inference.predict import familiarity, predict_probs
    from transfer_core.runstore.runs import write_json

    folder.mkdir()
    names = [f"{i:02d}{Path(p).suffix.lower()}" for i, p in enumerate(images)]
    for path, name in zip(images, names):
        shutil.copy(path, folder / name)
    if getattr(model, "novelty", None) is not None and images:  # random noise: the unfamiliar verdict, seen once
        noise = torch.randint(0, 256, (120, 160, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        Image.fromarray(noise.numpy()).save(folder / "noise.png")
        images, names = [*images, str(folder / "noise.png")], [*names, "noise.png"]
    probs = predict_probs(model, images) if images else torch.zeros(0)
    detector = getattr(model, "novelty", None)
    verdicts = familiarity(model, images) if detector is not None and images else [None] * len(images)
    pictures = {name: {"top": model.classes[int(row.argmax())], "probabilities": [float(v) for v in row],
                       "novelty": None if v is None else float(v.score),
                       "unfamiliar": None if v is None else bool(v.unfamiliar)}
                for name, row, v in zip(names, probs, verdicts)}
    write_json(folder / "expected.json", {
        "pictures": pictures, "max_probability_difference": max_diff, "novelty_tolerance": tolerance,
        "novelty_threshold": detector.threshold if detector is not None else None})
