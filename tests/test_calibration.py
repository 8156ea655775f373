"""Calibration on a real trained run: temperature scaling makes confidence honest on held-out images,
and a "not sure" threshold trades coverage for accuracy."""
import json
import shutil
import threading

import pytest
import torch
from conftest import copy_textile

from tests.test_app_pages import app_dirs, no_exception, page, texts  # noqa: F401
from transfer_core import cli
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import RunFinished
from transfer_core.inference.calibration import (
    CALIBRATION_FILE,
    Calibration,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    load_temperature,
    nll,
    reliability_bins,
    run_calibration,
    scaled_probs,
)
from transfer_core.inference.evaluation import evaluate_run
from transfer_core.inference.predict import NOT_SURE, answer, load_model, predict_probs
from transfer_core.results.export import model_card
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.jobs import default_queue
from transfer_core.workflows.train import train


@pytest.fixture(scope="module")
def overconfident_run(tmp_path_factory):
    """A real run made over-confident honestly: no label smoothing or dropout, a high learning rate on
    the new head, many epochs on 90 training images. Half of the 180 real textile images validate."""
    data = copy_textile(tmp_path_factory.mktemp("textile60"), 60)
    config = TrainConfig(schedule="fixed", data=str(data), freeze="all", epochs=12, lr=0.1, image_size=128, batch_size=16,
                         label_smoothing=0.0, dropout=0.0, val_split=0.5, seed=0,
                         test_share=False)  # all 90 held-out pictures calibrate and measure it
    result = train(config, runs_dir=tmp_path_factory.mktemp("runs"))
    assert isinstance(result.final, RunFinished), result.final
    return result.run_dir


@pytest.mark.slow
def test_temperature_fitted_on_some_images_lowers_nll_and_ece_on_the_others(overconfident_run):
    saved = Calibration.from_dict(json.loads((overconfident_run / CALIBRATION_FILE).read_text()))
    assert saved.temperature > 1.5  # the trainer found the model over-confident and saved the fix
    ev = evaluate_run(overconfident_run)
    fit_on, held_out = torch.arange(0, len(ev.labels), 2), torch.arange(1, len(ev.labels), 2)
    t = fit_temperature(ev.probs[fit_on], ev.labels[fit_on])
    before, after = ev.probs[held_out], scaled_probs(ev.probs[held_out], t)
    y = ev.labels[held_out]
    assert nll(after, y) < 0.8 * nll(before, y)
    assert expected_calibration_error(after, y) < expected_calibration_error(before, y)
    assert torch.equal(after.argmax(1), before.argmax(1))  # calibration never changes the predicted class
    # The figures the app shows are cross-fitted the same way, so they too are held-out figures.
    assert saved.ece_after < saved.ece_before and saved.nll_after < saved.nll_before
    assert "too sure of itself" in saved.describe()


@pytest.mark.slow
def test_a_not_sure_threshold_lowers_coverage_and_raises_accuracy_of_the_answers(overconfident_run):
    rc = run_calibration(overconfident_run)
    everything, strict = rc.threshold_effect(0.0), rc.threshold_effect(0.8)
    assert everything.coverage == 1.0
    assert everything.answered_accuracy == pytest.approx(evaluate_run(overconfident_run).evaluation.accuracy)
    assert 0.1 < strict.coverage < 0.9
    assert strict.answered_accuracy > everything.answered_accuracy + 0.05
    coverages = [e.coverage for e in rc.threshold_curve()]
    assert coverages == sorted(coverages, reverse=True)
    assert sum(b.count for b in rc.bins_before()) == sum(b.count for b in rc.bins_after()) == len(rc.labels)


