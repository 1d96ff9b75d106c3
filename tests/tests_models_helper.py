"""A real ONNX image model made by the tests themselves (no download): conv -> relu -> pool -> features,
plus a 3-class head, registered through the same import path a user takes."""

from pathlib import Path

import numpy as np


def _onnx():
    return __import__("pytest").importorskip("onnx", reason="the test extra (onnx) builds the test model")


def _save(graph, path: Path) -> Path:
    """The graph as a checked ONNX file (opset 17) at `path`."""
    onnx = _onnx()
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_onnx_file(path: Path, channels: int = 8, seed: int = 0) -> Path:
    _onnx()
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(0, 0.5, (channels, 3, 3, 3)).astype(np.float32), "w")
    hw = numpy_helper.from_array(rng.normal(0, 1, (channels, 3)).astype(np.float32), "hw")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["features"]),
             helper.make_node("MatMul", ["features", "hw"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, 32, 32])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, channels]),
                               helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])], [w, hw])
    return _save(graph, path)


def tiny_onnx_model(tmp_path: Path, name: str = "tiny"):
    from lookalike.models import EmbeddingSpec, InputSpec, import_model

    return import_model(tiny_onnx_file(tmp_path / f"{name}.onnx"), name,
                        input=InputSpec(width=32, height=32), embedding=EmbeddingSpec(output="features"),
                        home=tmp_path / "models")


def tiny_parser_file(path: Path, width: int, height: int, classes: int = 7, seed: int = 0) -> Path:
    """A real ONNX garment parser of fixed input size: a 1x1 convolution and a softmax over `classes` per pixel."""
    _onnx()
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(0, 2, (classes, 3, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["image", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "tiny-parser",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, height, width])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, classes, height, width])],
                              [w])
    return _save(graph, path)
