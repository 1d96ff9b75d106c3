"""The shipped default model: it loads (manifest, checksum), classifies catalog products, and
`categories` ranks a folder's majority class first."""

import json
import shutil

import pytest

from lookalike import Embedder
from lookalike.models import OnnxEmbedder
from lookalike.models.registry import PACKAGED

if not (PACKAGED / "model.json").exists():
    pytest.skip("no default model shipped in this checkout", allow_module_level=True)


def test_shipped_model_loads_with_heads_and_card():
    model = Embedder.load("default")
    assert isinstance(model, OnnxEmbedder) and model.dim == 256
    assert {"articleType", "subCategory", "masterCategory", "baseColour", "gender"} <= set(model.heads)
    assert model.card and "Training" in model.card and "Measured" in model.card
    assert (PACKAGED / "model.onnx").stat().st_size + (PACKAGED / "weights.safetensors").stat().st_size < 15e6


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
