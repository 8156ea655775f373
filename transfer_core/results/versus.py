"""After a retrain: the old model and the new one on the same pictures, counted as "how many each gets right".

Which pictures is the whole question. A picture a model trained on flatters it, so the fair ones are those
*neither* model trained on (held_out_by_both): the new run's validation and test pictures that the old run
held out too (the same name below its data: a copy of the demo keeps the names), or that did not exist when
the old run trained (the pictures the person added since). The split is shuffled per class, so adding a
picture to a class moves others between the shares: a new validation picture may well be one the old model
trained on, and is left out then.

The pictures the person corrected tell something else ("did it learn my correction?"); the caller counts them
apart (compare_on on them) and says that the new model may have trained on them.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transfer_core.data.datafiles import BadImage
from transfer_core.inference.predict import LoadedModel, load_model, predict_probs, to_rgb
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder

Picture = tuple[str, str]  # (path on this server, its true class name)
BATCH = 16  # pictures decoded once and put through both models together
MAX_PICTURES = 200  # two CPU models on 200 pictures take about half a minute; more says little more


@dataclass(frozen=True)
class SideBySide:
    right_old: int
    right_new: int
    n: int  # pictures both models answered (an unreadable one is left out of both)


def compare_on(old_run: str | Path, new_run: str | Path, pictures: Sequence[Picture], *,
               progress: Callable[[int, int], None] | None = None,
               stop: threading.Event | None = None) -> SideBySide:
    """How many of `pictures` each run's model puts in their true class (its top answer). Each picture is
    decoded once and given to both models; a class a model does not know counts as wrong for it."""
    old, new = load_model(old_run), load_model(new_run)
    right_old = right_new = n = 0
    for start in range(0, len(pictures), BATCH):
        if stop is not None and stop.is_set():
            break
        images, truths = _decoded(pictures[start:start + BATCH])
        if images:
            right_old += _right(old, images, truths)
            right_new += _right(new, images, truths)
            n += len(images)
        if progress:
            progress(min(start + BATCH, len(pictures)), len(pictures))
    return SideBySide(right_old, right_new, n)


def _decoded(batch: Sequence[Picture]) -> tuple[list, list[str]]:
    images, truths = [], []
    for path, truth in batch:
        try:
            images.append(to_rgb(path))
        except (BadImage, OSError):  # deleted or damaged since: neither model is asked
            continue
        truths.append(truth)
    return images, truths


def _right(model: LoadedModel, images: list, truths: list[str]) -> int:
    top = predict_probs(model, images).argmax(1).tolist()
    return sum(model.classes[i] == truth for i, truth in zip(top, truths))


def held_out_pictures(run: RunFolder) -> list[tuple[str, str, str]]:
    """(name below the run's data, path here, true class) of its validation and test pictures still on disk."""
    classes = run.read_json(runfiles.CLASSES, [])
    out = []
    for share in (runfiles.VALIDATION, runfiles.TEST):
        record = run.predictions(share)
        if record is None:
            continue
        for name, path, label in zip(record.names, run.validation_images(share), record.labels):
            if path and Path(path).is_file() and 0 <= label < len(classes):
                out.append((name, path, classes[label]))
    return out


def held_out_by_both(old_run: str | Path, new_run: str | Path, added: Iterable[str] = ()) -> list[Picture]:
    """The new run's held-out pictures the old model did not train on either: held out by the old run too,
    or among `added` (paths of pictures added after the old run, such as the person's corrections)."""
    old_names = {name for name, _path, _truth in held_out_pictures(RunFolder(old_run))}
    added = {str(Path(p).resolve()) for p in added}
    return [(path, truth) for name, path, truth in held_out_pictures(RunFolder(new_run))
            if name in old_names or str(Path(path).resolve()) in added]


def spread(pictures: Sequence[Picture], limit: int = MAX_PICTURES) -> list[Picture]:
    """At most `limit` pictures, taken evenly through the list (every class keeps its share), always the same."""
    if len(pictures) <= limit:
        return list(pictures)
    return [pictures[i * len(pictures) // limit] for i in range(limit)]


@dataclass(frozen=True)
class AfterRetrain:
    """What the notice after a retrain says: the fair comparison first, the corrected pictures apart."""
    held_out: SideBySide  # on pictures neither model trained on (at most MAX_PICTURES of them)
    held_out_total: int  # how many such pictures there were before spread() took some
    corrected: SideBySide  # on the pictures the person added
    corrected_trained_on: int  # of those, how many the new run trained on (it is expected to get them right)


def after_retrain(old_run: str | Path, new_run: str | Path, added: Sequence[str], *,
                  progress: Callable[[int, int], None] | None = None,
                  stop: threading.Event | None = None) -> AfterRetrain:
    """Both models on the pictures neither trained on, and on the pictures added (`added`: their paths, each
    in its class's folder)."""
    fair_all = held_out_by_both(old_run, new_run, added)
    fair = spread(fair_all)
    corrected = [(str(p), Path(p).parent.name) for p in added if Path(p).is_file()]
    new_held = {str(Path(path).resolve()) for _name, path, _truth in held_out_pictures(RunFolder(new_run))}
    total = len(fair) + len(corrected)
    report = progress or (lambda *_: None)
    first = compare_on(old_run, new_run, fair, progress=lambda i, _n: report(i, total), stop=stop)
    second = compare_on(old_run, new_run, corrected, progress=lambda i, _n: report(len(fair) + i, total), stop=stop)
    return AfterRetrain(first, len(fair_all), second,
                        sum(str(Path(p).resolve()) not in new_held for p, _truth in corrected))
