"""Private by default: who sees a run and its pictures (transfer_core.service.workspaces), on real run folders."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import RunStarted
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.workspaces import (
    NotAllowed,
    OwnerTag,
    Workspace,
    list_runs_for,
    may_see,
    may_see_pictures,
    new_token,
    rename_run,
    require_visible,
    share_run,
    sharing,
)

A, B = new_token(), new_token()


def _run_of(owner: str | None, runs: Path, data: Path) -> Path:
    """A run folder tagged as the app tags it (OwnerTag), exactly what a version before sharing wrote."""
    run = RunFolder.create(runs, TrainConfig(schedule="fixed", data=str(data), image_size=64, epochs=1))
    if owner:
        OwnerTag(owner).on_event(None, RunStarted(run_id=run.id, time=0.0, run_dir=str(run.path)))
    return run.path


def _seen(token: str, runs: Path) -> dict:
    return {o.summary.id: o for o in list_runs_for(token, runs)}


def test_a_run_is_private_until_its_owner_shares_it_and_its_pictures_need_a_second_yes(tmp_path, textile_small):
    runs = tmp_path / "runs"
    a_run = _run_of(A, runs, textile_small)
    rename_run(a_run, A, runs, "my cups")
    assert not (a_run / "share.json").exists(), "a new run is private: no share file is written for it"
    assert may_see(a_run, A) and may_see_pictures(a_run, A) and a_run.name in _seen(A, runs)
    assert not may_see(a_run, B) and not may_see_pictures(a_run, B) and _seen(B, runs) == {}
    with pytest.raises(NotAllowed, match="not a run in this app's runs folder"):  # as if it did not exist
        require_visible(a_run, B, runs)

    share_run(a_run, A, runs, run=True, by="Ana")
    seen = _seen(B, runs)[a_run.name]
    assert (seen.mine, seen.name, seen.shared.by, seen.pictures) == (False, "my cups", "Ana", False)
    assert require_visible(a_run, B, runs) == a_run.resolve()
    with pytest.raises(NotAllowed, match="without its pictures"):
        require_visible(a_run, B, runs, pictures=True)

    share_run(a_run, A, runs, run=True, pictures=True)
    assert may_see_pictures(a_run, B) and _seen(B, runs)[a_run.name].pictures
    share_run(a_run, A, runs, run=False, pictures=True)  # stop sharing: the pictures go with the run
    assert sharing(a_run).pictures is False and not may_see(a_run, B) and _seen(B, runs) == {}


def test_only_the_owner_may_share_and_nobody_may_share_a_servers_run(tmp_path, textile_small):
    runs = tmp_path / "runs"
    a_run, server_run = _run_of(A, runs, textile_small), _run_of(None, runs, textile_small)
    for run in (a_run, server_run):
        with pytest.raises(NotAllowed, match="not share it"):
            share_run(run, B, runs, run=True, pictures=True)
        assert not (run / "share.json").exists()
    with pytest.raises(NotAllowed, match="not a run in this app's runs folder"):
        share_run(a_run / "..", A, runs, run=True)


def test_a_run_made_before_sharing_and_damaged_share_files_stay_private(tmp_path, textile_small):
    runs = tmp_path / "runs"
    old = _run_of(A, runs, textile_small)  # owner.json only, as every run before this change
    assert {"config.json", "owner.json"} <= {p.name for p in old.iterdir()} and not (old / "share.json").exists()
    assert not may_see(old, B) and may_see(old, A)
    for text in ("{", '"run"', '{"run": "yes", "pictures": "yes"}', '{"pictures": true}', "[true]"):
        (old / "share.json").write_text(text)
        assert not may_see(old, B) and not may_see_pictures(old, B), text
    (old / "share.json").write_text('{"run": true}')  # the same folder, shared by hand: seen, pictures not
    assert may_see(old, B) and not may_see_pictures(old, B)


def test_command_line_runs_are_the_servers_and_a_damaged_owner_file_is_nobodys(tmp_path, textile_small):
    runs = tmp_path / "runs"
    server_run, broken = _run_of(None, runs, textile_small), _run_of(A, runs, textile_small)
    (broken / "owner.json").write_text("not json")
    for token in (A, B):
        assert may_see(server_run, token) and may_see_pictures(server_run, token)
        assert not may_see(broken, token) and broken.name not in _seen(token, runs)


def test_a_workspace_name_follows_onto_the_runs_it_shares_only(tmp_path, textile_small):
    runs = tmp_path / "runs"
    shared, private, bs = (_run_of(A, runs, textile_small), _run_of(A, runs, textile_small),
                           _run_of(B, runs, textile_small))
    share_run(shared, A, runs, run=True)
    share_run(bs, B, runs, run=True, by="Ben")
    workspace = Workspace(tmp_path / "workspaces", A)
    assert workspace.set_display_name("  Ana \n table 3 ", runs) == "Ana table 3"
    assert workspace.display_name() == "Ana table 3"
    assert sharing(shared).by == "Ana table 3" and sharing(bs).by == "Ben"
    assert not (private / "share.json").exists(), "naming the workspace shares nothing"
    assert A not in json.dumps([json.loads((p / "owner.json").read_text()) for p in (shared, workspace.path)])
    with pytest.raises(NotAllowed, match="cannot be empty"):
        workspace.set_display_name(" \n ", runs)


def test_a_run_shared_without_its_pictures_downloads_without_their_names(tmp_path, textile_small):
    """Fails if the download of a run shared without its pictures lists them (validation.json names each one)."""
    import io
    import zipfile

    from transfer_core.inference.predict import load_model, predict
    from transfer_core.results.bundle import model_bundle
    from transfer_core.workflows.train import train

    result = train(TrainConfig(schedule="fixed", data=str(textile_small), freeze="all", image_size=64, epochs=1,
                               batch_size=8, seed=0), runs_dir=tmp_path / "runs", callbacks=[OwnerTag(A)])
    share_run(result.run_dir, A, tmp_path / "runs", run=True)
    seen = _seen(B, tmp_path / "runs")[result.run_dir.name]
    assert not seen.pictures
    pictures = [p.name for p in textile_small.rglob("*.jpg")]
    for with_pictures, named in ((True, True), (seen.pictures, False)):
        zf = zipfile.ZipFile(io.BytesIO(model_bundle(result.run_dir, with_pictures=with_pictures)))
        text = " ".join(zf.read(n).decode("utf-8", "replace") for n in zf.namelist() if n.endswith(".json"))
        assert any(name in text for name in pictures) is named
    zf.extractall(tmp_path / "download")  # what B unpacks still predicts
    model = load_model(tmp_path / "download" / result.run_dir.name)
    assert len(predict(model, sorted(textile_small.rglob("*.jpg"))[:2])) == 2
