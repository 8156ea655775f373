"""Data-quality checks: duplicates, train/validation leakage and likely mislabelled images.

All three come from one pass of an ImageNet backbone over the images (its pooled features, the same
`TransferNet.features` the trainer uses), so they work before any training:
- exact duplicates: identical file contents (a hash);
- near duplicates: resized, re-encoded or slightly edited copies, found by the cosine similarity of the
  features after removing the data set's mean feature (photos of one kind of thing all share a large
  common component; without removing it every pair looks similar), confirmed by a 16x16 thumbnail
  where features alone cannot tell (textures);
- leakage: a duplicate with one copy in training and one in validation makes the score look better
  than it is;
- likely mislabelled: out-of-fold predictions (confident learning, Northcutt et al. 2021). A linear
  classifier on the features is trained K times, each time without one fold, and predicts that fold;
  its probabilities are averaged with the labels of each image's nearest neighbours (leave-one-out by
  nature). An image whose given label gets a low probability from models that never saw it is suspect.

The review actions (move to another class, exclude) move files and never delete them.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from transfer_core.data.datasets import (
    _TRAIN_NAMES,
    _VAL_NAMES,
    DatasetError,
    DatasetReport,
    demo_dataset_path,
    load_rgb,
    scan_dataset,
)
from transfer_core.data.imagecache import Stopped
from transfer_core.models.backbones import build_network, get_backbone
from transfer_core.models.preprocessing import Preprocessing

# progress(phase, done, total); phases: "reading", "features", "labels"
ProgressFn = Callable[[str, int, int], None]

# Near duplicates (see near_duplicate_pairs), cosine of mean-removed mobilenet_v2 features at 128 px.
# Measured on 240 textile images (README, "Data checks and export"): distinct pictures reach 0.92,
# a copy resized to 200 px and re-saved as JPEG quality 70 scores 0.89-0.91 and its 16x16 thumbnail
# correlates 0.999 with the original's, where distinct pictures' thumbnails reach 0.34.
FEATURE_DUPLICATE = 0.97  # this alike in features alone: the same picture
FEATURE_CANDIDATE = 0.8  # this alike: the same picture if the thumbnails also match
PIXEL_DUPLICATE = 0.9
# Flag at most this share of the images as likely mislabelled: a review list people will actually read.
MAX_SUSPECT_SHARE = 0.15
FOLDS = 5


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ImageEntry:
    path: str
    name: str  # path inside the data set, for display
    label: int
    split: str  # "train" or "val"


@dataclass(frozen=True)
class DuplicatePair:
    a: ImageEntry
    b: ImageEntry
    similarity: float  # 1.0 for identical files
    exact: bool

    @property
    def leak(self) -> bool:
        """One copy trains, the other is used to check: the validation score is inflated."""
        return self.a.split != self.b.split

    @property
    def conflicting_labels(self) -> bool:
        return self.a.label != self.b.label


@dataclass(frozen=True)
class SuspectLabel:
    image: ImageEntry
    given: str
    suggested: str
    given_probability: float  # out-of-fold probability of the label it has
    suggested_probability: float


@dataclass(frozen=True)
class QualityReport:
    root: str
    classes: tuple[str, ...]
    images: tuple[ImageEntry, ...]
    duplicates: tuple[DuplicatePair, ...]
    suspects: tuple[SuspectLabel, ...]  # most suspect first
    out_of_fold_accuracy: float  # how well a linear classifier on the features separates the classes
    backbone: str
    seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def leaks(self) -> list[DuplicatePair]:
        return [d for d in self.duplicates if d.leak]

    def summary(self) -> list[str]:
        """Plain-words findings, most important first."""
        n = len(self.images)
        lines = []
        if self.leaks:
            lines.append(f"{len(self.leaks)} picture(s) are in training and (as a copy) in validation: the "
                         "validation score will look better than it is. Exclude one copy of each.")
        conflicts = [d for d in self.duplicates if d.conflicting_labels]
        if conflicts:
            lines.append(f"{len(conflicts)} pair(s) of (near-)identical pictures carry different labels.")
        same = len(self.duplicates) - len(self.leaks)
        if same > 0:
            lines.append(f"{same} pair(s) of (near-)duplicate pictures within training or within validation.")
        if self.suspects:
            lines.append(f"{len(self.suspects)} of {n} picture(s) may have the wrong label: a classifier that "
                         "never saw them disagrees with their folder. Review them, most suspect first.")
        if not lines:
            lines.append(f"No duplicates and no likely label mistakes found among {n} pictures.")
        return lines + list(self.notes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["leaks"] = len(self.leaks)
        d["summary"] = self.summary()
        for pair, row in zip(self.duplicates, d["duplicates"]):
            row["leak"], row["conflicting_labels"] = pair.leak, pair.conflicting_labels
        return d


# ---------------------------------------------------------------------------------------------- features
@dataclass(frozen=True)
class Embeddings:
    features: torch.Tensor  # N x D pooled ImageNet features
    thumbnails: torch.Tensor  # N x 256: 16x16 greyscale, zero mean, unit length (pixel-level likeness)


def embed_images(paths: Sequence[str | Path], *, backbone: str = "mobilenet_v2", image_size: int | None = None,
                 batch_size: int = 32, progress: ProgressFn | None = None,
                 stop: threading.Event | None = None) -> Embeddings:
    """The backbone's pooled ImageNet features and a tiny thumbnail of each image, in the order given."""
    spec = get_backbone(backbone)
    prep = spec.preprocessing.at_size(None if spec.fixed_size else image_size)
    net = build_network(backbone, None, pretrained=True).eval()
    feats, thumbs = [], []
    batches = [list(paths[i:i + batch_size]) for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(1) as pool, torch.inference_mode():  # decode the next batch while this one runs
        pending = pool.submit(_decode_batch, batches[0], prep) if batches else None
        for k in range(len(batches)):
            x, t = pending.result()
            pending = pool.submit(_decode_batch, batches[k + 1], prep) if k + 1 < len(batches) else None
            feats.append(net.features(x).float())
            thumbs.append(t)
            if stop is not None and stop.is_set():
                raise Stopped()
            if progress:
                progress("features", min((k + 1) * batch_size, len(paths)), len(paths))
    if not feats:
        return Embeddings(torch.zeros(0, net.feature_dim), torch.zeros(0, THUMB * THUMB))
    return Embeddings(torch.cat(feats), torch.cat(thumbs))


THUMB = 16
_THUMB_PREP = Preprocessing(THUMB, THUMB, "bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _decode_batch(paths: Sequence[str | Path], prep: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    images = [load_rgb(p) for p in paths]
    thumbs = torch.stack([torch.from_numpy(_THUMB_PREP.resized_square(im.convert("L").convert("RGB"))[..., 0])
                          for im in images]).flatten(1).float()
    thumbs = torch.nn.functional.normalize(thumbs - thumbs.mean(1, keepdim=True), dim=1)
    return torch.stack([prep.eval_tensor(im) for im in images]), thumbs


def file_digest(path: str | Path) -> str:
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


# ---------------------------------------------------------------------------------------------- duplicates
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


# ---------------------------------------------------------------------------------------------- labels
def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float = 1e-2,
               steps: int = 100) -> Callable[[torch.Tensor], torch.Tensor]:
    """Multinomial logistic regression (L-BFGS, standardised features): returns x -> probabilities."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mean) / std
    w = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ w + b, y) + l2 * (w * w).sum() / len(y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda new: (((new - mean) / std) @ w + b).softmax(1)


def fold_ids(labels: torch.Tensor, folds: int, seed: int = 0) -> torch.Tensor:
    """Stratified fold number of each image: every class spread evenly over the folds."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(len(labels), dtype=torch.long)
    offset = 0
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        out[idx] = (torch.arange(len(idx)) + offset) % folds
        offset += len(idx)  # continue the cycle, so small classes do not all start in fold 0
    return out


def out_of_fold_probs(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, folds: int = FOLDS,
                      seed: int = 0, progress: ProgressFn | None = None) -> torch.Tensor:
    """Each image's class probabilities from a linear classifier trained without its fold (N x C)."""
    folds = max(2, min(folds, len(labels)))
    fid = fold_ids(labels, folds, seed)
    probs = torch.zeros(len(labels), num_classes)
    for k in range(folds):
        held = fid == k
        predict = fit_linear(features[~held], labels[~held], num_classes)
        probs[held] = predict(features[held])
        if progress:
            progress("labels", k + 1, folds)
    return probs


def neighbour_probs(features: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int = 10) -> torch.Tensor:
    """Share of each image's k most similar other images in each class (leave-one-out by construction)."""
    k = max(1, min(k, len(labels) - 1))
    z = torch.nn.functional.normalize(features - features.mean(0, keepdim=True), dim=1)
    probs = torch.zeros(len(labels), num_classes)
    for start in range(0, len(z), 1024):
        sims = z[start:start + 1024] @ z.T
        rows = torch.arange(len(sims))
        sims[rows, rows + start] = -2  # never one's own neighbour
        idx = sims.topk(k, dim=1).indices
        probs[start:start + len(sims)] = torch.nn.functional.one_hot(labels[idx], num_classes).float().mean(1)
    return probs


def label_probs(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, seed: int = 0,
                progress: ProgressFn | None = None) -> torch.Tensor:
    """Out-of-sample class probabilities: the mean of a linear classifier's and the nearest neighbours'.

    Either alone finds about 70% of deliberately flipped textile labels in its top 15%; the mean is
    steadier across random flips (README, "Data checks and export").
    """
    linear = out_of_fold_probs(features, labels, num_classes, seed=seed, progress=progress)
    return (linear + neighbour_probs(features, labels, num_classes)) / 2


def rank_suspects(probs: torch.Tensor, labels: torch.Tensor, max_share: float = MAX_SUSPECT_SHARE) -> list[int]:
    """Likely label mistakes, most suspect first: another class is more likely than the given one, ranked
    by how little probability the given label gets (confident learning's "self-confidence"), at most
    `max_share` of the images so the review list stays short enough to read."""
    given = probs[torch.arange(len(labels)), labels]
    disagrees = probs.argmax(1) != labels
    order = [i for i in given.argsort(stable=True).tolist() if disagrees[i]]
    return order[:max(1, int(max_share * len(labels)))] if len(labels) else []


# ---------------------------------------------------------------------------------------------- the check
def check_dataset(source: str | Path, *, backbone: str = "mobilenet_v2", image_size: int | None = 128,
                  val_split: float = 0.2, seed: int = 0,
                  max_share: float = MAX_SUSPECT_SHARE, extract_to: str | Path | None = None,
                  progress: ProgressFn | None = None, stop: threading.Event | None = None) -> QualityReport:
    """Duplicates, train/validation leaks and likely mislabelled images of a data set (folder or .zip).

    Uses the same train/validation split as training with the same `val_split` and `seed`.
    image_size 128 keeps it quick on a CPU (2,000 images: 7.6 minutes on a busy 2-core machine); None: the
    backbone's own size. Features are cached by file contents, so checking again after a few moves is quick.
    """
    t0 = time.time()
    report = scan_dataset(source, val_split=val_split, seed=seed, extract_to=extract_to)
    entries = _entries(report)
    paths = [e.path for e in entries]
    digests = []
    for i, p in enumerate(paths):
        digests.append(file_digest(p))
        if progress and (i % 64 == 0 or i == len(paths) - 1):
            progress("reading", i + 1, len(paths))
    emb = _cached_embeddings(paths, digests, backbone, image_size, progress, stop)
    labels = torch.tensor([e.label for e in entries])
    probs = label_probs(emb.features, labels, len(report.classes), seed=seed, progress=progress)
    suspects = [_suspect(entries[i], probs[i], report.classes) for i in rank_suspects(probs, labels, max_share)]
    notes = _notes(report, probs, labels)
    return QualityReport(root=str(report.root), classes=report.classes, images=tuple(entries),
                         duplicates=tuple(find_duplicates(entries, emb, digests)),
                         suspects=tuple(suspects),
                         out_of_fold_accuracy=round(float((probs.argmax(1) == labels).float().mean()), 4),
                         backbone=backbone, seconds=round(time.time() - t0, 1),
                         notes=tuple(notes))


# Features by (backbone, size, file contents): after moving or excluding a few pictures, checking
# again only reads files, instead of running the network over all of them. About 5 KB per picture.
_CACHE: dict[tuple[str, int | None, str], tuple[torch.Tensor, torch.Tensor]] = {}
_CACHE_LIMIT = 50_000
_CACHE_LOCK = threading.Lock()


def clear_feature_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def _cached_embeddings(paths: Sequence[str], digests: Sequence[str], backbone: str, image_size: int | None,
                       progress: ProgressFn | None, stop: threading.Event | None) -> Embeddings:
    keys = [(backbone, image_size, d) for d in digests]
    with _CACHE_LOCK:
        found = {i: _CACHE[k] for i, k in enumerate(keys) if k in _CACHE}
    missing = [i for i in range(len(keys)) if i not in found]
    if missing or not keys:
        new = embed_images([paths[i] for i in missing], backbone=backbone, image_size=image_size,
                           progress=progress, stop=stop)
        if not keys:
            return new
        fresh = {i: (new.features[row].clone(), new.thumbnails[row].clone()) for row, i in enumerate(missing)}
        with _CACHE_LOCK:
            if len(_CACHE) + len(fresh) > _CACHE_LIMIT:
                _CACHE.clear()
            _CACHE.update({keys[i]: value for i, value in fresh.items()})
        found.update(fresh)
    return Embeddings(torch.stack([found[i][0] for i in range(len(keys))]),
                      torch.stack([found[i][1] for i in range(len(keys))]))


def _entries(report: DatasetReport) -> list[ImageEntry]:
    def rel(p: Path) -> str:
        try:
            return str(Path(p).relative_to(report.root))
        except ValueError:
            return Path(p).name

    return ([ImageEntry(str(s.path), rel(s.path), s.label, "train") for s in report.train]
            + [ImageEntry(str(s.path), rel(s.path), s.label, "val") for s in report.val])


def _suspect(entry: ImageEntry, probs: torch.Tensor, classes: Sequence[str]) -> SuspectLabel:
    best = int(probs.argmax())
    return SuspectLabel(entry, classes[entry.label], classes[best], round(float(probs[entry.label]), 4),
                        round(float(probs[best]), 4))


def _notes(report: DatasetReport, probs: torch.Tensor, labels: torch.Tensor) -> list[str]:
    smallest = min(int((labels == c).sum()) for c in range(len(report.classes)))
    notes = []
    if smallest < 10:
        notes.append(f"One class has only {smallest} picture(s): with so few, the label check is guesswork.")
    acc = float((probs.argmax(1) == labels).float().mean())
    if acc < 0.8:
        notes.append(f"The classes look alike to an untrained network (it tells them apart {acc:.0%} of the "
                     "time), so some flagged pictures will be correct but hard: check before moving.")
    return notes


# ---------------------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class FileMove:
    """One review action, enough to undo it."""
    kind: str  # "move" (to another class) or "exclude"
    source: str
    destination: str


def move_to_class(data_root: str | Path, image: str | Path, new_class: str) -> FileMove:
    """Move an image into the folder of another (existing) class, beside its current class folder.

    In a train/val layout it stays in its split (train/a/x.jpg -> train/b/x.jpg). Never overwrites:
    a name already taken gets a number added.
    """
    root, src = _writable_image(data_root, image)
    current = _class_dir(root, src)
    target_dir = current.parent / new_class
    if "/" in new_class or "\\" in new_class or new_class in ("", ".", "..") or not target_dir.is_dir():
        raise DatasetError(f"There is no class '{new_class}' next to '{current.name}'. Choose one of the "
                           "existing classes.")
    if target_dir.resolve() == current.resolve():
        raise DatasetError(f"'{src.name}' is already in '{new_class}'.")
    return _move(src, target_dir, "move")


def exclude_image(data_root: str | Path, image: str | Path, excluded_dir: str | Path) -> FileMove:
    """Take an image out of the data set by moving it to `excluded_dir` (keeping its path inside the data
    set, e.g. excluded/train/cat/x.jpg), so it is out of training but never lost. Logged in excluded.jsonl."""
    root, src = _writable_image(data_root, image)
    excluded = Path(excluded_dir).resolve()
    if excluded == root or root in excluded.parents:
        raise DatasetError("The folder for excluded pictures must be outside the data folder, or they would "
                           "still be found as training images.")
    move = _move(src, excluded / src.parent.relative_to(root), "exclude")
    with open(excluded / "excluded.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps({**asdict(move), "time": time.time()}) + "\n")
    return move


def undo_move(move: FileMove) -> FileMove:
    """Put a moved or excluded image back where it was (under its old name when that is still free)."""
    src = Path(move.destination)
    if not src.is_file():
        raise DatasetError(f"'{src.name}' is no longer at {src.parent}, so it cannot be put back.")
    back = _move(src, Path(move.source).parent, "undo", name=Path(move.source).name)
    return back


def _writable_image(data_root: str | Path, image: str | Path) -> tuple[Path, Path]:
    root, src = Path(data_root).resolve(), Path(image).resolve()
    if root not in src.parents or not src.is_file():
        raise DatasetError(f"'{Path(image).name}' is not a picture inside the data folder {root.name}.")
    _class_dir(root, src)
    try:
        demo = demo_dataset_path().resolve()
    except DatasetError:
        demo = None
    if demo is not None and (root == demo or demo in root.parents or root in demo.parents):
        raise DatasetError("The demo pictures are shared by everyone and cannot be changed. Upload a copy of "
                           "them to review them.")
    return root, src


def _class_dir(root: Path, src: Path) -> Path:
    """The class folder an image belongs to: root/<class> or, in a train/val layout, root/<split>/<class>."""
    parts = src.relative_to(root).parts
    split = len(parts) >= 3 and parts[0].lower() in _TRAIN_NAMES + _VAL_NAMES
    if len(parts) < 2:
        raise DatasetError(f"'{src.name}' is not inside a class folder, so it has no class to change.")
    return root / parts[0] / parts[1] if split else root / parts[0]


def _move(src: Path, target_dir: Path, kind: str, name: str | None = None) -> FileMove:
    target_dir.mkdir(parents=True, exist_ok=True)
    dest = _free_name(target_dir, name or src.name)
    shutil.move(str(src), str(dest))
    return FileMove(kind, str(src), str(dest))


def _free_name(folder: Path, name: str) -> Path:
    candidate, stem, suffix, n = folder / name, Path(name).stem, Path(name).suffix, 1
    while candidate.exists():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate
