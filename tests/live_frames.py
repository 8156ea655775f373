"""Camera frames from real pictures, and a fake webcam file (Y4M) that headless Chromium plays as its camera
(see the shared browser recipe: --use-file-for-fake-video-capture)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def camera_frame(picture: Image.Image, width: int = 640, height: int = 480) -> np.ndarray:
    """The picture scaled to fill a width x height frame (the middle kept), as a camera pointed at it sees it."""
    scale = max(width / picture.width, height / picture.height)
    big = picture.convert("RGB").resize((round(picture.width * scale), round(picture.height * scale)),
                                        Image.Resampling.BILINEAR)
    left, top = (big.width - width) // 2, (big.height - height) // 2
    return np.asarray(big.crop((left, top, left + width, top + height)))


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
