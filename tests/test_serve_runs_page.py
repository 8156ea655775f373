"""The Runs page shows how to call a run over HTTP: the command for this run, curl and Python (the Python
example itself is run against the real server in tests/test_serve.py)."""
from __future__ import annotations

from tests.conftest import copy_textile
from tests.test_app_pages import app_dirs, no_exception, page  # noqa: F401 - the fixture
from transfer_core.core.config import TrainConfig
from transfer_core.service.serve_examples import python_example
from transfer_core.service.workspaces import OwnerTag, Workspace, new_token
from transfer_core.workflows.train import train


def test_the_runs_page_shows_how_to_call_the_run_over_http(app_dirs):  # noqa: F811
    ana = Workspace(app_dirs / "workspaces", new_token())
    data = copy_textile(ana.path / "sets" / "cups", 4)
    run = train(TrainConfig(data=str(data), schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0,
                            freeze="all"), runs_dir=app_dirs / "runs", callbacks=[OwnerTag(ana.token)])
    runs = no_exception(page("pages/5_Runs.py", ana.token).run())
    expander = next(e for e in runs.expander if e.label.startswith("Call it from your own code"))
    code = [c.value for c in expander.code]
    assert code[0].startswith("python -m transfer_core serve ") and code[0].split()[4].endswith(run.run_dir.name)
    assert "curl" in code[1] and code[2].strip() == python_example().strip()
