"""The translation catalogs, with Babel: extract the marked strings, update each language's .po, compile.

    python scripts/i18n.py extract    # transfer_core/locale/messages.pot from the code (babel.cfg)
    python scripts/i18n.py update     # extract, then merge into every .po (new strings empty, old ones kept)
    python scripts/i18n.py compile    # every .po -> .mo beside it (the app also does this at start-up)
    python scripts/i18n.py check      # exit 1 if the .pot is stale or a .po has a missing/fuzzy entry

Then translate the empty `msgstr ""` entries of transfer_core/locale/zh/LC_MESSAGES/messages.po (see
docs/glossary-zh.md for the words to use) and run `check`.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babel.messages.catalog import Catalog  # noqa: E402
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir  # noqa: E402
from babel.messages.frontend import parse_mapping_cfg  # noqa: E402
from babel.messages.pofile import read_po, write_po  # noqa: E402

from transfer_core.core import i18n  # noqa: E402

POT = i18n.LOCALE_DIR / f"{i18n.DOMAIN}.pot"
SKIP_DIRS = {".venv", "tests", "bench", "scripts", "runs", "workspaces", "__pycache__", "docs", "assets"}


def extract() -> Catalog:
    """Every marked string of the app and the engine, with where it is used."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    catalog = Catalog(project="Transfer Studio", charset="utf-8")
    found = extract_from_dir(str(ROOT), method_map, options_map, keywords=DEFAULT_KEYWORDS,
                             comment_tags=("TRANSLATORS:",), strip_comment_tags=True,
                             directory_filter=lambda d: Path(d).name not in SKIP_DIRS and not Path(d).name.startswith("."))
    for filename, lineno, message, comments, context in found:
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def write(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        write_po(f, catalog, width=110, sort_output=False, omit_header=False)


def po_files() -> list[Path]:
    return sorted(i18n.LOCALE_DIR.glob(f"*/LC_MESSAGES/{i18n.DOMAIN}.po"))


def update() -> None:
    template = extract()
    write(template, POT)
    for po in po_files():
        lang = po.parts[-3]
        with po.open("rb") as f:
            catalog = read_po(f, locale=lang)
        catalog.update(template, update_creation_date=False)
        catalog.obsolete.clear()  # removed strings go; git keeps their history
        write(catalog, po)
        print(f"{po.relative_to(ROOT)}: {len(untranslated(catalog))} to translate")


def untranslated(catalog: Catalog) -> list[str]:
    out = []
    for m in catalog:
        if not m.id:
            continue
        strings = m.string if isinstance(m.string, (list, tuple)) else [m.string]
        if m.fuzzy or not all(strings):
            out.append(m.id if isinstance(m.id, str) else m.id[0])
    return out


def compile_all() -> None:
    for po in po_files():
        lang = po.parts[-3]
        po.with_suffix(".mo").write_bytes(i18n.compile_catalog(lang))
        print(f"compiled {po.with_suffix('.mo').relative_to(ROOT)}")


def msgids(catalog: Catalog) -> set:
    return {m.id for m in catalog if m.id}


def check() -> int:
    with POT.open("rb") as f:
        pot = read_po(f)
    fresh = extract()
    problems = [f"not in the .pot (run update): {i!r}" for i in msgids(fresh) - msgids(pot)]
    problems += [f"in the .pot but no longer in the code (run update): {i!r}" for i in msgids(pot) - msgids(fresh)]
    for po in po_files():
        with po.open("rb") as f:
            catalog = read_po(f, locale=po.parts[-3])
        problems += [f"{po.parts[-3]}: not translated: {i!r}" for i in untranslated(catalog)]
        problems += [f"{po.parts[-3]}: missing: {i!r}" for i in msgids(pot) - msgids(catalog)]
    print("\n".join(problems) or "catalogs up to date")
    return 1 if problems else 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "update"
    if command == "extract":
        write(extract(), POT)
    elif command == "update":
        update()
    elif command == "compile":
        compile_all()
    elif command == "check":
        sys.exit(check())
    else:
        sys.exit(__doc__)
