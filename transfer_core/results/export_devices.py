"""The bundle's files for devices: LiteRT float and int8 (export_litert.py), Core ML (export_coreml.py).

    device_exports(wrapper, model, run, out, images, compare) -> {"litert": ..., "coreml": ...}  card entries
    device_markdown(card) -> str                                                              MODEL_CARD.md lines

Each LiteRT file is run by ai-edge-litert over the held-out pictures and compared with the engine (`compare`,
the same comparison as onnxruntime's and TorchScript's). A converter that fails or is missing becomes a
sentence on the card, never a failed export: the ONNX and TorchScript files are still there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.data.datarefs import resolved_config
from transfer_core.data.datasets import load_rgb, scan_dataset
from transfer_core.inference.predict import predict_probs
from transfer_core.models import resize_rule
from transfer_core.results import export_coreml, export_litert
from transfer_core.results.exported_model import ExportedModel
from transfer_core.runstore.runs import RunFolder

FLOAT_FILE, INT8_FILE = "model.tflite", "model_int8.tflite"
CALIBRATION_PICTURES = 64  # int8 ranges settle by ~50 pictures; more only lengthen the export
INT8_TOP1 = 0.95  # int8 rounds every activation: its top class must agree on 95% of the pictures to pass
LITERT_NOVELTY = 1e-3  # float LiteRT's novelty scores (about 0.01-1) within this of the engine's

CompareFn = Callable[[torch.Tensor, torch.Tensor], dict]


def pixels(paths: Sequence[str], prep) -> np.ndarray:
    """N x C x C x 3 uint8, each picture resized by the rule every runtime follows (resize_rule.py)."""
    return np.stack([resize_rule.model_input(load_rgb(p), prep.resize, prep.crop, prep.interpolation)
                     for p in paths]) if paths else np.zeros((0, prep.crop, prep.crop, 3), np.uint8)


def training_pictures(run: RunFolder, limit: int = CALIBRATION_PICTURES) -> list[str]:
    """Up to `limit` of the run's own training pictures, spread over the whole list (every class), if the
    data is still on disk; [] when it is not."""
    config = resolved_config(run.config, run.path.parent)
    try:
        report = scan_dataset(config.data, val_split=config.val_split, seed=config.seed,
                              extract_to=run.path / "data", test_share=config.test_share)
    except Exception:  # noqa: BLE001 - moved, deleted or unreadable data: the int8 file says why it is missing
        return []
    paths = [str(s.path) for s in report.train]
    step = max(1, len(paths) / limit)
    return [paths[int(i * step)] for i in range(min(limit, len(paths)))]


def device_exports(wrapper: torch.nn.Module, model, run: RunFolder, out: Path, images: Sequence[str],
                   compare: CompareFn) -> dict:
    """Convert, run and compare; the card's "litert" and "coreml" entries."""
    with_novelty = getattr(model, "novelty", None) is not None
    held_out = pixels(images, model.prep)
    reference = predict_probs(model, images) if len(images) else torch.zeros(0, len(model.classes))
    with torch.no_grad():
        engine_novelty = wrapper(torch.from_numpy(held_out))[1].numpy() if with_novelty and len(images) else None
    example = ExportedModel.example(model.prep, batch=1)
    litert = {"input": {"shape": [1, model.prep.crop, model.prep.crop, 3], "dtype": "uint8"}}
    litert["float"] = _litert(wrapper, example, out / FLOAT_FILE, None, held_out, reference, engine_novelty,
                              compare)
    calibration = training_pictures(run)
    litert["int8"] = (_litert(wrapper, example, out / INT8_FILE, torch.from_numpy(pixels(calibration, model.prep)),
                              held_out, reference, engine_novelty, compare) if calibration else
                      {"passed": False, "note": N_("not made: the run's training pictures are no longer on disk "
                                                   "(the int8 file is calibrated on them)")})
    return {"litert": litert, "coreml": _coreml(wrapper, model.prep, out / export_coreml.FILE, with_novelty)}


