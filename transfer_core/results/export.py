"""Export a trained run as a bundle that gives the app's answers anywhere, with no Transfer Studio.

    bundle/model.onnx            the network (input "pixels": uint8 N x C x C x 3 RGB; output "probabilities",
                                 calibrated, and "novelty" when the run has the familiarity check:
                                 exported_model.py, novelty.py)
           model.torchscript.pt  the same network for torch alone
           model_card.json       classes, input, resize rule, backbone, metrics, data fingerprint, date, parity
           MODEL_CARD.md         the same in short, for people
           predict.py            standalone: `python predict.py IMAGE...` (see bundle_predict.py)
           resize_rule.py        how a picture becomes C x C (models/resize_rule.py; predict.py uses it)
           web/                  the model in a browser, no server (export_web.py): index.html[?selftest=1]
    bundle.zip                   all of it, to download

On export, the bundle's own predict.py (not the engine's code) runs both model files over the run's
validation images and compares them with the engine's predictions; the result goes into the card.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image
from torch import nn

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.inference.evaluation import evaluate_run, has_test_share
from transfer_core.inference.predict import load_model, predict_probs
from transfer_core.models import resize_rule
from transfer_core.models.backbones import get_backbone
from transfer_core.results.export_devices import device_exports, device_markdown
from transfer_core.results.export_web import NOT_SURE_BELOW, write_web
from transfer_core.results.exported_model import INPUT_NAME, OUTPUT_NAMES, ExportedModel
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder, write_json

ONNX_OPSET = 17  # onnxruntime has run opset 17 since 1.14; newer ones gain nothing for these networks
PARITY_TOP1 = 0.995  # share of images whose top class must agree
PARITY_PROB = 1e-3  # largest allowed difference of any class probability
PARITY_NOVELTY = 1e-4  # largest allowed difference of a novelty score (they are ~0.01-1); verdicts must agree
_STANDALONE = Path(__file__).with_name("bundle_predict.py")

ProgressFn = Callable[[str, int, int], None]


class ExportError(RuntimeError):
    """The run cannot be exported as it is; the message says why in plain words."""


@dataclass(frozen=True)
class ExportResult:
    bundle: Path
    zip_path: Path
    card: dict

    @property
    def parity_passed(self) -> bool:
        return bool(self.card["parity"].get("passed"))


def export_run(run_dir: str | Path, out_dir: str | Path, *, progress: ProgressFn | None = None,
               max_parity_images: int | None = None, devices: bool = True) -> ExportResult:
    """Write the bundle folder `out_dir` (must be new or empty) and `out_dir`.zip beside it. devices=False:
    without the LiteRT and Core ML files (they add about a minute or more)."""
    run, out = RunFolder(run_dir), Path(out_dir)
    if not run.has_model():
        raise ExportError(_("Run {id} has no trained model yet, so there is nothing to export.").format(id=run.id))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(_("{folder} is not empty: choose a new folder for the bundle.").format(folder=out))
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(run.path, device="cpu")
    example = ExportedModel.example(model.prep)
    detector = getattr(model, "novelty", None)
    wrapped = exported_model(model)
    _write_onnx(wrapped, example, out / "model.onnx", with_novelty=detector is not None)
    _write_torchscript(wrapped, example, out / "model.torchscript.pt")
    shutil.copy(_STANDALONE, out / "predict.py")
    shutil.copy(resize_rule.__file__, out / "resize_rule.py")
    card = model_card(run, model.classes, model.prep.to_dict(), getattr(model, "temperature", 1.0))
    card["novelty"] = novelty_card(detector)
    write_json(out / "model_card.json", card)  # predict.py reads it, so it must exist before the check
    images = validation_images(run, max_parity_images)
    card["parity"] = check_parity(model, out, images, progress)
    card["answer"] = {"not_sure_below": NOT_SURE_BELOW}  # the web page's starting threshold (a slider there)
    card["web"] = write_web(out, model, images, PARITY_NOVELTY, PARITY_PROB)
    if devices:  # LiteRT float + int8 and Core ML (export_devices.py): a failed converter is a card line
        card.update(device_exports(wrapped, model, run, out, images, compare))
    write_json(out / "model_card.json", card)
    if card["web"].get("folder"):
        shutil.copy(out / "model_card.json", out / "web" / "model_card.json")
    (out / "MODEL_CARD.md").write_text(card_markdown(card) + device_markdown(card), encoding="utf-8")
    shutil.rmtree(out / "__pycache__", ignore_errors=True)  # never ship compiled files (they name server paths)
    zip_path = Path(shutil.make_archive(str(out), "zip", root_dir=out.parent, base_dir=out.name))
    return ExportResult(out, zip_path, card)


# ---------------------------------------------------------------------------------------------- model files
def exported_model(model) -> ExportedModel:
    """A loaded run as its exported files hold it: pixels in, calibrated probabilities (and novelty) out."""
    detector = getattr(model, "novelty", None)
    return ExportedModel(model.net, model.prep, getattr(model, "temperature", 1.0),
                         detector.score if detector else None).eval()


def _write_onnx(net: nn.Module, example: torch.Tensor, path: Path, with_novelty: bool = False) -> None:
    # The TorchScript-based exporter: the newer dynamo one needs onnxscript, which the app does not ship.
    outputs = list(OUTPUT_NAMES) if with_novelty else list(OUTPUT_NAMES[:1])
    torch.onnx.export(net, (example,), str(path), input_names=[INPUT_NAME], output_names=outputs,
                      dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *outputs]}, opset_version=ONNX_OPSET,
                      dynamo=False)


def novelty_card(detector) -> dict | None:
    """What predict.py needs to say "does not look like the training pictures"; None: the run has no check."""
    if detector is None:
        return None
    return {**detector.summary(), "output": "novelty",
            "meaning": "the model's second output; above the threshold, the picture does not look like the "
                       "training pictures (validation_rate of normal pictures are flagged too)"}


def _write_torchscript(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(net, example, check_trace=False)
    traced.save(str(path))


# ---------------------------------------------------------------------------------------------- parity
def validation_images(run: RunFolder, limit: int | None = None) -> list[str]:
    """The run's validation images that are still on disk."""
    paths = [p for p in run.validation_images() if p and Path(p).is_file()]
    return paths[:limit] if limit else paths


