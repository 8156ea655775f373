"""Making a data set by hand (transfer_core.data.classbuilder), on real folders with real pictures."""
from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import TEXTILE_CLASSES, copy_textile, textile_root
from transfer_core.data import classbuilder as cb
from transfer_core.data import owncopies as oc
from transfer_core.data.datafiles import DatasetError
from transfer_core.data.datasets import scan_dataset
from transfer_core.data.imagecache import Stopped
from transfer_core.data.uploads import safe_extract_zip


def fake_demo(monkeypatch, folder: Path, per_class: int = 12) -> Path:
    """Real demo pictures copied to `folder`, which the engine then takes for the demo: a broken guard under
    test can only harm this copy, never the installed demo that every session on the machine shares."""
    copy_textile(folder, per_class)
    for module in ("transfer_core.data.datarefs", "transfer_core.data.classbuilder"):
        monkeypatch.setattr(f"{module}.demo_dataset_path", lambda: folder)
    return folder


@pytest.fixture
def demo(tmp_path, monkeypatch) -> Path:
    return fake_demo(monkeypatch, tmp_path / "demo" / "simulated")


@pytest.fixture
def workspaces(tmp_path, monkeypatch, demo) -> Path:
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(tmp_path / "workspaces"))
    monkeypatch.delenv("TRANSFER_STUDIO_DATA_ROOTS", raising=False)
    return tmp_path / "workspaces"


@pytest.fixture
def own_set(workspaces) -> Path:
    return cb.ensure_set(workspaces / "ws1" / cb.SETS, "my-classes", "My classes")


def real_picture(cls: str = "nominal", i: int = 0) -> bytes:
    return sorted((textile_root() / cls).glob("*.jpg"))[i].read_bytes()


def png_picture(colour=(200, 30, 30), side: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, "PNG")
    return buffer.getvalue()


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        digest.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("typed,clean", [
    ("cat", "cat"), ("  big   dog ", "big dog"), ("猫", "猫"), ("chat noir é", "chat noir é"),
    ("../etc", "etc"), ("..\\..\\windows", "windows"), ("/etc/passwd", "etc passwd"), (".hidden", "hidden"),
    ("a\x00b\nc", "a b c"), ("what?*:|<>", "what"), ("a..b", "a..b"), ("trailing. ", "trailing"),
])
def test_class_names_are_cleaned_so_they_never_name_a_path(typed, clean):
    assert cb.clean_class_name(typed) == clean


@pytest.mark.parametrize("typed,words", [
    ("", "needs a name"), ("   ", "needs a name"), ("..", "needs a name"), ("/", "needs a name"),
    ("...", "needs a name"), ("\x00\x01", "needs a name"), ("train", "training or validation"),
    ("Val", "training or validation"), ("test", "training or validation"), ("Thumbs.db", "keep for themselves"),
    ("NUL", "keep for themselves"),
])
def test_empty_and_reserved_class_names_are_refused_in_words(typed, words):
    with pytest.raises(DatasetError, match=words):
        cb.clean_class_name(typed)


def test_hostile_class_names_never_create_anything_outside_the_set(own_set, tmp_path):
    before = sorted(p for p in tmp_path.rglob("*"))
    made = [cb.create_class(own_set, name) for name in ("../escape", "..\\escape2", "/abs", ".dot", "a/../../b")]
    assert made == ["escape", "escape2", "abs", "dot", "a .. .. b"]
    created = sorted(set(tmp_path.rglob("*")) - set(before))
    assert created == sorted(own_set / m for m in made), "only class folders, directly inside the set"


def test_duplicate_names_are_refused_also_after_cleaning_and_case_folding(own_set):
    cb.create_class(own_set, "Cat")
    for same in ("cat", "CAT", " cat ", ".cat", "ｃａｔ", "../Cat"):
        with pytest.raises(DatasetError, match="already a class 'Cat'"):
            cb.create_class(own_set, same)
    assert list(cb.list_classes(own_set)) == ["Cat"]


def test_rename_keeps_pictures_and_refuses_a_taken_name(own_set):
    cb.create_class(own_set, "cat")
    cb.create_class(own_set, "dog")
    cb.add_picture(own_set, "cat", real_picture(), "a.jpg")
    assert cb.rename_class(own_set, "cat", "Cat") == "Cat", "a change of case only is allowed"
    assert cb.rename_class(own_set, "Cat", "猫") == "猫"
    with pytest.raises(DatasetError, match="already a class 'dog'"):
        cb.rename_class(own_set, "猫", "DOG")
    assert cb.list_classes(own_set) == {"dog": [], "猫": ["a.jpg"]}
    assert cb.rename_class(own_set, "dog", "../../dog2") == "dog2" and (own_set / "dog2").is_dir()
    with pytest.raises(DatasetError, match="no class"):
        cb.rename_class(own_set, "../my-classes", "x")


