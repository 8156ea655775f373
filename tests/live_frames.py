"""Camera frames from real pictures, and a fake webcam file (Y4M) that headless Chromium plays as its camera
(see the shared browser recipe: --use-file-for-fake-video-capture)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def camera_frame(picture: Image.Image, width: int = 640, height: int = 480) -> np.ndarray:
    """A width x height frame of a camera filming the picture's subject: the picture's shorter side fills the
    frame's shorter side (so the network's centre square sees what it saw in training), cut to the frame
    where it is longer, continued by its mirror image where it is shorter (fabric goes on beyond the sample)."""
    scale = min(width, height) / min(picture.width, picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    big = np.asarray(picture.convert("RGB").resize(size, Image.Resampling.BILINEAR))
    return _fit(_fit(big, height, axis=0), width, axis=1)


def _fit(image: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Centre-cut or mirror-extend `image` along `axis` to `length` pixels."""
    have = image.shape[axis]
    if have >= length:
        start = (have - length) // 2
        return np.take(image, range(start, start + length), axis=axis)
    before = (length - have) // 2
    pad = [(0, 0)] * image.ndim
    pad[axis] = (before, length - have - before)
    return np.pad(image, pad, mode="symmetric")


def _yuv420(rgb: np.ndarray) -> bytes:
    """Full-range BT.601 (what C420jpeg means): the Y plane, then U and V averaged over 2 x 2 pixels."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    h, w = y.shape

    def half(plane):
        return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in (y, half(u), half(v)))


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10, hold: int = 10) -> Path:
    """A video file that shows each RGB frame for `hold` frames at `fps` frames a second."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            planes = _yuv420(frame)
            for _ in range(hold):
                out.write(b"FRAME\n" + planes)
    return path
