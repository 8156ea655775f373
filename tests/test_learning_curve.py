"""'Do I need more pictures, and of which class?': the per-class learning curve (quality/learning_curve.py), on
the pretrained network's real features of real textile pictures."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import copy_textile
from tests.test_app_pages import app_dirs  # noqa: F401 - a fixture
from transfer_core.data.datasets import Sample
from transfer_core.quality.embeddings import cached_embeddings, file_digest
from transfer_core.quality.learning_curve import (
    LEVELLED,
    MIN_PICTURES,
    MORE,
    TOO_FEW,
    UNCLEAR,
    cap_per_class,
    group_folds,
    learning_curve,
    verdict,
)

CLASSES = ["global", "local", "nominal"]
TITLE = "Right answers per class as it learns from more of that class"


@pytest.fixture(scope="module")
def textile(tmp_path_factory):
    """60 global, 60 local, only 24 nominal pictures: their pretrained features and labels."""
    root = copy_textile(tmp_path_factory.mktemp("curve"), 60)
    paths, labels = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((root / name).glob("*.jpg"))[:24 if name == "nominal" else 60]
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    features = cached_embeddings(paths, [file_digest(p) for p in paths], "mobilenet_v2", None, None, None).features
    return features, torch.tensor(labels)


def test_the_class_given_few_pictures_is_the_weakest_and_still_climbing(textile):
    features, labels = textile
    curve = learning_curve(features, labels, CLASSES)
    by_name = {c.name: c for c in curve.curves}
    glob, nominal = by_name["global"], by_name["nominal"]
    # Global defects are told apart from the first pictures: flat at the top, and said so.
    assert glob.verdict == LEVELLED and min(p.recall for p in glob.points) >= 0.95
    assert "global" not in curve.needs_more()
    # Nominal, given 24 pictures, is right least often, and its curve climbs over its shares; with 2-4 of its
    # pictures in each test fold the words may not claim more than the folds show, but never "levelled off".
    assert nominal.points[-1].recall < min(c.points[-1].recall for c in curve.curves if c is not nominal)
    assert nominal.points[-1].recall - nominal.points[0].recall >= 0.2
    assert nominal.verdict in (MORE, UNCLEAR) and "nominal" in nominal.describe()
    # Each point learns from its share of the class's pictures (4 folds of 5 learn from 80% of them): a curve
    # that did not subsample would sit at one x; other classes stay whole.
    assert [round(p.pictures) for p in nominal.points] == [5, 10, 14, 19]
    assert [round(p.share * 100) for p in nominal.points] == [25, 50, 75, 100]
    assert curve.folds == 5 and all(c.pictures == c.total for c in curve.curves)


def test_no_picture_of_a_test_fold_is_learned_from_or_chooses_the_penalty(textile, monkeypatch):
    """Every fit is watched: the pictures it learns from and those choosing its penalty, never its fold's test
    pictures (a leak makes a curve look better than the model will be on new pictures)."""
    import transfer_core.quality.learning_curve as module

    features, labels = textile
    seen, real = [], module.fit_head
    monkeypatch.setattr(module, "fit_head", lambda head, x, y, vx, vy, *a, **k: (
        seen.append(torch.cat([x, vx])), real(head, x, y, vx, vy, *a, **k))[1])
    curve = learning_curve(features, labels, CLASSES, shares=(0.5, 1.0))
    folds = group_folds(labels, torch.arange(len(labels)), 5)
    per_fold = len(seen) // curve.folds
    assert per_fold == 1 + 1 + len(CLASSES)  # the penalty's choice, all pictures, each class at half
    for i, rows in enumerate(seen):
        learned = torch.cdist(rows, features).argmin(1)
        assert not (folds[learned] == i // per_fold).any()
        if i % per_fold == 1:  # all pictures: every one outside the fold
            assert sorted(learned.tolist()) == torch.nonzero(folds != i // per_fold).flatten().tolist()


def test_copies_of_one_picture_stay_in_one_fold_and_cannot_inflate_the_score(textile):
    """Every picture three times (as a burst or a copied folder makes them) with a random label per picture:
    copies split across folds would be answered from memory."""
    features, _ = textile
    base = features[:60]
    labels = torch.randint(0, 3, (60,), generator=torch.Generator().manual_seed(2)).repeat(3)
    groups = torch.arange(60).repeat(3)
    folds = group_folds(labels, groups, 5)
    assert all(len(folds[groups == g].unique()) == 1 for g in range(60))
    curve = learning_curve(base.repeat(3, 1), labels, CLASSES, groups, shares=(1.0,))
    assert all(p.accuracy < 0.6 for c in curve.curves for p in c.points)
    ungrouped = learning_curve(base.repeat(3, 1), labels, CLASSES, shares=(1.0,))  # the broken version: copies on both sides
    assert ungrouped.curves[0].points[-1].accuracy > 0.9


def test_verdict_thresholds():
    assert verdict(0.20, 0.10, 40) == MORE
    assert verdict(0.20, 0.30, 40) == UNCLEAR  # a big rise the folds alone could make
    assert verdict(0.02, 0.02, 40) == LEVELLED
    assert verdict(0.00, 0.08, 40) == UNCLEAR  # flat, but too noisy to say it levelled off
    assert verdict(0.30, 0.00, MIN_PICTURES - 1) == TOO_FEW


def test_at_most_the_cap_per_class_is_measured_and_the_totals_are_kept():
    samples = [Sample(f"{c}/{i}.jpg", c) for c in range(2) for i in range(30 if c == 0 else 5)]
    kept, totals = cap_per_class(samples, 2, 10)
    assert totals == [30, 5] and [sum(s.label == c for s in kept) for c in range(2)] == [10, 5]
    assert kept == sorted(kept, key=samples.index)  # in the given order
    assert kept == cap_per_class(samples, 2, 10)[0]  # the same draw every time


def test_evaluate_page_draws_the_curve_and_says_which_class_needs_more(app_dirs, tmp_path):
    from tests.test_app_pages import no_exception, page, texts, wait_for_task
    from transfer_core.core.config import TrainConfig
    from transfer_core.service.workspaces import OwnerTag, new_token
    from transfer_core.workflows.train import train

    token = new_token()
    data = copy_textile(tmp_path / "data", 12)
    config = TrainConfig(data=str(data), epochs=1, image_size=64, batch_size=8, freeze="all")
    run_id = train(config, runs_dir=app_dirs / "runs", callbacks=[OwnerTag(token)]).run_dir.name
    at = no_exception(page("pages/3_Evaluate.py", token).run())
    wait_for_task(at, f"calibration_task_{run_id}")  # the page's other task, so its charts are all drawn
    assert not any(TITLE in str(chart.proto) for chart in at.get("plotly_chart"))
    assert "Do I need more pictures?" in [s.value for s in at.subheader]
    button = next(b for b in at.button if b.label == "Find out")
    assert button.help  # says how long and that nothing is changed
    button.click().run()
    no_exception(at)  # drawn at once: the measurement waits its turn in the engine's queue
    wait_for_task(at, f"learning_curve_task_{run_id}")
    no_exception(at)
    assert sum(TITLE in str(chart.proto) for chart in at.get("plotly_chart")) == 1
    words = texts(at)
    for name in CLASSES:  # one verdict per class, in words
        assert any(f" {name} " in f" {line} " or line.startswith(name) for line in words.splitlines()
                   if "pictures" in line or "levelled off" in line), name
    assert "Measured with the new classifier alone" in words
    curve = default_queue_result(at, run_id)
    assert [c.name for c in curve.curves] == CLASSES and all(len(c.points) == 4 for c in curve.curves)


def default_queue_result(at, run_id: str):
    from transfer_core.service.jobs import default_queue

    return default_queue().task(at.session_state[f"learning_curve_task_{run_id}"]).result


def test_command_line_prints_the_curve_as_json(tmp_path, capsys):
    import json

    from transfer_core.cli import main
    from transfer_core.core.config import TrainConfig
    from transfer_core.workflows.train import train

    data = copy_textile(tmp_path / "data", 12)
    run_dir = train(TrainConfig(data=str(data), epochs=1, image_size=64, batch_size=8, freeze="all"),
                    runs_dir=tmp_path / "runs").run_dir
    capsys.readouterr()
    assert main(["learning-curve", str(run_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in out["curves"]] == CLASSES and out["same_pictures"] is True
    # The test share (half of the 20% kept aside, when every class has 50) is absent at 12 a class: all 12 count.
    assert all(c["pictures"] == 12 and len(c["points"]) == 4 for c in out["curves"])
    assert set(out["words"]) == set(CLASSES) and all(name in out["words"][name] for name in CLASSES)
