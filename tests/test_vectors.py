"""Parquet vectors, the hand-off between batch embedding and serving: `embed --out DIR` writes resumable shards
with the metadata, `index --vectors DIR` builds the same index as from the photos, and vectors of another model
or shards without the needed columns are refused before anything is written."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import DEMO, DEMO_CSV, run_cli

pa = pytest.importorskip("pyarrow", reason="Parquet vectors need the export extra (pyarrow)")
import pyarrow.parquet as pq  # noqa: E402

from lookalike import Index  # noqa: E402
from lookalike.vectors import VectorsError, embed_catalog, read_vectors  # noqa: E402


@pytest.fixture
def catalog(tmp_path):
    """Three demo classes (60 photos) with their metadata, and one photo that is not an image."""
    photos = tmp_path / "photos"
    for cls in ("hat", "shoes", "skirt"):
        shutil.copytree(DEMO / cls, photos / cls)
    (photos / "hat" / "broken.jpg").write_bytes(b"not a photo")
    rows = [line for line in DEMO_CSV.read_text().splitlines()[1:] if line.split(",")[1] in ("hat", "shoes", "skirt")]
    (tmp_path / "meta.csv").write_text("id,class,image\n" + "\n".join(rows) + "\nbroken,hat,hat/broken.jpg\n")
    return photos, tmp_path / "meta.csv"


def test_shards_round_trip_into_the_same_index_as_the_photos(catalog, tmp_path):
    photos, meta = catalog
    report = embed_catalog(photos, meta, out=tmp_path / "vec", model="classic", shard_size=25)
    assert report.embedded == 60 and [pid for pid, _ in report.skipped] == ["broken"]
    assert report.shards_written == 3 and sorted(p.name for p in (tmp_path / "vec").glob("*.parquet")) == \
        ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    shard = pq.read_table(tmp_path / "vec" / "part-00000.parquet")
    assert shard.column_names == ["id", "path", "sha1", "vector", "class"]    # the image column is `path`
    assert pa.types.is_fixed_size_list(shard.schema.field("vector").type)
    assert json.loads(shard.schema.metadata[b"lookalike"])["model"]["name"] == "classic"

    from_vectors = Index.from_vectors(tmp_path / "vec", out=tmp_path / "v.idx")
    from_photos = Index.build(photos, meta, out=tmp_path / "p.idx", model="classic")
    assert sorted(from_vectors.ids) == sorted(from_photos.ids) and len(from_vectors) == 60
    pid = from_photos.ids[0]
    assert from_vectors.get(pid).metadata == from_photos.get(pid).metadata
    assert np.allclose(from_vectors.vector(pid), from_photos.vector(pid), atol=1e-3)
    assert [r.id for r in from_vectors.search(pid, k=8)] == [r.id for r in from_photos.search(pid, k=8)]
    photo = sorted((DEMO / "skirt").glob("*.jpg"))[3]
    assert from_vectors.search(photo, k=1)[0].id == photo.stem      # photo queries use the vectors' model


def test_a_rerun_embeds_only_the_missing_shards(catalog, tmp_path):
    photos, meta = catalog
    out = tmp_path / "vec"
    embed_catalog(photos, meta, out=out, model="classic", shard_size=25)
    (out / "part-00001.parquet").unlink()                        # as if killed while writing shard 1
    dead = _dead_pid()
    (out / f".part-00001.parquet.tmp-{dead}").write_bytes(b"half a shard")
    again = embed_catalog(photos, meta, out=out, model="classic", shard_size=25)
    assert (again.shards_kept, again.shards_written, again.embedded) == (2, 1, 25)
    data = read_vectors(out)
    assert len(data.ids) == len(set(data.ids)) == 60
    with pytest.raises(VectorsError, match="another run"):       # another shard size: not the same plan
        embed_catalog(photos, meta, out=out, model="classic", shard_size=10)
    assert not list(out.glob(".part-*"))                          # the dead run's partial shard is gone
    fresh = embed_catalog(photos, meta, out=out, model="classic", shard_size=31, overwrite=True)
    assert fresh.shards_written == 2 and len(list(out.glob("*.parquet"))) == 2


def test_vectors_of_another_model_or_without_columns_are_refused(catalog, tmp_path):
    photos, meta = catalog
    out = tmp_path / "vec"
    embed_catalog(photos, meta, out=out, model="classic", shard_size=100)
    with pytest.raises(VectorsError, match="not of"):
        Index.from_vectors(out, out=tmp_path / "x.idx", model="default")
    assert not (tmp_path / "x.idx").exists()
    table = pq.read_table(out / "part-00000.parquet")
    pq.write_table(table.drop(["vector"]), out / "part-00001.parquet")
    with pytest.raises(VectorsError, match="no vector column"):
        Index.from_vectors(out, out=tmp_path / "x.idx")
    pq.write_table(table, out / "part-00001.parquet")             # the same products again
    with pytest.raises(VectorsError, match="found twice"):
        Index.from_vectors(out, out=tmp_path / "x.idx")
    (out / "part-00001.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(VectorsError, match="not a readable Parquet"):
        Index.from_vectors(out, out=tmp_path / "x.idx")
    assert not (tmp_path / "x.idx").exists()


def test_cli_embed_then_index_from_vectors(catalog, tmp_path):
    photos, meta = catalog
    result = run_cli("embed", photos, "--metadata", meta, "--out", tmp_path / "vec", "--model", "classic",
                     "--shard-size", "40")
    assert "embedded" in result.output and "60" in result.output and "broken" in result.output
    assert "2 shard(s) written" in result.output
    result = run_cli("index", "--vectors", tmp_path / "vec", "--out", tmp_path / "v.idx")
    assert "read 60 vectors" in result.output and len(Index.load(tmp_path / "v.idx")) == 60
    pid = Index.load(tmp_path / "v.idx").ids[0]
    payload = json.loads(run_cli("search", tmp_path / "v.idx", "--id", pid, "-k", "3", "--json").stdout)
    assert len(payload["results"]) == 3
    refused = run_cli("index", "--vectors", tmp_path / "vec", "--out", tmp_path / "w.idx", "--model", "default", code=2)
    assert "not of" in refused.output and "Traceback" not in refused.output and not (tmp_path / "w.idx").exists()
    both = run_cli("index", photos, "--vectors", tmp_path / "vec", "--out", tmp_path / "w.idx", code=2)
    assert "not both" in both.output


def _dead_pid() -> int:
    """The pid of a process that has ended (a killed embedding run's)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_rerun_over_another_catalog_embeds_again_and_an_unfinished_folder_is_refused(catalog, tmp_path):
    photos, meta = catalog
    out = tmp_path / "vec"
    embed_catalog(photos, meta, out=out, model="classic", shard_size=25)
    hats = sorted((photos / "hat").glob("*.jpg"))
    hats[0].rename(hats[0].with_name("other.jpg"))         # the same model, columns and count; other products
    meta.write_text(meta.read_text().replace(hats[0].stem, "other"))
    with pytest.raises(VectorsError, match="another run"):
        embed_catalog(photos, meta, out=out, model="classic", shard_size=25)
    (out / "part-00002.parquet").unlink()
    with pytest.raises(VectorsError, match="1 of 3 shards missing"):
        Index.from_vectors(out, out=tmp_path / "x.idx")
    assert not (tmp_path / "x.idx").exists()


def test_vectors_of_the_wrong_length_are_refused(tmp_path):
    folder = tmp_path / "foreign"
    folder.mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "vector": [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4, 0.5]]}),
                   folder / "x.parquet")
    with pytest.raises(VectorsError, match="different lengths"):
        read_vectors(folder, model_id="classic-v1")
    pq.write_table(pa.table({"id": ["a", "b"], "vector": [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]}), folder / "x.parquet")
    with pytest.raises(VectorsError, match="3 dims, but the model's have"):
        Index.from_vectors(folder, out=tmp_path / "x.idx", model="classic")
    assert not (tmp_path / "x.idx").exists()
