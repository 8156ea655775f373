"""A trained run as one .zip: the files `predict` needs (weights, classes, preprocessing, model, config).

Unzipped anywhere, the folder is a run folder again: `python -m transfer_core predict FOLDER image.jpg`.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from transfer_core.core.i18n import _
from transfer_core.data.datarefs import label, shown_config
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder

BUNDLE_FILES = (runfiles.BEST, runfiles.CLASSES, runfiles.PREPROCESSING, runfiles.MODEL, runfiles.CONFIG,
                runfiles.DATASET, runfiles.VALIDATION, runfiles.TEST, runfiles.CALIBRATION, runfiles.NOVELTY_WEIGHTS,
                runfiles.NOVELTY, runfiles.EVENTS)
# Files that may name the data's folder (a command-line run keeps the one it was given): labels instead.
_LABELLED = {runfiles.CONFIG: lambda run: shown_config(run.config),
             runfiles.DATASET: lambda run: _root_as_label(run.read_json(runfiles.DATASET)),
             runfiles.VALIDATION: lambda run: _root_as_label(run.read_json(runfiles.VALIDATION)),
             runfiles.TEST: lambda run: _root_as_label(run.read_json(runfiles.TEST))}
_REQUIRED = (runfiles.BEST, runfiles.CLASSES, runfiles.PREPROCESSING, runfiles.MODEL, runfiles.CONFIG)


_NAMING_PICTURES = (runfiles.VALIDATION, runfiles.TEST)  # each held-out picture's file name and answers


def model_bundle(run_dir: str | Path, with_pictures: bool = True) -> bytes:
    """The zip's bytes (for a download button); FileNotFoundError when the run has no model yet.
    `with_pictures` False (someone the owner shares the run with, not its pictures): nothing that names a
    picture goes in; `predict` needs none of it."""
    run = RunFolder(run_dir)
    missing = [name for name in _REQUIRED if not (run.path / name).is_file()]
    if missing:
        raise FileNotFoundError(_("Run {id} has no trained model to download yet (missing {value}).").format(
            id=run.id, value=', '.join(missing)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in BUNDLE_FILES:
            if not with_pictures and name in _NAMING_PICTURES:
                continue
            if name in _LABELLED and (run.path / name).is_file():
                zf.writestr(f"{run.id}/{name}", json.dumps(_LABELLED[name](run), indent=2, ensure_ascii=False))
            elif (run.path / name).is_file():
                zf.write(run.path / name, f"{run.id}/{name}")
    return buffer.getvalue()


def _root_as_label(record: dict) -> dict:
    return {**{k: v for k, v in record.items() if k != "paths"}, "root": label(record.get("root"))}