def load_standalone(bundle: Path):
    """The bundle's own predict.py as a module: the check runs the code users will run."""
    spec = importlib.util.spec_from_file_location(f"bundle_predict_{abs(hash(str(bundle)))}", bundle / "predict.py")
    module = importlib.util.module_from_spec(spec)
    # No __pycache__ in the bundle: compiled files record the server path they were compiled from.
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = before
    return module


def compare(reference: torch.Tensor, exported: torch.Tensor) -> dict:
    """Top-1 agreement and the largest probability difference between two N x C probability tables."""
    if len(reference) == 0:
        return {"images": 0, "top1_agreement": None, "max_probability_difference": None, "passed": False}
    agree = float((reference.argmax(1) == exported.argmax(1)).float().mean())
    diff = float((reference - exported).abs().max())
    return {"images": len(reference), "top1_agreement": round(agree, 6), "max_probability_difference": diff,
            "passed": agree >= PARITY_TOP1 and diff <= PARITY_PROB}


def check_parity(model, bundle: Path, images: Sequence[str], progress: ProgressFn | None = None) -> dict:
    """Engine vs the bundle's predict.py with each model file, on the same images, both calibrated."""
    if not images:
        return {"passed": False, "images": 0,
                "note": N_("not checked: the run's validation images are no longer on disk")}
    standalone = load_standalone(bundle)
    reference = predict_probs(model, images)
    result = {"images": len(images), "criteria": {"top1_agreement_at_least": PARITY_TOP1,
                                                   "max_probability_difference_at_most": PARITY_PROB}}
    for step, runtime in enumerate(("onnx", "torch"), start=1):
        exported = torch.tensor(standalone.probabilities(images, runtime, bundle))
        result["onnxruntime" if runtime == "onnx" else "torchscript"] = {
            **compare(reference, exported), "runtime_version": runtime_version(runtime)}
        if progress:
            progress(N_("parity"), step, 2)
    result["passed"] = result["onnxruntime"]["passed"] and result["torchscript"]["passed"]
    if getattr(model, "novelty", None) is not None:
        result["novelty"] = check_novelty_parity(model, standalone, bundle, images)
        result["passed"] = result["passed"] and result["novelty"]["passed"]
    return result


def runtime_version(runtime: str) -> str:
    """Which runtime the check ran: the one that gave the figures beside it."""
    if runtime == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    return f"torch {torch.__version__}"


