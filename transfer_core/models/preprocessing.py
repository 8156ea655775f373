"""Image preprocessing as data: every size, interpolation and mean/std comes from the backbone spec.

The same Preprocessing is saved in each run folder, so a trained model predicts with exactly what it
was trained with, in the app, from the CLI, or from an exported bundle.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from PIL import Image

from transfer_core.models import resize_rule


@dataclass(frozen=True)
class Preprocessing:
    resize: int  # shorter side is resized to this, then a centred square of `crop` is cut
    crop: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_torchvision(cls, t) -> "Preprocessing":
        return cls(resize=int(t.resize_size[0]), crop=int(t.crop_size[0]), interpolation=t.interpolation.value,
                   mean=tuple(t.mean), std=tuple(t.std))

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(resize=int(d["resize"]), crop=int(d["crop"]), interpolation=d["interpolation"],
                   mean=tuple(d["mean"]), std=tuple(d["std"]))

    def to_dict(self) -> dict:
        return asdict(self)

    def at_size(self, crop: int | None) -> "Preprocessing":
        """The same recipe at another training resolution, keeping the resize/crop ratio."""
        if crop is None or crop == self.crop:
            return self
        return replace(self, crop=int(crop), resize=int(round(crop * self.resize / self.crop)))

    # ---- steps -------------------------------------------------------------------------------
    def resized_square(self, img: Image.Image, side: int | None = None) -> np.ndarray:
        """Resize the shorter side to `side` (default: resize) and cut the centred square: HxWx3 uint8.

        This is what the training cache stores once per image; a crop of `crop` from its centre is
        exactly the standard "resize then centre crop" evaluation transform.
        """
        return resize_rule.resized_square(img, side or self.resize, self.interpolation)

    def eval_tensor(self, img: Image.Image) -> torch.Tensor:
        """One RGB PIL image -> normalised 3xCxC float tensor, as used for validation and prediction."""
        arr = resize_rule.model_input(img, self.resize, self.crop, self.interpolation)
        return self.normalize(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0))[0]

    def normalize(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """Nx3xHxW uint8 (any device) -> float, normalised with this backbone's mean and std."""
        mean = torch.tensor(self.mean, device=batch_uint8.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch_uint8.device).view(1, 3, 1, 1)
        return (batch_uint8.float() / 255.0 - mean) / std

    def center_crop(self, batch: torch.Tensor) -> torch.Tensor:
        off = (batch.shape[-1] - self.crop) // 2
        return batch[..., off:off + self.crop, off:off + self.crop]
