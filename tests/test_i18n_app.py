"""The whole app in Simplified Chinese (AppTest, no browser): every page visited with the demo data chosen and
a finished run present, every word a person can read collected, and no English sentence may be left.

Allowed as they are: class and file names, numbers, the names of networks and formats (MobileNetV2, ONNX...),
and the product's name. "English sentence" is any run of two or more ASCII words of letters."""
from __future__ import annotations

import io
import json
import re

import pytest
from google.protobuf.json_format import MessageToDict
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.conftest import copy_textile, textile_root
from tests.test_app_pages import ROOT, TIMEOUT
from transfer_core.core import i18n
from transfer_core.core.config import TrainConfig
from transfer_core.service.jobs import default_queue
from transfer_core.service.workspaces import OwnerTag, new_token

# Names that stay as they are in every language (backbones, formats, tools, the product, the demo's classes).
ALLOWED = ["Transfer Studio", "Grad-CAM", "TorchScript", "onnxruntime", "ImageNet", "MobileNetV2", "MobileNetV3-Large",
           "ResNet", "EfficientNet-Lite", "EfficientNet-B0", "ConvNeXt-Tiny", "ViT-B", "VGG", "ONNX", "JPEG", "PNG",
           "AdamW", "SGD", "CPU", "GPU", "Wilson", "JSON", "STUN", "TURN", "START", "STOP", "Dropout", "Top-1", "F1",
           "nominal", "local", "global", "TRANSFER_STUDIO_DATA_ROOTS", "https", "localhost", "python", "predict.py",
           "model card", "L2-SP", "Deep CORAL", "DANN", "AdaBN", "CORAL", "Keras", "ReLU"]
ENGLISH = re.compile(r"\b[A-Za-z]{2,}(?:[ \t]+[A-Za-z]{2,})+\b")
TEXT_KEYS = {"label", "help", "body", "placeholder", "options", "text", "caption", "formattedValue", "value",
             "defaultValue"}
# Not read as text: data, code, pictures, and the style sheet that puts Chinese into Streamlit's upload box.
SKIP_ELEMENTS = {"json", "code", "arrowDataFrame", "imgs", "plotlyChart", "componentInstance", "arrowTable", "empty",
                 "html"}


def english_left(text: str) -> list[str]:
    """The English runs of words in a text, once names, code, paths and identifiers are taken out."""
    text = re.sub(r"`[^`]*`", " ", text)  # code (a command, a folder) is shown as it is typed
    text = re.sub(r"\\(.)", r"\1", text)  # Markdown escapes of user text
    text = re.sub(r"\S+[/._]\S*", " ", text)  # file and folder names, identifiers, addresses
    for name in sorted(ALLOWED, key=len, reverse=True):
        text = text.replace(name, " ")
    return ENGLISH.findall(text)


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k in TEXT_KEYS or isinstance(v, (dict, list))
                for s in _strings(v)]
    return []


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def readable_texts(at: AppTest) -> list[str]:
    """Every string of the page a person reads: text elements, widget labels, help, options, placeholders,
    metric labels, expander and tab labels, table headers and chart titles, axes and legends."""
    out = []
    for node in _walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        kind = getattr(node, "type", "")
        if kind == "plotly_chart":
            out += _chart_texts(json.loads(proto.spec))
        elif kind in ("dataframe", "arrow_data_frame"):
            frame = node.value
            out += [str(c) for c in frame.columns]
            out += [v for c in frame.columns for v in frame[c].tolist() if isinstance(v, str)]
        elif kind not in SKIP_ELEMENTS:
            out += _strings(MessageToDict(proto))
    return [s for s in out if s and s.strip()]


def _chart_texts(spec: dict) -> list[str]:
    layout = spec.get("layout", {})
    texts = [t.get("text", "") if isinstance(t, dict) else str(t) for t in
             [layout.get("title", "")] + [layout.get(a, {}).get("title", "") for a in ("xaxis", "yaxis")]]
    for trace in spec.get("data", []):
        texts += [str(trace.get("name", ""))] + [str(t) for t in trace.get("text", []) if isinstance(t, str)]
        texts += [str(trace.get("hovertemplate", "")).replace("<extra></extra>", "")]
    return texts


def leftovers(at: AppTest) -> dict[str, list[str]]:
    found = {}
    for text in readable_texts(at):
        runs = english_left(text)
        if runs:
            found[text[:120]] = runs
    return found


