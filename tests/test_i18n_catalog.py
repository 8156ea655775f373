"""The translation catalogs: every message of the code has a Chinese translation with the same placeholders,
the .pot is what the code marks today, and the engine speaks each thread's language (English by default)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from transfer_core.core import i18n

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import i18n as i18n_script  # noqa: E402  (scripts/i18n.py: the same extraction the maintainers run)

POT = i18n.LOCALE_DIR / "messages.pot"
FIELD = re.compile(r"\{[^{}]*\}")
PERCENT = re.compile(r"%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[a-z]|%\{\w+\}|%[sd]")


def placeholders(text: str) -> list[str]:
    """{name}, {name:.1%}, %(name)s, %s and Plotly's %{y}, sorted; {{ and }} are literal braces."""
    plain = text.replace("{{", "").replace("}}", "")
    return sorted(FIELD.findall(PERCENT.sub("", plain)) + PERCENT.findall(plain))


def catalog_problems(pot: Catalog, po: Catalog) -> list[str]:
    """What a translator still has to do: missing, empty or fuzzy entries, placeholders that differ."""
    problems = []
    for m in pot:
        if not m.id:
            continue
        t = po.get(m.id)
        strings = [] if t is None else (list(t.string) if isinstance(t.string, (list, tuple)) else [t.string])
        if t is None or t.fuzzy or not strings or not all(s.strip() for s in strings):
            problems.append(f"not translated: {m.id!r}")
            continue
        ids = list(m.id) if isinstance(m.id, (list, tuple)) else [m.id]
        for s in strings:
            if placeholders(s) != placeholders(ids[0]):
                problems.append(f"placeholders differ: {ids[0]!r} -> {s!r}")
    return problems


