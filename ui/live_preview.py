"""The Live page's camera preview: the browser sends its camera to the server over WebRTC (streamlit-webrtc),
each frame is classified there (transfer_core.inference.live) and comes back with the answer drawn on it.

Threads: streamlit-webrtc calls the frame callback on a worker thread of its own, where st.* must never be
called. The callback writes the newest frame and its answer into a LiveState (a lock around a few fields);
the page reads it from a fragment that reruns a few times a second. When frames arrive faster than the
model answers, streamlit-webrtc hands the callback only the newest one (async_processing), so the video
shows the present instead of a growing backlog.
"""
from __future__ import annotations

import functools
import io
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

import av
import numpy as np
import streamlit as st
from PIL import Image, ImageDraw, ImageFont
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from transfer_core.core.i18n import N_, _, get_language, retranslate, use_language
from transfer_core.inference.live import FrameResult, LiveClassifier
from transfer_core.inference.predict import Answer, load_model
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunSummary

from .camera import camera_check
from . import lang
from .common import friendly_errors, md_escape
from .corrections import correction_controls, refusal

KEY_STATE = "live_state"  # this session's LiveState, shared with the video thread
KEY_WHY = "live_why"  # (run id, Explanation) of the last "Why?" press
KEY_KEPT = "live_kept_frame"  # (run id, JPEG bytes) of the frame kept to correct
ICE_ENV = "TRANSFER_STUDIO_ICE_SERVERS"
READOUT_EVERY = 0.25  # seconds between redraws of the answer beside the video
RATE_WINDOW = 3.0  # seconds of recent frames the "per second" figure is measured over


# ---------------------------------------------------------------------------------------------- settings
def ice_servers() -> tuple[list[dict], str | None]:
    """The STUN/TURN servers WebRTC may use to connect a browser on another machine (README, "Live
    preview"): TRANSFER_STUDIO_ICE_SERVERS as JSON, e.g. [{"urls": "stun:stun.example.org:3478"}].
    None by default: on one machine, or a LAN where browsers reach the server directly, none is needed,
    and nothing is asked of any host outside. A faulty value is reported, and none are used."""
    raw = os.environ.get(ICE_ENV, "").strip()
    if not raw:
        return [], None
    try:
        servers = json.loads(raw)
    except json.JSONDecodeError as exc:
        return [], _("{name} is not valid JSON ({why}), so no STUN/TURN server is used.").format(name=ICE_ENV,
                                                                                                  why=exc.msg)
    servers = [servers] if isinstance(servers, dict) else servers
    if not isinstance(servers, list) or not all(isinstance(s, dict) and s.get("urls") for s in servers):
        return [], _("{name} must be a list of servers such as {example}, so no "
                     "STUN/TURN server is used.").format(name=ICE_ENV, example='[{"urls": "stun:host:3478"}]')
    return servers, None


# ---------------------------------------------------------------------------------------------- shared state
@dataclass(frozen=True)
class Snapshot:
    frame: np.ndarray | None  # the newest classified frame, RGB
    result: FrameResult | None
    count: int  # frames classified since the camera started
    rate: float  # frames classified per second, lately
    error: str | None


class LiveState:
    """The newest frame and its answer: written by the video thread, read by the page."""

    def __init__(self):
        self._lock = threading.Lock()
        self.threshold = 0.0  # set by the page at each run, read by the video thread
        self.lang = "en"  # the words on the video: the page's language, set with the threshold
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._frame, self._result, self._error, self._count = None, None, None, 0
            self._times: deque[float] = deque(maxlen=300)

    def put(self, frame: np.ndarray, result: FrameResult) -> None:
        with self._lock:
            self._frame, self._result, self._error = frame, result, None
            self._count += 1
            self._times.append(time.monotonic())

    def fail(self, error: str) -> None:
        with self._lock:
            self._error = error

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = time.monotonic()
            recent = [t for t in self._times if now - t <= RATE_WINDOW]
            rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
            return Snapshot(self._frame, self._result, self._count, rate, self._error)


def live_state() -> LiveState:
    return st.session_state.setdefault(KEY_STATE, LiveState())


