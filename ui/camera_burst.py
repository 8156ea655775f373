"""Pictures for a class from the live camera, in bursts: a few pictures a second while the person moves the
object around (other angles, distances, lighting), as classroom tools collect them.

The video runs in the browser and streams to the server (streamlit-webrtc, as on the Live page); its thread
only keeps the newest frame. "Record" then saves one picture every EVERY_S seconds into the chosen class,
with a progress bar. Streamlit has no press-and-hold button, so a burst is a number of pictures instead.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import numpy as np
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from transfer_core.core.i18n import N_, _
from transfer_core.data.classbuilder import add_picture

from .common import friendly_errors, md_escape
from .live_preview import ice_servers, jpeg, webrtc_words

KEY_FRAME = "cb_burst_frame"  # this session's LatestFrame, shared with the video thread
EVERY_S = 0.3  # about 3 pictures a second: different enough from each other, quick enough to hold still
SIZES = (5, 10, 20, 30)


class LatestFrame:
    """The newest camera frame: written by the video thread, read by the page."""

    def __init__(self):
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None

    def put(self, frame: np.ndarray) -> None:
        with self._lock:
            self._frame = frame

    def get(self) -> np.ndarray | None:
        with self._lock:
            return self._frame


def latest_frame() -> LatestFrame:
    return st.session_state.setdefault(KEY_FRAME, LatestFrame())


def _keep(holder: LatestFrame):
    def keep(frame: av.VideoFrame) -> av.VideoFrame:  # the video thread: no st.* here
        holder.put(frame.to_ndarray(format="rgb24"))
        return frame
    return keep


def burst_recorder(dataset: Path, names: list[str]) -> None:
    if not st.toggle(_("Record bursts from the live camera"), key="cb_burst",
                     help=_("Shows the camera's live video; each press of Record saves several pictures a second "
                          "into the class chosen here while you turn the object, move closer, change the light.")):
        return
    target = st.selectbox(_("Bursts go into"), names, key="cb_burst_class",
                          help=_("The class the recorded pictures are added to. Switch it between bursts."))
    servers, problem = ice_servers()
    if problem:
        st.warning(problem)
    holder = latest_frame()
    webrtc_streamer(key="burst_camera", mode=WebRtcMode.SENDRECV, rtc_configuration={"iceServers": servers},
                    media_stream_constraints={"video": True, "audio": False}, video_frame_callback=_keep(holder),
                    async_processing=True, translations=webrtc_words())
    count = st.select_slider(_("Pictures per burst"), SIZES, value=10, key="cb_burst_size",
                             help=_("One picture every {every} s: 10 pictures take about "
                                    "{total} seconds.").format(every=f"{EVERY_S:g}", total=f"{10 * EVERY_S:.0f}"))
    if st.button(_("Record {n} pictures into {name}").format(n=count, name=target), key="cb_burst_go", type="primary",
                 help=_("Press START under the video first. Keep the object in view while the bar fills.")):
        with friendly_errors(N_("Recording")):
            _record(dataset, target, holder, count)


def _record(dataset: Path, target: str, holder: LatestFrame, count: int) -> None:
    if holder.get() is None:
        st.info(_("No picture from the camera yet: press START under the video box first."))
        return
    bar = st.progress(0.0, text=_("Recording {n} pictures into {name}...").format(n=count, name=md_escape(target)))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(count):
        add_picture(dataset, target, jpeg(holder.get()), f"burst-{stamp}-{i + 1:02d}.jpg")
        bar.progress((i + 1) / count, text=_("{i} of {n} pictures").format(i=i + 1, n=count))
        time.sleep(EVERY_S)
    st.toast(_("{n} pictures added to {name}.").format(n=count, name=target))
    st.rerun()  # the counts and thumbnails above show them
