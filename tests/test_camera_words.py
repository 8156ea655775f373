"""The camera component's own words (streamlit-webrtc draws them in its frame, out of the catalogs' reach) are
all handed to it in the session's language: every word it can show with video only (issue 29)."""
from __future__ import annotations

from streamlit_webrtc.config import Translations

from ui.live_preview import webrtc_words

MICROPHONE = {"mute_microphone", "unmute_microphone", "select_microphone"}  # audio is off on the Live page


def test_every_word_the_camera_box_shows_is_given():
    assert set(webrtc_words()) == set(Translations.__annotations__) - MICROPHONE


def test_the_words_follow_the_session_language(monkeypatch):
    """Each word goes through the catalog's _() when the page draws the box (so a language switch changes it)."""
    import ui.live_preview

    seen = []
    monkeypatch.setattr(ui.live_preview, "_", lambda text: seen.append(text) or f"<{text}>")
    words = webrtc_words()
    assert all(value == f"<{english}>" for value, english in zip(words.values(), seen))
    assert words["start"] == "<START>" and words["stop"] == "<STOP>" and len(seen) == len(words)
