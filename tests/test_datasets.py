"""transfer_core.data.datasets: scanning, splitting, decoding odd images, and unpacking hostile zips/uploads."""
from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from datasets_fixtures import (  # noqa: F401
    blank_png_bytes,
    copy_real,
    noise_png,
    png_bytes,
    real_jpgs,
    symlink_info,
    textile10,
    tiny_png,
    zip_bomb,
    zip_folder,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

import transfer_core.data.datasets as ds
from transfer_core.data.datasets import (
    BadImage,
    DatasetError,
    DatasetReport,
    Sample,
    Skipped,
    ZipLimits,
    demo_dataset_path,
    load_rgb,
    safe_extract_zip,
    scan_dataset,
    scan_unlabelled,
    write_uploads,
)

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _files_under(folder: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(folder) for f in fs]


def _all_inside(folder: Path) -> bool:
    real = folder.resolve()
    return all(p.resolve().is_relative_to(real) and not p.is_symlink() for p in _files_under(folder))


def _split_by_class(report: DatasetReport) -> dict[str, tuple[list[Path], list[Path]]]:
    out = {c: ([], []) for c in report.classes}
    for i, samples in enumerate((report.train, report.val)):
        for s in samples:
            out[report.classes[s.label]][i].append(s.path)
    return out


# ------------------------------------------------------------------------------------------ real data
def test_real_textile_class_folders(textile10):
    report = scan_dataset(textile10)
    assert report.classes == ("global", "local", "nominal")
    assert report.layout == ds.LAYOUT_CLASSES
    assert report.counts() == {c: {"train": 8, "val": 2, "test": 0, "total": 10} for c in report.classes}
    assert report.skipped == () and report.warnings == ()
    assert all(isinstance(s, Sample) and s.path.is_absolute() for s in report.train + report.val)
    summary = json.loads(json.dumps(report.to_dict()))
    assert summary["fingerprint"] == report.fingerprint() and len(report.fingerprint()) == 16
    assert set(summary) >= {"classes", "counts", "skipped", "warnings", "layout", "fingerprint"}


def _seconds_per_image(root: Path, repeats: int = 2) -> tuple[float, DatasetReport]:
    """Scanning time per picture, the best of `repeats` scans (the least disturbed by other work)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        report = scan_dataset(root)
        best = min(best, time.perf_counter() - start)
    return best / (len(report.train) + len(report.val) + len(report.test)), report


def test_whole_demo_folder_scans_in_time_proportional_to_its_size(tmp_path):
    """Scanning work grows with the number of pictures, not faster. A ratio measured side by side (a 150
    picture copy of the same data, then the whole 2,000), so a busy machine slows both alike."""
    small, _ = _seconds_per_image(copy_real(tmp_path / "small", 50))
    whole, report = _seconds_per_image(demo_dataset_path())
    assert report.classes == ("global", "local", "nominal")
    assert len(report.train) + len(report.val) + len(report.test) == 2000 and not report.skipped
    assert (len(report.train), len(report.val), len(report.test)) == (1600, 200, 200)
    assert whole < 2 * small, (whole, small)  # per picture; measured 0.9x; all-pairs work makes it 3x+


def test_fingerprint_identifies_the_data(tmp_path, textile10):
    data = shutil.copytree(textile10, tmp_path / "d")
    first = scan_dataset(data).fingerprint()
    assert scan_dataset(data, seed=5).fingerprint() == first  # the split does not change the data
    shutil.copy(real_jpgs("local", 1, offset=50)[0], data / "local" / "extra.jpg")
    assert scan_dataset(data).fingerprint() != first


def test_demo_path_missing_package_is_a_plain_error(monkeypatch):
    monkeypatch.setattr(ds.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError, match="pip install conformal-clip-data"):
        demo_dataset_path()


ENGINE = Path(ds.__file__).parents[1]  # transfer_core, above data/


def _engine_modules() -> list[str]:
    """transfer_core and every module below it, as importable dotted names (not __main__: importing it
    runs the command line)."""
    names = []
    for path in sorted(ENGINE.rglob("*.py")):
        if path.stem == "__main__":
            continue
        parts = path.relative_to(ENGINE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _imported_names(tree: ast.AST) -> set[str]:
    """Every module a file imports: import statements, and the strings given to importlib.import_module,
    __import__ and importlib.util.find_spec (an import hidden in a string is still an import)."""
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and n.args and isinstance(n.args[0], ast.Constant) \
                and isinstance(n.args[0].value, str):
            func = ast.unparse(n.func)
            if func.endswith(("import_module", "__import__", "find_spec")):
                names.add(n.args[0].value)
    return names


def test_engine_never_imports_streamlit():
    """The engine serves the command line and tests too; only app.py and pages/ may use Streamlit."""
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 30 and ENGINE / "methods" / "adaptation.py" in files  # sub-packages are walked too
    for path in files:
        names = _imported_names(ast.parse(path.read_text()))
        assert not any(n.split(".")[0] == "streamlit" for n in names), path
    # And at run time: importing every engine module pulls in no Streamlit, directly or through a library.
    modules = _engine_modules()
    code = f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; " \
           "print('streamlit' in sys.modules, len(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=ENGINE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, count = out.stdout.split()
    assert loaded == "False" and int(count) > len(modules)


# ------------------------------------------------------------------------------------------ bad files
def test_bad_files_are_skipped_with_reasons(tmp_path):
    root = copy_real(tmp_path / "d", 10, classes=("local", "nominal"))
    good = real_jpgs("global", 1)[0].read_bytes()
    (root / "local" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (root / "local" / "notes.jpg").write_text("these are my notes, not a picture\n" * 20)
    (root / "local" / "empty.png").write_bytes(b"")
    (root / "local" / "readme.txt").write_text("hello")
    (root / "local" / "phone.heic").write_bytes(b"\x00" * 64)
    tiny_png(root / "nominal" / "dot.png", size=(1, 1))
    (root / "stray.jpg").write_bytes(good)
    report = scan_dataset(root)
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons == {
        "local/cut.jpg": "file is damaged or cut short",
        "local/notes.jpg": "not an image",
        "local/empty.png": "empty file",
        "local/readme.txt": "not an image file",
        "local/phone.heic": "HEIC photos are not supported: convert them to JPEG",
        "nominal/dot.png": "image too small (1x1 px; at least 16x16)",
        "stray.jpg": "not inside a class folder",
    }
    assert report.counts()["local"]["total"] == 10 and report.counts()["nominal"]["total"] == 10


def test_hidden_files_and_macos_litter_are_ignored_silently(tmp_path):
    root = copy_real(tmp_path / "d", 10, classes=("local", "nominal"))
    for junk in (".DS_Store", "._0001.jpg", "Thumbs.db", "desktop.ini"):
        (root / "local" / junk).write_bytes(b"junk")
    tiny_png(root / "__MACOSX" / "local" / "._x.png")
    tiny_png(root / ".hidden_class" / "a.png")
    tiny_png(root / "local" / ".cache" / "b.png")
    report = scan_dataset(root)
    assert report.classes == ("local", "nominal") and report.skipped == ()
    assert report.counts()["local"]["total"] == 10


def test_empty_class_folder_warns_and_is_dropped(tmp_path, textile10):
    root = shutil.copytree(textile10, tmp_path / "d")
    (root / "stains").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "a.jpg").write_text("not really")
    report = scan_dataset(root)
    assert report.classes == ("global", "local", "nominal")
    assert any("'broken', 'stains'" in w and "no usable images" in w for w in report.warnings)


def test_fewer_than_two_classes_is_a_plain_error(tmp_path):
    one = copy_real(tmp_path / "one", 5, classes=("local",))
    (one / "empty").mkdir()
    with pytest.raises(DatasetError, match="Only one class found \\(.local.\\): add a second class folder beside it. "
                                           "Training needs at least two classes, each a folder of images"):
        scan_dataset(one)
    loose = tmp_path / "loose"
    for i in range(3):
        noise_png(loose / f"{i}.png", i)
    with pytest.raises(DatasetError, match="holds images but no class folders"):
        scan_dataset(loose)


@pytest.mark.parametrize("source", ["", "does/not/exist", "file"])
def test_missing_or_wrong_source_is_a_plain_error(tmp_path, source):
    if source == "file":
        source = tmp_path / "x.txt"
        source.write_text("x")
    elif source:
        source = tmp_path / source
    with pytest.raises(DatasetError):
        scan_dataset(source)


def test_all_images_broken_says_why(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "x.jpg").write_text("nope")
    with pytest.raises(DatasetError, match="not an image"):
        scan_dataset(tmp_path)


# ------------------------------------------------------------------------------------------ splitting
def test_split_is_stratified_deterministic_and_always_checks_every_class(tmp_path):
    sizes = {"a": 2, "b": 3, "c": 7, "d": 25}
    for k, (cls, n) in enumerate(sizes.items()):
        for i in range(n):
            noise_png(tmp_path / cls / f"{i:02d}.png", 100 * k + i)
    for val_split in (0.0, 0.01, 0.2, 0.5, 0.99):
        report = scan_dataset(tmp_path, val_split=val_split, seed=3)
        for cls, (train, val) in _split_by_class(report).items():
            n = sizes[cls]
            assert len(val) == min(max(round(n * val_split), 1), n - 1) and len(train) == n - len(val)
            assert not set(train) & set(val)
        assert report == scan_dataset(tmp_path, val_split=val_split, seed=3)
    splits = {tuple(s.path for s in scan_dataset(tmp_path, seed=seed).val) for seed in range(6)}
    assert len(splits) > 1  # the seed matters


def test_adding_images_to_one_class_keeps_the_others_split(tmp_path):
    for k, cls in enumerate(("a", "b")):
        for i in range(10):
            noise_png(tmp_path / cls / f"{i}.png", 10 * k + i)
    before = _split_by_class(scan_dataset(tmp_path))["a"]
    noise_png(tmp_path / "b" / "new.png", 999)
    assert _split_by_class(scan_dataset(tmp_path))["a"] == before


def test_bad_val_split_is_refused(textile10):
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(DatasetError, match="between 0 and 1"):
            scan_dataset(textile10, val_split=bad)


def test_class_with_one_image_trains_and_says_why_it_has_no_validation(tmp_path, textile10):
    root = shutil.copytree(textile10, tmp_path / "d")
    noise_png(root / "rare" / "only.png", 1)
    report = scan_dataset(root)
    train, val = _split_by_class(report)["rare"]
    assert len(train) == 1 and val == []
    assert any("'rare' has only 1 image" in w and "no validation image" in w for w in report.warnings)
    assert any("Few images in 'rare'" in w for w in report.warnings)
    assert any("unbalanced" in w for w in report.warnings)


def test_few_images_warns_to_add_more(tmp_path):
    copy_real(tmp_path, 4, classes=("local", "nominal"))
    report = scan_dataset(tmp_path)
    assert any("'local', 'nominal'" in w and "add more" in w for w in report.warnings)


def test_odd_class_names_and_repeated_file_names(tmp_path):
    names = ["big cats", "café", "🐱 kittens", "v1.2 (final)", "Ünïcødé"]
    for k, cls in enumerate(names):
        for i in range(3):
            noise_png(tmp_path / cls / "img.png" if i == 0 else tmp_path / cls / f"{i}.png", 10 * k + i)
    report = scan_dataset(tmp_path)
    assert report.classes == tuple(sorted(names))
    assert all(report.counts()[c]["total"] == 3 for c in names)
    assert sum(s.path.name == "img.png" for s in report.train + report.val) == len(names)
    assert not any("more than one class" in w for w in report.warnings)
    json.dumps(report.to_dict(), ensure_ascii=False)


def test_identical_pictures_in_two_classes_are_flagged(tmp_path, textile10):
    root = shutil.copytree(textile10, tmp_path / "d")
    shutil.copy(root / "local" / sorted(os.listdir(root / "local"))[0], root / "nominal" / "copy.jpg")
    report = scan_dataset(root)
    assert any("more than one class" in w for w in report.warnings)


def _two_image_classes(root: Path, count: int) -> Path:
    for c in range(count):
        (root / f"c{c:04d}").mkdir(parents=True)
        for i in range(2):
            Image.new("L", (16, 16), (c * 2 + i) % 256).save(root / f"c{c:04d}" / f"{i}.png")
    return root


def test_thousand_classes_of_two_images(tmp_path):
    # Per picture, 1,000 classes scan about as fast as 100 (a ratio measured side by side): nothing is
    # done per pair of classes.
    few, _ = _seconds_per_image(_two_image_classes(tmp_path / "few", 100), repeats=3)
    many, report = _seconds_per_image(_two_image_classes(tmp_path / "many", 1000), repeats=3)
    assert many < 3 * few, (many, few)  # measured 0.6x to 2x; work per pair of classes makes it 8x
    assert len(report.classes) == 1000 and len(report.train) == len(report.val) == 1000
    assert all(len(w) < 600 for w in report.warnings)  # long lists are summarised ("and 995 more")


# ------------------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "test"])
def test_train_val_folders_are_used_as_given(tmp_path, val_name):
    copy_real(tmp_path / "train", 6, classes=("local", "nominal"))
    copy_real(tmp_path / val_name, 2, classes=("local", "nominal", "global"))
    shutil.copy(real_jpgs("global", 1, offset=40)[0], tmp_path / "train" / "global.jpg")
    report = scan_dataset(tmp_path, val_split=0.5)
    assert report.layout == ds.LAYOUT_SPLITS
    assert report.classes == ("global", "local", "nominal")
    counts = report.counts()
    assert counts["local"] == {"train": 6, "val": 2, "test": 0, "total": 8} and counts["global"]["train"] == 0
    assert all(s.path.parent.parent.name == val_name for s in report.val)
    assert any("'global' has no usable images in 'train'" in w for w in report.warnings)
    assert [s.path for s in report.skipped] == ["train/global.jpg"]


def test_val_folder_beats_test_folder_and_says_so(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        copy_real(tmp_path / split, n, classes=("local", "nominal"))
    report = scan_dataset(tmp_path)
    assert all(s.path.parts[-3] == "val" for s in report.val)
    assert any("'test'" in w and "not used" in w for w in report.warnings)


def test_single_wrapping_folder_is_entered(tmp_path, textile10):
    shutil.copytree(textile10, tmp_path / "upload" / "data")
    (tmp_path / "upload" / "README.md").write_text("my data")
    report = scan_dataset(tmp_path / "upload")
    assert report.root == (tmp_path / "upload" / "data").absolute()
    assert report.classes == ("global", "local", "nominal")


def test_zip_of_class_folders_with_a_top_folder(tmp_path, textile10):
    zip_path = zip_folder(textile10, tmp_path / "data.zip", prefix="my data/")
    report = scan_dataset(zip_path, extract_to=tmp_path / "out")
    assert report.root == (tmp_path / "out" / "my data").absolute()
    assert report.counts() == scan_dataset(textile10).counts()
    assert report.fingerprint() == scan_dataset(textile10).fingerprint()
    again = scan_dataset(zip_path, extract_to=tmp_path / "out")  # not empty now: unpacks beside, never mixes
    assert again.root != report.root and again.fingerprint() == report.fingerprint()


def test_zip_of_train_val_folders_into_a_temp_dir(tmp_path):
    copy_real(tmp_path / "src" / "train", 4, classes=("local", "nominal"))
    copy_real(tmp_path / "src" / "validation", 2, classes=("local", "nominal"))
    report = scan_dataset(zip_folder(tmp_path / "src", tmp_path / "d.zip"))
    assert report.layout == ds.LAYOUT_SPLITS and len(report.train) == 8 and len(report.val) == 4


def test_scan_unlabelled(tmp_path):
    for i in range(4):
        noise_png(tmp_path / "batch" / ("deep" if i % 2 else "") / f"{i}.png", i)
    (tmp_path / "batch" / "notes.txt").write_text("x")
    (tmp_path / "batch" / ".DS_Store").write_text("x")
    tiny_png(tmp_path / "batch" / "dot.png", size=(2, 2))
    images, skipped = scan_unlabelled(tmp_path / "batch")
    assert [p.name for p in images] == ["0.png", "2.png", "1.png", "3.png"]
    assert skipped == [Skipped("dot.png", "image too small (2x2 px; at least 16x16)"),
                       Skipped("notes.txt", "not an image file")]
    zipped = scan_unlabelled(zip_folder(tmp_path / "batch", tmp_path / "b.zip"), extract_to=tmp_path / "x")
    assert len(zipped[0]) == 4
    with pytest.raises(DatasetError, match="No usable images"):
        scan_unlabelled(tmp_path / "batch" / "deep" / ".." / "..", min_side=100)


# ------------------------------------------------------------------------------------------ load_rgb
def _saved(im: Image.Image, fmt: str, **kw) -> io.BytesIO:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    buf.seek(0)
    return buf


def test_truncated_images_are_not_tolerated_globally():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_cmyk_jpeg_becomes_rgb():
    out = load_rgb(_saved(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95))
    assert out.mode == "RGB"
    r, g, b = out.getpixel((16, 16))
    assert r > 230 and g < 30 and b < 30


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    out = np.asarray(load_rgb(_saved(Image.fromarray(values), "PNG")))
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]


def test_32_bit_int_and_float_greyscale():
    ints = Image.fromarray(np.array([[0, 100, 255, 255]], dtype=np.int32).repeat(2, axis=0))
    assert np.asarray(load_rgb(_saved(ints, "TIFF")))[0, :, 0].tolist() == [0, 100, 255, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32).repeat(2, axis=0))
    assert np.asarray(load_rgb(_saved(floats, "TIFF")))[0, :, 1].tolist() == [0, 127, 255]


def test_palette_with_transparency_is_put_on_white():
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (0, 0, 4, 8))
    out = load_rgb(_saved(im, "PNG", transparency=0))
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (255, 0, 0) and out.getpixel((6, 6)) == (255, 255, 255)


@pytest.mark.parametrize("mode,colour,expected", [("RGBA", (0, 0, 255, 0), (255, 255, 255)),
                                                  ("RGBA", (0, 0, 255, 255), (0, 0, 255)),
                                                  ("LA", (0, 128), (127, 127, 127)),
                                                  ("L", 90, (90, 90, 90)),
                                                  ("1", 1, (255, 255, 255))])
def test_other_modes(mode, colour, expected):
    out = load_rgb(_saved(Image.new(mode, (8, 8), colour), "PNG"))
    assert out.mode == "RGB"
    assert all(abs(a - b) <= 1 for a, b in zip(out.getpixel((3, 3)), expected))


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    buf.seek(0)
    out = load_rgb(buf)
    assert out.mode == "RGB" and out.getpixel((8, 8))[0] > 200


def test_animated_webp_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    buf.seek(0)
    assert load_rgb(buf).getpixel((8, 8)) == (0, 255, 0)


def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the camera stored it sideways
    path = tmp_path / "sideways.jpg"
    Image.new("RGB", (40, 20), (0, 120, 0)).save(path, exif=exif.tobytes())
    assert load_rgb(path).size == (20, 40)


@pytest.mark.parametrize("width,height", [(20000, 20000), (10000, 9000)])
def test_decompression_bombs_are_refused(tmp_path, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(blank_png_bytes(width, height))
    assert path.stat().st_size < 200_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(BadImage, match=r"image too large \(\d+ megapixels"):
            load_rgb(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with pytest.raises(BadImage, match="image too large"):
                load_rgb(path)


def test_empty_and_text_and_missing(tmp_path):
    with pytest.raises(BadImage, match="empty file"):
        load_rgb(io.BytesIO(b""))
    with pytest.raises(BadImage, match="not an image"):
        load_rgb(io.BytesIO(b"hello world" * 10))
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "nope.png")


def test_big_bomb_in_a_dataset_is_skipped_not_fatal(tmp_path):
    copy_real(tmp_path, 3, classes=("local", "nominal"))
    (tmp_path / "local" / "huge.png").write_bytes(blank_png_bytes(20000, 20000))
    report = scan_dataset(tmp_path)
    assert [s.reason.startswith("image too large") for s in report.skipped] == [True]


# ------------------------------------------------------------------------------------------ zips
def test_zip_members_cannot_escape(tmp_path):
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("../evil.png", png_bytes())
        zf.writestr("cats/../../evil2.png", png_bytes())
        zf.writestr("/abs/evil3.png", png_bytes())
        zf.writestr("C:/windows/evil4.png", png_bytes())
        zf.writestr("..\\evil5.png", png_bytes())
        zf.writestr(symlink_info("cats/link.png"), "/etc/passwd")
        zf.writestr(symlink_info("dogs"), "..")
        zf.writestr("__MACOSX/cats/._a.png", b"x")
        zf.writestr("cats/.hidden.png", png_bytes())
        zf.writestr("cats/a.png", png_bytes())
        zf.writestr("./dogs/b.png", png_bytes())
    dest = safe_extract_zip(zip_path, tmp_path / "dest")
    assert sorted(p.relative_to(dest).as_posix() for p in _files_under(dest)) == ["cats/a.png", "dogs/b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "evil.zip"]
    assert _all_inside(dest)


@contextlib.contextmanager
def _members_opened():
    """The names of the zip members read (decompressed) inside the block: the real ZipFile.open, counted."""
    opened, real_open = [], zipfile.ZipFile.open

    def counting_open(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    zipfile.ZipFile.open = counting_open
    try:
        yield opened
    finally:
        zipfile.ZipFile.open = real_open


def test_zip_bomb_is_refused_quickly(tmp_path, zip_bomb):
    for limits, message in ((ZipLimits(), "more than the 200 MB limit for one file"),
                            (ZipLimits(max_file_bytes=2 ** 30), "looks like a zip bomb")):
        with _members_opened() as opened, pytest.raises(DatasetError, match=message):
            safe_extract_zip(zip_bomb, tmp_path / "out", limits)
        assert opened == []  # refused without inflating a single byte: quick whatever the machine
        assert not (tmp_path / "out").exists()  # refused from the declared sizes, before writing anything
    with pytest.raises(DatasetError, match="would unpack to 300 MB, more than the 100 MB limit"):
        safe_extract_zip(zip_bomb, tmp_path / "out", ZipLimits(max_total_bytes=100 * 2 ** 20))


def test_zip_header_that_lies_about_its_size(tmp_path):
    zip_path = tmp_path / "liar.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/big.bin", bytes(5 * 2 ** 20))
    raw = bytearray(zip_path.read_bytes())
    central = raw.index(b"PK\x01\x02")
    raw[central + 24:central + 28] = (1000).to_bytes(4, "little")  # declared size: 1000 bytes
    zip_path.write_bytes(bytes(raw))
    assert zipfile.ZipFile(zip_path).infolist()[0].file_size == 1000
    with pytest.raises(DatasetError):
        safe_extract_zip(zip_path, tmp_path / "out")
    assert sum(p.stat().st_size for p in _files_under(tmp_path / "out")) <= 1000


def test_zip_limits_on_count_and_total(tmp_path):
    zip_path = tmp_path / "many.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for i in range(30):
            zf.writestr(f"c/{i}.bin", bytes(100))
    with pytest.raises(DatasetError, match="holds 30 files, more than the 20 limit"):
        safe_extract_zip(zip_path, tmp_path / "o", ZipLimits(max_files=20))
    with pytest.raises(DatasetError, match="would unpack to 2.9 KB, more than the 1000 bytes limit"):
        safe_extract_zip(zip_path, tmp_path / "o", ZipLimits(max_total_bytes=1000))
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_not_a_zip_and_password_protected(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_text("not a zip")
    with pytest.raises(DatasetError, match="not a zip file or it is damaged"):
        scan_dataset(fake)
    locked = tmp_path / "locked.zip"
    with zipfile.ZipFile(locked, "w") as zf:
        zf.writestr("cats/a.png", png_bytes())
    raw = bytearray(locked.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # zipfile cannot encrypt: set the flag
        raw[raw.index(signature) + offset] |= 0x1
    locked.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="password-protected"):
        safe_extract_zip(locked, tmp_path / "o")


_ODD_PARTS = ["..", ".", "", "/", "\\", "C:", "__MACOSX", ".git", "a", "ü", "🐱", "x.png"]
_NAME_PART = st.one_of(st.sampled_from(_ODD_PARTS), st.text(min_size=1, max_size=12))
_MEMBER_NAME = st.lists(_NAME_PART, min_size=1, max_size=5).map("/".join)


@FUZZ
@given(names=st.lists(_MEMBER_NAME.filter(lambda n: n.split("\x00")[0]), min_size=1, max_size=8),  # non-empty name
       links=st.lists(st.booleans(), min_size=8, max_size=8))
def test_fuzz_zip_member_names(names, links):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        zip_path = tmp / "f.zip"
        with zipfile.ZipFile(zip_path, "w") as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate names
            for name, link in zip(names, links):
                zf.writestr(symlink_info(name) if link else name, b"../../outside")
        dest = tmp / "a" / "dest"
        try:
            safe_extract_zip(zip_path, dest)
        except DatasetError:
            pass
        assert sorted(p.name for p in tmp.iterdir()) == ["a", "f.zip"] and os.listdir(tmp / "a") in ([], ["dest"])
        assert not dest.exists() or _all_inside(dest)


@FUZZ
@given(data=st.binary(max_size=400) | st.tuples(st.integers(0, 10 ** 6), st.binary(min_size=1, max_size=8)))
def test_fuzz_random_or_damaged_zip_bytes(data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        zip_path = tmp / "f.zip"
        if isinstance(data, tuple):  # a real zip with a few bytes overwritten somewhere
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("cats/a.png", png_bytes())
                zf.writestr("dogs/ü.png", png_bytes((1, 2, 3)))
            raw = bytearray(buf.getvalue())
            at = data[0] % len(raw)
            raw[at:at + len(data[1])] = data[1]
            data = bytes(raw)
        zip_path.write_bytes(data)
        try:
            safe_extract_zip(zip_path, tmp / "dest")
        except DatasetError:
            pass
        assert not (tmp / "dest").exists() or _all_inside(tmp / "dest")


# ------------------------------------------------------------------------------------------ uploads
def test_uploaded_folder_is_written_and_scanned(tmp_path):
    files = [(f"data/{cls}/{i}.png", png_bytes((k * 90, i * 20, 50))) for k, cls in enumerate(("cats", "dogs"))
             for i in range(3)]
    files += [("data/../evil.png", png_bytes()), ("/abs.png", png_bytes()), ("data/.DS_Store", b"x"),
              ("data//cats//extra.png", png_bytes((1, 1, 1)))]
    root = write_uploads(files, tmp_path / "up")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "abs.png").exists()
    report = scan_dataset(root)
    assert report.root == (tmp_path / "up" / "data").absolute()
    assert report.counts()["cats"]["total"] == 4 and report.counts()["dogs"]["total"] == 3


def test_uploaded_single_zip_is_unpacked(tmp_path, textile10):
    zip_bytes = zip_folder(textile10, tmp_path / "t.zip").read_bytes()
    root = write_uploads([("textile.zip", zip_bytes)], tmp_path / "up")
    assert scan_dataset(root).classes == ("global", "local", "nominal")
    assert not list((tmp_path / "up").glob("*.zip")) and not (tmp_path / "up" / ".upload.zip").exists()


def test_upload_limits(tmp_path):
    files = [(f"c/{i}.png", bytes(100)) for i in range(5)]
    with pytest.raises(DatasetError, match="holds 5 files, more than the 4 limit"):
        write_uploads(files, tmp_path / "a", ZipLimits(max_files=4))
    with pytest.raises(DatasetError, match="adds up to 500 bytes, more than the 400 bytes limit"):
        write_uploads(files, tmp_path / "b", ZipLimits(max_total_bytes=400))
    with pytest.raises(DatasetError, match="limit for one file"):
        write_uploads(files, tmp_path / "c", ZipLimits(max_file_bytes=99))
    assert _files_under(tmp_path) == []


@FUZZ
@given(names=st.lists(_MEMBER_NAME, min_size=1, max_size=8))
def test_fuzz_upload_paths(names):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            write_uploads([(n, b"data") for n in names], tmp / "a" / "dest")
        except DatasetError:
            pass
        assert os.listdir(tmp) == ["a"] and os.listdir(tmp / "a") == ["dest"]
        assert _all_inside(tmp / "a" / "dest")
