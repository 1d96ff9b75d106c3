"""The index: real photos in, correct neighbours out; filters; add/remove; atomic writes; bad input."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from conftest import DEMO, DEMO_CSV
from lookalike import FilterError, Index, IndexStoreError, LookalikeError, ModelError, NotFoundError


def test_a_product_is_its_own_nearest_neighbour(demo_index):
    for pid in demo_index.ids[::40]:
        first = demo_index.search(pid, k=1, exclude_self=False)[0]
        assert first.id == pid and first.score == pytest.approx(1.0, abs=1e-3)
        assert pid not in [r.id for r in demo_index.search(pid, k=10)]


def test_search_by_photo_finds_that_product(demo_index):
    pid = demo_index.ids[17]
    path = demo_index.get(pid).path
    results = demo_index.search(path, k=3)
    assert results[0].id == pid and results[0].score > 0.99
    assert [r.id for r in demo_index.search(Image.open(path), k=3)] == [r.id for r in results]
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)


def test_results_carry_metadata_and_paths(demo_index):
    result = demo_index.search(demo_index.ids[0], k=1)[0]
    assert result.metadata["class"] in {p.name for p in DEMO.iterdir() if p.is_dir()}
    assert os.path.isfile(result.path)
    assert result.to_dict()["class"] == result.metadata["class"]


def test_filters_only_return_matching_products(demo_index):
    pid = demo_index.ids[0]
    for where in ({"class": "shoes"}, {"class": ["hat", "skirt"]}):
        results = demo_index.search(pid, k=100, where=where)
        wanted = {where["class"]} if isinstance(where["class"], str) else set(where["class"])
        assert len(results) == 20 * len(wanted) - int(demo_index.get(pid).metadata["class"] in wanted)
        assert {r.metadata["class"] for r in results} == wanted


def test_bad_filters_say_what_exists(demo_index):
    with pytest.raises(FilterError, match="columns are: class"):
        demo_index.search(demo_index.ids[0], where={"colour": "red"})
    with pytest.raises(FilterError, match="known values: dress, hat"):
        demo_index.search(demo_index.ids[0], where={"class": "sock"})


def test_same_keeps_the_query_products_own_class(demo_index):
    for pid in demo_index.ids[::50]:
        own = demo_index.get(pid).metadata["class"]
        results = demo_index.search(pid, k=30, same=["class"])
        assert len(results) == 19 and {r.metadata["class"] for r in results} == {own}   # 20 a class, itself left out
    with pytest.raises(FilterError, match="cannot keep the same 'colour'.*columns: class"):
        demo_index.search(demo_index.ids[0], same=["colour"])


def test_unknown_id(demo_index):
    with pytest.raises(NotFoundError, match="neither a product id"):
        demo_index.search("no-such-id")


def test_add_and_remove_change_results_without_rebuild(tmp_path, demo_copy):
    index = Index.build(demo_copy / "dress", out=tmp_path / "i.idx", model="classic")
    assert len(index) == 4
    report = index.add(demo_copy / "shoes")
    assert report.indexed == 4 and len(index) == 8
    shoe = sorted((demo_copy / "shoes").glob("*.jpg"))[0].stem
    assert index.search(shoe, k=1, exclude_self=False)[0].id == shoe
    again = Index.load(tmp_path / "i.idx").add(demo_copy / "shoes")
    assert again.indexed == 0 and len(again.already_indexed) == 4

    assert index.remove([shoe]) == 1
    reopened = Index.load(tmp_path / "i.idx")
    assert len(reopened) == 7 and shoe not in reopened
    assert shoe not in [r.id for r in reopened.search(sorted((demo_copy / "shoes").glob("*.jpg"))[1].stem, k=10)]
    with pytest.raises(NotFoundError, match="nothing was removed"):
        reopened.remove([reopened.ids[0], "ghost"])
    assert len(Index.load(tmp_path / "i.idx")) == 7


def test_add_brings_new_metadata_columns(tmp_path, demo_copy):
    index = Index.build(demo_copy / "hat", out=tmp_path / "i.idx", model="classic")
    csv = tmp_path / "new.csv"
    ids = [p.stem for p in sorted((demo_copy / "dress").glob("*.jpg"))]
    csv.write_text("id,colour\n" + "".join(f"{i},black\n" for i in ids))
    index.add(demo_copy / "dress", csv)
    assert index.columns == ["colour"]
    assert {r.id for r in index.search(index.ids[0], k=10, where={"colour": "black"})} == set(ids)


def test_duplicate_photos_are_collapsed(tmp_path, demo_copy):
    original = sorted((demo_copy / "hat").glob("*.jpg"))[0]
    shutil.copy(original, demo_copy / "hat" / "copy-of-hat.jpg")
    index = Index.build(demo_copy, out=tmp_path / "i.idx", model="classic")
    by_photo = [r.id for r in index.search(original, k=5)]
    assert len({original.stem, "copy-of-hat"} & set(by_photo)) == 1
    by_id = [r.id for r in index.search(original.stem, k=5)]
    assert "copy-of-hat" not in by_id and original.stem not in by_id
    both = [r.id for r in index.search(original, k=5, collapse_duplicates=False)]
    assert {original.stem, "copy-of-hat"} <= set(both[:2])


def test_bad_photos_are_skipped_and_reported(tmp_path, demo_copy):
    (demo_copy / "dress" / "text.jpg").write_text("not a photo")
    good = sorted((demo_copy / "dress").glob("*.jpg"))[0].read_bytes()
    (demo_copy / "dress" / "cut.jpg").write_bytes(good[: len(good) // 3])
    (demo_copy / "dress" / "empty.png").write_bytes(b"")
    index = Index.build(demo_copy, out=tmp_path / "i.idx", model="classic")
    skipped = dict(index.report.skipped)
    assert set(skipped) == {"text", "cut", "empty"} and len(index) == 12
    assert "not an image" in skipped["text"] and "cut.jpg" in skipped["cut"]


def test_existing_index_is_not_overwritten_by_accident(tmp_path, demo_copy):
    Index.build(demo_copy / "hat", out=tmp_path / "i.idx", model="classic")
    with pytest.raises(IndexStoreError, match="already exists"):
        Index.build(demo_copy, out=tmp_path / "i.idx", model="classic")
    assert len(Index.build(demo_copy, out=tmp_path / "i.idx", model="classic", overwrite=True)) == 12
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(IndexStoreError, match="not a lookalike index"):
        Index.build(demo_copy, out=tmp_path / "notes", model="classic", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_damaged_index_is_refused(tmp_path, demo_copy):
    Index.build(demo_copy, out=tmp_path / "i.idx", model="classic")
    vectors = tmp_path / "i.idx" / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF
    vectors.write_bytes(bytes(data))
    Index.load(tmp_path / "i.idx")  # sizes still match: loads
    with pytest.raises(IndexStoreError, match="checksum"):
        Index.load(tmp_path / "i.idx", verify=True)
    (tmp_path / "i.idx" / "index.faiss").unlink()
    with pytest.raises(IndexStoreError, match="index.faiss is missing"):
        Index.load(tmp_path / "i.idx")
    with pytest.raises(IndexStoreError, match="no such index"):
        Index.load(tmp_path / "nothing.idx")


def test_query_model_must_match(tmp_path, demo_copy):
    from tests_models_helper import tiny_onnx_model

    Index.build(demo_copy, out=tmp_path / "i.idx", model="classic")
    other = tiny_onnx_model(tmp_path)
    with pytest.raises(ModelError, match="model mismatch"):
        Index.load(tmp_path / "i.idx", model=other)


def test_hnsw_agrees_with_flat_on_the_nearest(tmp_path, demo_index):
    hnsw = Index.build(DEMO, DEMO_CSV, out=tmp_path / "h.idx", model="classic", index_type="hnsw", dtype="float32")
    assert hnsw.manifest["index_type"] == "hnsw"
    agree = [hnsw.search(p, k=1)[0].id == demo_index.search(p, k=1)[0].id for p in demo_index.ids[::10]]
    assert sum(agree) >= 0.9 * len(agree)
    assert all(r.metadata["class"] == "hat" for r in hnsw.search(demo_index.ids[3], k=5, where={"class": "hat"}))


def test_float16_flat_finds_the_float32_neighbours(tmp_path, demo_index):
    # demo_index is float16 (the default): classic's 293 dims are padded to 304 inside FAISS
    exact = Index.build(DEMO, DEMO_CSV, out=tmp_path / "f32.idx", model="classic", dtype="float32")
    assert demo_index.manifest["dtype"] == "float16" and demo_index.dim == exact.dim == 293
    assert demo_index.vector(demo_index.ids[0]).shape == (293,)
    for pid in demo_index.ids[::20]:
        ours, theirs = demo_index.search(pid, k=5), exact.search(pid, k=5)
        assert [r.score for r in ours] == pytest.approx([r.score for r in theirs], abs=2e-3)
        # the same products, except where two scores tie within float16's rounding and may swap
        for a, b in zip(ours[:3], theirs[:3]):
            assert a.id == b.id or abs(a.score - b.score) < 2e-3 and a.id in {r.id for r in theirs}


def test_unknown_settings_are_refused(tmp_path):
    with pytest.raises(LookalikeError, match="index type"):
        Index.build(DEMO, out=tmp_path / "x.idx", model="classic", index_type="annoy")
    with pytest.raises(LookalikeError, match="at least 10,000 products"):      # refused before embedding
        Index.build(DEMO, out=tmp_path / "x.idx", model="classic", index_type="ivf")
    with pytest.raises(LookalikeError, match="no photos"):
        (tmp_path / "empty").mkdir()
        Index.build(tmp_path / "empty", out=tmp_path / "x.idx", model="classic")


# ---- crashes: a process killed at any point leaves the previous index loadable --------------------------

KILLER = textwrap.dedent("""
    import os, signal, sys
    import lookalike.index.index as ix
    from lookalike import Index
    where = sys.argv[3]
    if where == "embedding":
        class Killer:
            def start(self, total, description): self.done = 0
            def advance(self, n):
                self.done += n
                if self.done >= 4: os.kill(os.getpid(), signal.SIGKILL)
        progress = Killer()
    else:
        progress = None
        real = ix._write_files if where == "writing" else os.rename
        def die(*a, **k):
            if where == "writing":
                open(os.path.join(a[0], "vectors.npy"), "wb").write(b"partial")
            else:
                real(*a, **k)  # the first rename (live index -> old) happens, then the process dies
            os.kill(os.getpid(), signal.SIGKILL)
        if where == "writing":
            ix._write_files = die
        else:
            import lookalike.index.store as st
            st.os.rename = lambda a, b, _r=real: die(a, b) if ".old-" in str(b) else _r(a, b)
    Index.build(sys.argv[1], out=sys.argv[2], model="classic", overwrite=True, batch_size=2, progress=progress)
