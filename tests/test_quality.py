"""Data-quality checks on real textile images: flipped labels, near duplicates, leakage, review actions."""
import json
import random
import shutil
from pathlib import Path

import pytest
from conftest import TEXTILE_CLASSES, copy_textile, textile_root
from PIL import Image

from transfer_core.cli import main
from transfer_core.data.datasets import DatasetError, demo_dataset_path, scan_dataset
from transfer_core.quality.checks import check_dataset
from transfer_core.quality.embeddings import clear_feature_cache
from transfer_core.quality.review_actions import exclude_image, move_to_class, undo_move


def flip_labels(root: Path, share: float, seed: int) -> set[str]:
    """Move `share` of the images into another class folder at random; returns their new paths."""
    files = sorted(root.glob("*/*.jpg"))
    rng = random.Random(seed)
    flipped = set()
    for f in rng.sample(files, round(share * len(files))):
        other = rng.choice([c for c in TEXTILE_CLASSES if c != f.parent.name])
        dest = root / other / f"flipped_{f.name}"
        shutil.move(f, dest)
        flipped.add(str(dest))
    return flipped


@pytest.mark.slow
def test_most_flipped_labels_are_flagged(tmp_path):
    root = copy_textile(tmp_path / "data", 80)  # 240 real images
    flipped = flip_labels(root, 0.05, seed=0)  # 12 wrong labels
    phases = set()
    clear_feature_cache()
    report = check_dataset(root, image_size=128, progress=lambda phase, done, total: phases.add(phase))
    flagged = {s.image.path for s in report.suspects}
    found = flagged & flipped
    assert len(flagged) <= 0.15 * len(report.images)
    assert len(found) >= len(flipped) / 2, f"only {len(found)} of {len(flipped)} flipped labels flagged"
    by_path = {s.image.path: s for s in report.suspects}
    for path in found:  # the suggestion is the folder the picture came from, or at least not its wrong one
        assert by_path[path].suggested != by_path[path].given
        assert by_path[path].given_probability < by_path[path].suggested_probability
    assert {"reading", "features", "labels"} <= phases
    json.dumps(report.to_dict())  # the app and the CLI can save it as it is


def _split_layout(tmp_path: Path) -> Path:
    """train/ and val/ folders, 3 classes x (8 train + 3 val) real images."""
    root = tmp_path / "split"
    copy_textile(root / "train", 8)
    copy_textile(root / "val", 3, offset=8)
    return root


def _resaved(src: Path, dest: Path, side: int, quality: int) -> Path:
    Image.open(src).convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(dest, quality=quality)
    return dest


@pytest.mark.slow
def test_resized_copy_and_train_val_leak_are_found_and_nothing_else(tmp_path):
    root = _split_layout(tmp_path)
    original = sorted((root / "train" / "local").glob("*.jpg"))[0]
    near = _resaved(original, root / "train" / "local" / "copy_200px_q70.jpg", 200, 70)
    leaked_src = sorted((root / "train" / "nominal").glob("*.jpg"))[2]
    leak = _resaved(leaked_src, root / "val" / "nominal" / "leaked_240px_q80.jpg", 240, 80)
    exact = root / "val" / "global" / "exact_copy.jpg"
    shutil.copy(sorted((root / "train" / "global").glob("*.jpg"))[1], exact)

    report = check_dataset(root, image_size=128)

    pairs = {frozenset((Path(d.a.path).name, Path(d.b.path).name)): d for d in report.duplicates}
    assert set(pairs) == {frozenset((original.name, near.name)), frozenset((leaked_src.name, leak.name)),
                          frozenset((exact.name, sorted((root / "train" / "global").glob("*.jpg"))[1].name))}
    assert not pairs[frozenset((original.name, near.name))].leak  # both in training
    assert pairs[frozenset((leaked_src.name, leak.name))].leak
    assert pairs[frozenset((exact.name, sorted((root / "train" / "global").glob("*.jpg"))[1].name))].exact
    assert len(report.leaks) == 2
    assert any("validation score will look better" in line for line in report.summary())

    # review: exclude the leaked copies, check again; features come from the cache, not the network
    for pair in report.leaks:
        exclude_image(root, pair.b.path, tmp_path / "excluded")
    phases = set()
    again = check_dataset(root, image_size=128, progress=lambda phase, done, total: phases.add(phase))
    assert not again.leaks and len(again.duplicates) == 1 and len(again.images) == len(report.images) - 2
    assert "features" not in phases


