"""Device files of an export: LiteRT float and int8 (converted by litert-torch, run by ai-edge-litert) give the
app's answers on a real trained run's held-out pictures; Core ML (coremltools) is written and loads as a
spec, and the card says it is unchecked here. A converter that fails is a card line, not a failed export."""
import json

import numpy as np
import pytest
import torch
from conftest import copy_textile

from transfer_core.core.config import TrainConfig
from transfer_core.inference.predict import load_model, predict_probs
from transfer_core.results import export_coreml, export_devices, export_litert
from transfer_core.results.export import compare, exported_model, export_run, validation_images
from transfer_core.runstore.runs import RunFolder
from transfer_core.workflows.train import train


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny real run (3 classes x 20 textile images, 96 px, 1 epoch), exported with its device files."""
    tmp = tmp_path_factory.mktemp("devices")
    data = copy_textile(tmp / "data", 20)
    result = train(TrainConfig(schedule="fixed", data=str(data), freeze=3, image_size=96, batch_size=8, epochs=1,
                               seed=0), runs_dir=tmp / "runs")
    exported = export_run(result.run_dir, tmp / "bundle")
    return result.run_dir, tmp / "bundle", exported.card


def _held_out(run_dir):
    model = load_model(run_dir, device="cpu")
    images = validation_images(RunFolder(run_dir))
    return model, images, export_devices.pixels(images, model.prep)


@pytest.mark.slow  # training, then three conversions (the int8 one takes a minute or more)
def test_litert_float_gives_the_apps_answers(bundle):
    run_dir, folder, card = bundle
    model, images, pixels = _held_out(run_dir)
    assert len(images) == 12 and pixels.shape == (12, 96, 96, 3) and pixels.dtype == np.uint8
    probs, novelty = export_litert.run(folder / "model.tflite", pixels)  # independently of the card
    engine = predict_probs(model, images).numpy()
    assert probs.shape == engine.shape == (12, 3)
    assert (probs.argmax(1) == engine.argmax(1)).mean() >= 0.99
    assert np.abs(probs - engine).max() < 1e-3
    with torch.no_grad():
        _, engine_novelty = exported_model(model)(torch.from_numpy(pixels))
    assert novelty is not None and np.abs(novelty - engine_novelty.numpy()).max() < 1e-3
    entry = card["litert"]["float"]
    assert entry["passed"] and entry["parity"]["images"] == 12 and entry["parity"]["top1_agreement"] >= 0.99
    assert entry["bytes"] == (folder / "model.tflite").stat().st_size
    assert entry["versions"]["ai-edge-litert"] and entry["runtime"].startswith("ai-edge-litert ")


@pytest.mark.slow
def test_int8_file_is_smaller_and_its_agreement_is_on_the_card(bundle):
    run_dir, folder, card = bundle
    model, images, pixels = _held_out(run_dir)
    entry, float_entry = card["litert"]["int8"], card["litert"]["float"]
    assert entry["quantized"] == "int8" and entry["calibration_pictures"] == 48  # all 48 training pictures
    assert entry["bytes"] == (folder / "model_int8.tflite").stat().st_size < float_entry["bytes"] / 2
    probs, _ = export_litert.run(folder / "model_int8.tflite", pixels)
    recomputed = compare(predict_probs(model, images), torch.from_numpy(probs))
    assert entry["parity"]["top1_agreement"] == recomputed["top1_agreement"]
    assert entry["passed"] == (recomputed["top1_agreement"] >= export_devices.INT8_TOP1)
    text = (folder / "MODEL_CARD.md").read_text()
    assert "model_int8.tflite" in text and f"{recomputed['top1_agreement']:.1%}" in text
    assert json.loads((folder / "model_card.json").read_text())["litert"]["int8"]["bytes"] == entry["bytes"]


@pytest.mark.slow
def test_coreml_package_loads_as_a_spec_and_the_card_says_unchecked(bundle):
    _, folder, card = bundle
    spec = export_coreml.load_spec(folder / "model.mlpackage")
    assert [i.name for i in spec.description.input] == ["pixels"]
    assert [o.name for o in spec.description.output] == ["probabilities", "novelty"]
    assert list(spec.description.input[0].type.multiArrayType.shape) == [1, 96, 96, 3]
    assert card["coreml"]["checked"] is False and card["coreml"]["bytes"] > 1_000_000
    assert "not checked here" in (folder / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_a_failing_converter_is_a_card_line_not_a_crash(bundle, tmp_path, monkeypatch):
    run_dir, _, _ = bundle
    model, images, _ = _held_out(run_dir)

    def broken(*args, **kwargs):
        raise RuntimeError("converter broke")

    monkeypatch.setattr(export_litert, "convert", broken)
    monkeypatch.setattr(export_coreml, "convert", broken)
    entries = export_devices.device_exports(exported_model(model), model, RunFolder(run_dir), tmp_path, images,
                                            compare)
    assert entries["litert"]["float"]["passed"] is False and entries["litert"]["int8"]["passed"] is False
    assert "converter broke" in entries["coreml"]["note"] and list(tmp_path.iterdir()) == []
    text = export_devices.device_markdown(entries)
    assert text.count("not made: RuntimeError: converter broke") == 3
