"""Words a person reads, in their language: gettext catalogs managed with Babel (see scripts/i18n.py).

The English text is the message id, so English needs no catalog and reads exactly as written. The language
is per thread of work (a ContextVar): the web app sets it at the top of every page run; anything else (the
command line, training threads, the queue's workers) starts from the environment's LANG/LC_ALL/LANGUAGE,
so it stays English unless the system asks for Chinese.

Three markers, all found by the extractor (babel.cfg):
    _("text {name}").format(name=...)    translated now, in the current language
    ngettext("{n} file", "{n} files", n)  the same, with a plural
    N_("text")                           only marked: the text stays English where it is made (a skip
                                         reason that is cached, compared or saved in a run folder) and is
                                         translated where it is shown, with `retranslate`.
Placeholders are named ({name}), so a translation may put them in another order.
"""
from __future__ import annotations

import contextvars
import functools
import gettext
import io
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LANGUAGES = {"en": "English", "zh": "简体中文"}
DOMAIN = "messages"
LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"


def language_from_env(environ=os.environ) -> str:
    """The system's language for the command line and background work: zh if LANGUAGE/LC_ALL/LC_MESSAGES/
    LANG asks for Chinese (as gettext reads them, first set wins), else English."""
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(var)
        if value:
            return normalize(value.split(":")[0]) or "en"
    return "en"


def normalize(code: str | None) -> str | None:
    """'zh_CN.UTF-8', 'zh-Hans', 'ZH' -> 'zh'; 'en-GB' -> 'en'; anything else -> None."""
    if not code:
        return None
    base = re.split(r"[-_.@]", code.strip().lower(), maxsplit=1)[0]
    return base if base in LANGUAGES else None


_language: contextvars.ContextVar[str | None] = contextvars.ContextVar("transfer_studio_language", default=None)
_ENV_LANGUAGE = language_from_env()
_provider: Callable[[], str | None] | None = None


def set_language_provider(provider: Callable[[], str | None] | None) -> None:
    """Where a thread that set no language looks first (the web app: the session's choice, for widget
    callbacks that run before the page sets it); None from it, or no provider: the environment's."""
    global _provider
    _provider = provider


def get_language() -> str:
    chosen = _language.get()
    if chosen:
        return chosen
    asked = _provider() if _provider is not None else None
    return asked or _ENV_LANGUAGE


def set_language(code: str) -> None:
    """The language of everything this thread (this page run) says from now on."""
    _language.set(normalize(code) or "en")


@contextmanager
def use_language(code: str) -> Iterator[None]:
    token = _language.set(normalize(code) or "en")
    try:
        yield
    finally:
        _language.reset(token)


# ------------------------------------------------------------------------------------------------ catalogs
def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def compile_catalog(lang: str) -> bytes:
    """The .po compiled to .mo bytes with Babel (fuzzy entries left out, as msgfmt does)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po_path(lang).open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    return buf.getvalue()


def ensure_compiled(lang: str) -> bytes:
    """The .mo for `lang`: the one beside the .po when it is newer than the .po, else compiled now and
    written there (not in git, see .gitignore) when the folder can be written, else kept in memory only."""
    po = po_path(lang)
    mo = po.with_suffix(".mo")
    if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
        return mo.read_bytes()
    data = compile_catalog(lang)
    try:
        tmp = mo.with_suffix(f".mo.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, mo)  # atomic: another process may be reading it
    except OSError:
        pass  # a read-only install: the compiled bytes still serve this process
    return data


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    if lang == "en" or not po_path(lang).is_file():
        return gettext.NullTranslations()
    return gettext.GNUTranslations(io.BytesIO(ensure_compiled(lang)))


def reload_catalogs() -> None:
    """Forget the loaded catalogs (after scripts/i18n.py changed a .po, or in tests)."""
    translations.cache_clear()
    _patterns.cache_clear()


def _(message: str) -> str:
    return translations(get_language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(get_language()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a message for the catalog without translating it here (see the module's docstring)."""
    return message