def load(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as f:
        return read_po(f, locale=locale)


def test_every_message_has_a_chinese_translation_with_the_same_placeholders():
    problems = catalog_problems(load(POT), load(i18n.po_path("zh"), "zh"))
    assert problems == [], "\n".join(problems[:40])


def test_the_check_finds_a_missing_translation_and_a_lost_placeholder():
    pot, po = Catalog(), Catalog(locale="zh")
    for msgid in ("Training failed: {why}", "{n} pictures", "Start training", "true %{y}"):
        pot.add(msgid)
    po.add("Training failed: {why}", "训练失败：{reason}")  # a renamed placeholder
    po.add("{n} pictures", "张图片")  # a lost one
    po.add("true %{y}", "真实 %{y}")
    problems = catalog_problems(pot, po)
    assert problems == ["placeholders differ: 'Training failed: {why}' -> '训练失败：{reason}'",
                        "placeholders differ: '{n} pictures' -> '张图片'",
                        "not translated: 'Start training'"]


def test_the_pot_is_what_the_code_marks_today():
    """A string marked (or changed) in the code without `python scripts/i18n.py update` fails here, and so,
    through the test above, does one without a Chinese translation."""
    fresh = {m.id for m in i18n_script.extract() if m.id}
    kept = {m.id for m in load(POT) if m.id}
    assert sorted(fresh - kept) == [] and sorted(kept - fresh) == [], "run: python scripts/i18n.py update"


def test_the_glossary_terms_are_used():
    """The field's established words (docs/glossary-zh.md), as the catalog uses them."""
    zh = {m.id: m.string for m in load(i18n.po_path("zh"), "zh") if m.id}
    assert "混淆矩阵" == zh["Confusion matrix"] and "学习率" == zh["Learning rate"]
    assert "数据增强" == zh["Augmentation"] and "冻结多少层" == zh["How many layers to keep frozen"]
    assert zh["precision"] == "精确率" and zh["recall"] == "召回率"
    glossary = (ROOT / "docs" / "glossary-zh.md").read_text(encoding="utf-8")
    for term in ("迁移学习", "预训练", "微调", "冻结", "学习率", "训练集", "验证集", "测试集", "数据增强",
                 "混淆矩阵", "精确率", "召回率", "知识蒸馏", "域适应"):
        assert term in glossary


# ---------------------------------------------------------------------------------------------- at run time
def test_english_is_the_message_itself_and_chinese_comes_from_the_catalog():
    with i18n.use_language("en"):
        assert i18n._("Start training") == "Start training"
    with i18n.use_language("zh"):
        assert i18n._("Start training") == "开始训练"
        assert i18n._("Epoch {epoch} of {epochs} · batch {step} of {steps} · {speed} images/s · {eta}").format(
            epoch=1, epochs=8, step=2, steps=10, speed=30, eta="") .startswith("第 1/8 轮")


def test_a_message_made_in_english_is_shown_translated():
    """Skip reasons and failures are made in English (cached, saved in run folders, made in training threads):
    the app shows them in the person's language, values kept, a reason inside a reason translated too."""
    english = "'cat.jpg' was not added: image too small (8x8 px; at least 16x16)."
    with i18n.use_language("zh"):
        assert i18n.retranslate(english) == "“cat.jpg”未添加：图片太小（8x8 像素；至少 16x16）。"
        assert i18n.retranslate("Training ended unexpectedly.") == "训练意外结束。"
        joined = ("Full fine-tuning: every layer adapts to your images. 1,234 of 5,678 weights train (21.7%). "
                  "Every batch goes through the whole network.")
        assert i18n.retranslate(joined) == ("完全微调：每一层都适应你的图片。5,678 个权重中有 1,234 个参与训练（21.7%）。"
                                            "每个批次都会通过整个网络。")
        assert i18n.retranslate("my_class") == "my_class"
    with i18n.use_language("en"):
        assert i18n.retranslate(english) == english


def test_training_threads_and_the_command_line_speak_english_unless_lang_asks(monkeypatch):
    from transfer_core.training.failures import explain

    assert i18n.language_from_env({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert i18n.language_from_env({"LANGUAGE": "en_GB:zh", "LANG": "zh_CN.UTF-8"}) == "en"
    assert i18n.language_from_env({"LANG": "C.UTF-8"}) == "en" and i18n.language_from_env({}) == "en"
    seen = []
    with i18n.use_language("zh"):  # a page's thread in Chinese starts a training thread: that one is English
        t = threading.Thread(target=lambda: seen.append(explain(MemoryError())))
        t.start()
        t.join()
    assert seen[0].startswith("The machine ran out of memory.") or i18n.language_from_env() == "zh"
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    code = ("from transfer_core.training.failures import explain; print(explain(MemoryError()))")
    zh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                        env={**env, "LANG": "zh_CN.UTF-8", "PYTHONPATH": str(ROOT)})
    en = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                        env={**env, "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT)})
    assert zh.stdout.startswith("机器内存不足。"), zh.stderr
    assert en.stdout.startswith("The machine ran out of memory."), en.stderr


def test_the_catalog_is_compiled_at_start_up_when_its_mo_is_missing_or_old(tmp_path, monkeypatch):
    """A fresh clone has no .mo (it is not in git): the first use compiles it from the .po with Babel."""
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns("*.mo"))
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    i18n.reload_catalogs()
    try:
        mo = locale / "zh" / "LC_MESSAGES" / "messages.mo"
        assert not mo.exists()
        with i18n.use_language("zh"):
            assert i18n._("Start training") == "开始训练"
        assert mo.is_file()
        po = mo.with_suffix(".po")
        po.write_text(po.read_text(encoding="utf-8").replace('msgstr "开始训练"', 'msgstr "开始训练！"'),
                      encoding="utf-8")
        future = mo.stat().st_mtime + 10
        __import__("os").utime(po, (future, future))
        i18n.reload_catalogs()
        with i18n.use_language("zh"):
            assert i18n._("Start training") == "开始训练！", "a .po newer than its .mo is compiled again"
    finally:
        monkeypatch.undo()
        i18n.reload_catalogs()


@pytest.mark.parametrize("code, expected", [("zh_CN.UTF-8", "zh"), ("zh-Hans", "zh"), ("ZH", "zh"),
                                            ("en-GB", "en"), ("fr", None), ("", None)])
def test_language_codes_are_read_leniently(code, expected):
    assert i18n.normalize(code) == expected


def test_no_marked_string_hides_inside_an_f_string():
    """The extractor does not look inside f-strings' expressions: a _("...") there never reaches the catalog
    and stays English. Marked strings go in a variable first."""
    import ast

    hidden = []
    for path in [ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").glob("*.py"),
                 *(ROOT / "transfer_core").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                hidden += [f"{path.name}:{c.lineno}" for c in ast.walk(node) if isinstance(c, ast.Call)
                           and getattr(c.func, "id", "") in ("_", "N_", "ngettext")
                           and any(isinstance(a, ast.Constant) for a in c.args)]
    assert hidden == []
