"""After a retrain, the old model and the new one on the same pictures (transfer_core.results.versus): real
tiny runs on real textile pictures, the counts checked against each model's own answers picture by picture,
and the fair pictures checked to be ones neither model trained on."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import TEXTILE_CLASSES, copy_textile
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import RunFinished
from transfer_core.inference.predict import predict
from transfer_core.results.versus import after_retrain, compare_on, held_out_by_both, held_out_pictures, spread
from transfer_core.runstore.runs import RunFolder
from transfer_core.workflows.train import train

TINY = dict(schedule="fixed", image_size=64, batch_size=8, seed=0, freeze="all", epochs=1)
ADDED_PER_CLASS = 4


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory):
    """An old run on 8 pictures per class; then 4 more per class are added (as corrections would be) and the
    new run trains on all 12. The old run knows two classes only, so the models differ on the third."""
    root = tmp_path_factory.mktemp("versus")
    data = copy_textile(root / "data", 8)
    two = root / "two"
    for cls in TEXTILE_CLASSES[:2]:
        shutil.copytree(data / cls, two / cls)
    runs = root / "runs"
    old = train(TrainConfig(data=str(data), **TINY), runs_dir=runs)
    two_classes = train(TrainConfig(data=str(two), **TINY), runs_dir=runs)
    before = {str(p.resolve()) for p in data.rglob("*.jpg")}
    copy_textile(data, ADDED_PER_CLASS, offset=8)
    added = [str(p.resolve()) for p in data.rglob("*.jpg") if str(p.resolve()) not in before]
    new = train(TrainConfig(data=str(data), **TINY), runs_dir=runs)
    for result in (old, two_classes, new):
        assert isinstance(result.final, RunFinished), result.final
    return old.run_dir, two_classes.run_dir, new.run_dir, data, before, added


def top_class(run_dir: Path, path: str) -> str:
    return predict(run_dir, [path], k=1)[0][0][0]


def test_the_counts_are_each_models_own_answers_on_the_same_pictures(old_and_new):
    _old, two_classes, new, data, _before, _added = old_and_new
    pictures = [(str(p), p.parent.name) for cls in TEXTILE_CLASSES for p in sorted((data / cls).glob("*.jpg"))[:4]]
    result = compare_on(two_classes, new, pictures)
    assert result.n == len(pictures) == 12
    assert result.right_old == sum(top_class(two_classes, p) == truth for p, truth in pictures)
    assert result.right_new == sum(top_class(new, p) == truth for p, truth in pictures)
    # The two-class model cannot name the third class: its count leaves those 4 out, the new model's need not.
    assert result.right_old <= 8
    swapped = compare_on(new, two_classes, pictures)
    assert (swapped.right_old, swapped.right_new) == (result.right_new, result.right_old)


def test_an_unreadable_picture_is_left_out_of_both_counts(old_and_new, tmp_path):
    old, _two, new, data, _before, _added = old_and_new
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    pictures = [(str(sorted((data / "local").glob("*.jpg"))[0]), "local"), (str(broken), "local"),
                (str(tmp_path / "gone.jpg"), "local")]
    assert compare_on(old, new, pictures).n == 1


def test_the_fair_pictures_were_held_out_by_the_new_run_and_never_trained_on_by_the_old(old_and_new):
    old, _two, new, _data, before, added = old_and_new
    new_held_out = {path: truth for _name, path, truth in held_out_pictures(RunFolder(new))}
    old_held_out = {str(Path(path).resolve()) for _name, path, _truth in held_out_pictures(RunFolder(old))}
    old_trained_on = before - old_held_out
    fair = held_out_by_both(old, new, added)
    assert fair, "no picture held out by both runs: the test's data should leave some"
    for path, truth in fair:
        assert new_held_out[path] == truth == Path(path).parent.name
        assert str(Path(path).resolve()) not in old_trained_on
    # The shuffled split puts some of the old run's training pictures into the new validation share: left out.
    left_out = [p for p in new_held_out if str(Path(p).resolve()) in old_trained_on]
    assert left_out and not set(left_out) & {p for p, _ in fair}
    # Every new held-out picture that is fair is kept (added ones included when named).
    fair_paths = {p for p, _ in fair}
    assert fair_paths == {p for p in new_held_out if str(Path(p).resolve()) not in old_trained_on}
    assert {str(Path(p).resolve()) for p in fair_paths} & set(added), "no added picture among the fair ones"
    without_added = {p for p, _ in held_out_by_both(old, new)}
    assert without_added == {p for p in fair_paths if str(Path(p).resolve()) not in set(added)}


def test_spread_keeps_at_most_the_limit_evenly_and_always_the_same():
    pictures = [(f"{i}.jpg", "a" if i < 300 else "b") for i in range(400)]
    picked = spread(pictures, 100)
    assert len(picked) == 100 and picked == spread(pictures, 100)
    assert sum(truth == "b" for _, truth in picked) == 25  # each class keeps its share
    assert spread(pictures[:50], 100) == pictures[:50]


def test_after_a_retrain_the_fair_pictures_and_the_corrected_ones_are_counted_apart(old_and_new):
    old, _two, new, _data, _before, added = old_and_new
    steps = []
    result = after_retrain(old, new, added, progress=lambda i, n: steps.append((i, n)))
    fair = held_out_by_both(old, new, added)
    assert result.held_out == compare_on(old, new, fair) and result.held_out_total == len(fair)
    assert result.corrected == compare_on(old, new, [(p, Path(p).parent.name) for p in added])
    assert result.corrected.n == len(added) == 3 * ADDED_PER_CLASS
    new_held_out = {str(Path(p).resolve()) for _name, p, _truth in held_out_pictures(RunFolder(new))}
    assert result.corrected_trained_on == sum(p not in new_held_out for p in added) > 0
    assert steps[-1] == (len(fair) + len(added),) * 2 and [i for i, _ in steps] == sorted(i for i, _ in steps)
