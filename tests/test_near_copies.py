"""Near-copies stay on one side of the split (transfer_core/data/nearcopies.py), on real pictures."""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageEnhance

from tests.conftest import TEXTILE_CLASSES, copy_textile, textile_root
from transfer_core.data.datasets import scan_dataset
from transfer_core.data.nearcopies import group_ids, thumbprint


def near_copy(image: Image.Image, rng: random.Random) -> Image.Image:
    """As a burst makes them: a few pixels' shift and a little brighter or darker."""
    w, h = image.size
    dx, dy = rng.randint(-8, 8), rng.randint(-8, 8)
    moved = image.crop((max(dx, 0), max(dy, 0), w + min(dx, 0), h + min(dy, 0))).resize((w, h))
    return ImageEnhance.Brightness(moved).enhance(rng.uniform(0.85, 1.15))


def burst_made(dest: Path, per_class: int, copies: int) -> Path:
    """`per_class` real textile pictures per class, each with `copies` near-copies beside it (names say whose)."""
    rng = random.Random(0)
    for cls in TEXTILE_CLASSES:
        (dest / cls).mkdir(parents=True)
        for i, src in enumerate(sorted((textile_root() / cls).glob("*.jpg"))[:per_class]):
            image = Image.open(src).convert("RGB")
            image.save(dest / cls / f"p{i:03d}-0.jpg", quality=92)
            for c in range(1, copies + 1):
                near_copy(image, rng).save(dest / cls / f"p{i:03d}-{c}.jpg", quality=92)
    return dest


def sides_of(report) -> dict[str, set[str]]:
    """Picture stem ("p003") -> the sides its files are on."""
    out: dict[str, set[str]] = {}
    for side, samples in (("train", report.train), ("val", report.val), ("test", report.test)):
        for s in samples:
            out.setdefault(f"{s.path.parent.name}/{s.path.stem.split('-')[0]}", set()).add(side)
    return out


def test_each_picture_and_its_near_copies_land_on_one_side(tmp_path):
    # 12 pictures x 5 = 60 per class: a test share too. Split picture by picture, 5 files of a group on one
    # side by chance for all 36 groups is about (0.8^4)^36: never.
    report = scan_dataset(burst_made(tmp_path / "bursts", 12, 4), val_split=0.2, seed=3)
    assert report.val and report.test, "validation and test shares exist"
    spread = {k: v for k, v in sides_of(report).items() if len(v) > 1}
    assert not spread, f"near-copies on two sides: {sorted(spread)[:3]}"
    assert len(report.val) + len(report.test) >= 0.1 * 180, "held-out shares are still about the asked size"
    assert report.notes and "36 group(s) of near-copies" in report.notes[0]


def test_frames_of_one_burst_stay_together_even_when_they_differ(tmp_path):
    """The app names burst frames burst-<time>-NN: distinct pictures from one burst are one group."""
    src = copy_textile(tmp_path / "src", 24)
    data = tmp_path / "data"
    for cls in TEXTILE_CLASSES:
        (data / cls).mkdir(parents=True)
        for i, f in enumerate(sorted((src / cls).glob("*.jpg"))):
            f.rename(data / cls / f"burst-20261207-1200{i // 6:02d}-{i % 6 + 1:02d}.jpg")
    report = scan_dataset(data, val_split=0.25, seed=1)
    bursts: dict[str, set[str]] = {}
    for side, samples in (("train", report.train), ("val", report.val)):
        for s in samples:
            bursts.setdefault(f"{s.path.parent.name}/{s.path.name[:21]}", set()).add(side)
    assert len(bursts) == 12 and all(len(v) == 1 for v in bursts.values()), bursts
    assert report.val, "one of each class's 4 bursts is held out"


def test_distinct_real_pictures_are_not_grouped(tmp_path):
    report = scan_dataset(copy_textile(tmp_path / "plain", 40), val_split=0.2, seed=0)
    assert report.notes == ()
    assert sum(s.label == 0 for s in report.val) == 8  # round(40 * 0.2), as before groups


def test_a_brighter_copy_is_a_near_copy_and_a_flat_picture_matches_nothing():
    src = sorted((textile_root() / "nominal").glob("*.jpg"))[:2]
    a, b = (Image.open(p).convert("RGB") for p in src)
    brighter = ImageEnhance.Brightness(a).enhance(1.2)
    grey, white = Image.new("RGB", (64, 64), (128, 128, 128)), Image.new("RGB", (64, 64), (255, 255, 255))
    ids = group_ids([Path(f"{i}.png") for i in range(5)], ["x", "y", "z", "g", "w"],
                    [thumbprint(im) for im in (a, brighter, b, grey, white)])
    assert ids[0] == ids[1] and len({ids[0], ids[2], ids[3], ids[4]}) == 4
