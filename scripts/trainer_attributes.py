"""Count the trainer's attributes born outside `Trainer.__init__` (issue #30): names assigned as `self.X = ...`
in the Trainer's other methods, or `trainer.X = ...` / `setattr(trainer, "X", ...)` in the loop's helpers and the
methods, that `__init__` does not create. A typed state means this prints 0.

    .venv/bin/python scripts/trainer_attributes.py
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "transfer_core"
FILES = sorted((ROOT / "training").glob("*.py")) + sorted((ROOT / "methods").glob("*.py"))


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return [t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return [node.target]
    if isinstance(node, ast.For):
        return [node.target]
    return []


def _assigned(tree: ast.AST, owner: str) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        for t in _targets(node):
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == owner:
                names.add(t.attr)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr" and node.args \
                and getattr(node.args[0], "id", "") == owner and isinstance(node.args[1], ast.Constant):
            names.add(node.args[1].value)
    return names


def born_outside_init() -> dict[str, set[str]]:
    """Attribute name -> the files that create it outside Trainer.__init__."""
    trainer = ast.parse((ROOT / "training" / "trainer.py").read_text())
    cls = next(n for n in trainer.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    init = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    declared = _assigned(init, "self")
    slots = {e.value for n in cls.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__slots__"
             for t in n.targets) for e in ast.walk(n.value) if isinstance(e, ast.Constant)}
    born: dict[str, set[str]] = {}
    for f in cls.body:
        if isinstance(f, ast.FunctionDef) and f.name != "__init__":
            for name in _assigned(f, "self") - declared - slots:
                born.setdefault(name, set()).add("trainer.py")
    for path in FILES:
        for name in _assigned(ast.parse(path.read_text()), "trainer") - declared - slots:
            born.setdefault(name, set()).add(path.name)
    return born


if __name__ == "__main__":
    found = born_outside_init()
    for name, where in sorted(found.items()):
        print(f"{name:20s} {', '.join(sorted(where))}")
    print(f"{len(found)} trainer attributes born outside __init__")
    sys.exit(0)