# ---------------------------------------------------------------------------------------------- pictures
def test_add_remove_move_list_and_zip_round_trip(own_set, tmp_path):
    for name in ("cat", "狗"):
        cb.create_class(own_set, name)
    for i in range(3):
        cb.add_picture(own_set, "cat", real_picture("nominal", i), f"cat{i}.jpg")
        cb.add_picture(own_set, "狗", real_picture("global", i), f"dog{i}.jpg")
    photo = cb.add_picture(own_set, "狗", png_picture(), "camera photo")  # no extension: named by its bytes
    assert photo.name == "camera photo.png"
    again = cb.add_picture(own_set, "cat", real_picture("nominal", 0), "cat0.jpg")
    assert again.name == "cat0-1.jpg", "a taken name gets a number, nothing is overwritten"
    assert {k: len(v) for k, v in cb.list_classes(own_set).items()} == {"cat": 4, "狗": 4}

    cb.remove_picture(own_set, "cat", "cat0-1.jpg")
    moved = cb.move_picture(own_set, "狗", "dog2.jpg", "cat")
    assert moved == own_set / "cat" / "dog2.jpg" and not (own_set / "狗" / "dog2.jpg").exists()
    expected = {"cat": ["cat0.jpg", "cat1.jpg", "cat2.jpg", "dog2.jpg"],
                "狗": ["camera photo.png", "dog0.jpg", "dog1.jpg"]}
    assert cb.list_classes(own_set) == expected

    archive = tmp_path / "set.zip"
    archive.write_bytes(cb.zip_bytes(own_set))
    unpacked = safe_extract_zip(archive, tmp_path / "unzipped") / own_set.name
    assert cb.list_classes(unpacked) == expected
    assert (unpacked / "cat" / "dog2.jpg").read_bytes() == real_picture("global", 2)
    assert not (unpacked / cb.SET_FILE).exists(), "the set's own note is not part of the data"
    report = scan_dataset(tmp_path / "unzipped")
    assert report.classes == ("cat", "狗") and sum(c["total"] for c in report.counts().values()) == 7


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"), (b"not a picture at all", "not an image"),
    (real_picture()[:300], "file is damaged or cut short"), (png_picture(side=8), "image too small"),
], ids=["empty", "text", "cut-short", "tiny"])
def test_a_bad_picture_is_refused_in_words_and_nothing_is_left_behind(own_set, data, reason):
    cb.create_class(own_set, "cat")
    with pytest.raises(DatasetError, match=f"'upload.jpg' was not added: {reason}"):
        cb.add_picture(own_set, "cat", data, "upload.jpg")
    assert list((own_set / "cat").iterdir()) == []


def test_hostile_picture_and_class_names_are_refused_and_touch_nothing_outside(own_set, tmp_path):
    cb.create_class(own_set, "cat")
    cb.create_class(own_set, "dog")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(real_picture())
    saved = cb.add_picture(own_set, "cat", real_picture(), "../../../outside.jpg")
    assert saved.parent == own_set / "cat" and saved.name == "outside.jpg"
    for cls, pic in (("cat", "../../../outside.jpg"), ("cat", str(outside)), ("..", "outside.jpg"),
                     ("../..", "outside.jpg"), ("cat", ".."), ("cat", "")):
        with pytest.raises(DatasetError):
            cb.remove_picture(own_set, cls, pic)
        with pytest.raises(DatasetError):
            cb.move_picture(own_set, cls, pic, "dog")
    for cls in ("..", "../..", "/", str(tmp_path), "cat/.."):
        with pytest.raises(DatasetError, match="no class"):
            cb.add_picture(own_set, cls, real_picture())
        with pytest.raises(DatasetError, match="no class"):
            cb.delete_class(own_set, cls)
        with pytest.raises(DatasetError, match="no class"):
            cb.move_picture(own_set, "cat", "outside.jpg", cls)
    assert outside.is_file() and saved.is_file()


