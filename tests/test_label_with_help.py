"""Label a pile with help through the real Data page (issue 16 item 5): upload pictures without a class, give
two their class by hand, let the page suggest the rest, accept the first proposal."""
from __future__ import annotations

from tests.test_app_pages import app_dirs, no_exception, page, texts, wait_for_task  # noqa: F401 - fixture
from tests.test_own_classes import add_class, counts, pictures


def pile(n: int) -> list[tuple[str, bytes, str]]:
    """n real pictures of each of two classes, named so that the name says nothing about the class."""
    files = pictures("global", n, offset=200) + pictures("nominal", n, offset=200)
    return [(f"p{i:02d}.jpg", data, kind) for i, (_, data, kind) in enumerate(files)]


def test_upload_a_pile_label_two_suggest_and_accept(app_dirs):  # noqa: F811
    at = page("pages/1_Data.py").run()
    at.radio(key="data_source").set_value("own").run()
    add_class(at, "global")
    add_class(at, "nominal")
    at.file_uploader(key="lb_up:0").set_value(pile(3) + [("broken.jpg", b"\xff\xd8 no", "image/jpeg")]).run()
    at.button(key="lb_add").click().run()
    no_exception(at)
    assert "'broken.jpg' was not added: not an image." in texts(at)
    assert "6 picture(s) wait for a class." in texts(at)
    assert counts(at) == {"global": "0", "nominal": "0"}, "the pile is not a class, nor in one"
    assert at.button(key="lb_suggest").disabled
    assert "at least one picture in each of two classes" in texts(at)

    at.selectbox(key="lb_hand:p00.jpg").set_value("global").run()  # p00-p02 are global, p03-p05 nominal
    at.selectbox(key="lb_hand:p03.jpg").set_value("nominal").run()
    no_exception(at)
    assert counts(at) == {"global": "1", "nominal": "1"}
    assert "4 picture(s) wait for a class." in texts(at)
    assert not at.button(key="lb_suggest").disabled

    at.button(key="lb_suggest").click().run()
    wait_for_task(at, "lb_task")
    no_exception(at)
    found = at.session_state["lb_suggestions"][1]
    assert sorted(s.path.name for s in found) == ["p01.jpg", "p02.jpg", "p04.jpg", "p05.jpg"]
    first = found[0]
    assert first.confidence == min(s.confidence for s in found), "the least sure is asked first"
    assert f"It looks like **{first.label}** ({first.confidence:.0%} sure)." in texts(at)

    at.button(key="lb_accept").click().run()
    no_exception(at)
    own = next(app_dirs.glob("workspaces/*/sets/my-classes"))
    assert (own / first.label / first.path.name).is_file(), "accepted: in the class folder"
    assert not (own / ".unlabelled" / first.path.name).exists(), "and out of the pile"
    assert counts(at)[first.label] == "2"
    assert "3 picture(s) wait for a class." in texts(at)
    assert "3 proposal(s) left" in texts(at)
    assert "You answered 1 since the last suggestion" in texts(at)

    at.button(key="lb_skip").click().run()
    assert "2 proposal(s) left" in texts(at)
    at.button(key="lb_suggest").click().run()  # "Suggest again": the head learns from the answer too
    wait_for_task(at, "lb_task")
    no_exception(at)
    assert sorted(s.path.name for s in at.session_state["lb_suggestions"][1]) == sorted(
        s.path.name for s in found[1:]), "asked about every waiting picture again, the skipped one too"
