"""The order of the line: first come, first served within a person, round-robin across people, so one
person's ten runs cannot keep a classmate's first run waiting behind them."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Waiting(Protocol):
    id: str
    owner: str
    submitted: float


def fair_order(waiting: Sequence[Waiting], last_served: dict[str, int]) -> list[str]:
    """Ids in the order they will start. `last_served[owner]` is when (a counter) that person's last item
    started; whoever started least recently goes next (never = first), ties by who has waited longest."""
    lines: dict[str, list[Waiting]] = {}
    for item in sorted(waiting, key=lambda w: w.submitted):
        lines.setdefault(item.owner, []).append(item)
    served, tick, order = dict(last_served), max(last_served.values(), default=0), []
    while lines:
        owner = min(lines, key=lambda o: (served.get(o, -1), lines[o][0].submitted))
        order.append(lines[owner].pop(0).id)
        tick += 1
        served[owner] = tick
        if not lines[owner]:
            del lines[owner]
    return order
