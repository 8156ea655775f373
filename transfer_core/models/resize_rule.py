"""How a picture of any shape becomes the model's square input: the one rule every runtime follows.

Shorter side resized to `resize` (Pillow's resampling: `interpolation`), the centred `resize` square cut,
then its centred `crop` square. The app (Preprocessing), the exported bundle's predict.py (this file is
copied into every bundle beside it) and the web page (web/resize_rule.js, a port checked pixel for pixel
against this one in tests/test_web_export.py) all use it, so no runtime can crop differently.

Standalone on purpose: Pillow and numpy only, nothing from Transfer Studio.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

RULE = "shorter side to resize (Pillow resampling), centre square of resize, centre square of crop"
PIL_MODES = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST}


def resized_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The picture's size once its shorter side is `side` (never below `side`, rounded as the app does)."""
    scale = side / min(width, height)
    return max(side, round(width * scale)), max(side, round(height * scale))


def resized_square(img: Image.Image, side: int, interpolation: str) -> np.ndarray:
    """RGB picture -> side x side x 3 uint8: shorter side to `side`, the centred square."""
    nw, nh = resized_size(*img.size, side)
    img = img.resize((nw, nh), PIL_MODES[interpolation])
    left, top = (nw - side) // 2, (nh - side) // 2
    return np.array(img.crop((left, top, left + side, top + side)), dtype=np.uint8)  # writable copy


def model_input(img: Image.Image, resize: int, crop: int, interpolation: str) -> np.ndarray:
    """RGB picture -> crop x crop x 3 uint8, the exported model's input for one picture."""
    arr = resized_square(img, resize, interpolation)
    off = (resize - crop) // 2
    return np.ascontiguousarray(arr[off:off + crop, off:off + crop])
