"""Grad-CAM on real photos: the heat sits where the class evidence is, for every registered backbone."""
import numpy as np
import pytest
import torch
import torchvision.models as tvm
from PIL import Image
from skimage import data

from transfer_core.inference.gradcam import explain, gradcam
from transfer_core.inference.predict import LoadedModel
from transfer_core.models.backbones import (
    build_network,
    get_backbone,
    list_backbones,
    offline_backbones,
)

IMAGENET = tvm.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]  # same 1000 classes for every backbone
ESPRESSO = IMAGENET.index("espresso")
OFFLINE = offline_backbones()
OTHERS = [s.name for s in list_backbones() if s.name not in OFFLINE]


def _cup() -> Image.Image:
    """skimage's real `coffee` photo, cut to the square around the cup (which ImageNet calls espresso)."""
    return Image.fromarray(data.coffee()).crop((100, 0, 500, 400))


def _cup_in_quadrant(side: int, quadrant: tuple[int, int]) -> tuple[Image.Image, tuple[slice, slice]]:
    """A grey canvas with the cup filling one quadrant; also that quadrant's rows and columns."""
    half = side // 2
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    ox, oy = quadrant[0] * half, quadrant[1] * half
    canvas.paste(_cup().resize((half, half)), (ox, oy))
    return canvas, (slice(oy, oy + half), slice(ox, ox + half))


def _share_in(heat: np.ndarray, region: tuple[slice, slice]) -> float:
    return float(heat[region].sum() / heat.sum())


@pytest.mark.parametrize("name", OFFLINE)
def test_heat_concentrates_on_the_cup_for_every_offline_backbone(name):
    net = build_network(name)  # the ImageNet head: its "espresso" class is the evidence to locate
    prep = get_backbone(name).preprocessing
    for quadrant in ((0, 0), (1, 1)):  # two opposite corners: the heat must follow the cup
        canvas, region = _cup_in_quadrant(prep.crop, quadrant)
        x = prep.normalize(torch.from_numpy(np.array(canvas)).permute(2, 0, 1)[None])
        heat, logits = gradcam(net, x, ESPRESSO)
        assert heat.shape == (prep.crop, prep.crop) and heat.min() >= 0 and heat.max() == pytest.approx(1)
        # The quadrant is a quarter of the picture: by chance it would hold 25% of the heat.
        assert _share_in(heat, region) > 0.6, (name, quadrant, _share_in(heat, region))
        assert ESPRESSO in logits[0].topk(5).indices.tolist()  # the weights really see a cup there


@pytest.mark.parametrize("name", OTHERS)
def test_every_other_backbone_gives_a_finite_non_constant_map_with_random_weights(name):
    """No offline weights for these here: random weights only show that the map is computed right."""
    torch.manual_seed(0)
    spec = get_backbone(name)
    side = spec.preprocessing.crop if spec.fixed_size else 96  # small where the network allows it: speed
    x = spec.preprocessing.normalize(torch.from_numpy(np.array(_cup().resize((side, side)))).permute(2, 0, 1)[None])
    net = build_network(name, 3, pretrained=False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    heat, logits = gradcam(net, x)
    assert heat.shape == (side, side) and logits.shape == (1, 3)
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert heat.std() > 0.05  # not a constant picture
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the model is left as it was


def test_explain_maps_an_uploaded_photo_through_the_models_own_view():
    """explain() resizes and centre-crops like predict; the heat and overlay are over that view."""
    spec = get_backbone("mobilenet_v2")
    prep = spec.preprocessing  # resize 256, crop 224: the outer 16 px are cut off
    model = LoadedModel(run=None, net=build_network("mobilenet_v2").eval(), classes=list(IMAGENET), prep=prep,
                        device=torch.device("cpu"))
    off, half = (prep.resize - prep.crop) // 2, prep.crop // 2
    canvas = Image.new("RGB", (prep.resize, prep.resize), (128, 128, 128))
    canvas.paste(_cup().resize((half, half)), (off + half, off))  # top-right quadrant of the view
    result = explain(model, canvas, "espresso")
    assert result.view.size == (prep.crop, prep.crop) and result.class_name == "espresso"
    assert _share_in(result.heat, (slice(0, half), slice(half, None))) > 0.6
    picture = np.asarray(result.overlay(), dtype=np.float32)
    assert picture.shape == (prep.crop, prep.crop, 3)
    hot, cold = result.heat > 0.8, result.heat < 0.1
    redness = picture[..., 0] - picture[..., 2]
    assert redness[hot].mean() > redness[cold].mean() + 50  # the hot region is drawn red
    with pytest.raises(ValueError, match="not one of this model's classes"):
        explain(model, canvas, "no such class")
