"""Export bundles: the exported model, run by the bundle's own predict.py in a fresh process, gives the
app's answers on real images; its preprocessing is the engine's, pixel for pixel."""
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from conftest import copy_textile
from PIL import Image

from transfer_core.cli import main
from transfer_core.core.config import TrainConfig
from transfer_core.data.datasets import load_rgb
from transfer_core.inference.predict import load_model, predict
from transfer_core.models.backbones import get_backbone
from transfer_core.models.preprocessing import Preprocessing
from transfer_core.results import bundle_predict
from transfer_core.results.export import (
    PARITY_PROB,
    ExportError,
    _write_torchscript,
    check_parity,
    export_run,
    validation_images,
)
from transfer_core.results.exported_model import ExportedModel
from transfer_core.runstore.runs import RunFolder
from transfer_core.workflows.train import train

TEMPERATURE = 1.5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny real run (3 classes x 20 textile images, 96 px, 1 epoch) with a calibration file, exported."""
    tmp = tmp_path_factory.mktemp("export")
    data = copy_textile(tmp / "data", 20)
    result = train(TrainConfig(schedule="fixed", data=str(data), freeze=3, image_size=96, batch_size=8, epochs=1, seed=0),
                   runs_dir=tmp / "runs")
    # calibration.json is written by the calibration step (temperature scaling); the bundle must use it
    (result.run_dir / "calibration.json").write_text(json.dumps({"temperature": TEMPERATURE}))
    assert main(["export", str(result.run_dir), "--out", str(tmp / "bundle")]) == 0
    extra = sorted(copy_textile(tmp / "unseen", 4, offset=300).glob("*/*.jpg"))  # never trained or validated on
    return result.run_dir, tmp / "bundle", extra


def _run_bundle(bundle: Path, images, *args) -> list[str]:
    # -I: isolated, so neither the repository nor PYTHONPATH is importable: the bundle must stand alone
    out = subprocess.run([sys.executable, "-I", str(bundle / "predict.py"), *map(str, images), *args],
                         capture_output=True, text=True, timeout=300, cwd=bundle.parent)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.slow  # uses the module's trained and exported run (training + export take over 20 s)
def test_bundle_holds_both_model_files_a_card_and_a_zip(exported):
    run_dir, bundle, _ = exported
    card = json.loads((bundle / "model_card.json").read_text())
    dataset = json.loads((run_dir / "dataset.json").read_text())
    assert card["classes"] == ["global", "local", "nominal"]
    assert card["data"]["fingerprint"] == dataset["fingerprint"]
    assert card["preprocessing"] == json.loads((run_dir / "preprocessing.json").read_text())
    assert card["backbone"]["name"] == "mobilenet_v2" and card["temperature"] == TEMPERATURE
    val = json.loads((run_dir / "validation.json").read_text())
    right = sum(max(range(3), key=probs.__getitem__) == y for probs, y in zip(val["probs"], val["labels"]))
    assert card["metrics"]["accuracy"] == round(right / 12, 4) and card["metrics"]["validation_images"] == 12
    names = set(zipfile.ZipFile(bundle.with_suffix(".zip")).namelist())
    assert {f"bundle/{n}" for n in ("model.onnx", "model.torchscript.pt", "model_card.json", "MODEL_CARD.md",
                                    "predict.py")} <= names
    source = (bundle / "predict.py").read_text()
    assert "transfer_core" not in source.replace("Transfer Studio", "")


@pytest.mark.slow  # uses the module's trained and exported run (training + export take over 20 s)
def test_parity_check_passed_on_every_validation_image_and_is_in_the_card(exported):
    _, bundle, _ = exported
    parity = json.loads((bundle / "model_card.json").read_text())["parity"]
    assert parity["passed"] and parity["images"] == 12
    for name in ("onnxruntime", "torchscript"):
        assert parity[name]["top1_agreement"] >= 0.995
        assert parity[name]["max_probability_difference"] <= 1e-3
    assert "onnxruntime agrees on the top class for 100.0% of 12" in (bundle / "MODEL_CARD.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_exported_predict_py_in_a_fresh_process_gives_the_apps_answers(exported, runtime):
    run_dir, bundle, extra = exported
    val = RunFolder(run_dir).validation_images()[:6]
    images = [*val, *extra]
    lines = _run_bundle(bundle, images, "--runtime", runtime)
    assert len(lines) == len(images)
    model = load_model(run_dir)
    app = predict(model, images, k=1)
    with torch.no_grad():
        logits = model.net(torch.stack([model.tensor(p) for p in images]))
    calibrated = (logits / TEMPERATURE).softmax(1).max(1).values
    for line, image, top, prob in zip(lines, images, app, calibrated):
        cls, shown, path = line.split("\t")[:3]
        assert cls == top[0][0] and path == str(image)  # the line starts with the app's top class
        assert abs(float(shown) - float(prob)) < 2e-3  # the calibrated probability, from the card


@pytest.mark.slow  # uses the module's trained and exported run (training + export take over 20 s)
def test_export_refuses_a_folder_in_use_and_a_run_without_model(exported, tmp_path):
    run_dir, bundle, _ = exported
    with pytest.raises(ExportError, match="not empty"):
        export_run(run_dir, bundle)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ExportError, match="no trained model"):
        export_run(tmp_path / "empty_run", tmp_path / "out")


# ---------------------------------------------------------------------------------------------- preprocessing
def _photos(tmp_path: Path) -> list[Path]:
    """Real photos of several shapes and formats, including transparency and an EXIF rotation."""
    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(getattr(skimage.data, name)()).save(path, quality=90)
        out.append(path)
    rgba = np.dstack([skimage.data.coffee(), np.tile(np.linspace(0, 255, 600, dtype=np.uint8), (400, 1))])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "coffee_alpha.png")
    rotated = Image.fromarray(skimage.data.chelsea())
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees": phones save portraits like this
    rotated.save(tmp_path / "chelsea_exif.jpg", exif=exif)
    return out + [tmp_path / "coffee_alpha.png", tmp_path / "chelsea_exif.jpg"]


@pytest.mark.parametrize("prep", [
    get_backbone("mobilenet_v2").preprocessing,  # bilinear 232 -> 224
    get_backbone("efficientnet_lite1").preprocessing,  # bicubic, mean = std = 0.5
    get_backbone("mobilenet_v2").preprocessing.at_size(96),
    Preprocessing(resize=113, crop=100, interpolation="nearest", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)),
], ids=["mobilenet_v2", "lite1", "96px", "odd"])
def test_standalone_preprocessing_is_the_engines_pixel_for_pixel(tmp_path, prep):
    photos = _photos(tmp_path)
    engine = torch.stack([prep.eval_tensor(load_rgb(p)) for p in photos])
    # the bundle reads and resizes; the model file normalises (as ExportedModel does, on uint8 NHWC pixels)
    standalone_np = prep.normalize(torch.from_numpy(bundle_predict.as_numpy(photos, prep.to_dict())).permute(0, 3, 1, 2))
    standalone_torch = prep.normalize(bundle_predict.as_torch(photos, prep.to_dict()).permute(0, 3, 1, 2))
    assert engine.shape == standalone_np.shape == (len(photos), 3, prep.crop, prep.crop)
    assert (engine - standalone_np).abs().max() < 1e-5
    assert (engine - standalone_torch).abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------- parity must fail
def _broken_copy(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


@pytest.mark.slow  # uses the module's trained and exported run
def test_parity_check_fails_a_bundle_that_resizes_otherwise(exported, tmp_path):
    run_dir, bundle, _ = exported
    broken = _broken_copy(bundle, tmp_path / "bundle")
    card = json.loads((broken / "model_card.json").read_text())
    card["preprocessing"]["interpolation"] = "nearest"  # not the run's bilinear: other pixels reach the model
    (broken / "model_card.json").write_text(json.dumps(card))
    parity = check_parity(load_model(run_dir), broken, validation_images(RunFolder(run_dir)))
    assert parity["images"] == 12 and not parity["passed"]
    for name in ("onnxruntime", "torchscript"):  # both model files get the wrong input
        assert not parity[name]["passed"] and parity[name]["max_probability_difference"] > PARITY_PROB


@pytest.mark.slow  # uses the module's trained and exported run
def test_parity_check_fails_a_bundle_whose_weights_differ(exported, tmp_path):
    run_dir, bundle, _ = exported
    broken = _broken_copy(bundle, tmp_path / "bundle")
    model = load_model(run_dir)
    perturbed = load_model(run_dir).net
    with torch.no_grad():
        for p in perturbed.head.parameters():  # a slightly different classifier than the one trained
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    detector = getattr(model, "novelty", None)  # the file holds what export writes, only the weights differ
    wrapped = ExportedModel(perturbed, model.prep, model.temperature, detector.score if detector else None).eval()
    _write_torchscript(wrapped, ExportedModel.example(model.prep), broken / "model.torchscript.pt")
    parity = check_parity(model, broken, validation_images(RunFolder(run_dir)))
    assert parity["onnxruntime"]["passed"]  # the untouched file still agrees: the check tells them apart
    assert not parity["torchscript"]["passed"] and not parity["passed"]
