"""Photos on object storage: an S3 bucket (a local moto server) embedded, indexed and served as a local folder of
the same photos would be; bad photos skipped and listed; credentials refused in the URL."""

import shutil

import numpy as np
import pytest

from conftest import DEMO, run_cli

pytest.importorskip("pyarrow", reason="object storage goes through pyarrow (the export extra)")
moto_server = pytest.importorskip("moto.server", reason="the test extra (moto) runs a local S3")

from lookalike import Index  # noqa: E402
from lookalike.catalog import CatalogProblems  # noqa: E402
from lookalike.remote import scan  # noqa: E402
from lookalike.vectors import embed_catalog, read_vectors  # noqa: E402


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """s3://shop/photos holding the demo's hats and skirts, a corrupt photo and a note; and the same folder locally."""
    import os

    from pyarrow import fs

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = fs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1",
                         allow_bucket_creation=True)
    s3.create_dir("shop")
    local = tmp_path_factory.mktemp("local") / "photos"
    for cls in ("hat", "skirt"):
        shutil.copytree(DEMO / cls, local / cls)
    (local / "skirt" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a whole jpeg")
    (local / "notes.txt").write_text("not a photo")
    shutil.copy(sorted((DEMO / "dress").glob("*.jpg"))[0], local / "odd name #1 é.jpg")   # a key to quote
    for path in local.rglob("*"):
        if path.is_file():
            with s3.open_output_stream(f"shop/photos/{path.relative_to(local).as_posix()}") as out:
                out.write(path.read_bytes())
    yield f"s3://shop/photos?endpoint_override={host}:{port}&scheme=http&region=us-east-1", local
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_a_bucket_embeds_as_the_same_local_folder(bucket, tmp_path):
    url, local = bucket
    remote = embed_catalog(url, None, out=tmp_path / "remote", model="classic", shard_size=15)
    plain = embed_catalog(local, None, out=tmp_path / "local", model="classic", shard_size=15)
    assert remote.embedded == plain.embedded == 41
    assert [pid for pid, _ in remote.skipped] == ["corrupt"] and "notes.txt" in remote.problems.unread_files
    a, b = read_vectors(tmp_path / "remote"), read_vectors(tmp_path / "local")
    assert a.ids == b.ids and np.array_equal(a.vectors, b.vectors) and a.hashes == b.hashes
    assert all(p.startswith("s3://shop/photos/") and "endpoint_override" in p for p in a.paths)


def test_an_index_of_a_bucket_searches_and_serves_its_photos(bucket, tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is needed")
    from fastapi.testclient import TestClient

    from lookalike.serve.app import create_app

    url, local = bucket
    run_cli("index", url, "--out", tmp_path / "s3.idx", "--model", "classic")
    index = Index.load(tmp_path / "s3.idx")
    hat = sorted((local / "hat").glob("*.jpg"))[2]
    assert index.search(hat, k=1, exclude_self=False)[0].id == hat.stem      # a local copy finds its remote twin
    assert index.get(hat.stem).path.startswith("s3://shop/photos/hat/")
    client = TestClient(create_app(tmp_path / "s3.idx"))
    served = client.get(f"/api/images/{hat.stem}")
    assert served.status_code == 200 and served.content == hat.read_bytes()
    assert client.get(f"/api/images/{hat.stem}?size=thumb").headers["content-type"] == "image/jpeg"


def test_bad_bucket_addresses_are_one_line(bucket, tmp_path):
    url, _ = bucket
    for with_key in (url + "&secret_key=Zq9-hidden", url.replace("s3://", "s3://AKIA:Zq9-hidden@")):
        refused = run_cli("embed", with_key, "--out", tmp_path / "v", "--model", "classic", code=2)
        assert "environment" in refused.output and "Zq9-hidden" not in refused.output
    fragment = run_cli("index", url.replace("photos", "photos#2"), "--out", tmp_path / "i.idx", code=2)
    assert "%23" in fragment.output
    missing = run_cli("embed", url.replace("s3://shop/photos", "s3://shop/nothing"), "--out", tmp_path / "v",
                      "--model", "classic", code=2)
    assert "no photos" in missing.output or "no such folder" in missing.output
    problems = CatalogProblems()
    by_id, by_key = scan(url, problems)
    assert len(by_id) == 42 and problems.unread_files == ["notes.txt"] and "skirt/corrupt.jpg" in by_key


def test_a_csv_image_column_names_photos_in_the_bucket(bucket, tmp_path):
    url, local = bucket
    hats = sorted((local / "hat").glob("*.jpg"))[:3]
    rows = ["sku,colour,image"] + [f"item-{i},c{i},hat/{p.name}" for i, p in enumerate(hats)]
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n")
    index = Index.build(url, tmp_path / "items.csv", out=tmp_path / "items.idx", model="classic",
                        require_metadata=True)
    assert sorted(index.ids) == ["item-0", "item-1", "item-2"]
    assert index.get("item-1").path.startswith("s3://shop/photos/hat/") and index.get("item-1").metadata == {"colour": "c1"}
