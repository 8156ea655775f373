"""A trained run as one .zip: the files `predict` needs (weights, classes, preprocessing, model, config).

Unzipped anywhere, the folder is a run folder again: `python -m transfer_core predict FOLDER image.jpg`.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from .runs import RunFolder

BUNDLE_FILES = ("best.pt", "classes.json", "preprocessing.json", "model.json", "config.json", "dataset.json",
                "validation.json", "calibration.json", "events.jsonl")
_REQUIRED = ("best.pt", "classes.json", "preprocessing.json", "model.json", "config.json")


def model_bundle(run_dir: str | Path) -> bytes:
    """The zip's bytes (for a download button); FileNotFoundError when the run has no model yet."""
    run = RunFolder(run_dir)
    missing = [name for name in _REQUIRED if not (run.path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Run {run.id} has no trained model to download yet (missing {', '.join(missing)}).")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in BUNDLE_FILES:
            if (run.path / name).is_file():
                zf.write(run.path / name, f"{run.id}/{name}")
    return buffer.getvalue()
