"""Large picture sets made from the bundled textile demo, for bench/scale.py (on disk, never in the repo).

    python bench/scale_sets.py --sizes 2000 20000 [--root /tmp/transfer-scale]

The demo's 2,000 pictures are split once (seeded) into a test folder of TEST_PER_CLASS originals per class,
untouched and never in any training set, and a pool of the others. A set of N pictures holds every pool
picture in as many variants as it takes (a rotation by a multiple of 90 degrees, a mirror, a crop of 80-100%
resized back, a re-encoding at JPEG quality 70-95), cut at N, classes in their demo proportions:

    <root>/test/<class>/*.jpg          the held-out originals (Predict on a folder is scored on these)
    <root>/set-<N>/<class>/*.jpg       N training pictures (the engine splits off its own validation/test)

Variants of one picture are near-copies: the engine's own test share then holds near-copies of training
pictures, so its figure is optimistic; the test folder's is the honest one (bench/scale.py reports both).
A set already there with the same count is kept (made once per machine: 100,000 pictures take minutes).
"""
from __future__ import annotations

import argparse
import io
import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transfer_core.data.datasets import demo_dataset_path  # noqa: E402

DEFAULT_ROOT = Path(os.environ.get("TRANSFER_SCALE_ROOT", "/tmp/transfer-scale"))
TEST_PER_CLASS = {"nominal": 100, "global": 50, "local": 50}  # the demo's 2:1:1 proportions
SEED = 0


def demo_split(seed: int = SEED) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """(test, pool): class -> demo picture paths; the same for a seed on every machine."""
    test, pool = {}, {}
    for folder in sorted(p for p in demo_dataset_path().iterdir() if p.is_dir()):
        paths = sorted(folder.glob("*.jpg"))
        random.Random(f"{seed}/{folder.name}").shuffle(paths)
        k = TEST_PER_CLASS.get(folder.name, len(paths) // 10)
        test[folder.name], pool[folder.name] = sorted(paths[:k]), sorted(paths[k:])
    return test, pool


def variant(source: Path, k: int) -> bytes:
    """Variant k of a picture as JPEG bytes; k = 0 is the original's bytes unchanged."""
    if k == 0:
        return source.read_bytes()
    rng = random.Random(f"{source.name}/{k}")
    image = Image.open(source).convert("RGB")
    image = image.rotate(90 * (k % 4), expand=True)
    if (k // 4) % 2:
        image = ImageOps.mirror(image)
    w, h = image.size
    share = rng.uniform(0.8, 1.0)
    cw, ch = int(w * share), int(h * share)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    image = image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=rng.randint(70, 95))
    return out.getvalue()


def _write(job: tuple[Path, int, Path]) -> None:
    source, k, target = job
    target.write_bytes(variant(source, k))


def set_plan(pool: dict[str, list[Path]], n: int) -> list[tuple[Path, int, Path]]:
    """(source, variant, relative target) for a set of n pictures, every class in its pool's share."""
    total = sum(len(v) for v in pool.values())
    plan = []
    for name, paths in pool.items():
        want = round(n * len(paths) / total)
        plan += [(paths[i % len(paths)], i // len(paths), Path(name) / f"{paths[i % len(paths)].stem}_v{i // len(paths)}.jpg")
                 for i in range(want)]
    return plan


def make_set(root: Path, n: int, workers: int | None = None) -> Path:
    """The set of n pictures under root (made if missing or incomplete)."""
    _, pool = demo_split()
    target = root / f"set-{n}"
    plan = set_plan(pool, n)
    if target.is_dir() and sum(1 for _ in target.rglob("*.jpg")) == len(plan):
        return target
    for name in pool:
        (target / name).mkdir(parents=True, exist_ok=True)
    jobs = [(src, k, target / rel) for src, k, rel in plan if not (target / rel).exists()]
    with ProcessPoolExecutor(workers or os.cpu_count()) as ex:
        list(ex.map(_write, jobs, chunksize=256))
    return target


def make_test(root: Path) -> Path:
    test, _ = demo_split()
    target = root / "test"
    for name, paths in test.items():
        (target / name).mkdir(parents=True, exist_ok=True)
        for p in paths:
            if not (target / name / p.name).exists():
                (target / name / p.name).write_bytes(p.read_bytes())
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    a = ap.parse_args()
    print(make_test(a.root))
    for n in a.sizes:
        print(make_set(a.root, n))


if __name__ == "__main__":
    main()
