""""This does not look like your training pictures": a real run (mobilenet_v2, real textile pictures) must
flag random noise and photos of other things, few normal pictures, in the engine, the CLI, the app and the
exported bundle alike; older runs without the check still predict."""
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

from tests.test_app_pages import app_dirs, no_exception, page, texts, wait_for_task  # noqa: F401 - a fixture
from transfer_core.cli import main
from transfer_core.core.config import TrainConfig
from transfer_core.inference import novelty
from transfer_core.inference.predict import (
    UNFAMILIAR,
    answer,
    familiarity,
    load_model,
    outputs,
)
from transfer_core.results.bundle import model_bundle
from transfer_core.results.export import export_run
from transfer_core.runstore.runs import RunFolder
from transfer_core.workflows.train import train


def _noise(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = [folder / f"noise{i}.png" for i in range(n)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (120, 120, 3), dtype=np.uint8)).save(path)
    return paths


def _photos() -> list[Image.Image]:
    """Real photos of other things, whole and cut in four."""
    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        w, h = img.size
        out += [img] + [img.crop((x, y, x + w // 2, y + h // 2)) for x in (0, w // 2) for y in (0, h // 2)]
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """3 classes x 40 real textile pictures (24 for validation), 96 px, everything frozen, 1 epoch; plus 45
    textile pictures neither trained nor validated on, and random noise."""
    tmp = tmp_path_factory.mktemp("novelty")
    data = copy_textile(tmp / "data", 40)
    result = train(TrainConfig(schedule="fixed", data=str(data), freeze="all", image_size=96, batch_size=16, epochs=1, seed=0),
                   runs_dir=tmp / "runs")
    assert result.final.kind == "RunFinished", result.final
    unseen = sorted(copy_textile(tmp / "unseen", 15, offset=300).glob("*/*.jpg"))
    return result.run_dir, unseen, _noise(tmp / "noise", 12)


def _flagged(model, images) -> float:
    verdicts = familiarity(model, images)
    return sum(v.unfamiliar for v in verdicts) / len(verdicts)


@pytest.mark.slow
def test_flags_noise_and_photos_but_few_normal_pictures(run):
    run_dir, unseen, noise = run
    model = load_model(run_dir)
    rates = {"noise": _flagged(model, noise), "photos": _flagged(model, _photos()),
             "normal": _flagged(model, unseen)}
    assert rates["noise"] >= 0.9 and rates["photos"] >= 0.9 and rates["normal"] <= 0.15, rates
    answers = answer(model, noise[:3], threshold=0.95)
    assert all(a.label == UNFAMILIAR and a.unfamiliar and not a.sure for a in answers)
    assert all(a.novelty.score > model.novelty.threshold and a.novelty.more_unusual_than == 1.0 for a in answers)


@pytest.mark.slow
def test_threshold_is_the_conformal_quantile_of_every_labelled_picture_left_out(run):
    run_dir, _, _ = run
    model = load_model(run_dir)
    score = novelty.load(run_dir).score
    assert score.mid == 0 and score.split is None  # frozen backbone: one look (two once it learns: test_novelty_fine_tuned)
    val = RunFolder(run_dir).validation_images()
    seen = outputs(model, val)[1]
    per_look = torch.cat([score.look_scores(seen), novelty.left_out_scores(score)], 1)  # distinct pictures
    assert per_look.shape == (1, 24 + 96)
    # a look is scaled by its normal pictures' median (so two weigh the same)
    assert torch.allclose(score.scales, per_look.median(1).values, atol=1e-5)
    normal = torch.sort((per_look / score.scales[:, None]).mean(0)).values
    expected = normal[int(np.ceil((len(normal) + 1) * 0.95)) - 1]
    assert model.novelty.threshold == pytest.approx(float(expected), abs=1e-5)
    assert model.novelty.validation_rate == pytest.approx(float((normal > model.novelty.threshold).float().mean()),
                                                          abs=1e-3)  # the share the pages state: measured
    info = json.loads((run_dir / novelty.NOVELTY_FILE).read_text())
    assert info["validation_images"] == 120 and info["reference_images"] == 96
    # fitting never sees unfamiliar pictures: the same reference and validation give the same threshold
    again = novelty.fit(score.reference, seen, split=score.split, mid=score.mid)
    assert again.threshold == pytest.approx(model.novelty.threshold, abs=1e-5)


@pytest.mark.slow
def test_a_threshold_from_a_few_near_copies_does_not_flag_the_trained_kind(run):
    """A classroom's burst: the 8 validation pictures are near-copies of training ones. Their scores are all
    near 0, so a threshold from them alone (the old rule) flags most new pictures of the trained kind; the
    training pictures' own left-out scores, groups kept apart, keep it where new pictures fall."""
    run_dir, unseen, noise = run
    model = load_model(run_dir)
    base = novelty.load(run_dir).score.reference  # 96 real training pictures' features
    gen = torch.Generator().manual_seed(0)

    def copies_of(x, n):  # near-copies: the same (unit-length) looks, a little off (cosine ~0.997)
        return x.repeat_interleave(n, 0) + 0.002 * torch.randn(len(x) * n, x.shape[1], generator=gen)

    # 8 pictures filmed in bursts: each with 5 near-copies in training, and one more held out for validation
    reference = torch.cat([base, copies_of(base[:8], 5)])
    groups = torch.cat([torch.arange(len(base)), torch.arange(8).repeat_interleave(5)])
    validation = copies_of(base[:8], 1)
    detector = novelty.fit(reference, validation, groups=groups)
    unseen_scores = detector.scores(outputs(model, unseen)[1])
    old_rule = float(torch.quantile(detector.scores(validation).double(), 0.95))
    assert float((unseen_scores > old_rule).float().mean()) > 0.5  # what a threshold from 8 near-copies did
    # as the run's own check does on these 45 (test_flags_noise...: <= 0.15), within their noise (+-5 points)
    assert float((unseen_scores > detector.threshold).float().mean()) <= 0.2
    assert float((detector.scores(outputs(model, noise)[1]) > detector.threshold).float().mean()) >= 0.9
    # a picture's near-copies in the reference are left out with it: grouped in pairs, its score is higher
    alone = novelty.left_out_scores(detector.score)  # each picture its own group: the bursts' scores near 0
    grouped = novelty.left_out_scores(detector.score, groups)
    assert (grouped[:, len(base):].min(1).values > 5 * alone[:, len(base):].max(1).values).all()  # in each look


@pytest.mark.slow
def test_an_older_run_without_novelty_files_still_predicts(run, tmp_path, capsys):
    run_dir, unseen, noise = run
    old = shutil.copytree(run_dir, tmp_path / run_dir.name)
    (old / novelty.NOVELTY_WEIGHTS).unlink()
    (old / novelty.NOVELTY_FILE).unlink()
    model = load_model(old)
    assert model.novelty is None and familiarity(model, noise) is None
    answers = answer(model, [*noise[:2], unseen[0]])
    assert all(a.unfamiliar is None and a.novelty is None and a.label in model.classes for a in answers)
    assert main(["predict", str(old), str(noise[0]), "--json"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["unfamiliar"] is None and line["answer"] in model.classes


@pytest.mark.slow
def test_cli_and_the_downloaded_zip_say_unfamiliar_for_noise(run, tmp_path, capsys):
    run_dir, unseen, noise = run
    with zipfile.ZipFile(io.BytesIO(model_bundle(run_dir))) as zf:
        zf.extractall(tmp_path)
    unzipped = tmp_path / run_dir.name
    assert (unzipped / novelty.NOVELTY_WEIGHTS).is_file() and (unzipped / novelty.NOVELTY_FILE).is_file()
    for folder in (run_dir, unzipped):
        assert main(["predict", str(folder), str(noise[0]), str(unseen[0]), "--json", "--top-k", "1"]) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()[-2:]]
        assert lines[0]["unfamiliar"] is True and lines[0]["answer"] == UNFAMILIAR and lines[0]["novelty"] > 0
        engine = answer(load_model(run_dir), [unseen[0]])[0]
        assert lines[1]["unfamiliar"] is engine.unfamiliar


def _run_bundle(bundle: Path, images, runtime: str) -> list[dict]:
    # -I: isolated, so neither the repository nor PYTHONPATH is importable: the bundle must stand alone
    out = subprocess.run([sys.executable, "-I", str(bundle / "predict.py"), *map(str, images), "--json",
                          "--runtime", runtime], capture_output=True, text=True, timeout=300, cwd=bundle.parent)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.slow
def test_exported_bundle_gives_the_engines_verdict_in_a_fresh_process(run, tmp_path):
    run_dir, unseen, noise = run
    result = export_run(run_dir, tmp_path / "bundle", devices=False)
    parity = result.card["parity"]
    assert parity["passed"] and parity["novelty"]["passed"] and parity["novelty"]["noise_images"] == 2
    assert result.card["novelty"]["threshold"] == load_model(run_dir).novelty.threshold
    images = [*noise[:3], *unseen[:4]]
    engine = answer(load_model(run_dir), images)
    assert [a.unfamiliar for a in engine][:3] == [True] * 3
    for runtime in ("onnx", "torch"):
        lines = _run_bundle(result.bundle, images, runtime)
        assert [x["unfamiliar"] for x in lines] == [a.unfamiliar for a in engine], runtime
        assert max(abs(x["novelty"] - a.novelty.score) for x, a in zip(lines, engine)) < 1e-4


@pytest.mark.slow
def test_predict_page_says_a_noise_picture_does_not_look_like_the_training_pictures(run, app_dirs):
    run_dir, unseen, noise = run
    shutil.copytree(run_dir, app_dirs / "runs" / run_dir.name)
    at = no_exception(page("pages/4_Predict.py").run())
    at.file_uploader(key="predict_files").set_value([("noise.png", noise[0].read_bytes(), "image/png")]).run()
    wait_for_task(at, "predict_task")  # answered in the queue, not on the page's thread
    no_exception(at)
    words = texts(at)
    assert ("This does not look like your training pictures** (it is more unusual than every one of your "
            "labelled pictures") in words
    assert "Best guess:" in words and "normal pictures are flagged too" in words


@pytest.mark.slow
def test_predict_page_says_an_older_model_has_no_check(run, app_dirs):
    run_dir, _, noise = run
    old = shutil.copytree(run_dir, app_dirs / "runs" / f"{run_dir.name}-old")
    (old / novelty.NOVELTY_WEIGHTS).unlink()
    at = no_exception(page("pages/4_Predict.py").run())
    at.file_uploader(key="predict_files").set_value([("noise.png", noise[0].read_bytes(), "image/png")]).run()
    wait_for_task(at, "predict_task")  # answered in the queue, not on the page's thread
    no_exception(at)
    assert "trained before Transfer Studio had that check" in texts(at)
    assert "does not look like your training pictures" not in texts(at) and "sure)" in texts(at)
