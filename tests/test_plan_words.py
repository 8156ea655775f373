"""The Train page's sentence about which weights train follows the way of training chosen (issue 29): with
"Model first" (the one click) the first model trains only the new classifier, and the stages left free may
learn afterwards; "Exactly as set" trains them from the start. Real architectures, the real page (AppTest)."""
from __future__ import annotations

from tests.test_app_pages import app_dirs, no_exception, page, texts  # noqa: F401 - app_dirs: a fixture
from transfer_core.data.datasets import demo_dataset_path
from transfer_core.models.backbones import freeze_options
from transfer_core.models.freezing import describe_model_first
from transfer_core.service.workspaces import Workspace, new_token


def test_model_first_names_the_classifier_alone_then_the_free_stages():
    plans = freeze_options("resnet18")
    first, plan = plans[-1], plans[2]
    assert first.trainable_params < plan.trainable_params < plan.total_params
    words = describe_model_first(plan, first)
    assert words.startswith(f"First model: only the new classifier learns ({first.trainable_params:,} of "
                            f"{first.total_params:,} weights")
    assert f"up to {plan.trainable_params:,} weights" in words
    assert f"{plan.trainable_params:,} of {plan.total_params:,} weights train" not in words
    assert describe_model_first(first, first) == first.describe()  # everything kept: nothing comes after


def test_the_train_page_says_what_the_one_click_plan_trains(app_dirs):  # noqa: F811 - the fixture
    token = new_token()
    Workspace(app_dirs / "workspaces", token).write_json("data_choice.json", {
        "path": str(demo_dataset_path()), "label": "Demo: textile defects", "val_split": 0.2, "seed": 0})
    at = no_exception(page("pages/2_Train.py", token).run())
    plans = freeze_options(at.selectbox(key="backbone").value)
    depth = at.select_slider(key=f"freeze_{at.selectbox(key='backbone').value}").value
    plan, first = plans[depth], plans[-1]
    assert at.radio(key="schedule").value == "progressive"  # the one click
    shown = texts(at)
    assert f"{plan.trainable_params:,} of {plan.total_params:,} weights train" not in shown
    assert f"First model: only the new classifier learns ({first.trainable_params:,} of" in shown
    assert "Learning: the new classifier first, then perhaps" in shown
    at.radio(key="schedule").set_value("fixed").run()
    no_exception(at)
    assert f"{plan.trainable_params:,} of {plan.total_params:,} weights train" in texts(at)
    assert "First model: only the new classifier" not in texts(at)


def test_the_network_table_says_what_each_is_without_repeating_its_name():
    from ui.train_form import _backbone_rows, without_name
    from transfer_core.models.backbones import list_backbones

    rows = {r["network"]: r["what_it_is"] for r in _backbone_rows("en")}
    for spec in list_backbones():
        assert spec.title.endswith(": " + rows[spec.name]), (spec.title, rows[spec.name])
    assert max(len(text) for text in rows.values()) <= 70  # fits the column's width on a 1400 px screen
    assert without_name("MobileNetV2：小而快") == "小而快" and without_name("no name here") == "no name here"