# ---------------------------------------------------------------------------------------------- the video thread
def video_words(answer: Answer) -> str:
    """Short enough for a band across the video."""
    best, p = answer.top[0]
    if answer.unfamiliar:
        return _("unfamiliar (best guess {name}, {sure})").format(name=best, sure=f"{p:.0%}")
    if not answer.sure:
        return _("not sure (best guess {name}, {sure})").format(name=best, sure=f"{p:.0%}")
    return f"{best} {p:.0%}"


# A font with Chinese letters where the system has one (Debian: fonts-noto-cjk); Pillow's own has Latin only.
CJK_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")


@functools.cache
def _cjk_font_file() -> str | None:
    return next((f for f in CJK_FONTS if os.path.isfile(f)), None)


@functools.cache
def _font(size: int, cjk: bool = False) -> ImageFont.ImageFont:
    """Pillow's own font for Latin text (as before); the CJK one for text with other letters (Chinese words, a
    class named 猫) where the system has it."""
    found = _cjk_font_file() if cjk else None
    return ImageFont.truetype(found, size) if found else ImageFont.load_default(size=size)


def band_language(lang: str) -> str:
    """The band's language: the page's, unless no font here can draw its letters (then English)."""
    return lang if lang == "en" or _cjk_font_file() else "en"