def test_a_link_inside_the_set_is_never_followed(own_set, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.jpg").write_bytes(real_picture())
    (own_set / "linked").symlink_to(elsewhere, target_is_directory=True)
    cb.create_class(own_set, "cat")
    (own_set / "cat" / "link.jpg").symlink_to(elsewhere / "secret.jpg")
    with pytest.raises(DatasetError, match="no class 'linked'"):
        cb.delete_class(own_set, "linked")
    with pytest.raises(DatasetError, match="no picture"):
        cb.remove_picture(own_set, "cat", "link.jpg")
    assert "secret.jpg" not in str(cb.zip_bytes(own_set)) and (elsewhere / "secret.jpg").is_file()


def test_the_demo_pictures_are_never_changed(workspaces, demo):
    before = tree_digest(demo)
    for action in (lambda: cb.create_class(demo, "mine"), lambda: cb.delete_class(demo, "nominal"),
                   lambda: cb.add_picture(demo, "nominal", real_picture()),
                   lambda: cb.remove_picture(demo, "nominal", "textile_0001.jpg"),
                   lambda: cb.move_picture(demo, "nominal", "textile_0001.jpg", "local"),
                   lambda: cb.rename_class(demo, "local", "mine"),
                   lambda: cb.delete_class(demo.parent, demo.name),  # a folder holding the demo counts too
                   lambda: cb.create_class(demo / "nominal", "inside")):  # and a folder inside it
        with pytest.raises(DatasetError, match="shared by everyone"):
            action()

    copy = oc.own_copy(demo, workspaces / "ws1" / cb.SETS, name="copy-of-demo", label="My copy", source="demo:.")
    cb.add_picture(copy, "local", png_picture(), "mine.png")
    cb.move_picture(copy, "nominal", "textile_0001.jpg", "local")
    cb.delete_class(copy, "global")
    assert tree_digest(demo) == before


def test_server_folders_are_never_changed_and_the_demo_neither_when_it_is_not_one(workspaces, demo, tmp_path,
                                                                                  monkeypatch):
    shared = tmp_path / "shared"
    (shared / "a").mkdir(parents=True)
    monkeypatch.setenv("TRANSFER_STUDIO_DATA_ROOTS", str(shared))
    for folder in (shared, demo):
        with pytest.raises(DatasetError, match="shared by everyone"):
            cb.create_class(folder, "mine")
    assert [p.name for p in shared.iterdir()] == ["a"] and not (demo / "mine").exists()


# ---------------------------------------------------------------------------------------------- own copies
def test_a_copy_keeps_every_picture_reports_progress_and_is_found_again(workspaces):
    # The installed demo, only read: its 2,000 pictures show the progress as a long copy reports it.
    sets = workspaces / "ws1" / cb.SETS
    steps, seen = [], set()

    def progress(i, n, phase):
        steps.append((i, n))
        seen.update(d.name for d in sets.iterdir() if not d.name.startswith("."))

    copy = oc.own_copy(textile_root(), sets, name="copy-of-demo", label="My copy of the demo pictures",
                       source="demo:.", progress=progress)
    assert seen == set(), "a half-made copy is never visible as a data set"
    counts = {k: len(v) for k, v in cb.list_classes(copy).items()}
    assert counts == {c: len(list((textile_root() / c).glob("*.jpg"))) for c in TEXTILE_CLASSES}
    assert steps[-1] == (2000, 2000) and len(steps) > 10
    assert cb.set_info(copy) == {"label": "My copy of the demo pictures", "copied_from": "demo:."}
    assert oc.find_own_copy(sets, "demo:.") == copy and oc.find_own_copy(sets, "shared:x/.") is None
    target = oc.correction_target("demo:.", workspaces / "ws1")
    assert target.dataset == copy and target.copy_from is None, "a second correction does not copy again"


def test_a_stopped_copy_leaves_nothing_behind(workspaces, demo):
    sets = workspaces / "ws1" / cb.SETS
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        oc.own_copy(demo, sets, name="copy", label="x", source="demo:.", stop=stop)
    assert list(sets.iterdir()) == []


def test_corrections_go_to_the_own_set_or_a_copy_and_never_to_someone_else(workspaces, demo, tmp_path):
    mine = cb.ensure_set(workspaces / "ws1" / cb.SETS, "my-classes", "My classes")
    theirs = cb.ensure_set(workspaces / "ws2" / cb.SETS, "my-classes", "My classes")
    target = oc.correction_target("workspace:ws1/sets/my-classes", workspaces / "ws1")
    assert target.dataset == mine.resolve() and target.copy_from is None
    to_copy = oc.correction_target("demo:.", workspaces / "ws1")
    assert to_copy.dataset is None and to_copy.copy_from == demo.resolve() and to_copy.source == "demo:."
    with pytest.raises(DatasetError, match="someone else's pictures"):
        oc.correction_target("workspace:ws2/sets/my-classes", workspaces / "ws1")
    with pytest.raises(DatasetError, match="someone else's pictures"):
        oc.correction_target(str(tmp_path), workspaces / "ws1")
    with pytest.raises(DatasetError, match="someone else's pictures"):
        oc.correction_target("workspace:ws1/../ws2/sets/my-classes", workspaces / "ws1")
    with pytest.raises(ValueError, match="outside its folder"):
        oc.correction_target("workspace:ws1/../../outside", workspaces / "ws1")
    assert theirs.is_dir()


def test_links_in_a_shared_folder_are_not_copied(workspaces, tmp_path):
    shared = tmp_path / "shared"
    (shared / "a").mkdir(parents=True)
    (shared / "b").mkdir()
    (shared / "a" / "1.jpg").write_bytes(real_picture())
    (shared / "b" / "2.jpg").write_bytes(real_picture("local"))
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "s.jpg").write_bytes(real_picture())
    (shared / "b" / "leak.jpg").symlink_to(secret / "s.jpg")
    (shared / "c").symlink_to(secret, target_is_directory=True)
    copy = oc.own_copy(shared, workspaces / "ws1" / cb.SETS, name="copy", label="x", source="shared:s/.")
    assert cb.list_classes(copy) == {"a": ["1.jpg"], "b": ["2.jpg"]}


