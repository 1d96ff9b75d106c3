"""One photo path: a catalog photo finds itself first, at cosine >= 0.99, however it arrives (a path, an upload, a
PIL image, the CLI), because every entry point decodes and prepares it as indexing did."""

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import DEMO, DEMO_CSV
from lookalike import Index
from lookalike.cli import app

PHOTOS = sorted(DEMO.glob("*/*.jpg"))


@pytest.fixture(scope="module")
def default_index(tmp_path_factory):
    return Index.build(DEMO, DEMO_CSV, out=tmp_path_factory.mktemp("one") / "demo.idx")


def _first(results, photo):
    return bool(results) and results[0].id == photo.stem and results[0].score >= 0.99


def test_every_demo_photo_finds_itself_as_a_path_bytes_and_pil_image(default_index):
    missed = []
    for photo in PHOTOS:
        for name, query in [("path", photo), ("bytes", photo.read_bytes()), ("PIL", Image.open(photo)),
                            ("PIL RGB", Image.open(photo).convert("RGB"))]:
            results = default_index.search(query, k=1, agree=False)
            if not _first(results, photo):
                missed.append((photo.name, name, results[0].id if results else None,
                               round(results[0].score, 3) if results else None))
    assert not missed, missed


def test_every_demo_photo_uploaded_finds_itself(default_index):
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is needed for the API")
    from fastapi.testclient import TestClient

    from lookalike.serve.app import create_app

    client = TestClient(create_app(default_index.path))
    missed = []
    for photo in PHOTOS:
        r = client.post("/api/search?k=1", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        top = r.json()["results"][0]
        if top["id"] != photo.stem or top["score"] < 0.99:
            missed.append((photo.name, top["id"], top["score"]))
    assert not missed, missed


def test_demo_photos_searched_through_the_cli_find_themselves(default_index):
    runner = CliRunner()
    for photo in PHOTOS[::4]:    # the CLI hands the path to the same Index.search as above; 50 of the 200
        result = runner.invoke(app, ["search", str(default_index.path), str(photo), "-k", "1", "--json"])
        assert result.exit_code == 0, result.output
        top = json.loads(result.output)["results"][0]
        assert top["id"] == photo.stem and top["score"] >= 0.99, (photo.name, top)
