"""Models: the classic embedder, and any ONNX backbone through the import path (a model the tests export)."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO
from lookalike import Embedder, ImageError, Index, ModelError, load_image
from lookalike.models import HeadSpec, ModelManifest, OnnxEmbedder, import_model, list_models
from lookalike.files import sha256_file
from tests_models_helper import tiny_onnx_file, tiny_onnx_model

PHOTOS = sorted(DEMO.glob("*/*.jpg"))


def test_classic_vectors_are_unit_and_deterministic():
    model = Embedder.load("classic")
    vecs = model.encode(PHOTOS[:5])
    assert vecs.shape == (5, model.dim) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert np.allclose(model.encode(PHOTOS[2]), vecs[2], atol=1e-6)
    assert np.allclose(model.encode(PHOTOS[2].read_bytes()), vecs[2], atol=1e-6)


def test_classic_tells_colours_apart():
    model = Embedder.load("classic")
    shirt = Image.new("RGB", (60, 80), "white")
    red, red2, blue = (shirt.copy() for _ in range(3))
    red.paste((200, 20, 20), (10, 10, 50, 70))
    red2.paste((180, 30, 25), (12, 8, 48, 72))
    blue.paste((20, 30, 200), (10, 10, 50, 70))
    v = model.encode([red, red2, blue])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_encode_raises_on_bad_image(tmp_path):
    (tmp_path / "bad.jpg").write_text("nope")
    with pytest.raises(ImageError, match="bad.jpg"):
        Embedder.load("classic").encode([PHOTOS[0], tmp_path / "bad.jpg"])


def test_onnx_import_round_trip(tmp_path):
    model = tiny_onnx_model(tmp_path)
    assert model.dim == 8 and model.id.startswith("tiny@")
    folder = tmp_path / "models" / "tiny"
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["sha256"] == sha256_file(folder / "model.onnx") and manifest["dim"] == 8
    vecs = model.encode(PHOTOS[:3])
    assert vecs.shape == (3, 8) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    # the same model through ONNX Runtime by hand gives the same vectors
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "model.onnx"))
    x = np.stack([model.preprocess(load_image(p, draft_size=model.input_size)) for p in PHOTOS[:3]])
    raw = session.run(["features"], {"image": x})[0]
    assert np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), vecs, atol=1e-5)
    # and it indexes and searches, and the index finds its model again from a fresh load
    index = Index.build(DEMO / "hat", out=tmp_path / "i.idx", model=str(folder))
    assert index.manifest["model"]["id"] == model.id
    assert Index.load(tmp_path / "i.idx").model.id == model.id
    assert index.search(PHOTOS[0].parent.parent / "hat" / sorted((DEMO / "hat").iterdir())[0].name, k=1)[0].score > 0.99


def test_registered_name_resolves(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))
    import_model(tiny_onnx_file(tmp_path / "t.onnx"), "resnet-ish", home=None,
                 input=__import__("lookalike").models.InputSpec(width=32, height=32))
    assert "resnet-ish" in list_models()
    assert Embedder.load("resnet-ish").dim == 8
    with pytest.raises(ModelError, match="already registered"):
        import_model(tiny_onnx_file(tmp_path / "t.onnx"), "resnet-ish")


def test_bad_imports_are_refused(tmp_path):
    onnx_file = tiny_onnx_file(tmp_path / "t.onnx")
    with pytest.raises(ModelError, match="invalid model name"):
        import_model(onnx_file, "../evil", home=tmp_path)
    with pytest.raises(ModelError, match="no output named"):
        from lookalike.models import EmbeddingSpec, InputSpec

        import_model(onnx_file, "x", home=tmp_path, input=InputSpec(width=32, height=32),
                     embedding=EmbeddingSpec(output="nope"))
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="cannot load"):
        import_model(tmp_path / "junk.onnx", "junk", home=tmp_path)
    assert not (tmp_path / "x").exists() and not (tmp_path / "junk").exists()
    with pytest.raises(ModelError, match="unknown model"):
        Embedder.load("no-such-model")
    with pytest.raises(ModelError, match="model import"):
        Embedder.load(str(onnx_file))


def test_tampered_model_is_refused(tmp_path):
    tiny_onnx_model(tmp_path)
    folder = tmp_path / "models" / "tiny"
    tiny_onnx_file(folder / "model.onnx", seed=1)
    with pytest.raises(ModelError, match="checksum"):
        OnnxEmbedder(folder)


def test_heads_give_probabilities(tmp_path):
    tiny_onnx_model(tmp_path)
    folder = tmp_path / "models" / "tiny"
    manifest = ModelManifest.read(folder)
    manifest.heads = {"class": HeadSpec(output="logits", labels=["a", "b", "c"])}
    (folder / "model.json").write_text(manifest.to_json())
    model = OnnxEmbedder(folder)
    predictions = model.predict(PHOTOS[:4], top=3)
    assert len(predictions) == 4
    for p in predictions:
        assert sorted(p["class"].labels) == ["a", "b", "c"]
        assert sum(p["class"].probs) == pytest.approx(1.0, abs=1e-5)
        assert p["class"].probs == sorted(p["class"].probs, reverse=True)
    with pytest.raises(ModelError, match="no attribute heads"):
        Embedder.load("classic").predict(PHOTOS[:1])