def check_novelty_parity(model, standalone, bundle: Path, images: Sequence[str]) -> dict:
    """The "does not look like the training pictures" verdict, engine vs bundle, on the validation images
    and two random-noise pictures (so both verdicts are exercised)."""
    from transfer_core.inference.predict import familiarity

    with tempfile.TemporaryDirectory() as tmp:
        noise = [str(Path(tmp) / f"noise{i}.png") for i in range(2)]
        for i, path in enumerate(noise):
            pixels = torch.randint(0, 256, (96, 96, 3), generator=torch.Generator().manual_seed(i), dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(path)
        paths = [*images, *noise]
        engine = familiarity(model, paths)
        result = {"images": len(paths), "noise_images": len(noise),
                  "engine_unfamiliar": sum(v.unfamiliar for v in engine)}
        for runtime in ("onnx", "torch"):
            result["onnxruntime" if runtime == "onnx" else "torchscript"] = _compare_verdicts(
                engine, standalone.verdicts(paths, runtime, bundle), model.novelty.threshold)
    result["passed"] = result["onnxruntime"]["passed"] and result["torchscript"]["passed"]
    return result


def _compare_verdicts(engine, exported, threshold: float) -> dict:
    diff = max(abs(e.score - x["novelty"]) for e, x in zip(engine, exported))
    # A score within the tolerance of the threshold may fall either side: only clear cases must agree.
    clear = [(e, x) for e, x in zip(engine, exported) if abs(e.score - threshold) > PARITY_NOVELTY]
    agree = all(e.unfamiliar == x["unfamiliar"] for e, x in clear)
    return {"max_score_difference": diff, "verdicts_agree": agree, "passed": agree and diff <= PARITY_NOVELTY}


# ---------------------------------------------------------------------------------------------- model card
def _calibration(run: RunFolder) -> dict:
    """Which confidence the model gives and why: a kept temperature, or the network's own and the reason."""
    saved = run.read_json(runfiles.CALIBRATION) or {}
    return {"used": bool(saved.get("kept", True)) and saved.get("temperature", 1.0) != 1.0,
            "fitted_temperature": saved.get("fitted", saved.get("temperature")), "why": saved.get("why", ""),
            "validation_images": saved.get("images")}


def model_card(run: RunFolder, classes: list[str], prep: dict, temperature: float = 1.0) -> dict:
    desc, config = run.model_description(), run.read_json(runfiles.CONFIG) or {}
    data = run.read_json(runfiles.DATASET) or {}
    spec = get_backbone(desc.backbone)
    return {
        "format": "transfer-studio-bundle/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_id": run.id,
        "classes": classes,
        "backbone": {"name": spec.name, "title": spec.title, "imagenet_top1": spec.imagenet_top1,
                     "head": desc.head, "frozen_stages": config.get("freeze")},
        "preprocessing": prep,
        "input": {"name": INPUT_NAME, "shape": ["batch", prep["crop"], prep["crop"], 3], "dtype": "uint8",
                  "layout": "NHWC", "colours": "RGB",
                  "resize_rule": {"words": resize_rule.RULE, "resize": prep["resize"], "crop": prep["crop"],
                                  "interpolation": prep["interpolation"], "python": "resize_rule.py",
                                  "javascript": "web/resize_rule.js"},
                  "meaning": "the picture's pixels after the resize rule; /255, mean and std are inside the model"},
        "output": {"name": OUTPUT_NAMES[0], "probabilities": "calibrated: softmax(logits / temperature), "
                                                            "computed inside the model"},
        "temperature": temperature,  # from calibration.json (temperature scaling), inside the model; 1.0: as trained
        "calibration": _calibration(run),
        "metrics": _metrics(run),
        "training": {k: config.get(k) for k in ("epochs", "lr", "batch_size", "image_size", "augment",
                                                "optimizer", "label_smoothing", "seed", "val_split")},
        "data": {"fingerprint": data.get("fingerprint"), "num_train": data.get("num_train"),
                 "num_val": data.get("num_val"), "counts": data.get("counts")},
        "files": {"onnx": "model.onnx", "onnx_opset": ONNX_OPSET, "torchscript": "model.torchscript.pt",
                  "predict": "predict.py", "resize_rule": "resize_rule.py"},
    }


def _metrics(run: RunFolder) -> dict | None:
    try:
        ev = evaluate_run(run.path).evaluation
    except FileNotFoundError:
        return None
    out = {"validation_images": ev.total, **_figures(ev)}
    if has_test_share(run.path):  # the honest figure: nothing was tuned on these pictures
        test = evaluate_run(run.path, "test").evaluation
        out["test"] = {"images": test.total, **_figures(test)}
    return out


def _figures(ev) -> dict:
    return {"accuracy": round(ev.accuracy, 4), "accuracy_95ci": [round(v, 4) for v in ev.interval],
            "macro_f1": round(ev.macro_f1, 4),
            "per_class": {s.name: {"precision": round(s.precision, 4), "recall": round(s.recall, 4),
                                   "f1": round(s.f1, 4), "support": s.support} for s in ev.scores}}


def card_markdown(card: dict) -> str:
    """The model card, in the current language (the app exports in the language of the person asking)."""
    m, p, parity, bb, data = card["metrics"], card["preprocessing"], card["parity"], card["backbone"], card["data"]
    classes = ", ".join(card["classes"])
    lines = [_("# Model card: {classes}").format(classes=classes), "",
             _("- Exported {created} from Transfer Studio run `{run}`.").format(created=card["created"],
                                                                              run=card["run_id"]),
             _("- Classes, in output order: {classes}.").format(classes=classes),
             _("- Backbone: {title} ({name}), ImageNet-pretrained, {head} head.").format(
                 title=retranslate(bb["title"]), name=bb["name"], head=bb["head"]),
             _("- Preprocessing: RGB, shorter side to {resize} px ({interpolation}), centre crop {crop} px, /255, "
               "mean {mean}, std {std}.").format(resize=p["resize"], interpolation=p["interpolation"],
                                                 crop=p["crop"], mean=list(p["mean"]), std=list(p["std"])),
             _("- Input of the model files: the picture's pixels after that resize (uint8, RGB, N x {crop} x {crop} x "
               "3); dividing by 255, the mean, the std and the temperature are inside them.").format(crop=p["crop"]),
             _("- Data fingerprint: `{fingerprint}` ({train} training, {val} validation images).").format(
                 fingerprint=data["fingerprint"], train=data["num_train"], val=data["num_val"])]
    if m and m.get("test"):
        t = m["test"]
        lines.append(_("- Test accuracy: {accuracy} (95% interval {low} to {high}) on {n} images used for nothing "
                       "else; macro F1 {f1}.").format(accuracy=f"{t['accuracy']:.1%}",
                                                      low=f"{t['accuracy_95ci'][0]:.1%}",
                                                      high=f"{t['accuracy_95ci'][1]:.1%}", n=t["images"],
                                                      f1=f"{t['macro_f1']:.3f}"))
    if m:
        lo, hi = m["accuracy_95ci"]
        lines.append(_("- Validation accuracy: {accuracy} (95% interval {low} to {high}) on {n} images, which "
                       "chose the best epoch (a little optimistic); macro F1 {f1}.").format(
                           accuracy=f"{m['accuracy']:.1%}", low=f"{lo:.1%}", high=f"{hi:.1%}",
                           n=m["validation_images"], f1=f"{m['macro_f1']:.3f}"))
    if card.get("temperature", 1.0) != 1.0:
        lines.append(_("- Probabilities are calibrated: softmax(logits / {t}).").format(
            t=f"{card['temperature']:.3f}"))
    elif (card.get("calibration") or {}).get("why"):
        lines.append(_("- Probabilities are the network's own: {why}").format(
            why=retranslate(card["calibration"]["why"])))
    if card.get("novelty"):
        lines.append(_("- Unfamiliar pictures: predict.py says when a picture does not look like the training "
                       "pictures (its features are far from theirs); {share} of the validation pictures are "
                       "flagged too.").format(share=f"{card['novelty']['validation_rate']:.0%}"))
    lines.append(_("- Parity check: {words}").format(words=_parity_words(parity)))
    lines += ["", _("Run `python predict.py IMAGE...` here (onnxruntime + numpy + pillow, or torch + numpy + pillow): "
                    "one line per image, the most likely class first."), ""]
    if (card.get("web") or {}).get("folder"):
        lines += [_("In a browser, with no server: serve the web folder with any static file server (for example "
                    "`python -m http.server -d web`) and open index.html; index.html?selftest=1 checks it on "
                    "pictures kept in web/selftest."), ""]
    return "\n".join(lines)


def _parity_words(parity: dict) -> str:
    if "onnxruntime" not in parity:
        return retranslate(parity.get("note", N_("not run")))
    parts = []
    for name in ("onnxruntime", "torchscript"):
        r = parity[name]
        parts.append(_("{name} agrees on the top class for {agreement} of {n} validation images, probabilities "
                       "within {difference}").format(name=name, agreement=f"{r['top1_agreement']:.1%}",
                                                     n=r["images"],
                                                     difference=f"{r['max_probability_difference']:.1e}"))
        parts[-1] += "" if r["passed"] else " " + _("(FAILED)")
    if "novelty" in parity:
        n = parity["novelty"]
        parts.append(_("the unfamiliar-picture verdict agrees on {n} pictures, {noise} of them random noise").format(
            n=n["images"], noise=n["noise_images"]) + ("" if n["passed"] else " " + _("(FAILED)")))
    return _("{items}.").format(items=_("; ").join(parts))
