"""Leave-one-out metrics on vectors whose answer is known."""

import numpy as np
import pytest

from lookalike import Index
from lookalike.evaluate import evaluate, score


def clusters(n_per=20, n_classes=5, dim=16, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per)
    vecs = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs.astype(np.float32), [f"c{l}" for l in labels]


def test_perfect_clusters_score_one():
    vecs, labels = clusters()
    s = evaluate(vecs, {"cls": labels}, ["cls"], k=10)[0]
    assert s.queries == 100 and s.p_at_1 == 1 and s.p_at_k == 1 and s.map_at_k == pytest.approx(1)


def test_random_vectors_score_chance():
    vecs, labels = clusters(noise=1e3, seed=1)
    s = evaluate(vecs, {"cls": labels}, ["cls"], k=10)[0]
    assert 0.1 < s.p_at_k < 0.3


def test_missing_labels_are_not_queried_and_combined_fields():
    vecs, labels = clusters(n_per=4, n_classes=2)
    labels[0] = None
    colour = ["red", "blue"] * 4
    scores = evaluate(vecs, {"a": labels, "b": colour}, ["a", "a+b"], k=3)
    assert scores[0].queries == 7 and scores[1].queries == 7


def test_average_precision_by_hand():
    labels = np.array(["x", "x", "x", "y", "y"], dtype=object)
    hits = np.array([[3, 1, 2]])  # query row 0: miss, hit, hit; R = 2 others with "x"
    s = score(labels, np.array([0]), hits, 3, "f")
    assert s.p_at_1 == 0 and s.p_at_k == pytest.approx(2 / 3)
    assert s.map_at_k == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_classic_on_real_catalog_products_beats_chance(fpi_sample, tmp_path):
    index = Index.build(fpi_sample / "images", fpi_sample / "styles.csv", out=tmp_path / "f.idx", model="classic")
    cols = {c: index.meta.column(c) for c in ("subCategory", "articleType")}
    scores = {s.field: s for s in evaluate(index.vectors(), cols, ["subCategory", "articleType"], k=10)}
    assert scores["subCategory"].p_at_k > 0.6 and scores["articleType"].p_at_k > 0.35
    tops = index.search(index.ids[0], k=5, where={"subCategory": "Topwear"})
    assert all(r.metadata["subCategory"] == "Topwear" for r in tops)
