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


def modules_of(package: str) -> list[str]:
    """The modules of one engine package (or the module itself), as the file system has them."""
    path = ROOT / package.replace(".", "/")
    if path.is_dir():
        return sorted(p.stem for p in path.glob("*.py") if p.stem != "__init__")
    return []


def diagram() -> str:
    rows = layers()
    lines = ["```mermaid", "flowchart TD", '    ui["app.py, pages/, ui/ (Streamlit: widgets, session, live view)"]']
    names = []
    for i, row in enumerate(rows):
        name = f"L{i}"
        names.append(name)
        boxes = [f"<b>{m.replace('transfer_core.', '')}</b>" + (f"<br/>{', '.join(modules_of(m))}" if modules_of(m) else "")
                 for m in row]
        lines.append(f'    {name}["{"<br/>".join(boxes)}"]')
    lines.append(f"    ui --> {names[1]}")  # the app uses the service layer and all below; never the CLI
    lines += [f"    {a} --> {b}" for a, b in zip(names, names[1:])]
    lines.append("```")
    return "\n".join(lines)


# The path of one run, upload to prediction: (step, module, function). tests/test_architecture.py checks
# that each function exists where it says, so a move or rename has to update this list (and the README).
RUN_PATH = [
    ("pictures arrive (upload, zip or server folder)", "transfer_core.data.uploads", "write_uploads"),
    ("the folder is scanned and split", "transfer_core.data.datasets", "scan_dataset"),
    ("the person's job joins the queue, in a fair order", "transfer_core.service.jobs", "JobQueue"),
    ("an executor (a thread of the app, or a Ray worker) trains it", "transfer_core.service.work", "train_job"),
    ("which builds the trainer with the config's methods", "transfer_core.workflows.train", "make_trainer"),
    ("pictures decoded once, frozen layers' outputs cached", "transfer_core.data.imagecache", "ImageStore"),
    ("the loop trains, reporting typed events", "transfer_core.training.trainer", "Trainer"),
    ("best weights, calibration, test share saved in the run folder", "transfer_core.runstore.runfiles", "BEST"),
    ("Predict loads the run folder and answers", "transfer_core.inference.predict", "predict"),
]


def run_path() -> str:
    rows = [f"{i}. {step}: `{module.replace('transfer_core.', '')}.{name}`" for i, (step, module, name)
            in enumerate(RUN_PATH, start=1)]
    return "The path of one run, from upload to prediction:\n\n" + "\n".join(rows) + "\n"


def section() -> str:
    return (f"{START}\n{diagram()}\n\nEach box may import the boxes below it, never those above\n"
            "(`lint-imports`, contract file `.importlinter`; `tests/test_architecture.py` runs it and finds no\n"
            "import cycle). Each box names its modules.\n\n" + run_path() +
            "\nWritten by `python scripts/architecture.py` from the contract and the package folders.\n" + END)


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
