"""Exact and near duplicates among a data set's pictures, and which of them leak across training and validation.

Near duplicates are resized, re-encoded or slightly edited copies, found by the cosine similarity of the
features after removing the data set's mean feature (photos of one kind of thing all share a large common
component; without removing it every pair looks similar), confirmed by a 16x16 thumbnail where features
alone cannot tell (textures).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from transfer_core.quality.embeddings import Embeddings
from transfer_core.quality.findings import DuplicatePair, ImageEntry

# Near duplicates (see near_duplicate_pairs), cosine of mean-removed mobilenet_v2 features at 128 px.
# Measured on 240 textile images (README, "Data checks and export"): distinct pictures reach 0.92,
# a copy resized to 200 px and re-saved as JPEG quality 70 scores 0.89-0.91 and its 16x16 thumbnail
# correlates 0.999 with the original's, where distinct pictures' thumbnails reach 0.34.
FEATURE_DUPLICATE = 0.97  # this alike in features alone: the same picture
FEATURE_CANDIDATE = 0.8  # this alike: the same picture if the thumbnails also match
PIXEL_DUPLICATE = 0.9


def similarity_pairs(features: torch.Tensor, threshold: float, block: int = 1024) -> list[tuple[int, int, float]]:
    """(i, j, cosine) for every pair i < j whose mean-removed features are at least `threshold` alike.

    Computed a block of rows at a time, so 50,000 images need 200 MB, not 10 GB.
    """
    if len(features) < 2:
        return []
    z = torch.nn.functional.normalize(features - features.mean(0, keepdim=True), dim=1)
    out = []
    for start in range(0, len(z), block):
        sims = z[start:start + block] @ z.T
        rows, cols = torch.nonzero(sims >= threshold, as_tuple=True)
        out += [(start + r, c, float(sims[r, c])) for r, c in zip(rows.tolist(), cols.tolist()) if c > start + r]
    return out


def near_duplicate_pairs(emb: Embeddings) -> list[tuple[int, int, float]]:
    """Pairs that are the same picture, possibly resized, re-encoded, recoloured or slightly cropped.

    Either the features alone are nearly identical, or they are alike AND the thumbnails' pixels
    match: on textures (fabric, metal, wood) features of different pictures are alike too, and only
    the pixels tell a re-saved copy (thumbnail correlation 0.999) from another picture (below 0.35).
    """
    out = []
    for i, j, sim in similarity_pairs(emb.features, FEATURE_CANDIDATE):
        if sim >= FEATURE_DUPLICATE or float(emb.thumbnails[i] @ emb.thumbnails[j]) >= PIXEL_DUPLICATE:
            out.append((i, j, sim))
    return sorted(out, key=lambda t: -t[2])


def exact_groups(digests: Sequence[str]) -> list[list[int]]:
    """Indices of files with identical contents, groups of 2 or more."""
    seen: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(digests):
        seen[d].append(i)
    return [g for g in seen.values() if len(g) > 1]


def find_duplicates(entries: Sequence[ImageEntry], emb: Embeddings, digests: Sequence[str]) -> list[DuplicatePair]:
    """Exact copies first, then near duplicates, most alike first; leaks are pairs across splits."""
    pairs: dict[tuple[int, int], DuplicatePair] = {}
    for group in exact_groups(digests):
        for k, i in enumerate(group):
            for j in group[k + 1:]:
                pairs[(i, j)] = DuplicatePair(entries[i], entries[j], 1.0, True)
    for i, j, sim in near_duplicate_pairs(emb):
        pairs.setdefault((i, j), DuplicatePair(entries[i], entries[j], round(min(sim, 1.0), 4), False))
    return sorted(pairs.values(), key=lambda p: (not p.exact, -p.similarity))
