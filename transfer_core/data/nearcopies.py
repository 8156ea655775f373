"""Pictures that are one picture: kept on the same side of every split (training / validation / test).

A webcam burst films one thing ten times a second; a phone keeps near-identical shots; people copy files.
Split picture by picture, such near-copies land on both sides and the validation figure measures memory, not
learning: a set of 20 pictures per class, each with 4 near-copies (small shifts and brightness changes),
scored 100% on validation and 0.629 on unseen test pictures (issue #28). So the split is made by groups:

- frames of one burst recorded in the app (their names carry the burst's time: ui/camera_burst.py);
- identical files (the scan's digest of the bytes);
- near-copies found by content: the picture as 8 x 8 greys (averaged, so fine texture, noise and JPEG
  artefacts do not count), centred and scaled so that a brighter or darker copy is the same. Two pictures of
  one class whose thumbprints correlate at NEAR_COPY or more are one group, and groups join through a
  picture they share. Measured by `python bench/near_copies.py` (2026-12-07, bench/results/near_copies.json):
  copies shifted by up to 4% and 0.8-1.2x as bright are caught 95-97% of the time on the textile demo,
  98% on 25 px face crops, 99.9% on texture patches; distinct textiles never correlate above 0.65. Tiny
  aligned face crops are the worst case: 0.8% of their distinct pairs are joined and 28% of those pictures
  end up in groups (up to 20, overlapping crops of one photo among them), which costs the split some
  freedom, never honesty.

Compared within a class only (a copy in two classes is a labelling error, reported by the scan's advice),
and only in classes of at most MAX_COMPARED pictures: that is where a few copies change the figure, and all
pairs of 5,000 pictures take well under a second. Larger classes keep the bursts and identical files together.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

SIDE = 8  # thumbprint size: 8 x 8 greys
NEAR_COPY = 0.9  # thumbprint correlation from which two pictures of a class are one group
MAX_COMPARED = 5000  # a class larger than this is not compared pair by pair
_BURST = re.compile(r"burst-(\d{8}-\d{6})-\d+")


def thumbprint(image: "Image.Image") -> bytes:
    """The picture as SIDE x SIDE greys (64 bytes), averaged over each cell."""
    from PIL import Image

    return image.convert("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR).tobytes()


def _normalised(prints: Sequence[bytes]) -> np.ndarray:
    """Each thumbprint centred and scaled to length 1, so that correlation is a dot product; a flat picture
    (all one grey) stays all zeros and matches nothing by content."""
    x = np.frombuffer(b"".join(prints), dtype=np.uint8).reshape(len(prints), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 1e-3)


class _Groups:
    """Union-find over picture positions."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def burst_of(path: Path) -> str | None:
    """The burst a picture was recorded in (its name says so), if any."""
    found = _BURST.search(Path(path).name)
    return found.group(1) if found else None


def group_ids(paths: Sequence[Path], digests: Sequence[str], prints: Sequence[bytes]) -> list[int]:
    """For the pictures of one class: a group number per picture; near-copies share theirs."""
    groups = _Groups(len(paths))
    first: dict[tuple[str, str], int] = {}
    for i, (path, digest) in enumerate(zip(paths, digests)):
        for key in (("burst", burst_of(path)), ("file", digest)):
            if key[1]:
                groups.join(i, first.setdefault(key, i))
    usable = [i for i, p in enumerate(prints) if len(p) == SIDE * SIDE]
    if 1 < len(usable) <= MAX_COMPARED:
        for a, b in similar_pairs(_normalised([prints[i] for i in usable])):
            groups.join(usable[a], usable[b])
    return [groups.find(i) for i in range(len(paths))]


def similar_pairs(x: np.ndarray, block: int = 1024) -> list[tuple[int, int]]:
    """(i, j), i < j, of the rows whose dot product is NEAR_COPY or more; in blocks of rows against the rows
    from the block on, so memory stays at block x n and each pair is computed once."""
    pairs = []
    for start in range(0, len(x), block):
        sims = x[start:start + block] @ x[start:].T
        rows, cols = np.nonzero(sims >= NEAR_COPY)
        keep = cols > rows  # the block's own rows sit at the start of the columns: the diagonal and below go
        pairs += zip((rows[keep] + start).tolist(), (cols[keep] + start).tolist())
    return pairs


def group_sizes(ids: Sequence[int]) -> list[int]:
    """How many pictures each group of more than one holds."""
    counts: dict[int, int] = {}
    for g in ids:
        counts[g] = counts.get(g, 0) + 1
    return [c for c in counts.values() if c > 1]


def groups_of(results: Sequence) -> list[list[Path]]:
    """A class's pictures in groups of near-copies (most groups hold one picture), in a fixed order."""
    ids = group_ids([r.path for r in results], [r.digest for r in results], [r.thumbprint for r in results])
    groups: dict[int, list[Path]] = defaultdict(list)
    for r, g in zip(results, ids):
        groups[g].append(r.path)
    return list(groups.values())


def deal(groups: list[list[Path]], t: int, k: int) -> tuple[list[Path], list[Path], list[Path]]:
    """Whole groups, in order, to test while it holds fewer than t pictures, to validation while it holds
    fewer than k - t, the rest to training. A group that would overshoot its share by more than half its size
    goes on (so one large burst does not become the whole validation share); the last group always trains."""
    sides: tuple[list[Path], list[Path], list[Path]] = ([], [], [])
    goals = (t, k - t)
    for i, group in enumerate(groups):
        fits = [side for side in (0, 1) if i < len(groups) - 1 and len(sides[side]) < goals[side]
                and len(sides[side]) + len(group) / 2 <= goals[side]]
        sides[fits[0] if fits else 2].extend(group)
    if k > t and not sides[1] and len(groups) > 1:  # every group overshot: the smallest one is checked on
        smallest = set(min(groups[:-1], key=len))
        sides[2][:] = [p for p in sides[2] if p not in smallest]
        sides[1].extend(sorted(smallest))
    return sides
