"""Every registered backbone: the split reproduces the original network, and offline weights are real."""
import urllib.error

import pytest
import torch
import torchvision.models as tvm
from PIL import Image
from skimage import data

from transfer_core.models.backbones import (
    build_network,
    freeze_options,
    get_backbone,
    list_backbones,
)
from transfer_core.models.weights import WeightsUnavailable

IMAGENET = tvm.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
CAT_BREEDS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
ALL = [s.name for s in list_backbones()]
OFFLINE = [s.name for s in list_backbones() if s.available()]
# The heavy ones are checked structurally below with a small input; building them is still cheap.


def test_offline_backbones_are_the_promised_ones():
    assert {"mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(OFFLINE)


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_weights_classify_real_photos(name):
    spec = get_backbone(name)
    net = build_network(name).eval()
    with torch.no_grad():
        coffee = net(spec.preprocessing.eval_tensor(Image.fromarray(data.coffee()))[None]).argmax()
        cat = net(spec.preprocessing.eval_tensor(Image.fromarray(data.chelsea()))[None]).argmax()
    assert IMAGENET[coffee] == "espresso"
    assert IMAGENET[cat] in CAT_BREEDS


@pytest.mark.parametrize("name", ALL)
def test_split_reproduces_the_original_forward(name):
    """Cutting the network into stages + pool + head must not change what it computes."""
    spec = get_backbone(name)
    torch.manual_seed(0)
    original = spec.architecture().eval()
    net = build_network(name, pretrained=False)  # fresh random weights: copy the original's in
    net = type(net)(spec.split(original)).eval()
    size = 224 if spec.fixed_size else 96
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(original(x), net(x), atol=1e-4)
    assert net.num_stages >= 4


@pytest.mark.parametrize("name", ALL)
def test_freeze_options_cover_every_depth(name):
    plans = freeze_options(name)
    trainable = [p.trainable_params for p in plans]
    assert trainable == sorted(trainable, reverse=True) and trainable[0] > trainable[-1] > 0
    assert plans[-1].training == ("new classifier",)
    assert "Feature extraction" in plans[-1].describe()


def test_unavailable_weights_give_advice_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache
    opened = []

    def offline(request, *args, **kwargs):
        opened.append(request.full_url)
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))  # what urlopen raises offline

    # Offline on every machine: torch.hub's real downloader runs; only its urlopen fails, as offline.
    monkeypatch.setattr(torch.hub, "urlopen", offline)
    spec = get_backbone("resnet18")
    assert not spec.available() and "needs download" in spec.availability()
    with pytest.raises(WeightsUnavailable, match="works offline"):
        build_network("resnet18", 3)
    assert opened == [tvm.ResNet18_Weights.IMAGENET1K_V1.url]  # it did try to download, once