@pytest.mark.slow
def test_predict_uses_the_saved_temperature_and_answers_not_sure(overconfident_run, capsys):
    model = load_model(overconfident_run)
    assert model.temperature == pytest.approx(load_temperature(overconfident_run)) and model.temperature > 1.5
    images = RunFolder(overconfident_run).validation_images()[::3]  # all classes
    raw, calibrated = predict_probs(model, images, calibrated=False), predict_probs(model, images)
    assert torch.equal(raw.argmax(1), calibrated.argmax(1))
    assert calibrated.max(1).values.mean() < raw.max(1).values.mean() - 0.05  # less sure, as it should be
    strict = answer(model, images, threshold=0.8)
    assert 0 < sum(a.label == NOT_SURE for a in strict) < len(images)
    # A picture unlike the training pictures is never "sure" (novelty.py; by design ~5% of validation ones).
    assert all(a.sure == (a.confidence >= 0.8 and not a.unfamiliar) for a in strict)
    assert all(a.sure != a.unfamiliar for a in answer(model, images, threshold=0.0))
    with pytest.raises(ValueError, match="between 0 and 1"):
        answer(model, images, threshold=80)
    assert cli.main(["predict", str(overconfident_run), *images[:10], "--threshold", "0.8", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["answer"] for x in lines] == [a.label for a in strict[:10]]
    assert [x["answer"] in (NOT_SURE, "unfamiliar") for x in lines] == [not a.sure for a in strict[:10]]


@pytest.mark.slow
def test_a_run_saved_before_calibration_existed_still_works(overconfident_run, tmp_path):
    old = shutil.copytree(overconfident_run, tmp_path / "old-run")
    (old / CALIBRATION_FILE).unlink()
    assert load_temperature(old) == 1.0  # predicts exactly as trained
    refit = run_calibration(old).calibration  # the app can still show calibration, fitted on the fly
    assert refit.temperature == pytest.approx(load_temperature(overconfident_run), rel=1e-3)
    (old / CALIBRATION_FILE).write_text(json.dumps({"temperature": 2.0}))  # a hand-written file: T only
    assert load_temperature(old) == 2.0 and run_calibration(old).calibration.images == len(_validation_labels(old))


@pytest.mark.slow
def test_evaluate_measures_calibration_in_the_queue_not_on_the_page(overconfident_run, app_dirs,  # noqa: F811
                                                                    monkeypatch):
    import ui.calibration_view as view

    run = shutil.copytree(overconfident_run, app_dirs / "runs" / overconfident_run.name)
    (run / CALIBRATION_FILE).unlink()  # an older run: the temperature is fitted again, from the page
    release, threads = threading.Event(), []

    def held_back(run_dir, progress=None):
        threads.append(threading.current_thread().name)
        progress("reading the validation results", 0, 3)
        assert release.wait(timeout=120)  # the page must draw meanwhile: it does not wait for the work
        return run_calibration(run_dir, progress=progress)

    monkeypatch.setattr(view, "run_calibration", held_back)
    try:
        at = no_exception(page("pages/3_Evaluate.py").run())
        task = default_queue().task(at.session_state[view.task_key(run)])
        assert task is not None and task.kind == view.KIND and task.state in ("queued", "running")
        assert "Per class" in [h.value for h in at.subheader]  # the rest of the page is there already
        assert "After calibration" not in {m.label for m in at.metric}
    finally:
        release.set()
    assert default_queue().wait(task.id, timeout=120) and task.error is None
    assert threads == [f"transfer-studio-job {task.id}"]  # the queue's thread for it, not the page's script thread
    assert task.progress == (3, 3, "measuring it on held-out halves")
    no_exception(at.run())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["After calibration"] == f"{task.result.calibration.ece_after:.1%}"
    assert "too sure of itself" in texts(at)
    at.run()  # drawn again (another widget moved): the measurement is kept, not queued again
    assert at.session_state[view.task_key(run)] == task.id


def _validation_labels(run_dir):
    return json.loads((run_dir / "validation.json").read_text())["labels"]


def test_temperature_recovers_a_known_overconfidence():
    """Labels drawn from known probabilities; the model reports them sharpened by a factor 3."""
    torch.manual_seed(0)
    true_logits = torch.randn(3000, 3) * 2
    labels = torch.distributions.Categorical(logits=true_logits).sample()
    reported = (true_logits * 3).softmax(1)
    assert fit_temperature(reported, labels) == pytest.approx(3.0, rel=0.1)
    assert expected_calibration_error(scaled_probs(reported, 3.0), labels) < 0.03
    assert expected_calibration_error(reported, labels) > 0.08


def test_reliability_bins_put_every_image_in_one_bin():
    probs = torch.tensor([[1.0, 0.0], [0.55, 0.45], [0.05, 0.95], [0.5, 0.5]])
    bins = reliability_bins(probs, torch.tensor([0, 1, 1, 0]), bins=10)
    assert [b.count for b in bins] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]  # 1.0 lands in the last bin
    assert bins[9].accuracy == 1.0 and bins[5].accuracy == 0.5 and bins[9].confidence == pytest.approx(0.975)


def test_a_temperature_that_raises_held_out_loss_is_not_kept():
    """A model whose confidence is already right (labels drawn from its own probabilities): a temperature
    fitted to 40 of its answers fits their noise, and only raises the loss on the others. Keep the model's own."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 3, generator=gen) * 2
    labels = torch.multinomial(logits.softmax(1), 1, generator=gen).squeeze(1)
    probs = logits.softmax(1)
    cal = calibrate(probs, labels)
    assert cal.nll_after >= cal.nll_before  # the honest, cross-fitted measure: fitting did not help here
    assert not cal.kept and cal.temperature == 1.0 and cal.fitted != 1.0
    assert "did not lower the error" in cal.describe() and "after calibration" not in cal.describe()


def test_too_few_validation_pictures_keep_the_models_own_confidence():
    """16 pictures: the classroom case where a fitted temperature made the error 16.5% -> 48.6%."""
    torch.manual_seed(0)
    logits = torch.randn(16, 2) * 4
    labels = torch.randint(0, 2, (16,))
    cal = calibrate(logits.softmax(1), labels)
    assert not cal.kept and cal.temperature == 1.0 and cal.images == 16
    assert "Too few validation pictures (16; at least 30)" in cal.describe()


def test_a_small_real_run_keeps_its_own_confidence_and_its_card_says_why(tmp_path):
    data = copy_textile(tmp_path / "small", 10)
    result = train(TrainConfig(schedule="fixed", data=str(data), freeze="all", epochs=1, image_size=96, seed=0),
                   runs_dir=tmp_path / "runs")
    assert isinstance(result.final, RunFinished), result.final
    saved = json.loads((result.run_dir / CALIBRATION_FILE).read_text())
    assert saved["kept"] is False and saved["temperature"] == 1.0 and saved["why"].startswith("Too few")
    model = load_model(result.run_dir)
    assert model.temperature == 1.0
    card = model_card(RunFolder(result.run_dir), ["global", "local", "nominal"], model.prep.to_dict())
    assert card["calibration"]["used"] is False and card["calibration"]["why"].startswith("Too few")
