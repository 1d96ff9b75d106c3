"""Export a trained network to ONNX (embedding, pooled features, one logits output per head), quantize it to
int8, and write the model folder lookalike loads: model.onnx, model.json, CARD.md."""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..files import sha256_file
from ..models.manifest import MANIFEST, EmbeddingSpec, HeadSpec, InputSpec, ModelManifest
from ..models.onnx import OnnxEmbedder
from .data import PAIR
from .loop import MEAN, STD, TrainConfig, input_norm
from .net import FashionNet

TRAINING_ONLY = {"+".join(PAIR)}
#: The output with the network's pooled features (before the projection to the embedding): richer than the
#: embedding for heads fitted afterwards (`lookalike.train.heads`).
POOLED = "pooled"


def exported_heads(net: FashionNet) -> list[str]:
    return [h for h in net.head_names if h not in TRAINING_ONLY]


class _Public(torch.nn.Module):
    def __init__(self, net: FashionNet, heads: list[str]):
        super().__init__()
        self.net, self.names = net, heads

    def forward(self, image):
        emb, logits, pooled = self.net(image)
        return (emb, pooled, *(logits[h] for h in self.names))


def export_onnx(net: FashionNet, path: Path, config: TrainConfig) -> list[str]:
    heads = exported_heads(net)
    module = _Public(net, heads).eval()
    net = net.to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(2, 3, config.height, config.width)
    names = ["embedding", POOLED, *heads]
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact and dependency-free
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (dummy,), str(path), input_names=["image"], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in ["image", *names]}, opset_version=17, dynamo=False)
    return heads


def quantize(src: Path, dst: Path, calibration: np.ndarray, mean=MEAN, std=STD) -> None:
    """Static int8 (QDQ, per-channel) with calibration on real images (uint8 NHWC at the model's input size)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            x = (calibration.astype(np.float32) / 255 - np.array(mean, np.float32)) / np.array(std, np.float32)
            self.batches = iter([{"image": x[i:i + 32].transpose(0, 3, 1, 2).copy()} for i in range(0, len(x), 32)])

        def get_next(self):
            return next(self.batches, None)

    pre = dst.with_suffix(".pre.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a note per tensor it leaves alone
    try:
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:
            shutil.copyfile(src, pre)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
        pre.unlink(missing_ok=True)


#: Heads a trained model's search vector appends (see EmbeddingSpec.append_heads), when it has them. Measured on the
#: default model's validation products (benchmarks/model.py): articleType P@10 0.772 -> 0.797, colour 0.552 -> 0.576,
#: demo photos 0.299 -> 0.349; chosen among about 30 weightings, so a point of that may be the choice fitting the data.
APPEND_HEADS = {"articleType": 1.5, "baseColour": 0.5, "gender": 0.5}
APPEND_POWER = 2.0


def write_model(folder: Path, onnx_file: Path, name: str, config: TrainConfig, vocab: dict[str, list[str]],
                heads: list[str], card: str | None = None) -> OnnxEmbedder:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.onnx"
    if onnx_file.resolve() != target.resolve():
        shutil.copyfile(onnx_file, target)
    append = {h: w for h, w in APPEND_HEADS.items() if h in heads}
    mean, std = input_norm(config)
    manifest = ModelManifest(
        name=name, sha256=sha256_file(target), dim=config.dim + sum(len(vocab[h]) for h in append),
        input=InputSpec(name="image", width=config.width, height=config.height, layout="NCHW", resize="pad",
                        interpolation="bilinear", channels="RGB", scale=1 / 255, mean=mean, std=std),
        embedding=EmbeddingSpec(output="embedding", append_heads=append, append_power=APPEND_POWER if append else 1.0),
        heads={h: HeadSpec(output=h, labels=list(vocab[h])) for h in heads},
        card="CARD.md" if card else None)
    (folder / MANIFEST).write_text(manifest.to_json())
    if card:
        (folder / "CARD.md").write_text(card)
    return OnnxEmbedder(folder)


def throughput(model: OnnxEmbedder, images: np.ndarray, batch: int = 64) -> float:
    """Images/s of the ONNX model alone on preprocessed catalog images."""
    from PIL import Image

    x = np.stack([model.preprocess(Image.fromarray(im)) for im in images[:batch]])
    model.forward(x)
    start = time.perf_counter()
    runs = 0
    while time.perf_counter() - start < 2.0:
        model.forward(x)
        runs += 1
    return runs * len(x) / (time.perf_counter() - start)


def export_from_weights(folder: Path, dst: Path, calibration: np.ndarray) -> None:
    """Export again, with this version's outputs (e.g. `pooled`), the network of a model trained by lookalike, from
    its weights.safetensors and training record; int8 (calibrated on `calibration`, uint8 NHWC) when that model's
    network was. Its embedding stays the same network's, up to quantization."""
    import json
    from dataclasses import fields
    from tempfile import TemporaryDirectory

    from . import _init_weights, network_record
    from .loop import build_net

    record = network_record(json.loads((folder / "training.json").read_text()))
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in record.get("config", {}).items() if k in known})
    weights = {k: v for k, v in _init_weights(folder).items() if not k.startswith("teacher.")}
    classes = {k.split(".")[1]: range(v.shape[0]) for k, v in weights.items()
               if k.startswith("heads.") and k.endswith(".proxies")}
    net = build_net(config, classes, teacher_dim=None)
    net.load_state_dict(weights, strict=config.backbone == "fashionnet")
    net.eval()
    with TemporaryDirectory() as tmp:
        plain = Path(tmp) / "float32.onnx"
        export_onnx(net, plain, config)
        if record.get("variant") == "int8":
            quantize(plain, dst, calibration, *input_norm(config))
        else:
            shutil.copyfile(plain, dst)
