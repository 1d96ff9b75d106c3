"""`Index.classify`: a photo's attributes in the catalog's own vocabulary, the model's prediction blended with the
labels of the nearest catalog products."""

import shutil

import numpy as np
import pytest

from lookalike import FilterError, Index
from lookalike.errors import ModelError
from lookalike.train.data import is_validation


@pytest.fixture(scope="module")
def split(fpi_sample, tmp_path_factory):
    """An index of the sample's training products, and the held-out products' (photo, labels)."""
    lines = (fpi_sample / "styles.csv").read_text(encoding="utf-8").splitlines()
    head = lines[0].split(",")
    rows = {l.split(",", 1)[0]: dict(zip(head, l.split(","))) for l in lines[1:]}
    out = tmp_path_factory.mktemp("split")
    (out / "photos").mkdir()
    kept = [lines[0]]
    held = []
    for line in lines[1:]:
        pid = line.split(",", 1)[0]
        photo = fpi_sample / "images" / f"{pid}.jpg"
        if not photo.exists():
            continue
        if is_validation(pid, 0.1):
            held.append((photo, rows[pid]))
        else:
            shutil.copy(photo, out / "photos" / photo.name)
            kept.append(line)
    (out / "styles.csv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return Index.build(out / "photos", out / "styles.csv", out=out / "catalog.idx"), held[:60]


def test_held_out_photos_get_the_catalogs_labels(split):
    index, held = split
    right = {c: [] for c in ("gender", "masterCategory", "articleType")}
    for photo, truth in held:
        predicted = index.classify(photo, top=3)
        assert set(index.model.heads) <= set(predicted)
        for column, p in predicted.items():
            assert column not in index.columns or set(p.labels) <= {v for v, _ in index.facets(column)}
            assert p.probs == sorted(p.probs, reverse=True) and 0 < p.probs[0] <= 1 + 1e-9
        for column, hits in right.items():
            hits.append(predicted[column].label == truth[column])
    assert np.mean(right["masterCategory"]) >= 0.9
    assert np.mean(right["gender"]) >= 0.75 and np.mean(right["articleType"]) >= 0.6


def test_a_column_the_model_has_no_head_for_comes_from_the_neighbours(split):
    index, held = split
    photo, _ = held[0]
    predicted = index.classify(photo, columns=["season", "articleType"])
    assert list(predicted) == ["season", "articleType"]
    assert predicted["season"].label in {"Summer", "Winter", "Spring", "Fall"}
    with pytest.raises(FilterError, match="'brand'"):
        index.classify(photo, columns=["brand"])


def test_a_model_without_heads_needs_columns(demo_index):
    product = demo_index.get(demo_index.ids[0])
    with pytest.raises(ModelError, match="name the index columns"):
        demo_index.classify(product.path)
    assert demo_index.classify(product.path, columns=["class"])["class"].label == product.metadata["class"]


def test_the_api_classifies_in_the_catalogs_vocabulary(split):
    from fastapi.testclient import TestClient

    from lookalike.serve.app import create_app

    index, held = split
    client = TestClient(create_app(index.path))
    photo, truth = held[1]
    files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    blended = client.post("/api/classify?top=2&catalog=true", files=files)
    assert blended.status_code == 200, blended.text
    blended = blended.json()["attributes"]
    heads = client.post("/api/classify?top=2", files=files).json()["attributes"]
    assert set(blended) == set(heads) == set(index.model.heads)
    assert {x["label"] for x in blended["articleType"]} <= {v for v, _ in index.facets("articleType")}
    assert blended["masterCategory"][0]["label"] == truth["masterCategory"]
    assert blended != heads        # the catalog's labels moved the probabilities
    bad = client.post("/api/classify", files={"image": ("x.jpg", b"not an image", "image/jpeg")})
    assert bad.status_code == 415 and bad.json()["detail"]


def test_same_searches_only_the_predicted_article_type_of_a_photo(split):
    index, held = split
    for photo, labels in held[:12]:
        predicted = index.classify(photo, top=1, columns=["articleType"])["articleType"].labels[0]
        results = index.search(photo, k=8, same=["articleType"])
        assert results and {r.metadata["articleType"] for r in results} == {predicted}
    photo, labels = held[0]
    gender = index.classify(photo, top=1, columns=["gender"])["gender"].labels[0]
    other = next(v for v, _ in index.facets("gender") if v != gender)
    assert index.search(photo, k=8, same=["gender"], where={"gender": other}) == []   # the filter and the class disagree
    both = index.search(photo, k=8, same=["gender"], where={"gender": [gender, other]})
    assert both and {r.metadata["gender"] for r in both} == {gender}