def test_a_run_on_an_own_set_names_it_and_never_a_server_path():
    from transfer_core.data.datarefs import label

    assert label("workspace:0123abcd/sets/copy-of-demo") == "Own set: copy-of-demo"
    assert label("workspace:0123abcd/uploads/20261201-x/photos") == "Upload: photos"


def test_a_full_class_and_a_full_workspace_are_refused_in_words(own_set, workspaces, monkeypatch):
    """Caps so one tab left recording bursts cannot fill the disk: pictures per class, bytes per workspace."""
    monkeypatch.setattr(cb, "MAX_CLASS_PICTURES", 3)
    for name in ("plain", "spotted"):
        cb.create_class(own_set, name)
    for i in range(3):
        cb.add_picture(own_set, "plain", png_picture(side=40 + i), f"p{i}.png")
    with pytest.raises(DatasetError, match=r"'plain' already holds 3 pictures, the most one class can hold here "
                                           r"\(3\)\. Remove some it does not need, or make another class\."):
        cb.add_picture(own_set, "plain", png_picture(), "one-more.png")
    cb.add_picture(own_set, "spotted", png_picture(), "s.png")  # another class still has room
    for i in range(2):
        cb.add_picture(own_set, "spotted", png_picture(side=50 + i), f"s{i}.png")
    with pytest.raises(DatasetError, match="already holds 3 pictures"):
        cb.move_picture(own_set, "spotted", "s.png", "plain")  # a move may not overfill either
    assert {k: len(v) for k, v in cb.list_classes(own_set).items()} == {"plain": 3, "spotted": 3}

    monkeypatch.setattr(cb, "MAX_CLASS_PICTURES", 2_000)
    used = sum(p.stat().st_size for p in own_set.rglob("*") if p.is_file())
    monkeypatch.setattr(cb, "MAX_SETS_BYTES", used + 100)  # all the person's sets together, not one set
    other = cb.ensure_set(workspaces / "ws1" / cb.SETS, "copy-of-demo", "My copy")
    cb.create_class(other, "plain")
    with pytest.raises(DatasetError, match=r"Your pictures already take \d+ MB of the [\d.]+ MB your workspace may "
                                           r"hold, so nothing more was added\. Remove pictures or classes"):
        cb.add_picture(other, "plain", real_picture(), "big.jpg")
    assert cb.list_classes(other) == {"plain": []}, "nothing half-added"
    with pytest.raises(DatasetError, match="your workspace may hold"):
        oc.own_copy(textile_root(), workspaces / "ws1" / cb.SETS, name="copy-2", label="x", source="demo:.")
    assert sorted(d.name for d in (workspaces / "ws1" / cb.SETS).iterdir()) == ["copy-of-demo", "my-classes"]
    cb.remove_picture(own_set, "plain", "p0.png")  # room again after removing
    cb.add_picture(other, "plain", png_picture(side=20), "small.png")
