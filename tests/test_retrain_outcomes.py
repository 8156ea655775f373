"""Where Retrain was pressed, a new run that was stopped keeps the old model in use and says so (issue 29): the
page's picker is not switched even though the stopped run saved a model. Real tiny runs, the real Predict page."""
from __future__ import annotations

import threading

from tests.test_app_pages import app_dirs, no_exception, page, texts  # noqa: F401 - app_dirs: a fixture
from tests.test_faults import StopDuringEpoch
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import RunFinished, RunStopped
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.workspaces import OwnerTag, new_token
from transfer_core.workflows.train import train
from tests.conftest import copy_textile

TINY = dict(schedule="fixed", image_size=64, batch_size=8, seed=0, freeze="all")


def test_a_stopped_retrain_keeps_the_old_model_and_says_so(app_dirs):  # noqa: F811 - the fixture
    token, runs = new_token(), app_dirs / "runs"
    data = copy_textile(app_dirs / "data", 6)
    old = train(TrainConfig(data=str(data), epochs=1, **TINY), runs_dir=runs, callbacks=[OwnerTag(token)])
    stop = threading.Event()
    stopped = train(TrainConfig(data=str(data), epochs=2, **TINY), runs_dir=runs, stop=stop,
                    callbacks=[OwnerTag(token), StopDuringEpoch(stop, 2)])
    assert isinstance(old.final, RunFinished) and isinstance(stopped.final, RunStopped)
    assert RunFolder(stopped.run_dir).has_model(), "a stopped run keeps its best model: still not switched to"
    at = page("pages/4_Predict.py", token)
    at.session_state["predict_run"] = old.run_dir.name
    at.session_state["retrain_followed"] = {"job": stopped.run_dir.name, "old": old.run_dir.name, "added": [],
                                            "switched": []}
    no_exception(at.run())
    assert at.selectbox(key="predict_run").value == old.run_dir.name
    assert (f"The new run {stopped.run_dir.name} was stopped before it finished, so the old model "
            f"(run {old.run_dir.name}) is still used here.") in texts(at)
    assert "is now used here instead of" not in texts(at)
