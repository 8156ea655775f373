"""Project files (runstore/project.py, opening.py): saved and opened again the run predicts exactly as before;
every hostile or broken file is refused in words with nothing written outside the target, nor in it."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import copy_textile
from transfer_core.core.config import TrainConfig
from transfer_core.runstore.opening import open_project, read_manifest
from transfer_core.runstore.project import ProjectError, save_project
from transfer_core.data.uploads import ZipLimits
from transfer_core.workflows.train import train

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real run on real pictures, saved as a project: (pictures, run folder, project file)."""
    base = tmp_path_factory.mktemp("saved")
    pictures = copy_textile(base / "pictures", 10)
    run = train(TrainConfig(data=str(pictures), freeze="all", **FAST), runs_dir=base / "runs").run_dir
    project = save_project(pictures, base / "p.zip", runs=[run], settings={"train": {"epochs": 3}, "seed": 1}).path
    return pictures, Path(run), project


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "transfer_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_two_folders_predict_the_same_through_the_command_line(saved, tmp_path):
    """Saved in one place, opened in another folder: the same answers, byte for byte, on the same pictures."""
    pictures, run, _ = saved
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    out = _cli("project", "save", "--data", str(pictures), "--run", str(run), "--out", str(here / "p.zip"), "--json",
               cwd=here)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pictures"] == 30
    opened = _cli("project", "open", str(here / "p.zip"), "--to", str(there), "--json", cwd=tmp_path)
    assert opened.returncode == 0, opened.stderr
    assert sorted(p.name for p in (there / "data").iterdir()) == ["global", "local", "nominal"]
    assert len(list((there / "data").rglob("*.jpg"))) == 30
    (copy,) = (there / "runs").iterdir()
    assert copy.name == run.name and not (copy / "checkpoint.pt").exists() and not (copy / "process.json").exists()
    before = _cli("predict", str(run), str(pictures), "--json", cwd=tmp_path).stdout.splitlines()
    after = _cli("predict", str(copy), str(pictures), "--json", cwd=tmp_path).stdout.splitlines()
    assert len(before) == 30 and before == after
    # the run's pictures are the opened ones: the validation pictures are found where they were unpacked
    from transfer_core.runstore.runs import RunFolder

    found = RunFolder(copy).validation_images()
    assert found and all(Path(p).is_file() and Path(p).is_relative_to(there / "data") for p in found)


def test_settings_and_names_survive(saved, tmp_path):
    _, run, project = saved
    opened = open_project(project, tmp_path / "d", tmp_path / "r")
    assert opened.settings == {"train": {"epochs": 3}, "seed": 1}
    assert opened.classes == ("global", "local", "nominal") and opened.pictures == 30
    again = open_project(project, tmp_path / "d2", tmp_path / "r")  # the same run id twice: a new id, no overwrite
    assert again.runs[0] != opened.runs[0] and again.runs[0].name.startswith(run.name)
    assert read_manifest(project)["runs"][0]["id"] == run.name


