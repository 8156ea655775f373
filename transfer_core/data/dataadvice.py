"""What a person can act on in a scanned data set, in words: a class with one picture, empty folders,
imbalance, copies of the same file, split folders that lack a class."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from transfer_core.core.i18n import N_
from transfer_core.data.datafiles import _names, _rel

# In English where they are made (N_: a scan is cached and shared); the app shows them translated.

FEW_IMAGES = 10
IMBALANCE = 5.0


def _single_image_warnings(usable, classes) -> list[str]:
    single = [c for c in classes if len(usable[c][""]) == 1]
    if not single:
        return []
    text = (N_("{names} has only 1 image, so it cannot be both trained and checked: it is used for training only "
               "and has no validation image. Add more images.") if len(single) == 1 else
            N_("{names} have only 1 image, so it cannot be both trained and checked: it is used for training only "
               "and has no validation image. Add more images."))
    return [text.format(names=_names(single))]


def together_notes(groups: int) -> list[str]:
    if not groups:
        return []
    return [N_("{n} group(s) of near-copies (frames of one burst, copies, or pictures that look almost the same) "
               "are kept together: each group is either all in training or all held out for checking, so the "
               "score is not flattered by a near-copy of a training picture.").format(n=groups)]


def _split_gaps(usable, classes, train_name: str, val_name: str) -> list[str]:
    out = []
    no_train = [c for c in classes if not usable[c]["train"]]
    no_val = [c for c in classes if not usable[c]["val"]]
    if no_train:
        out.append(N_("{names} has no usable images in '{split}', so the model cannot learn it. "
                      "Add images to '{split}/<class>'.").format(names=_names(no_train), split=train_name))
    if no_val:
        out.append(N_("{names} has no usable images in '{split}', so its accuracy cannot be checked. "
                      "Add images to '{split}/<class>'.").format(names=_names(no_val), split=val_name))
    return out


def _empty_warnings(empty: set[str]) -> list[str]:
    if not empty:
        return []
    return [N_("Folder(s) {names} hold no usable images, so they are not classes. "
               "Add images to them or remove them.").format(names=_names(sorted(empty)))]


def _balance_warnings(usable, classes) -> list[str]:
    totals = {c: sum(len(v) for v in usable[c].values()) for c in classes}
    out = []
    few = [c for c in classes if totals[c] < FEW_IMAGES]
    if few:
        out.append(N_("Few images in {names}: add more (at least {n} per class; 50 or more "
                      "works much better).").format(names=_names(few), n=FEW_IMAGES))
    big, small = max(classes, key=totals.get), min(classes, key=totals.get)
    if totals[big] > IMBALANCE * totals[small]:
        out.append(N_("The classes are unbalanced: '{big}' has {n_big} images but '{small}' only "
                      "{n_small}. The model will lean towards big classes: add images to the small ones.").format(
                          big=big, n_big=totals[big], small=small, n_small=totals[small]))
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
        out.append(N_("{n} picture(s) appear in more than one class (e.g. {example}). A picture "
                      "can have only one label: keep each in the right class only.").format(
                          n=len(conflicts), example=example))
    copies = len(groups) - len(conflicts)
    if copies:
        out.append(N_("{n} picture(s) are stored more than once in the same class. The copies are kept on one "
                      "side of the split, but each counts as one more picture of its kind in training: remove "
                      "them.").format(
                          n=copies))
    return out
