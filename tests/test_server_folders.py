"""'A folder on this server' on the Data page: big data sets shared by whoever runs the server
(TRANSFER_STUDIO_DATA_ROOTS), listed by name, nothing outside them accepted."""
from __future__ import annotations

import os

from tests.conftest import copy_textile
from tests.test_app_pages import app_dirs, no_exception, page, texts  # noqa: F401 - fixture
from transfer_core.service.workspaces import server_folders


def shared_tree(tmp_path):
    shared = tmp_path / "shared"
    copy_textile(shared / "textiles" / "set1", 4)
    outside = copy_textile(tmp_path / "private" / "secret_set", 2)
    (shared / "textiles" / "escape").symlink_to(outside, target_is_directory=True)
    (shared / ".hidden").mkdir()
    return shared, outside


def test_server_folders_lists_by_root_name_and_leaves_out_escapes(tmp_path):
    shared, _ = shared_tree(tmp_path)
    labels = [label for label, _ in server_folders([shared])]
    assert labels[:3] == ["shared", "shared/textiles", "shared/textiles/set1"]
    assert not any("escape" in label or "hidden" in label for label in labels)
    assert not any(str(tmp_path) in label for label in labels)


def test_data_page_uses_a_shared_folder_and_refuses_one_outside(app_dirs, tmp_path, monkeypatch):
    shared, outside = shared_tree(tmp_path)
    monkeypatch.setenv("TRANSFER_STUDIO_DATA_ROOTS", str(shared))
    at = page("pages/1_Data.py").run()
    at.radio(key="data_source").set_value("server").run()
    assert "shared/textiles/set1" in at.selectbox(key="server_folder").options
    at.text_input(key="server_folder_typed").set_value("shared/textiles/escape").run()
    at.button(key="use_server_folder").click().run()
    no_exception(at)
    assert "outside the folders this server shares (shared)" in texts(at)
    assert str(outside) not in texts(at) and str(shared) not in texts(at)
    at.text_input(key="server_folder_typed").set_value("shared/../private/secret_set").run()
    at.button(key="use_server_folder").click().run()
    assert "outside the folders this server shares" in texts(at)

    at.text_input(key="server_folder_typed").set_value("").run()
    at.selectbox(key="server_folder").set_value("shared/textiles/set1").run()
    at.button(key="use_server_folder").click().run()
    no_exception(at)
    assert "Using: Server folder\\: shared/textiles/set1" in [s.value for s in at.subheader]
    assert {m.label: m.value for m in at.metric}["Classes"] == "3"


def test_data_page_says_how_to_share_folders_when_none_are(app_dirs, monkeypatch):
    monkeypatch.delenv("TRANSFER_STUDIO_DATA_ROOTS", raising=False)
    at = page("pages/1_Data.py").run()
    at.radio(key="data_source").set_value("server").run()
    no_exception(at)
    assert "TRANSFER_STUDIO_DATA_ROOTS" in texts(at)
    assert os.environ.get("TRANSFER_STUDIO_DATA_ROOTS") is None
