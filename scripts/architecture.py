"""Writes README's "How it is built" picture from the code: the engine's layers as stated in .importlinter,
the contract `lint-imports` enforces, so the picture cannot drift from what CI checks.

    python scripts/architecture.py          # rewrite the README section
    python scripts/architecture.py --check  # exit 1 if the README is not what the code says (tests use it)
"""
from __future__ import annotations

import configparser
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- architecture -->", "<!-- /architecture -->"


def layers() -> list[list[str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    text = config["importlinter:contract:layers"]["layers"]
    return [[m.strip() for m in line.split("|")] for line in text.strip().splitlines()]


def diagram() -> str:
    rows = layers()
    lines = ["```mermaid", "flowchart TD", '    ui["app.py, pages/, ui/ (Streamlit: widgets, session, live view)"]']
    names = []
    for i, row in enumerate(rows):
        name = f"L{i}"
        names.append(name)
        label = "<br/>".join(m.replace("transfer_core.", "") for m in row)
        lines.append(f'    {name}["{label}"]')
    lines.append(f"    ui --> {names[1]}")  # the app uses workspaces, the queue and all below; never the CLI
    lines += [f"    {a} --> {b}" for a, b in zip(names, names[1:])]
    lines.append("```")
    return "\n".join(lines)


def section() -> str:
    return (f"{START}\n{diagram()}\n\nEach box may import the boxes below it, never those above\n"
            "(`lint-imports`, contract file `.importlinter`; `tests/test_architecture.py` runs it and finds no\n"
            "import cycle). Modules outside the boxes (data, models, inference, export) sit beside or below\n"
            "them. Written by `python scripts/architecture.py` from the contract.\n" + END)


def rewritten(readme: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return head + section() + tail


def main() -> int:
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    if START not in text:
        print("README.md has no architecture markers", file=sys.stderr)
        return 1
    new = rewritten(text)
    if "--check" in sys.argv:
        return 0 if new == text else 1
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