def sentences(*parts: str) -> str:
    """Sentences one after the other: a space after an English one, none after a Chinese one."""
    out = ""
    for part in (p for p in parts if p):
        out += ("" if not out or _CJK_END.search(out) else " ") + part
    return out


# --------------------------------------------------------------------- messages made in English elsewhere
_FIELD = re.compile(r"\{(\w*)(?:[!:][^{}]*)?\}")


def retranslate(text: str) -> str:
    """A message made in English (by a training thread, a cache, or saved in a run folder), in the current
    language: an exact catalog entry, or an entry with placeholders whose literal words match (the values
    are kept as they are), or else sentence by sentence; what no entry matches stays as it is."""
    if get_language() == "en" or not text:
        return text
    whole = _retranslate_one(text)
    if whole is not None:
        return whole
    # Sentences made by different parts of the engine, joined: the longest run of them that an entry matches
    # (a sentence may hold "e.g. " and so look like two), then the next.
    pieces = re.split(r"(?<=[.!?])\s+", text.strip())
    if len(pieces) == 1:
        return text
    out, i = [], 0
    while i < len(pieces):
        for j in range(len(pieces), i, -1):
            found = _retranslate_one(" ".join(pieces[i:j]))
            if found is not None or j == i + 1:
                out.append(found or pieces[i])
                i = j
                break
    joined = out[0]
    for piece in out[1:]:  # Chinese sentences follow each other without a space
        joined += ("" if _CJK_END.search(joined) else " ") + piece
    return joined


_CJK_END = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]$")


def _retranslate_one(text: str, depth: int = 0) -> str | None:
    t = translations(get_language())
    found = t.gettext(text)
    if found != text:
        return found
    for pattern, msgstr in _patterns(get_language()):
        m = pattern.fullmatch(text)
        if m:
            # A value may be a message itself (a skip reason inside "'x' was not added: {reason}."); a name
            # (one word, a file, a class) matches no entry and is kept as it is.
            values = {k: (_retranslate_one(v, depth + 1) or v) if depth < 2 and " " in v else v
                      for k, v in m.groupdict().items()}
            return _FIELD.sub(lambda f: values.get(f.group(1), f.group(0)), msgstr)
    return None


@functools.cache
def _patterns(lang: str) -> list[tuple[re.Pattern, str]]:
    """(regex of an English msgid with named placeholders, its translation), longest literal text first
    so the most specific entry wins."""
    t = translations(lang)
    catalog = getattr(t, "_catalog", {})
    out = []
    for key, msgstr in catalog.items():
        msgid = key[0] if isinstance(key, tuple) else key
        if not msgid or not msgstr or "{" not in msgid or not isinstance(msgid, str):
            continue
        if not re.search(r"[A-Za-z]{3,}", _FIELD.sub("", msgid)):
            continue  # "{items}." would match any sentence: only entries with words of their own
        regex = _msgid_regex(msgid)
        if regex is not None:
            out.append((regex, msgstr, len(_FIELD.sub("", msgid))))
    out.sort(key=lambda x: -x[2])
    return [(r, s) for r, s, _n in out]


_ONE_SENTENCE = r"(?:(?![.!?]\s).)+?"  # a value that does not run over the end of a sentence


def _msgid_regex(msgid: str) -> re.Pattern | None:
    """A value is one sentence at most, except the message's last one (the "{why}" of "... failed: {why}"),
    which may be several: so "{n} of {total} weights train" cannot swallow the sentence before it."""
    pieces, seen, pos = [], set(), 0
    fields = list(_FIELD.finditer(msgid))
    for i, f in enumerate(fields):
        pieces.append(re.escape(msgid[pos:f.start()]))
        name = f.group(1)
        if not name:
            return None
        last = i == len(fields) - 1 and not re.search(r"\w", msgid[f.end():])
        pieces.append(f"(?P={name})" if name in seen else f"(?P<{name}>{'.+?' if last else _ONE_SENTENCE})")
        seen.add(name)
        pos = f.end()
    pieces.append(re.escape(msgid[pos:]))
    try:
        return re.compile("".join(pieces), re.DOTALL)
    except re.error:
        return None