def _litert(wrapper, example, path: Path, calibration, held_out, reference, engine_novelty, compare) -> dict:
    try:
        info = export_litert.convert(wrapper, example, path, calibration)
        probs, novelty = export_litert.run(path, held_out)
    except Exception as err:  # noqa: BLE001 - any converter or runtime failure is reported on the card
        path.unlink(missing_ok=True)
        return _failed({"passed": False}, err)
    info["runtime"] = f"{export_litert.RUNTIME} {info['versions'][export_litert.RUNTIME]}"
    parity = compare(reference, torch.from_numpy(probs))
    if calibration is not None:  # int8: judged on the top class only; its probability gap is reported
        parity["passed"] = parity["top1_agreement"] is not None and parity["top1_agreement"] >= INT8_TOP1
        parity["criteria"] = {"top1_agreement_at_least": INT8_TOP1}
    if novelty is not None and engine_novelty is not None and len(novelty):
        parity["max_novelty_difference"] = float(np.abs(novelty - engine_novelty).max())
        if calibration is None:
            parity["passed"] = parity["passed"] and parity["max_novelty_difference"] <= LITERT_NOVELTY
    return {**info, "parity": parity, "passed": parity["passed"]}


def _coreml(wrapper, prep, path: Path, with_novelty: bool) -> dict:
    try:
        info = export_coreml.convert(wrapper, ExportedModel.example(prep, batch=1), path, with_novelty=with_novelty)
    except Exception as err:  # noqa: BLE001
        export_coreml.remove(path)
        return _failed({"checked": False}, err)
    return {**info, "checked": False,
            "note": N_("its answers are not checked here: Core ML runs only on Apple's systems (macOS, iOS)")}


def _failed(entry: dict, err: Exception) -> dict:
    error = f"{type(err).__name__}: {err}"[:500]
    return {**entry, "error": error, "note": N_("not made: {error}").format(error=error)}


# ---------------------------------------------------------------------------------------------- model card
def device_markdown(card: dict) -> str:
    """The card's lines for the device files, in the current language ("" when none was tried)."""
    lines = []
    litert = card.get("litert") or {}
    for kind, title in (("float", N_("LiteRT (Android, Raspberry Pi), float")),
                        ("int8", N_("LiteRT (Android, Raspberry Pi), int8"))):
        if kind in litert:
            lines.append(_litert_line(retranslate(title), litert[kind]))
    if card.get("coreml"):
        lines.append(_coreml_line(card["coreml"]))
    if not lines:
        return ""
    return "\n" + "\n".join([_("Files for devices, in this folder:"), *lines]) + "\n"


def _litert_line(title: str, entry: dict) -> str:
    if "parity" not in entry:
        return _("- {format}: {note}").format(format=title, note=_note(entry))
    p = entry["parity"]
    line = _("- {format}: `{file}`, {size}; agrees with the app on the top class for {agreement} of {n} "
             "validation pictures, probabilities within {difference} ({runtime}).").format(
        format=title, file=entry["file"], size=_megabytes(entry["bytes"]), agreement=f"{p['top1_agreement']:.1%}",
        n=p["images"], difference=f"{p['max_probability_difference']:.1e}", runtime=entry["runtime"])
    if entry.get("calibration_pictures"):
        line += " " + _("Quantized on {n} of the run's own training pictures, on this machine.").format(
            n=entry["calibration_pictures"])
        if "max_novelty_difference" in p:
            line += " " + _("Its unfamiliar-picture score moves by up to {difference}: judge unfamiliar pictures "
                            "with the float file.").format(difference=f"{p['max_novelty_difference']:.2f}")
    if entry["passed"]:
        return line
    failed = _("(FAILED: use the float file)") if entry.get("quantized") else _("(FAILED)")  # not in an
    return f"{line} {failed}"  # f-string: the catalog's extractor does not look inside one


def _coreml_line(entry: dict) -> str:
    title = _("Core ML (iPhone, iPad, Mac)")
    if "file" not in entry:
        return _("- {format}: {note}").format(format=title, note=_note(entry))
    return _("- {format}: `{file}`, {size}; {note}.").format(format=title, file=entry["file"],
                                                            size=_megabytes(entry["bytes"]), note=_note(entry))


def _note(entry: dict) -> str:
    return retranslate(entry["note"])


def _megabytes(size: int) -> str:
    return _("{mb} MB").format(mb=f"{size / 1e6:.1f}")