@pytest.mark.slow
def test_check_data_cli_prints_the_report_as_json(tmp_path, capsys):
    root = copy_textile(tmp_path / "data", 6)
    shutil.copy(next((root / "local").glob("*.jpg")), root / "local" / "same_file.jpg")
    assert main(["check-data", str(root), "--image-size", "96", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == list(TEXTILE_CLASSES)
    assert len(out["images"]) == 19
    assert [d["exact"] for d in out["duplicates"]] == [True]


# ---------------------------------------------------------------------------------------------- actions
def test_move_to_class_relabels_and_undo_puts_it_back(tmp_path):
    root = copy_textile(tmp_path / "data", 3)
    image = sorted((root / "local").glob("*.jpg"))[0]
    move = move_to_class(root, image, "nominal")
    assert not image.exists() and Path(move.destination).parent == root / "nominal"
    report = scan_dataset(root)
    labels = {s.path: s.label for s in report.train + report.val}
    assert labels[Path(move.destination)] == TEXTILE_CLASSES.index("nominal") and image not in labels
    undo_move(move)
    assert image.is_file() and not Path(move.destination).exists()


def test_move_in_a_train_val_layout_stays_in_its_split(tmp_path):
    root = _split_layout(tmp_path)
    image = sorted((root / "val" / "global").glob("*.jpg"))[0]
    move = move_to_class(root, image, "local")
    assert Path(move.destination).parent == root / "val" / "local" and not image.exists()


def test_move_never_overwrites_a_file_of_the_same_name(tmp_path):
    root = copy_textile(tmp_path / "data", 2)
    image = sorted((root / "local").glob("*.jpg"))[0]
    blocker = root / "global" / image.name
    assert blocker.is_file()  # the textile classes use the same file names
    before = blocker.read_bytes()
    move = move_to_class(root, image, "global")
    assert Path(move.destination).name != image.name and blocker.read_bytes() == before


def test_exclude_moves_the_file_out_of_the_data_set_and_logs_it(tmp_path):
    root = copy_textile(tmp_path / "data", 3)
    image = sorted((root / "global").glob("*.jpg"))[1]
    excluded = tmp_path / "workspace" / "excluded"
    move = exclude_image(root, image, excluded)
    assert Path(move.destination) == excluded / "global" / image.name and Path(move.destination).is_file()
    report = scan_dataset(root)
    assert image not in {s.path for s in report.train + report.val} and len(report.train + report.val) == 8
    log = [json.loads(line) for line in (excluded / "excluded.jsonl").read_text().splitlines()]
    assert log[0]["source"] == str(image.resolve())
    undo_move(move)
    assert image.is_file()


@pytest.mark.parametrize("case", ["unknown class", "outside", "excluded inside", "not in a class"])
def test_actions_refuse_with_a_plain_message(tmp_path, case):
    root = copy_textile(tmp_path / "data", 2)
    image = sorted((root / "local").glob("*.jpg"))[0]
    stray = tmp_path / "elsewhere.jpg"
    shutil.copy(image, stray)
    loose = root / "loose.jpg"
    shutil.copy(image, loose)
    with pytest.raises(DatasetError) as info:
        if case == "unknown class":
            move_to_class(root, image, "../../etc")
        elif case == "outside":
            move_to_class(root, stray, "global")
        elif case == "excluded inside":
            exclude_image(root, image, root / "excluded")
        else:
            move_to_class(root, loose, "global")
    assert image.is_file() and stray.is_file() and loose.is_file()  # nothing moved
    assert "Traceback" not in str(info.value) and len(str(info.value)) > 20


def test_the_shared_demo_data_cannot_be_changed():
    image = sorted((demo_dataset_path() / "local").glob("*.jpg"))[0]
    with pytest.raises(DatasetError, match="demo"):
        move_to_class(textile_root(), image, "nominal")
    assert image.is_file()