""")


@pytest.mark.parametrize("where", ["embedding", "writing", "swapping"])
def test_killed_build_leaves_previous_index_loadable(tmp_path, demo_copy, where):
    Index.build(demo_copy / "hat", out=tmp_path / "i.idx", model="classic")
    before = Index.load(tmp_path / "i.idx").ids
    proc = subprocess.run([sys.executable, "-c", KILLER, str(demo_copy), str(tmp_path / "i.idx"), where],
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    after = Index.load(tmp_path / "i.idx", verify=True)
    assert after.ids == before and after.search(before[0], k=1)
    Index.build(demo_copy, out=tmp_path / "i.idx", model="classic", overwrite=True)  # next write cleans up
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".i.idx.") and "lock" not in p.name) == []
    assert len(Index.load(tmp_path / "i.idx")) == 12


def test_a_target_build_would_refuse_is_refused_before_any_work(tmp_path, demo_copy, monkeypatch):
    import lookalike.index.index as ix

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded photos for an index it was going to refuse")

    monkeypatch.setattr(ix, "embed_batch", no_embedding)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    for out, message in ((demo_copy, "the photo folder itself"), (tmp_path / "notes", "not a lookalike index")):
        with pytest.raises(IndexStoreError, match=message):
            Index.build(demo_copy, out=out, model="classic", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")]     # no lock left behind
    with pytest.raises(IndexStoreError, match="no such index"):
        Index.load(tmp_path / "nothing.idx")
    assert not (tmp_path / ".nothing.idx.lock").exists()                             # nor by opening a missing one
