"""A Core ML file of an exported model, for iPhone, iPad and the Mac, converted here on Linux with coremltools.

    convert(wrapper, example, out_path) -> info    model.mlpackage (an ML program, float32 throughout)
    load_spec(path)                                  its description, readable on any system

Core ML runs only on Apple's systems, so its answers cannot be checked on this server: the card says so
until they are. Its input is the same pixels as every other file's, as int32 (Core ML takes no uint8 input;
the values stay 0-255).
"""
from __future__ import annotations

import shutil
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import nn

from transfer_core.results.exported_model import INPUT_NAME, OUTPUT_NAMES

FILE = "model.mlpackage"


def versions() -> dict:
    found = {}
    for name in ("coremltools", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def convert(wrapper: nn.Module, example: torch.Tensor, out_path: str | Path, *, with_novelty: bool) -> dict:
    """Write `out_path` (a .mlpackage folder) from `wrapper` traced with `example` (its batch size is kept)."""
    import coremltools as ct
    import numpy as np

    t0 = time.time()
    with torch.no_grad():
        traced = torch.jit.trace(wrapper.eval(), example, check_trace=False)
    names = OUTPUT_NAMES if with_novelty else OUTPUT_NAMES[:1]
    # float32: float16 (coremltools' default) moves probabilities by ~1e-3, beyond the other formats' tolerance.
    model = ct.convert(traced, inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(example.shape), dtype=np.int32)],
                       outputs=[ct.TensorType(name=n) for n in names], convert_to="mlprogram",
                       compute_precision=ct.precision.FLOAT32, minimum_deployment_target=ct.target.iOS16)
    model.short_description = "Transfer Studio classifier: RGB pixels in, calibrated probabilities out"
    model.save(str(out_path))
    return {"file": Path(out_path).name, "bytes": _size(Path(out_path)), "seconds": round(time.time() - t0, 1),
            "input": {"name": INPUT_NAME, "shape": list(example.shape), "dtype": "int32 (0-255)"},
            "outputs": list(names), "versions": versions()}


def load_spec(path: str | Path):
    """The file's protobuf description (inputs, outputs, metadata): loads on Linux, unlike a prediction."""
    import coremltools as ct

    return ct.utils.load_spec(str(path))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def remove(path: str | Path) -> None:
    """Remove a half-written package after a failed conversion."""
    shutil.rmtree(path, ignore_errors=True)
