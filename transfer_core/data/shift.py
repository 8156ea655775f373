"""A realistic domain shift, for demonstrating and testing domain adaptation.

`shifted(img)` is what another camera under other light does to a picture: a warm colour cast, half
the contrast, a slight blur and heavy JPEG compression (quality 15). `shifted_copy` applies it to a
whole class-per-folder data set, keeping the class folders (for scoring only: adaptation never
trains on them).
"""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter

from transfer_core.data.datasets import load_rgb

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def shifted(img: Image.Image, *, jpeg_quality: int = 15) -> Image.Image:
    """Warm colour cast, contrast halved, Gaussian blur (radius 1 px), JPEG at `jpeg_quality`."""
    r, g, b = img.convert("RGB").split()
    img = Image.merge("RGB", (r.point(lambda v: min(255, int(v * 1.2 + 20))), g, b.point(lambda v: int(v * 0.7))))
    img = ImageEnhance.Contrast(img).enhance(0.5).filter(ImageFilter.GaussianBlur(1.0))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=jpeg_quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def shifted_copy(source: str | Path, dest: str | Path, *, per_class: int | None = None, offset: int = 0) -> Path:
    """Shifted copies of images[offset:offset + per_class] of every class folder in `source`, into `dest`."""
    source, dest = Path(source), Path(dest)
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
        files = files[offset:offset + per_class] if per_class else files[offset:]
        (dest / folder.name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shifted(load_rgb(f)).save(dest / folder.name / f"{f.stem}.jpg", quality=95)
    return dest
