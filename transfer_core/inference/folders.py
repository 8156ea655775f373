"""Predicting on many pictures: folders stand for the pictures below them, answered a chunk at a time, so a
folder of any size holds only one chunk's answers in memory, and a damaged picture is named, not fatal."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from transfer_core.data.datasets import IMAGE_EXTENSIONS, BadImage
from transfer_core.inference.predict import Answer, answer

CHUNK = 512  # pictures answered at once


def pictures_given(items: list[str]) -> list[str]:
    """Files as given; a folder stands for every picture below it (sorted), so 100,000 need no command line."""
    out = []
    for item in items:
        if os.path.isdir(item):
            out += sorted(str(p) for p in Path(item).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        else:
            out.append(item)
    return out


def answers(model, paths: list[str], threshold: float, k: int) -> Iterator[tuple[str, Answer | None, str | None]]:
    """(path, answer, None) for every picture, or (path, None, why) for one that cannot be read."""
    for i in range(0, len(paths), CHUNK):
        chunk = paths[i:i + CHUNK]
        try:
            yield from ((p, a, None) for p, a in zip(chunk, answer(model, chunk, threshold=threshold, k=k)))
        except (BadImage, OSError):
            for p in chunk:  # one by one, to name the bad ones
                try:
                    yield p, answer(model, [p], threshold=threshold, k=k)[0], None
                except (BadImage, OSError) as exc:
                    yield p, None, str(exc)


def as_json(image: str | None, ans: Answer | None, skipped: str | None = None) -> dict:
    """One picture's answer as `predict --json` prints it; the HTTP endpoint (service/serving.py) answers the
    same, so a caller may switch between them."""
    if ans is None:
        return {"image": image, "skipped": skipped}
    return {"image": image, "answer": ans.label, "sure": ans.sure, "unfamiliar": ans.unfamiliar,
            "novelty": round(ans.novelty.score, 6) if ans.novelty else None,
            "top": [{"class": c, "probability": round(p, 6)} for c, p in ans.top]}
