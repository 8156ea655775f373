"""Label a pile with help (issue 16 item 5): pictures without a class wait apart from the classes, a few labelled
by hand teach a head on the frozen backbone's features, and its proposals come least certain first."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import TEXTILE_CLASSES
from tests.test_classbuilder import demo, own_set, real_picture, workspaces  # noqa: F401 (fixtures)
from transfer_core.data import classbuilder as cb
from transfer_core.data.datafiles import DatasetError
from transfer_core.data.datasets import scan_dataset
from transfer_core.data.unlabelled import (
    UNLABELLED,
    add_unlabelled,
    label_picture,
    labelled_pictures,
    list_unlabelled,
    ready_to_suggest,
)
from transfer_core.quality.labelling import rank, suggest


def fill(own_set: Path, by_hand: int = 3, pile: int = 10) -> dict[str, str]:
    """`by_hand` real pictures per class in class folders, `pile` per class without a class; returns the
    pile's true class by file name (the names themselves say nothing about the class)."""
    truth = {}
    for cls in TEXTILE_CLASSES:
        cb.create_class(own_set, cls)
        for i in range(by_hand):
            cb.add_picture(own_set, cls, real_picture(cls, i), f"{cls}-{i}.jpg")
    for k in range(pile):
        for cls in TEXTILE_CLASSES:
            name = f"u{len(truth):02d}.jpg"
            add_unlabelled(own_set, real_picture(cls, 100 + k), name)
            truth[name] = cls
    return truth


def test_suggestions_from_three_labels_per_class_beat_guessing_and_come_least_certain_first(own_set):
    truth = fill(own_set)
    steps = []
    found = suggest(labelled_pictures(own_set), list_unlabelled(own_set),
                    progress=lambda phase, i, n: steps.append((phase, i, n)))
    assert sorted(s.path.name for s in found) == sorted(truth), "one proposal for each picture of the pile"
    right = [s.label == truth[s.path.name] for s in found]
    assert sum(right) / len(right) > 0.6, f"{sum(right)} of {len(right)} right: no better than guessing"
    confidences = [s.confidence for s in found]
    assert confidences == sorted(confidences), "the least certain come first"
    assert 1 / 3 <= confidences[0] < confidences[-1] <= 1
    assert all(0 <= s.margin <= s.confidence for s in found)
    # Asking about the uncertain ones first pays: the head is more often wrong there.
    half = len(found) // 2
    assert sum(right[:half]) < sum(right[half:])
    assert steps and steps[-1][1] == steps[-1][2], "progress reaches the end"


def test_rank_orders_by_confidence_then_margin():
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.4, 0.2], [0.4, 0.35, 0.25], [0.5, 0.3, 0.2]])
    found = rank(probs, ["a", "b", "c"], [Path(n) for n in "wxyz"])
    assert [s.path.name for s in found] == ["x", "y", "z", "w"]
    assert found[-1].label == "a" and found[-1].confidence == pytest.approx(0.9)
    assert found[0].margin == pytest.approx(0.0) and found[1].margin == pytest.approx(0.05)


def test_labelling_moves_the_picture_and_the_pile_is_never_a_class(own_set):
    truth = fill(own_set, by_hand=1, pile=2)
    report = scan_dataset(own_set)
    assert report.classes == TEXTILE_CLASSES, "the pile is not a class"
    assert len(report.train) + len(report.val) == 3, "pictures without a class are never trained on"
    assert UNLABELLED not in cb.list_classes(own_set)

    name = min(truth)
    moved = label_picture(own_set, name, truth[name])
    assert moved == own_set / truth[name] / name and moved.is_file()
    assert name not in [p.name for p in list_unlabelled(own_set)], "labelled means out of the pile"
    assert len(list_unlabelled(own_set)) == len(truth) - 1
    assert cb.list_classes(own_set)[truth[name]] == sorted([f"{truth[name]}-0.jpg", name])
    assert len(scan_dataset(own_set).train) + len(scan_dataset(own_set).val) == 4

    with pytest.raises(DatasetError, match="no picture"):
        label_picture(own_set, name, truth[name])  # not in the pile any more
    with pytest.raises(DatasetError, match="no class"):
        label_picture(own_set, sorted(truth)[1], "../..")


def test_suggesting_needs_two_classes_with_a_picture_each_said_in_words(own_set):
    add_unlabelled(own_set, real_picture("local", 5), "a.jpg")
    assert "two classes" in ready_to_suggest(labelled_pictures(own_set))
    cb.create_class(own_set, "good")
    cb.create_class(own_set, "bad")
    cb.add_picture(own_set, "good", real_picture("nominal", 0), "g.jpg")
    assert "only 'good' has pictures" in ready_to_suggest(labelled_pictures(own_set))
    with pytest.raises(DatasetError, match="at least one picture in each of two classes"):
        suggest(labelled_pictures(own_set), list_unlabelled(own_set))
    label_picture(own_set, "a.jpg", "bad")
    assert ready_to_suggest(labelled_pictures(own_set)) is None
    assert suggest(labelled_pictures(own_set), list_unlabelled(own_set)) == [], "nothing left to suggest for"


def test_a_damaged_upload_to_the_pile_is_refused_in_words(own_set):
    with pytest.raises(DatasetError, match="'broken.jpg' was not added"):
        add_unlabelled(own_set, b"\xff\xd8 not a jpeg", "broken.jpg")
    assert list_unlabelled(own_set) == []
