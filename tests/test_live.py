"""The live preview: frames classified as Predict classifies pictures (engine), the Live page with and without
a trained model (AppTest), and its video callback on a real video frame. The browser test is test_e2e_live.py."""
from __future__ import annotations

import shutil
import threading

import av
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from tests.conftest import copy_textile, textile_root
from tests.live_frames import camera_frame
from tests.test_app_pages import app_dirs, no_exception, page, texts  # noqa: F401 - app_dirs is a fixture
from transfer_core.core.config import TrainConfig
from transfer_core.inference.live import LiveClassifier, limit_this_thread
from transfer_core.inference.predict import NOT_SURE, UNFAMILIAR, answer, load_model
from transfer_core.workflows.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run: 3 classes x 12 real textile pictures, 96 px (resize 110, then the centre 96), frozen, 1 epoch."""
    tmp = tmp_path_factory.mktemp("live")
    data = copy_textile(tmp / "data", 12)
    result = train(TrainConfig(data=str(data), freeze="all", image_size=96, batch_size=16, epochs=1, seed=0),
                   runs_dir=tmp / "runs")
    assert result.final.kind == "RunFinished", result.final
    return result.run_dir


@pytest.fixture(scope="module")
def model(run_dir):
    model = load_model(run_dir)
    model.temperature = 1.7  # a clearly calibrated model: a live path that skipped calibration would show
    return model


def real_frames() -> list[np.ndarray]:
    """Real pictures as cameras of several shapes film them, and one textile picture as it is (250 x 250)."""
    textiles = [Image.open(sorted((textile_root() / c).glob("*.jpg"))[-1]) for c in ("global", "local", "nominal")]
    photos = [Image.fromarray(skimage.data.coffee()), Image.fromarray(skimage.data.astronaut())]
    sizes = [(640, 480), (480, 640), (1280, 720), (333, 251)]
    frames = [camera_frame(p, *sizes[i % len(sizes)]) for i, p in enumerate(textiles + photos)]
    return frames + [np.asarray(textiles[0].convert("RGB"))]


def test_live_answers_are_predicts_answers_on_real_pictures(model):
    live = LiveClassifier(model)
    for frame in real_frames():
        mine = live.classify(frame).answer
        theirs = answer(model, [Image.fromarray(frame)])[0]
        assert mine.label == theirs.label and mine.top[0][0] == theirs.top[0][0]
        assert mine.confidence == pytest.approx(theirs.confidence, abs=1e-4)
        assert mine.unfamiliar == theirs.unfamiliar


def test_below_the_threshold_the_answer_is_not_sure(model, run_dir):
    live = LiveClassifier(model)
    training_picture = next((run_dir.parent.parent / "data" / "local").glob("*.jpg"))  # familiar by design
    frame = np.asarray(Image.open(training_picture).convert("RGB"))
    first = live.classify(frame).answer
    assert first.unfamiliar is False and first.label in model.classes
    assert live.classify(frame, threshold=first.confidence - 0.01).answer.label == first.top[0][0]
    above = live.classify(frame, threshold=min(first.confidence + 0.01, 1.0)).answer
    assert above.label == NOT_SURE and not above.sure and above.top[0][0] == first.top[0][0]
    assert answer(model, [Image.fromarray(frame)], threshold=min(first.confidence + 0.01, 1.0))[0].label == NOT_SURE
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert live.classify(noise, threshold=0.0).answer.label == UNFAMILIAR  # whatever the threshold
    with pytest.raises(ValueError, match="between 0 and 1"):
        live.classify(frame, threshold=1.5)
    with pytest.raises(ValueError, match="H x W x 3"):
        live.classify(frame[..., 0])


def in_a_new_thread(work, *args):
    t = threading.Thread(target=work, args=args)
    t.start()
    t.join()


def test_the_live_thread_count_stays_on_the_thread_that_classifies():
    seen = {}

    def count(name):
        seen[name] = torch.get_num_threads()

    def video_thread():
        limit_this_thread(1)
        count("video")

    here = torch.get_num_threads()  # this thread's own (the tests above classified on it)
    in_a_new_thread(count, "default")
    in_a_new_thread(torch.set_num_threads, 3)  # new threads take 3 (not 1), even on a 1-core machine
    try:
        in_a_new_thread(video_thread)
        in_a_new_thread(count, "later")  # e.g. a training run started while the camera is on
    finally:
        in_a_new_thread(torch.set_num_threads, seen["default"])
    assert seen["video"] == 1 and seen["later"] == 3 and torch.get_num_threads() == here


# ---------------------------------------------------------------------------------------------- the page
@pytest.fixture
def no_webrtc_session(monkeypatch):
    """streamlit-webrtc looks up the browser session in Streamlit's server, which AppTest only imitates: it
    then works without one (its own fallback), as it does before the camera starts."""
    import streamlit_webrtc.component

    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)


def test_live_page_without_a_trained_model_points_to_train(app_dirs, no_webrtc_session):
    at = no_exception(page("pages/6_Live.py").run())
    assert "No trained model yet" in texts(at)
    assert not at.get("button")  # no camera box, no "Why?"


def test_live_page_with_a_trained_model_shows_the_camera_and_explains_a_frame(app_dirs, no_webrtc_session,
                                                                              run_dir, model):
    shutil.copytree(run_dir, app_dirs / "runs" / run_dir.name)
    at = no_exception(page("pages/6_Live.py").run())
    assert at.selectbox(key="live_run").value == run_dir.name
    assert "Press START" in texts(at)
    assert any(type(e).__name__ == "UnknownElement" for e in at.main), "the camera component is on the page"
    at.button(key="live_why_button").click().run()
    assert "No picture from the camera yet" in texts(no_exception(at))

    frame = real_frames()[0]  # what the video thread leaves for the page once the camera runs
    at.session_state["live_state"].put(frame, LiveClassifier(model).classify(frame))
    at.slider(key="live_threshold").set_value(1.0).run()
    assert at.session_state["live_state"].threshold == 1.0  # read by the video thread at its next frame
    at.button(key="live_why_button").click().run()
    no_exception(at)
    assert any("Where it looked for" in str(img.proto) for img in at.get("image"))


def test_ice_servers_come_from_the_environment_and_a_mistake_is_said_in_words(monkeypatch):
    from ui.live_preview import ICE_ENV, ice_servers

    monkeypatch.delenv(ICE_ENV, raising=False)
    assert ice_servers() == ([], None)  # none: nothing outside this machine is contacted
    monkeypatch.setenv(ICE_ENV, '[{"urls": "stun:stun.example.org:3478"}]')
    assert ice_servers() == ([{"urls": "stun:stun.example.org:3478"}], None)
    monkeypatch.setenv(ICE_ENV, '{"urls": ["turn:turn.example.org"], "username": "u", "credential": "p"}')
    assert ice_servers()[0] == [{"urls": ["turn:turn.example.org"], "username": "u", "credential": "p"}]
    for bad in ("stun:stun.example.org", '[{"url": "stun:x"}]'):
        monkeypatch.setenv(ICE_ENV, bad)
        servers, problem = ice_servers()
        assert servers == [] and ICE_ENV in problem


def test_the_video_callback_classifies_a_real_frame_and_draws_the_answer_on_it(model):
    from ui.live_preview import LiveState, frame_callback

    state, frame = LiveState(), real_frames()[1]
    state.threshold = 1.0
    out = frame_callback(LiveClassifier(model), state)(av.VideoFrame.from_ndarray(frame, format="rgb24"))
    snap = state.snapshot()
    assert snap.count == 1 and snap.error is None and snap.result.answer.label in (NOT_SURE, UNFAMILIAR)
    assert np.array_equal(snap.frame, frame)  # kept clean for "Why?"
    drawn = out.to_ndarray(format="rgb24")
    band = max(24, frame.shape[0] // 12)
    assert drawn.shape == frame.shape and np.array_equal(drawn[band + 1:], frame[band + 1:])
    grey, white = (drawn[:band] == (70, 70, 70)).all(-1), (drawn[:band] > 200).all(-1)
    assert grey.mean() > 0.5 and white.any() and (frame[:band] == (70, 70, 70)).all(-1).mean() < 0.2  # words on grey


def test_a_failure_in_the_video_thread_is_kept_for_the_page_and_the_video_goes_on():
    from ui.live_preview import LiveState, frame_callback

    class Failing:
        def classify(self, frame, threshold):
            raise RuntimeError("the model file went away")

    state, frame = LiveState(), av.VideoFrame.from_ndarray(real_frames()[0], format="rgb24")
    assert frame_callback(Failing(), state)(frame) is frame
    assert state.snapshot().error == "the model file went away" and state.snapshot().count == 0


def test_a_kept_frame_is_added_to_the_persons_own_class_from_the_live_page(app_dirs, no_webrtc_session, model):
    """Live "this is actually": the frame on screen is kept, then added to the class picked, in the pictures the
    run learned from when they are the person's own; pictures that are someone else's are refused in words."""
    from transfer_core.data.datarefs import workspaces_root
    from transfer_core.service.workspaces import workspace_id

    at = no_exception(page("pages/6_Live.py").run())  # makes this person's workspace (the token in the link)
    own = workspaces_root() / workspace_id(at.query_params["ws"]) / "sets" / "mine"
    copy_textile(own, 6)
    result = train(TrainConfig(data=str(own), freeze="all", image_size=64, batch_size=8, epochs=1, seed=0),
                   runs_dir=app_dirs / "runs")
    assert result.final.kind == "RunFinished", result.final
    at = no_exception(page("pages/6_Live.py", at.query_params["ws"]).run())
    at.button(key="live_keep").click().run()
    assert "No picture from the camera yet" in texts(no_exception(at))
    frame = real_frames()[0]
    at.session_state["live_state"].put(frame, LiveClassifier(model).classify(frame))
    at.button(key="live_keep").click().run()
    at.selectbox(key="correct_class_live").set_value("nominal").run()
    before = len(list((own / "nominal").iterdir()))
    at.button(key="correct_live").click().run()
    no_exception(at)
    assert len(list((own / "nominal").iterdir())) == before + 1
    assert "1 picture(s) added" in texts(at)


def test_someone_elses_shared_run_offers_no_frame_to_correct(app_dirs, no_webrtc_session):
    """Fails if Live offers "Keep this frame" on a run trained on another person's own pictures: the
    correction it leads to is not theirs to make (issue 29: the pages offer only what the person may do)."""
    from transfer_core.service.workspaces import OwnerTag, Workspace, new_token, share_run

    ana = Workspace(app_dirs / "workspaces", new_token())
    data = copy_textile(ana.path / "sets" / "cups", 6)
    result = train(TrainConfig(data=str(data), freeze="all", image_size=64, batch_size=8, epochs=1, seed=0),
                   runs_dir=app_dirs / "runs", callbacks=[OwnerTag(ana.token)])
    share_run(result.run_dir, ana.token, app_dirs / "runs", run=True, pictures=True)
    ben = no_exception(page("pages/6_Live.py", new_token()).run())
    assert "shared" in ben.selectbox[0].options[0]  # Ana's run is what Ben's Live uses
    assert not [b for b in ben.button if b.key == "live_keep"]
    own = no_exception(page("pages/6_Live.py", ana.token).run())
    assert [b for b in own.button if b.key == "live_keep"]  # its owner may