def test_the_detector_finds_english_and_lets_names_through():
    assert english_left("Start training") == ["Start training"]
    assert english_left("开始训练 mobilenet_v2 · MobileNetV2：小而快") == []
    assert english_left("已跳过 broken.jpg：`python -m transfer_core predict` 需要") == []
    assert english_left("类别 nominal 和 local，ONNX、TorchScript") == []
    assert english_left("在 ImageNet 上 the loss 爆炸") == ["the loss"]


# ---------------------------------------------------------------------------------------------- the app in zh
@pytest.fixture(scope="module")
def zh_app(tmp_path_factory):
    """A workspace with the demo pictures chosen and a finished run of its own, the app asked for Chinese."""
    root = tmp_path_factory.mktemp("zh_app")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRANSFER_STUDIO_RUNS", str(root / "runs"))
    mp.setenv("TRANSFER_STUDIO_WORKSPACES", str(root / "workspaces"))
    mp.setenv("TRANSFER_STUDIO_LANG", "zh")
    token = new_token()
    config = TrainConfig(data=str(copy_textile(root / "data", 8)), epochs=1)
    job = default_queue().submit(config, root / "runs", owner=token, callbacks=[OwnerTag(token)])
    assert default_queue().wait(job.id, timeout=300) and job.final.kind == "RunFinished", job.final
    with i18n.use_language("zh"):
        at = _page("pages/1_Data.py", token)
        next(b for b in at.button if b.label == i18n_zh("Use the demo pictures")).click().run()
    yield token, job
    mp.undo()


@pytest.fixture
def zh_here():
    """AppTest formats a widget's value with the page's format_func in the test's own thread: that thread
    must speak the page's language too (in a server only the page's thread does)."""
    with i18n.use_language("zh"):
        yield


def i18n_zh(msgid: str) -> str:
    with i18n.use_language("zh"):
        return i18n._(msgid)


