"""What a person can act on in a scanned data set, in words: a class with one picture, empty folders,
imbalance, copies of the same file, split folders that lack a class."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from transfer_core.data.datafiles import _names, _rel

FEW_IMAGES = 10
IMBALANCE = 5.0


def _single_image_warnings(usable, classes) -> list[str]:
    single = [c for c in classes if len(usable[c][""]) == 1]
    if not single:
        return []
    return [f"{_names(single)} {'has' if len(single) == 1 else 'have'} only 1 image, so it cannot be both trained "
            "and checked: it is used for training only and has no validation image. Add more images."]


def _split_gaps(usable, classes, train_name: str, val_name: str) -> list[str]:
    out = []
    no_train = [c for c in classes if not usable[c]["train"]]
    no_val = [c for c in classes if not usable[c]["val"]]
    if no_train:
        out.append(f"{_names(no_train)} has no usable images in '{train_name}', so the model cannot learn it. "
                   f"Add images to '{train_name}/<class>'.")
    if no_val:
        out.append(f"{_names(no_val)} has no usable images in '{val_name}', so its accuracy cannot be checked. "
                   f"Add images to '{val_name}/<class>'.")
    return out


def _empty_warnings(empty: set[str]) -> list[str]:
    if not empty:
        return []
    return [f"Folder(s) {_names(sorted(empty))} hold no usable images, so they are not classes. "
            "Add images to them or remove them."]


def _balance_warnings(usable, classes) -> list[str]:
    totals = {c: sum(len(v) for v in usable[c].values()) for c in classes}
    out = []
    few = [c for c in classes if totals[c] < FEW_IMAGES]
    if few:
        out.append(f"Few images in {_names(few)}: add more (at least {FEW_IMAGES} per class; 50 or more "
                   "works much better).")
    big, small = max(classes, key=totals.get), min(classes, key=totals.get)
    if totals[big] > IMBALANCE * totals[small]:
        out.append(f"The classes are unbalanced: '{big}' has {totals[big]} images but '{small}' only "
                   f"{totals[small]}. The model will lean towards big classes: add images to the small ones.")
    return out


def _duplicate_warnings(usable, root: Path) -> list[str]:
    """Identical files: in two classes they contradict each other; in one class they may leak into validation."""
    seen: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for name, splits in usable.items():
        for results in splits.values():
            for r in results:
                seen[r.digest].append((name, r.path))
    groups = [sorted(g) for g in seen.values() if len(g) > 1]
    conflicts = [g for g in groups if len({name for name, _ in g}) > 1]
    out = []
    if conflicts:
        example = " and ".join(f"'{_rel(p, root)}'" for _, p in conflicts[0][:2])
        out.append(f"{len(conflicts)} picture(s) appear in more than one class (e.g. {example}). A picture "
                   "can have only one label: keep each in the right class only.")
    copies = len(groups) - len(conflicts)
    if copies:
        out.append(f"{copies} picture(s) are stored more than once in the same class. Copies can land in both "
                   "training and validation and make the score look better than it is: remove them.")
    return out
