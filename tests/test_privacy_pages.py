"""The pages of issue 29's privacy and teacher's view, through AppTest (no browser): real tiny runs, real files."""
from __future__ import annotations

import pytest

from tests.conftest import copy_textile
from tests.test_app_pages import app_dirs, no_exception, page, texts, wait_for_task  # noqa: F401 - the fixture
from transfer_core.data.classbuilder import list_classes
from transfer_core.core.config import TrainConfig
from transfer_core.service.classroom import TEACHER_KEY_ENV
from transfer_core.service.workspaces import OwnerTag, Workspace, new_token, sharing
from transfer_core.workflows.train import train

KEY = "class-7b-secret-key"
TINY = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0, freeze="all")


@pytest.fixture
def anas_run(app_dirs, tmp_path):  # noqa: F811
    ana = Workspace(app_dirs / "workspaces", new_token())
    data = copy_textile(ana.path / "sets" / "cups", 6)
    for i, picture in enumerate(sorted((data / "global").iterdir())):  # half of one class mislabelled: the
        if i % 2:                                                      # model is sure to get some wrong
            picture.rename(data / "nominal" / f"moved-{picture.name}")
    ana.write_json("data_choice.json", {"path": str(data), "label": "My classes"})
    run = train(TrainConfig(data=str(data), **TINY), runs_dir=app_dirs / "runs", callbacks=[OwnerTag(ana.token)])
    return ana, run.run_dir


def test_a_private_run_is_nowhere_for_someone_else_and_shared_shows_without_pictures(anas_run, app_dirs):  # noqa: F811
    ana, run_dir = anas_run
    ben = new_token()
    for name in ("pages/3_Evaluate.py", "pages/4_Predict.py"):
        assert "No trained model yet" in texts(no_exception(page(name, ben).run())), name
    assert "No runs yet" in texts(no_exception(page("pages/5_Runs.py", ben).run()))

    runs = no_exception(page("pages/5_Runs.py", ana.token).run())
    runs.text_input(key="workspace_name").set_value("Ana").run()
    no_exception(runs).toggle(key=f"share_{run_dir.name}").set_value(True).run()
    assert sharing(run_dir).run and not sharing(run_dir).pictures and sharing(run_dir).by == "Ana"
    assert "sees this run, but not its pictures" in texts(no_exception(runs))

    evaluate = no_exception(page("pages/3_Evaluate.py", ben).run())
    assert evaluate.selectbox(key="evaluate_run").options[0].startswith("shared by Ana · ")
    wrong = int(next(h.value for h in evaluate.subheader if h.value.startswith("Pictures it got wrong"))[23:-1])
    assert wrong > 0 and "shares it without its pictures" in texts(evaluate) and not evaluate.get("image")
    runs.checkbox(key=f"share_pictures_{run_dir.name}").check().run()
    evaluate = no_exception(page("pages/3_Evaluate.py", ben).run())
    assert len(evaluate.get("image")) == min(wrong, 24) and "shares it without its pictures" not in texts(evaluate)


def test_the_runs_page_shows_settings_in_words_not_keys(anas_run):
    ana, run_dir = anas_run
    runs = no_exception(page("pages/5_Runs.py", ana.token).run())
    table = runs.dataframe[1].value  # the first is the list of runs
    words = dict(zip(table["setting"], table["value"]))
    assert words["times the model sees every training picture (progressive: at most)"] == "1"
    assert words["changed copies of the pictures while training"] == "none"
    assert not {"epochs", "batch_size", "freeze", "augment"} & set(table["setting"])
    assert all(str(run_dir) not in v for v in table["value"]), "paths shown as labels"


def test_the_teacher_page_opens_only_with_the_key(app_dirs, monkeypatch, anas_run):  # noqa: F811
    ana, run_dir = anas_run
    ana.set_display_name("Ana")
    closed = no_exception(page("pages/7_Teacher.py").run())
    assert "This page is for the teacher" in texts(closed) and "started without a teacher key" in texts(closed)
    monkeypatch.setenv(TEACHER_KEY_ENV, KEY)
    wrong = page("pages/7_Teacher.py")
    wrong.query_params["teacher"] = KEY + "x"
    assert "That teacher key is not right." in texts(no_exception(wrong.run()))
    assert not wrong.dataframe and "Ana" not in texts(wrong)
    teacher = page("pages/7_Teacher.py")
    teacher.query_params["teacher"] = KEY
    no_exception(teacher.run())
    assert "teacher" not in teacher.query_params, "the key leaves the address bar once checked"
    table = teacher.dataframe[0].value
    assert list(table["workspace"]) == ["Ana"] and list(table["pictures per class"]) == ["global 3, local 6, nominal 9"]
    assert list(table["runs"]) == [1] and ana.token not in texts(teacher) and ana.path.name not in texts(teacher)

    teacher.multiselect(key="teacher_gather_from").set_value([0]).run()
    teacher.button(key="teacher_gather").click().run()
    wait_for_task(teacher, "teacher_gather_task")
    assert "Gathered into **Gathered from Ana**, now your pictures." in texts(no_exception(teacher))
    mine = Workspace(app_dirs / "workspaces", teacher.query_params["ws"]).read_json("data_choice.json")
    assert {c: len(p) for c, p in list_classes(mine["path"]).items()} == {"global": 3, "local": 6, "nominal": 9}


def test_the_settings_table_reads_in_the_sessions_language():
    from transfer_core.core.i18n import use_language
    from ui.settings_view import settings_rows

    with use_language("zh"):
        rows = [tuple(r.values()) for r in settings_rows(TrainConfig(data="/srv/photos", augment="light", epochs=3))]
    assert ("模型看每张训练图片的遍数（先出模型方式下为上限）", "3") in rows  # the catalog's words for the epochs
    assert ("图片文件夹（每个类别一个子文件夹，或 train/ 和 val/），或一个 .zip", "文件夹：photos") in rows  # a label, no path
    assert not [r for r in rows if r[0] in ("epochs", "augment", "data", "lr", "freeze")], "no raw keys"