def _page(name: str, token: str, job_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if name != "app.py":
        at.switch_page(name)
    at.query_params["ws"] = token
    if job_id:
        at.session_state["job_id"] = job_id  # the run this session follows on the Train page
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _settle(at: AppTest) -> AppTest:
    """Let the queue's tasks the page submitted (calibration, a data check...) finish, then draw it again."""
    for key in list(at.session_state.keys()):
        value = at.session_state[key] if "task" in str(key) else None
        if isinstance(value, str) and default_queue().task(value) is not None:
            default_queue().wait(value, timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


PAGES = ["app.py", "pages/1_Data.py", "pages/2_Train.py", "pages/3_Evaluate.py", "pages/4_Predict.py",
         "pages/5_Runs.py", "pages/6_Live.py"]


@pytest.fixture
def no_webrtc_session(monkeypatch):
    import streamlit_webrtc.component

    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)


@pytest.mark.slow
@pytest.mark.parametrize("name", PAGES)
def test_every_page_reads_as_chinese(zh_app, zh_here, name, no_webrtc_session):
    token, job = zh_app
    at = _settle(_page(name, token, job.id))
    if name == "pages/4_Predict.py":  # an answer, with its heat map: the page's words after a prediction
        buf = io.BytesIO()
        Image.open(sorted((textile_root() / "local").glob("*.jpg"))[0]).save(buf, "JPEG")
        at.file_uploader(key="predict_files").set_value([("a.jpg", buf.getvalue(), "image/jpeg"),
                                                         ("bad.jpg", b"nope", "image/jpeg")]).run()
        at.slider(key="threshold").set_value(0.5).run()
        at = _settle(at)
    if name == "pages/1_Data.py":
        next(b for b in at.button if b.key == "run_quality").click().run()
        at = _settle(at)
    assert at.query_params["lang"] == "zh", "the language is kept in the link"
    texts = readable_texts(at)
    assert len(texts) > 10 and any(re.search(r"[\u4e00-\u9fff]", t) for t in texts)
    assert leftovers(at) == {}


def test_a_missing_translation_is_found(zh_app, zh_here, no_webrtc_session, monkeypatch):
    """The check above can fail: with one catalog entry taken away, the Home page has English left."""
    token, job = zh_app
    real = i18n.translations("zh")
    catalog = dict(real._catalog)
    del catalog["How it works"]
    monkeypatch.setattr(real, "_catalog", catalog)
    at = _page("app.py", token)
    assert "How it works" in leftovers(at)


def test_the_switch_changes_the_language_and_keeps_it_in_the_link(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(tmp_path / "workspaces"))
    monkeypatch.delenv("TRANSFER_STUDIO_LANG", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert at.query_params["lang"] == "en" and at.subheader[0].value == "How it works"
    at.segmented_control(key="language_switch").set_value("zh").run()
    assert at.query_params["lang"] == "zh" and at.subheader[0].value == "工作流程"
    assert at.sidebar.get("page_link")[1].label == "数据"
    assert "lang=zh" in at.sidebar.get("page_link")[1].proto.query_string, "links to other pages keep it"
    at.segmented_control(key="language_switch").set_value("en").run()
    assert at.query_params["lang"] == "en" and at.subheader[0].value == "How it works"


def test_the_default_comes_from_the_environment_then_the_browser():
    from ui.lang import default_language

    assert default_language({"TRANSFER_STUDIO_LANG": "zh"}, "en-US,en;q=0.9") == "zh"
    assert default_language({"TRANSFER_STUDIO_LANG": "en"}, "zh-CN,zh;q=0.9") == "en"
    assert default_language({}, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert default_language({}, "fr-FR,en;q=0.5,zh;q=0.3") == "en"
    assert default_language({}, None) == "en"


def test_a_link_with_the_language_opens_in_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(tmp_path / "workspaces"))
    monkeypatch.setenv("TRANSFER_STUDIO_LANG", "en")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["lang"] = "zh"
    at.run()
    assert at.subheader[0].value == "工作流程"


@pytest.mark.slow
def test_own_classes_an_upload_with_skipped_files_and_a_failed_run_read_as_chinese(tmp_path, monkeypatch, zh_here,
                                                                                    no_webrtc_session):
    """The parts the page visits above do not show: making classes, skip reasons, a run that fails."""
    import shutil

    from tests.test_app_pages import choose_folder, session_data_path, start

    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(tmp_path / "workspaces"))
    monkeypatch.setenv("TRANSFER_STUDIO_LANG", "zh")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/1_Data.py")
    at.run()
    at.radio(key="data_source").set_value("own").run()
    at.text_input(key="cb_new_class").input("猫").run()
    at.button(key="cb_add_class").click().run()
    assert not at.exception and leftovers(at) == {}

    folder = copy_textile(tmp_path / "vanishing", 4)
    (folder / "nominal" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "local" / "notes.txt").write_text("hello")
    at.radio(key="data_source").set_value("folder").run()
    files = [(f"{folder.name}/{p.parent.name}/{p.name}", p.read_bytes(), "image/jpeg")
             for p in sorted(folder.glob("*/*")) if p.is_file()]
    at.file_uploader(key="upload_folder").set_value(files).run()
    next(b for b in at.button if b.label == i18n._("Use these {n} file(s)").format(n=len(files))).click().run()
    reasons = dict(zip(*[at.dataframe[0].value[c] for c in (i18n._("file"), i18n._("why"))]))
    assert any(r.startswith("文件已损坏") for r in reasons.values()), reasons
    assert leftovers(at) == {}

    token = at.query_params["ws"]
    shutil.rmtree(session_data_path(token, tmp_path))  # the pictures vanish before training starts
    train = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    train.switch_page("pages/2_Train.py")
    train.query_params["ws"] = token
    train.run()
    train.number_input(key="epochs").set_value(1)
    next(b for b in train.button if b.label == i18n._("Start training")).click().run()
    job = default_queue().jobs()[-1]
    assert default_queue().wait(job.id, timeout=120) and job.final.kind == "RunFailed"
    assert "does not exist" in job.final.error, "the run folder keeps the engine's English"
    train.run()
    errors = " ".join(e.value for e in train.error)
    assert "训练失败" in errors and "不存在" in errors, errors
    assert leftovers(train) == {}


def test_the_live_band_speaks_chinese_where_a_font_can_draw_it(monkeypatch):
    """The band the Live page draws on each frame (in the video thread): the page's language when the system
    has a Chinese font (scripts/test.sh installs fonts-noto-cjk), else English rather than empty boxes."""
    import numpy as np

    from transfer_core.inference.predict import Answer
    from ui import live_preview

    answer = Answer("nominal", 0.41, False, [("nominal", 0.41), ("local", 0.3)], unfamiliar=False)
    frame = np.full((240, 320, 3), 120, np.uint8)
    with i18n.use_language(live_preview.band_language("zh")):
        words, drawn = live_preview.video_words(answer), live_preview.draw_answer(frame, answer)
    if live_preview._cjk_font_file():
        assert words == "不确定（最可能是 nominal，41%）"
        assert (drawn[:20] != live_preview.draw_answer(frame, answer)[:20]).any()  # other letters than English
    monkeypatch.setattr(live_preview, "_cjk_font_file", lambda: None)
    assert live_preview.band_language("zh") == "en"
    assert live_preview.video_words(answer) == "not sure (best guess nominal, 41%)"
