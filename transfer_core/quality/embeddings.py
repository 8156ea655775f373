"""Each picture as the data check sees it: the backbone's pooled ImageNet features (the same
`TransferNet.features` the trainer uses) and a 16x16 thumbnail, for pixel-level likeness.

Features are cached by file contents, so checking again after moving a few pictures only reads files.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from transfer_core.core.i18n import N_
from transfer_core.data.datafiles import load_rgb
from transfer_core.data.imagecache import Stopped
from transfer_core.models.backbones import build_network, get_backbone
from transfer_core.models.preprocessing import Preprocessing
from transfer_core.quality.findings import ProgressFn

THUMB = 16
_THUMB_PREP = Preprocessing(THUMB, THUMB, "bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


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
                progress(N_("features"), min((k + 1) * batch_size, len(paths)), len(paths))
    if not feats:
        return Embeddings(torch.zeros(0, net.feature_dim), torch.zeros(0, THUMB * THUMB))
    return Embeddings(torch.cat(feats), torch.cat(thumbs))


def _decode_batch(paths: Sequence[str | Path], prep: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    images = [load_rgb(p) for p in paths]
    thumbs = torch.stack([torch.from_numpy(_THUMB_PREP.resized_square(im.convert("L").convert("RGB"))[..., 0])
                          for im in images]).flatten(1).float()
    thumbs = torch.nn.functional.normalize(thumbs - thumbs.mean(1, keepdim=True), dim=1)
    return torch.stack([prep.eval_tensor(im) for im in images]), thumbs


def file_digest(path: str | Path) -> str:
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


# Features by (backbone, size, file contents): after moving or excluding a few pictures, checking
# again only reads files, instead of running the network over all of them. About 5 KB per picture.
_CACHE: dict[tuple[str, int | None, str], tuple[torch.Tensor, torch.Tensor]] = {}
_CACHE_LIMIT = 50_000
_CACHE_LOCK = threading.Lock()


def clear_feature_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def cached_embeddings(paths: Sequence[str], digests: Sequence[str], backbone: str, image_size: int | None,
                      progress: ProgressFn | None, stop: threading.Event | None) -> Embeddings:
    """embed_images of `paths`, running the network only over contents (`digests`) not seen before."""
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
