"""Nothing in the app may assume mobilenet_v2: the Train page works for every registered backbone, and every
backbone whose ImageNet weights are on this machine trains a tiny run and predicts through the pages."""
from __future__ import annotations

import pytest

from tests.conftest import copy_textile, textile_root
from tests.test_app_pages import app_dirs, choose_folder, no_exception, page, texts, wait_for_task  # noqa: F401
from transfer_core.models.backbones import get_backbone, list_backbones
from transfer_core.service.jobs import default_queue

ALL = [s.name for s in list_backbones()]
OFFLINE = [s.name for s in list_backbones() if s.weights.available()]


def test_the_registry_has_backbones_of_other_sizes_than_224():
    # Guards the test below: it only catches the "default size not among the options" crash if some
    # backbone's own size is unusual (efficientnet_lite1 is 240 px, lite2 260 px).
    assert {240, 260} <= {get_backbone(n).preprocessing.crop for n in ALL} - {96, 128, 160, 192, 224, 256, 288}


@pytest.mark.parametrize("name", ALL)
def test_train_page_renders_for_every_backbone(app_dirs, name):
    at = page("pages/2_Train.py").run()
    at.button(key="use_demo_here").click().run()
    at.selectbox(key="backbone").set_value(name).run()
    no_exception(at)
    spec = get_backbone(name)
    assert at.select_slider(key=f"image_size_{name}").value == spec.preprocessing.crop
    assert at.select_slider(key=f"freeze_{name}").value is not None
    start = next(b for b in at.button if b.label == "Start training")
    assert not start.disabled, "the defaults must make a valid run for every backbone"


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFLINE)
def test_every_offline_backbone_trains_a_tiny_run_and_predicts(app_dirs, tmp_path, name):
    at = page("pages/1_Data.py").run()
    choose_folder(at, copy_textile(tmp_path / "tiny", 4))  # 12 pictures: one step of one epoch
    token = at.query_params["ws"]
    train = page("pages/2_Train.py", token).run()
    train.selectbox(key="backbone").set_value(name).run()
    train.number_input(key="epochs").set_value(1).run()
    next(b for b in train.button if b.label == "Start training").click().run()
    no_exception(train)
    job = default_queue().jobs()[-1]
    assert job.config.backbone == name and job.owner == token
    assert default_queue().wait(job.id, timeout=600)
    assert job.final.kind == "RunFinished", getattr(job.final, "error", job.final)

    at = no_exception(page("pages/4_Predict.py", token).run())
    assert at.selectbox(key="predict_run").value == job.id
    picture = sorted((textile_root() / "global").glob("*.jpg"))[0]
    at.file_uploader(key="predict_files").set_value([("cloth.jpg", picture.read_bytes(), "image/jpeg")]).run()
    wait_for_task(at, "predict_task")  # answered in the queue, not on the page's thread
    no_exception(at)
    assert "sure)" in texts(at)
