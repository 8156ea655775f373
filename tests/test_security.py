"""Security: files from users never run code, uploads stay in their workspace, tokens and server folders
cannot reach outside, and one person cannot change another's runs."""
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from datasets_fixtures import png_bytes, textile10, zip_folder  # noqa: F401 - textile10 is a fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import RunFailed, RunStarted
from transfer_core.data.datasets import DatasetError, scan_dataset, write_uploads
from transfer_core.inference.predict import load_model
from transfer_core.models.weights import WeightsUnavailable, load_user_state_dict
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.jobs import JobQueue
from transfer_core.service.workspaces import (
    NotAllowed,
    OwnerTag,
    Workspace,
    data_roots,
    delete_run,
    list_runs_for,
    new_token,
    rename_run,
    resolve_server_folder,
    resume_run,
    run_name,
    run_owner_is,
    valid_token,
)
from transfer_core.workflows.train import resume, train

ALICE, BOB = "alice-token-0123456789", "bob-token-abcdefghijkl"


# ------------------------------------------------------------------------------------------ no code from files
class Payload:
    """Unpickling this creates a folder: the harmless stand-in for any code an attacker would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _malicious_files(tmp_path: Path) -> tuple[Path, list[Path]]:
    marker = tmp_path / "PAYLOAD_RAN"
    zip_style = tmp_path / "evil.pth"  # torch's own zip format, as torch.save writes it
    torch.save({"features.0.0.weight": torch.zeros(1), "evil": Payload(marker)}, zip_style)
    legacy = tmp_path / "evil_legacy.pt"  # torch's older format, as older tools write
    torch.save({"model": Payload(marker)}, legacy, _use_new_zipfile_serialization=False)
    return marker, [zip_style, legacy]


def test_the_payload_is_real_when_loaded_unsafely(tmp_path):
    """Control: without weights_only the file does run code, so the tests below can fail."""
    marker, files = _malicious_files(tmp_path)
    for evil in files:
        torch.load(evil, weights_only=False)  # the payload is only a mkdir in tmp_path
        assert marker.is_dir()
        marker.rmdir()


def test_malicious_weights_file_is_refused_and_never_runs(tmp_path):
    marker, files = _malicious_files(tmp_path)
    for evil in files:
        with pytest.raises(WeightsUnavailable, match="refused: it is not a plain weights file"):
            load_user_state_dict(evil)
    assert not marker.exists()


@pytest.mark.slow
def test_malicious_weights_through_training_and_the_cli(textile_small, tmp_path):
    marker, (evil, legacy) = _malicious_files(tmp_path)
    result = train(TrainConfig(schedule="fixed", data=str(textile_small), weights_file=str(evil), image_size=64, epochs=1),
                   runs_dir=tmp_path / "runs")
    assert isinstance(result.final, RunFailed) and "never run here" in result.final.error
    out = subprocess.run([sys.executable, "-m", "transfer_core", "train", str(textile_small), "--weights", str(legacy),
                          "--epochs", "1", "--image-size", "64", "--out", str(tmp_path / "runs"), "--json"],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert out.returncode == 1 and "never run here" in json.loads(out.stdout.splitlines()[-1])["error"]
    assert not marker.exists()


def test_a_run_folder_with_planted_pickles_never_runs_them(textile_small, tmp_path):
    """Run folders are shared between people: a planted best.pt or checkpoint.pt must not run either."""
    marker, (evil, _) = _malicious_files(tmp_path)
    run = RunFolder.create(tmp_path / "runs", TrainConfig(schedule="fixed", data=str(textile_small), image_size=64, epochs=2))
    (run.path / "process.json").write_text(json.dumps({"pid": 2 ** 22 + 1}))  # an interrupted run
    for name in ("best.pt", "checkpoint.pt"):
        (run.path / name).write_bytes(evil.read_bytes())
    (run.path / "model.json").write_text(json.dumps({"backbone": "mobilenet_v2", "num_classes": 3, "head": "linear",
                                                     "mlp_hidden": 512, "dropout": 0.2}))
    (run.path / "classes.json").write_text('["global", "local", "nominal"]')
    with pytest.raises(pickle.UnpicklingError):
        load_model(run.path)
    result = resume(run.path)
    assert isinstance(result.final, RunFailed)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ workspaces and uploads
@pytest.mark.parametrize("token", ["", "short", "../../etc", "a/b-0123456789abcdef", "..", "x" * 65,
                                   "alice\x00-0123456789abc", "élève-0123456789abcdef", "/abs-0123456789abcdef",
                                   "tok en-0123456789abcdef", "C:-0123456789abcdef\\x", None, 12345678901234567])
def test_bad_tokens_are_refused_and_create_nothing(tmp_path, token):
    with pytest.raises(NotAllowed, match="link is not valid"):
        Workspace(tmp_path / "ws", token)
    assert not (tmp_path / "ws").exists()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(max_size=80))
def test_fuzz_tokens_never_leave_the_workspaces_folder(tmp_path, token):
    root = tmp_path / "ws"
    try:
        ws = Workspace(root, token)
    except NotAllowed:
        return
    assert ws.path.resolve().parent == root.resolve() and valid_token(token)


def test_new_tokens_are_valid_and_unguessable():
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000 and all(valid_token(t) and len(t) >= 24 for t in tokens)


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_uploads_land_only_in_their_own_workspace(tmp_path, textile10):
    root = tmp_path / "workspaces"
    alice, bob = Workspace(root, ALICE), Workspace(root, BOB)
    bob_upload = write_uploads([("pets/cats/a.png", png_bytes((1, 2, 3))), ("pets/dogs/b.png", png_bytes())],
                               bob.uploads_dir())
    bob_before = _files(bob.path)
    # a folder upload with hostile names, then a zip upload with hostile members
    dest = alice.uploads_dir()
    hostile = [("x/../../../../escaped.png", png_bytes()), (f"/{tmp_path}/abs.png", png_bytes()),
               (f"../{BOB}/uploads/planted.png", png_bytes()), ("ok/cats/1.png", png_bytes((9, 9, 9))),
               ("ok/dogs/2.png", png_bytes((90, 9, 9)))]
    write_uploads(hostile, dest)
    bad_zip = tmp_path / "bad.zip"
    zip_folder(textile10, bad_zip, prefix="textile/")
    with zipfile.ZipFile(bad_zip, "a") as zf:
        zf.writestr("../../../zip-escaped.png", png_bytes())
        zf.writestr(f"/{BOB}/zip-abs.png", png_bytes())
    zipped = write_uploads([("mine.zip", bad_zip.read_bytes())], alice.uploads_dir())
    assert scan_dataset(zipped).classes == ("global", "local", "nominal")
    everything = _files(tmp_path)
    assert all(f.startswith(("workspaces/", "bad.zip")) for f in everything), everything
    assert _files(bob.path) == bob_before and scan_dataset(bob_upload).classes == ("cats", "dogs")
    assert all(f.startswith("uploads/") or f == "owner.json" for f in _files(alice.path))  # + the owner hash
    assert len(list((alice.path / "uploads").iterdir())) == 2  # one fresh folder per upload


# ------------------------------------------------------------------------------------------ server folders
def test_server_folders_only_under_configured_roots(tmp_path, monkeypatch):
    shared, private = tmp_path / "shared", tmp_path / "shared-private"
    (shared / "cats").mkdir(parents=True)
    private.mkdir()
    (shared / "link-out").symlink_to(private)
    (shared / "cats" / "link-in").symlink_to(shared / "cats")
    monkeypatch.setenv("TRANSFER_STUDIO_DATA_ROOTS", str(shared))
    assert data_roots() == [shared.resolve()]
    assert resolve_server_folder(shared / "cats") == (shared / "cats").resolve()
    assert resolve_server_folder(shared / "cats" / "link-in") == (shared / "cats").resolve()
    for outside in (private, shared / "link-out", shared / ".." / "shared-private", f"{shared}/cats/../../",
                    "/etc", "~", "", "relative/path", f"{shared}\x00/cats"):
        with pytest.raises(NotAllowed):
            resolve_server_folder(outside)


def test_by_default_only_the_demo_data_is_shared(monkeypatch):
    monkeypatch.delenv("TRANSFER_STUDIO_DATA_ROOTS", raising=False)
    (demo,) = data_roots()
    assert resolve_server_folder(demo / "nominal") == (demo / "nominal").resolve()
    with pytest.raises(NotAllowed, match="outside the folders this server shares"):
        resolve_server_folder(demo.parent)


# ------------------------------------------------------------------------------------------ run ownership
def _run_of(owner: str | None, runs: Path, data: Path) -> Path:
    """A stopped run folder (no training needed to test who may change it), tagged like the app tags it."""
    run = RunFolder.create(runs, TrainConfig(schedule="fixed", data=str(data), image_size=64, epochs=2))
    (run.path / "process.json").write_text(json.dumps({"pid": 2 ** 22 + 1}))  # not running
    if owner:
        OwnerTag(owner).on_event(None, RunStarted(run_id=run.id, time=0.0, run_dir=str(run.path)))
    return run.path


def test_other_peoples_runs_are_read_only(tmp_path, textile_small):
    runs = tmp_path / "runs"
    alices, cli_run = _run_of(ALICE, runs, textile_small), _run_of(None, runs, textile_small)
    assert ALICE not in (alices / "owner.json").read_text()  # the token itself is never stored in a run
    assert run_owner_is(alices, ALICE) and not run_owner_is(alices, BOB)
    queue = JobQueue()
    for run in (alices, cli_run):
        with pytest.raises(NotAllowed, match="not delete it"):
            delete_run(run, BOB, runs)
        with pytest.raises(NotAllowed, match="not rename it"):
            rename_run(run, BOB, runs, "mine now")
        with pytest.raises(NotAllowed, match="not resume it"):
            resume_run(run, BOB, runs, queue=queue)
    assert queue.jobs() == [] and alices.is_dir() and run_name(alices) is None
    with pytest.raises(NotAllowed, match="not a run in this app's runs folder"):
        delete_run(runs, ALICE, runs)
    with pytest.raises(NotAllowed, match="not a run in this app's runs folder"):
        delete_run(alices / "..", ALICE, runs)
    listed = {r.summary.id: r for r in list_runs_for(BOB, runs)}
    assert alices.name not in listed and not listed[cli_run.name].mine  # private to Alice (tests/test_sharing.py)
    assert rename_run(alices, ALICE, runs, "  first\ntry \u2728 ") == "first try \u2728"
    assert {r.name for r in list_runs_for(ALICE, runs) if r.mine} == {"first try \u2728"}
    delete_run(alices, ALICE, runs)
    assert not alices.exists() and cli_run.is_dir()


def test_a_running_run_cannot_be_deleted_even_by_its_owner(tmp_path, textile_small):
    run = RunFolder.create(tmp_path, TrainConfig(schedule="fixed", data=str(textile_small)))  # claimed by this live process
    OwnerTag(ALICE).on_event(None, RunStarted(run_id=run.id, time=0.0, run_dir=str(run.path)))
    with pytest.raises(NotAllowed, match="still training"):
        delete_run(run.path, ALICE, tmp_path)
    assert run.path.is_dir()


def test_secrets_are_not_in_the_repo_and_xsrf_stays_on():
    import tomllib

    repo = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((repo / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["enableXsrfProtection"] is True and cfg["server"].get("enableCORS", True) is True
    assert 1 <= cfg["server"]["maxUploadSize"] <= cfg["server"]["maxMessageSize"]
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert not [f for f in tracked if Path(f).name in ("secrets.toml", ".env", "credentials.json")]
