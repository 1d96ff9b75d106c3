"""Approximate search (`index_type="ivf"`, what `auto` picks for large catalogs): its neighbours are the exact
ones almost always, filters never let through a product that fails them, and add / remove keep working."""

import numpy as np
import pytest

pytest.importorskip("pyarrow", reason="built from Parquet vectors (the export extra)")

from lookalike import Index  # noqa: E402
from lookalike.catalog import Product  # noqa: E402
from lookalike.errors import LookalikeError  # noqa: E402
from lookalike.vectors import write_shard  # noqa: E402

N, DIM = 12_000, 64


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    """12,000 clustered unit vectors (60 groups, as catalog products cluster by type) with a group and a colour."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((60, DIM)).astype(np.float32)
    group = rng.integers(0, 60, N)
    x = centres[group] + 0.6 * rng.standard_normal((N, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    folder = tmp_path_factory.mktemp("vec")
    products = [Product(f"p{i}", None, {"group": str(group[i]), "colour": ("red", "blue", "black")[i % 3]})
                for i in range(N)]
    write_shard(folder, 0, {"name": "synthetic", "id": "synthetic-1", "dim": DIM}, ["group", "colour"], products,
                [None] * N, x)
    return folder


@pytest.fixture(scope="module")
def both(vectors, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx")
    return (Index.from_vectors(vectors, out=out / "flat.idx"),
            Index.from_vectors(vectors, out=out / "ivf.idx", index_type="ivf"))


def test_ivf_finds_the_exact_neighbours(both):
    flat, ivf = both
    assert ivf.manifest["index_type"] == "ivf"
    ids = flat.ids[::60]
    recall = np.mean([len({r.id for r in flat.search(pid, k=10, agree=False)}
                          & {r.id for r in ivf.search(pid, k=10, agree=False)}) / 10 for pid in ids])
    assert recall >= 0.95, recall
    hits = ivf.search(ids[0], k=10, agree=False)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)   # exact scores, in order
    assert np.allclose(hits[0].score, float(ivf.vector(ids[0]) @ ivf.vector(hits[0].id)), atol=1e-3)
    assert ivf.info()["bytes"] < flat.info()["bytes"]


def test_filters_stay_exact(both, monkeypatch):
    from lookalike.index import ann

    flat, ivf = both
    pid = flat.ids[7]
    narrow = {"group": ["3"], "colour": ["red"]}                 # ~70 products: searched exhaustively
    assert [r.id for r in ivf.search(pid, k=10, where=narrow, agree=False)] == \
        [r.id for r in flat.search(pid, k=10, where=narrow, agree=False)]
    # a third of the catalog: the inverted file's scan with a bitmap of its rows, never the exhaustive path
    assert ann.EXACT_BELOW < N // 3
    wide = {"colour": ["black"]}
    monkeypatch.setattr(ann.Refined, "_exact", lambda *a: pytest.fail("the exhaustive path was taken"))
    found = ivf.search(pid, k=50, where=wide, agree=False)
    assert len(found) == 50 and {r.metadata["colour"] for r in found} == {"black"}
    exact = {r.id for r in flat.search(pid, k=10, where=wide, agree=False)}
    assert len(exact & {r.id for r in found[:10]}) >= 8
    from lookalike.errors import FilterError

    with pytest.raises(FilterError, match="no product has group='99'"):
        ivf.search(pid, k=5, where={"group": ["99"]})


def test_add_and_remove_keep_an_ivf_index_searchable(both, tmp_path):
    import shutil

    _, ivf = both
    shutil.copytree(ivf.path, tmp_path / "copy.idx")
    index = Index.load(tmp_path / "copy.idx")
    gone = index.ids[:3]
    assert index.remove(gone) == 3
    again = Index.load(tmp_path / "copy.idx")
    assert len(again) == N - 3 and again.manifest["index_type"] == "ivf"
    results = again.search(again.ids[0], k=5, agree=False)
    assert len(results) == 5 and not {r.id for r in results} & set(gone)


def test_auto_picks_exact_search_for_small_catalogs_and_ivf_needs_enough_products(vectors, tmp_path):
    auto = Index.from_vectors(vectors, out=tmp_path / "auto.idx", index_type="auto")
    assert auto.manifest["index_type"] == "flat"
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    write_shard(tiny, 0, {"name": "synthetic", "id": "synthetic-1", "dim": DIM}, [],
                [Product(f"t{i}", None, {}) for i in range(DIM)], [None] * DIM, np.eye(DIM, dtype=np.float32))
    with pytest.raises(LookalikeError, match="at least 10,000 products"):
        Index.from_vectors(tiny, out=tmp_path / "tiny.idx", index_type="ivf")
    assert not (tmp_path / "tiny.idx").exists()