def draw_answer(frame: np.ndarray, answer: Answer) -> np.ndarray:
    """The frame with the answer in a band along its top: green when sure, grey otherwise."""
    image = Image.fromarray(frame)  # a copy: the frame itself stays clean for Grad-CAM
    band = max(24, image.height // 12)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, image.width, band), fill=(20, 110, 50) if answer.sure else (70, 70, 70))
    text, size = video_words(answer), int(band * 0.6)
    cjk = any(ord(c) > 0x2FF for c in text)
    while size > 10 and draw.textlength(text, font=_font(size, cjk)) > image.width - band // 2:
        size -= 2  # a long class name: smaller letters rather than cut off
    draw.text((band // 4, band // 2), text, fill="white", font=_font(size, cjk), anchor="lm")
    return np.asarray(image)


def frame_callback(classifier: LiveClassifier, state: LiveState):
    """What streamlit-webrtc calls with each frame it has time for, on its own thread: no st.* here."""
    def classify(frame: av.VideoFrame) -> av.VideoFrame:
        image = frame.to_ndarray(format="rgb24")
        try:
            result = classifier.classify(image, state.threshold)
        except Exception as exc:  # noqa: BLE001 - said on the page in words; the video goes on unchanged
            state.fail(str(exc))
            return frame
        state.put(image, result)
        with use_language(band_language(state.lang)):
            drawn = draw_answer(image, result.answer)
        return av.VideoFrame.from_ndarray(drawn, format="rgb24")
    return classify


# ---------------------------------------------------------------------------------------------- the page's part
@st.cache_resource(max_entries=2, show_spinner=False)
def live_classifier(run_dir: str, mtime: float) -> LiveClassifier:
    """One per model for the whole server: every open camera on the same model shares it."""
    return LiveClassifier(load_model(run_dir))


def _readout(state: LiveState) -> None:
    lang.apply()
    snap = state.snapshot()
    if snap.error:
        st.error(_("Classifying the video did not work: {why}").format(why=md_escape(retranslate(snap.error))))
    if snap.result is None:
        st.caption(_("Waiting for the first picture from the camera..."))
        return
    answer = snap.result.answer
    best, p = (md_escape(answer.top[0][0]), answer.top[0][1])
    if answer.unfamiliar:
        st.markdown(_("### Unfamiliar\nThis does not look like the training pictures (best guess {name}, {sure}).").format(
            name=best, sure=f"{p:.0%}"))
    elif not answer.sure:
        st.markdown(_("### Not sure\nBest guess {name}, only {sure} sure.").format(name=best, sure=f"{p:.0%}"))
    else:
        st.markdown(_("### {name}\n{sure} sure").format(name=best, sure=f"{p:.0%}"))
    st.caption(_("{n} frames classified · {rate} per second lately · {ms} ms for the last one").format(
        n=snap.count, rate=f"{snap.rate:.1f}", ms=f"{snap.result.seconds * 1000:.0f}"))


def _why(classifier: LiveClassifier, state: LiveState, run_id: str) -> None:
    if st.button(_("Why? (heat map)"), key="live_why_button", help=_("Takes the picture the camera shows now and "
                 "colours the parts that made the model choose its answer (Grad-CAM): red mattered most.")):
        frame = state.snapshot().frame
        if frame is None:
            st.info(_("No picture from the camera yet: press START first."))
        else:
            with friendly_errors(N_("Making the heat map")):
                st.session_state[KEY_WHY] = (run_id, classifier.explain(frame))
    shown = st.session_state.get(KEY_WHY)
    if shown and shown[0] == run_id:
        why = shown[1]
        left, right = st.columns(2)
        left.image(why.view, caption=_("What the model saw (the centre of the picture)"), width="stretch")
        right.image(why.overlay(), caption=_("Where it looked for {name} ({sure})").format(
            name=why.class_name, sure=f"{why.probability:.0%}"), width="stretch")


def live_preview(run: RunSummary, threshold: float) -> None:
    """The camera box with the answer drawn on the video, the answer in words beside it, and "Why?"."""
    servers, problem = ice_servers()
    if problem:
        st.warning(problem)
    classifier = None
    with friendly_errors(N_("Loading the model")), st.spinner(_("Loading the model...")):
        classifier = live_classifier(str(run.path), (run.path / runfiles.BEST).stat().st_mtime)
    if classifier is None:
        return
    state = live_state()
    state.threshold = threshold
    state.lang = get_language()
    camera_check(N_("The Predict page classifies pictures you upload instead."))
    video, words = st.columns([3, 2])
    with video:
        ctx = webrtc_streamer(key="live_camera", mode=WebRtcMode.SENDRECV,
                              rtc_configuration={"iceServers": servers},
                              media_stream_constraints={"video": True, "audio": False},
                              video_frame_callback=frame_callback(classifier, state), async_processing=True,
                              on_change=state.reset, translations=webrtc_words())
    with words:
        if ctx.state.playing or ctx.state.signalling:
            st.fragment(_readout, run_every=READOUT_EVERY)(state)
        else:
            st.caption(_("Press START under the video box: the browser asks to use the camera, then the model's "
                       "answer appears on the video and here, several times a second."))
        _why(classifier, state, run.id)


def webrtc_words() -> dict[str, str]:
    """The camera component's own buttons and messages, in the session's language (every word it shows with
    video only: the microphone's are never shown, audio is off)."""
    return {"start": _("START"), "stop": _("STOP"), "select_device": _("Select device"),
            "turn_camera_on": _("Turn the camera on"), "turn_camera_off": _("Turn the camera off"),
            "select_camera": _("Select camera"),
            "media_api_not_available": _("The camera cannot be used on this page (it needs https:// or localhost)."),
            "device_ask_permission": _("Please allow the browser to use the camera."),
            "device_not_available": _("No camera found on this computer."),
            "device_access_denied": _("The browser was not allowed to use the camera.")}


def jpeg(frame: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="JPEG", quality=92)
    return out.getvalue()


def correct_frame(run: RunSummary, classes: list[str]) -> None:
    """Keep the frame on screen now, then "this is actually <class>" adds it to the person's own pictures (the
    same correction as on Predict: a demo or shared set is first copied into the workspace). Not offered on a
    run that learned from someone else's own pictures: its answers are not this person's to correct."""
    if refusal(run) is not None:
        return
    if st.button(_("Keep this frame to correct it"), key="live_keep", help=_("Keeps the picture the camera shows now, "
                 "so you can say which class it really is and add it to your pictures for the next training.")):
        frame = live_state().snapshot().frame
        if frame is None:
            st.info(_("No picture from the camera yet: press START first."))
        else:
            st.session_state[KEY_KEPT] = (run.id, jpeg(frame))
    kept = st.session_state.get(KEY_KEPT)
    if kept and kept[0] == run.id:
        st.image(kept[1], caption=_("The frame kept"), width=240)
        correction_controls(run, classes, "live", f"live-{int(time.time())}.jpg", kept[1])
