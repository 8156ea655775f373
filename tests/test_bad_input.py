"""Bad input the dataset tests (test_datasets.py) do not cover yet: thousands of tiny files, and the
folder reader fuzzed with Hypothesis (the zip and upload readers are fuzzed there)."""
import io
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from transfer_core.data.datasets import (
    IMAGE_EXTENSIONS,
    TRAIN_FOLDER_NAMES,
    VAL_FOLDER_NAMES,
    DatasetError,
    _ignored,
    scan_dataset,
    write_uploads,
)


def _png(seed: int, side: int = 16) -> bytes:
    """A unique small image (random pixels), so duplicate detection never fires by accident."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _upload_and_scan(dest, per_class: int):
    """Seconds per file to write an upload of 3 classes x `per_class` tiny PNGs and scan it; the report."""
    files = [(f"shapes/{cls}/{i:04d}.png", _png(k * 10_000 + i)) for k, cls in enumerate(("a", "b", "c"))
             for i in range(per_class)]
    t0 = time.perf_counter()
    report = scan_dataset(write_uploads(files, dest))
    return (time.perf_counter() - t0) / len(files), report


def test_thousands_of_tiny_files_upload_and_scan(tmp_path):
    # Speed as a ratio measured side by side, so a busy machine slows both alike: per file, 3,000 files
    # cost about what 300 do (nothing is done per pair of files).
    few = min(_upload_and_scan(tmp_path / f"few{i}", 100)[0] for i in range(2))  # the less disturbed of two
    seconds, report = _upload_and_scan(tmp_path / "upload", 1000)
    assert report.classes == ("a", "b", "c") and not report.skipped
    counts = report.counts()
    assert all(counts[c]["total"] == 1000 and counts[c]["val"] == counts[c]["test"] == 100
               for c in report.classes), counts
    assert seconds < 3 * few, f"per file: {seconds * 1e3:.2f} ms for 3,000 files, {few * 1e3:.2f} ms for 300"


# ------------------------------------------------------------------------------------------ fuzzing the folder reader
_POOL = [_png(seed) for seed in range(12)]
_NAME_CHARS = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))
_CLASS = st.text(_NAME_CHARS, min_size=1, max_size=20).filter(
    lambda n: n not in (".", "..") and n.lower() not in TRAIN_FOLDER_NAMES + VAL_FOLDER_NAMES)
_FILE = st.tuples(st.text(_NAME_CHARS, min_size=1, max_size=20),
                  st.sampled_from([".png", ".PNG", ".jpg", ".txt", ".heic", ""]))
_CONTENT = st.sampled_from(["image", "empty", "text", "truncated", "noise"])


def _content(kind: str, i: int) -> bytes:
    image = _POOL[i % len(_POOL)]
    return {"image": image, "empty": b"", "text": b"not a picture\n", "truncated": image[: len(image) // 3],
            "noise": bytes(range(256)) * 3}[kind]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(st.tuples(_CLASS, _FILE, _CONTENT), min_size=1, max_size=14))
def test_fuzz_folder_reader(entries):
    """Any folder of odd names and odd files: either a plain DatasetError, or exactly the valid images."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        written = {}
        for i, (cls, (stem, ext), kind) in enumerate(entries):
            if len((stem + ext).encode()) > 255 or len(cls.encode()) > 255 or (stem + ext) in (".", ".."):
                continue
            (root / cls).mkdir(parents=True, exist_ok=True)
            (root / cls / (stem + ext)).write_bytes(_content(kind, i))
            written[(cls, stem + ext)] = kind  # a repeated name overwrites, as on a real disk
        valid = [(cls, name) for (cls, name), kind in written.items()
                 if kind == "image" and not _ignored(cls) and not _ignored(name)
                 and Path(name).suffix.lower() in IMAGE_EXTENSIONS]
        classes = {unicodedata.normalize("NFC", cls) for cls, _ in valid}
        try:
            report = scan_dataset(root)
        except DatasetError as exc:
            assert str(exc) and "Traceback" not in str(exc)
            assert len(classes) < 2 or _lone_wrapper(written), (classes, exc)
            return
        assert set(report.classes) == classes
        assert len(report.train) + len(report.val) == len(valid)
        for sample in report.train + report.val:
            assert Path(sample.path).is_file() and root in Path(sample.path).parents
            assert 0 <= sample.label < len(report.classes)


def _lone_wrapper(written: dict) -> bool:
    """One visible class folder only: the reader steps into it as a wrapping folder (as for zips)."""
    return len({cls for cls, _ in written if not _ignored(cls)}) == 1
