"""The language a person reads the app in: English or Simplified Chinese, kept in the link (`?lang=zh`)
beside the workspace token, so a bookmark or a shared link opens in the same language.

First visit: TRANSFER_STUDIO_LANG (en or zh, set by a teacher for a whole class), else the browser's
Accept-Language, else English. The words themselves come from the engine's catalogs (transfer_core.core.i18n).
"""
from __future__ import annotations

import os

import streamlit as st

from streamlit.runtime.scriptrunner import get_script_run_ctx

from transfer_core.core.i18n import LANGUAGES, _, normalize, set_language, set_language_provider

KEY_LANG = "language"  # the chosen language, kept across pages (a widget's own state is not)
KEY_WIDGET = "language_switch"
PARAM = "lang"


def default_language(env=os.environ, accept_language: str | None = None) -> str:
    """TRANSFER_STUDIO_LANG, else the first language of Accept-Language the app speaks, else English."""
    chosen = normalize(env.get("TRANSFER_STUDIO_LANG"))
    if chosen:
        return chosen
    for part in (accept_language or "").split(","):
        code = normalize(part.split(";")[0])
        if code:
            return code
    return "en"


def _accept_language() -> str | None:
    try:
        return st.context.headers.get("Accept-Language")
    except Exception:  # noqa: BLE001 - no browser behind this run (AppTest, bare mode): no header
        return None


def current() -> str:
    """This session's language: the one chosen, else the link's, else the default."""
    if KEY_LANG not in st.session_state:
        st.session_state[KEY_LANG] = (normalize(st.query_params.get(PARAM))
                                      or default_language(accept_language=_accept_language()))
    return st.session_state[KEY_LANG]


def _session_language() -> str | None:
    """The session's language for code that runs before the page sets it (a widget's callback); None off
    the script's thread (a training thread, the queue's worker), which speak the environment's language."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    return st.session_state.get(KEY_LANG)


set_language_provider(_session_language)


def apply() -> str:
    """At the top of every page run (and fragment run): the engine's messages and the page's words in the
    session's language, and the language in the link."""
    lang = current()
    set_language(lang)
    if st.query_params.get(PARAM) != lang:
        st.query_params[PARAM] = lang
    return lang


def streamlit_words() -> None:
    """Streamlit's own words inside its upload box ("Upload", "1GB per file"), which no catalog of the app
    reaches, replaced with the session's by a style sheet (style-only HTML takes no room on the page)."""
    if current() == "en":
        return
    upload, folder = _css(_("Upload")), _css(_("Upload a folder"))
    box = '[data-testid="stFileUploaderDropzone"]'
    label = 'button [data-testid="stMarkdownContainer"] p'
    button = f"{box} {label}"
    rules = [f"{button} {{font-size: 0}}",
             f"{button}::after {{content: {upload}; font-size: 0.875rem}}",
             f"{box}:has(input[webkitdirectory]) {label}::after {{content: {folder}}}",
             f'[data-testid="stFileUploaderDropzoneInstructions"] span {{font-size: 0}}',
             f'[data-testid="stFileUploaderDropzoneInstructions"] span::after {{content: {_css(_limit())}; '
             "font-size: 0.875rem}"]
    st.html("<style>" + "\n".join(rules) + "</style>")


def _limit() -> str:
    return _("At most {size} MB per file").format(size=st.get_option("server.maxUploadSize"))


def _css(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def switch() -> None:
    """The sidebar's language switch; the page is drawn again in the new language at once."""
    st.session_state[KEY_WIDGET] = current()
    st.segmented_control("Language / 语言", list(LANGUAGES), format_func=LANGUAGES.get, key=KEY_WIDGET,
                         on_change=_chosen, label_visibility="collapsed")


def _chosen() -> None:
    lang = normalize(st.session_state.get(KEY_WIDGET))
    if lang:  # a click on the selected option unselects it: keep the language then
        st.session_state[KEY_LANG] = lang
        st.query_params[PARAM] = lang
        set_language(lang)