# ---------------------------------------------------------------------------------------------- hostile files
def _members(project: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(project) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _rezip(path: Path, members: dict[str, bytes], *, hashes: dict | None = None, manifest: dict | None = None,
           attrs: dict | None = None) -> Path:
    """A project from `members`, its manifest's sha256s recomputed (unless given), like a careful forger's."""
    manifest = dict(manifest or json.loads(members["manifest.json"]))
    files = {n: hashlib.sha256(b).hexdigest() for n, b in members.items() if n != "manifest.json"}
    manifest["files"] = {**files, **(hashes or {})}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (attrs or {}).get(name, 0o100644 << 16)
            zf.writestr(info, json.dumps(manifest) if name == "manifest.json" else data, zipfile.ZIP_DEFLATED)
    return path


def _picture(saved) -> bytes:
    return next(saved[0].rglob("*.jpg")).read_bytes()


def _run_member(members: dict, name: str) -> str:
    return next(m for m in members if m.startswith("runs/") and m.endswith("/" + name))


def _hostile(saved, tmp_path, kind) -> Path:
    members = _members(saved[2])
    out = tmp_path / "hostile.zip"
    if kind == "traversal":
        return _rezip(out, {**members, "data/../../escaped.png": _picture(saved)})
    if kind == "absolute":
        return _rezip(out, {**members, "/tmp/escaped-absolute.png": _picture(saved)})
    if kind == "symlink":
        return _rezip(out, {**members, "data/global/link.png": b"/etc/passwd"},
                      attrs={"data/global/link.png": (stat.S_IFLNK | 0o777) << 16})
    if kind == "device":
        return _rezip(out, {**members, "data/global/dev.png": b""},
                      attrs={"data/global/dev.png": (stat.S_IFCHR | 0o666) << 16})
    if kind == "newer":
        return _rezip(out, members, manifest={**json.loads(members["manifest.json"]), "version": 99})
    if kind == "pickle":  # a best.pt whose unpickling would run a command
        class Boom:
            def __reduce__(self):
                return (os.system, ("touch " + str(tmp_path / "pwned"),))
        return _rezip(out, {**members, _run_member(members, "best.pt"): pickle.dumps(Boom())})
    if kind == "unknown_run_file":
        run_id = _run_member(members, "best.pt").split("/")[1]
        return _rezip(out, {**members, f"runs/{run_id}/model.pkl": b"\x80\x04."})
    if kind == "script_as_picture_folder":
        return _rezip(out, {**members, "data/global/run.sh": b"rm -rf /"})
    if kind == "sha_mismatch":
        name = next(m for m in members if m.startswith("data/"))
        return _rezip(out, members, hashes={name: "0" * 64})
    if kind == "unlisted":  # a member slipped in that the manifest does not list
        return _write_raw(out, {**members, "data/global/extra.png": _picture(saved)},
                          json.loads(members["manifest.json"]))
    if kind == "truncated":
        data = saved[2].read_bytes()
        out.write_bytes(data[: len(data) // 2])
        return out
    if kind == "not_a_zip":
        out.write_bytes(b"\x89PNG not a zip at all" * 100)
        return out
    if kind == "no_manifest":
        return _write_raw(out, {n: b for n, b in members.items() if n != "manifest.json"}, None)
    if kind == "bomb":  # 8 MB of zeros in 8 KB: grows ~1000 times
        return _rezip(out, {**members, "data/global/bomb.png": bytes(8 * 2 ** 20)})
    raise AssertionError(kind)


def _write_raw(out: Path, members: dict, manifest: dict | None) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if name != "manifest.json":
                zf.writestr(name, data)
        if manifest is not None:
            zf.writestr("manifest.json", json.dumps(manifest))
    return out


HOSTILE = {"traversal": "outside its folder", "absolute": "outside its folder", "symlink": "link",
           "device": "special file", "newer": "newer version", "pickle": "other than a model's weights",
           "unknown_run_file": "not a picture nor a file", "script_as_picture_folder": "not a picture nor a file",
           "sha_mismatch": "checksum differs", "unlisted": "damaged", "truncated": "damaged",
           "not_a_zip": "damaged", "no_manifest": "no manifest.json", "bomb": "zip bomb"}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_and_broken_files_are_refused_with_nothing_written(saved, tmp_path, kind):
    hostile = _hostile(saved, tmp_path, kind)
    place = tmp_path / "place"
    place.mkdir()
    (place / "mine.txt").write_text("a person's own file")
    before = _listing(tmp_path)
    with pytest.raises(ProjectError) as refused:
        open_project(hostile, place / "target" / "data", place / "target" / "runs")
    assert HOSTILE[kind] in str(refused.value)
    assert _listing(tmp_path) == before  # nothing outside, nothing half-written inside, no staging left
    assert not Path("/tmp/escaped-absolute.png").exists()


def test_total_size_caps_refuse_before_writing(saved, tmp_path):
    """The file's own size, then what its members declare they unpack to (no ratio check to lean on here)."""
    with pytest.raises(ProjectError, match="larger than the 1 MB"):
        open_project(saved[2], tmp_path / "t" / "data", tmp_path / "t" / "runs",
                     limits=ZipLimits(max_total_bytes=2 ** 20, max_file_bytes=2 ** 30))
    roomy = _hostile(saved, tmp_path, "bomb")  # ~10 MB of file that unpacks to ~18 MB
    assert roomy.stat().st_size < 12 * 2 ** 20
    with pytest.raises(ProjectError, match="would unpack to .* more than the 12 MB limit"):
        open_project(roomy, tmp_path / "t" / "data", tmp_path / "t" / "runs",
                     limits=ZipLimits(max_total_bytes=12 * 2 ** 20, max_file_bytes=2 ** 30, max_ratio=1e9))
    roomy.unlink()
    assert not (tmp_path / "t").exists()
    with pytest.raises(ProjectError, match="limit"):  # saving one that could not be opened again is refused too
        save_project(saved[0], tmp_path / "big.zip", runs=[saved[1]], limits=ZipLimits(max_total_bytes=2 ** 20))
    assert list(tmp_path.iterdir()) == []


def test_a_run_without_a_model_or_still_training_is_not_saved(saved, tmp_path):
    empty = tmp_path / "runs" / "empty-run"
    empty.mkdir(parents=True)
    (empty / "config.json").write_text((saved[1] / "config.json").read_text())
    with pytest.raises(ProjectError, match="no trained model"):
        save_project(saved[0], tmp_path / "p.zip", runs=[empty])
    assert not (tmp_path / "p.zip").exists() and not any(tmp_path.glob(".*tmp"))


# ---------------------------------------------------------------------------------------------- workspaces
def test_a_workspace_saves_only_its_own_runs_and_opens_a_project_as_its_own(saved, tmp_path, monkeypatch):
    from transfer_core.data import classbuilder
    from transfer_core.data.classbuilder import set_info
    from transfer_core.service.projects import open_into_workspace, save_from_workspace
    from transfer_core.service.workspaces import NotAllowed, Workspace, new_token, run_owner_is

    pictures, run, project = saved
    mine = Workspace(tmp_path / "workspaces", new_token())
    with pytest.raises(NotAllowed, match="started by someone else"):  # a command-line run is nobody's to give
        save_from_workspace(mine, pictures, [run], tmp_path / "p.zip")
    assert not (tmp_path / "p.zip").exists()
    first = open_into_workspace(mine, project, tmp_path / "runs")
    second = open_into_workspace(mine, project, tmp_path / "runs")  # never mixed into the first
    assert first.data == mine.path / "sets" / "pictures" and second.data == mine.path / "sets" / "pictures 2"
    assert set_info(first.data)["label"] == "pictures"
    assert all(run_owner_is(r, mine.token) for r in first.runs + second.runs)
    monkeypatch.setattr(classbuilder, "MAX_SETS_BYTES", 1)  # a full workspace: refused before writing
    before = _listing(tmp_path)
    with pytest.raises(ValueError, match="your workspace may hold"):
        open_into_workspace(mine, project, tmp_path / "runs")
    assert _listing(tmp_path) == before
