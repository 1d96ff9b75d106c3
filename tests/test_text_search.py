"""Search by words: real shoppers' queries against real catalog photos, with and without product names, words that
refine a photo, and every bad query answered with a clear error (Python, CLI, HTTP)."""

from __future__ import annotations

import csv
import shutil

import pytest

from conftest import run_cli

from lookalike import Index
from lookalike.errors import ModelError
from lookalike.text import QueryError, check_query, load_text_encoder
from lookalike.text.encoder import SHIPPED
from lookalike.text.fulltext import fuse, match_expression, text_columns
from lookalike.text.wordpiece import WordPiece

SHOES = {"Casual Shoes", "Sports Shoes", "Formal Shoes", "Heels", "Flats", "Sandals", "Flip Flops", "Sports Sandals"}
BAGS = {"Handbags", "Clutches", "Wallets", "Backpacks", "Laptop Bag", "Messenger Bag", "Duffel Bag"}


def labels(fpi_sample) -> dict[str, dict]:
    with open(fpi_sample / "styles.csv", encoding="utf-8") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def photos_only(fpi_sample, tmp_path_factory):
    """The sample's photos, indexed with no metadata at all: only the pictures can answer words."""
    return Index.build(fpi_sample / "images", None, out=tmp_path_factory.mktemp("words") / "photos.idx")


@pytest.fixture(scope="module")
def with_names(fpi_sample, tmp_path_factory):
    return Index.build(fpi_sample / "images", fpi_sample / "styles.csv", out=tmp_path_factory.mktemp("words") / "n.idx")


@pytest.mark.parametrize("words, kinds", [("white sneakers", SHOES), ("black purse", BAGS),
                                          ("wrist watch", {"Watches"}), ("men's tee", {"Tshirts"})])
def test_a_photo_only_index_answers_words(photos_only, fpi_sample, words, kinds):
    truth = labels(fpi_sample)
    results = photos_only.search(text=words, k=10)
    assert len(results) == 10
    right = [r.id for r in results if truth[r.id]["articleType"] in kinds]
    assert len(right) >= 7, [truth[r.id]["articleType"] for r in results]
    assert all(r.metadata == {} for r in results)      # nothing but the photos was there to match


def test_colour_words_reach_the_pictures(photos_only, fpi_sample):
    truth = labels(fpi_sample)
    for colour in ("White", "Black", "Red"):
        results = photos_only.search(text=f"{colour.lower()} t-shirt", k=10)
        assert sum(truth[r.id]["baseColour"] == colour for r in results) >= 6, colour


def test_names_are_searched_too_and_filters_apply(with_names, fpi_sample):
    truth = labels(fpi_sample)
    assert with_names.fulltext() is not None and with_names.fulltext().columns == ["productDisplayName"]
    # a brand is a word the pictures cannot show: full-text search on the names finds it
    brands = {}
    for pid in with_names.ids:
        brands.setdefault(truth[pid]["productDisplayName"].split()[0], []).append(pid)
    brand, pids = max(((b, p) for b, p in brands.items() if 3 <= len(p) <= 20 and b.isalpha()), key=lambda x: len(x[1]))
    results = with_names.search(text=brand, k=10)
    assert sum(r.id in pids for r in results) >= min(3, len(pids))
    women = with_names.search(text="white sneakers", k=10, where={"gender": "Women"})
    assert women and all(r.metadata["gender"] == "Women" for r in women)
    assert sum(r.metadata["articleType"] in SHOES for r in women) >= 7


def test_same_keeps_the_words_likely_type(with_names):
    results = with_names.search(text="black watch", k=10, same=["articleType"])
    assert len(results) >= 5 and {r.metadata["articleType"] for r in results} == {"Watches"}


def test_words_refine_a_product(with_names):
    blue = next(pid for pid in with_names.ids if with_names.get(pid).metadata.get("articleType") == "Tshirts"
                and with_names.get(pid).metadata.get("baseColour") == "Blue")
    plain = with_names.search(blue, k=10)
    red = with_names.search(blue, k=10, text="in red")
    assert blue not in [r.id for r in red]
    reds = sum(r.metadata.get("baseColour") == "Red" for r in red)
    assert reds >= 5 and reds > sum(r.metadata.get("baseColour") == "Red" for r in plain)
    assert sum(r.metadata.get("articleType") == "Tshirts" for r in red) >= 7      # the kind is kept


@pytest.mark.parametrize("bad, says", [("", "empty"), ("   \n\t ", "empty"), ("?!... ---", "no words"), ("🙂🙂", "no words"),
                                       ("word " * 2000, "too long"), (42, "string")])
def test_bad_queries_get_one_clear_error(photos_only, bad, says):
    with pytest.raises(QueryError, match=says):
        photos_only.search(text=bad, k=5)


def test_a_language_the_model_cannot_read_is_said_so(photos_only):
    for words in ("白色运动鞋", "كلمة", "белые кроссовки"):
        with pytest.raises(QueryError, match="reads English"):
            photos_only.search(text=words, k=5)
    for words in ("chaussures blanches", "🙂 shoes", "Levi's 501"):    # Latin letters: searched
        assert len(photos_only.search(text=words, k=5)) == 5


def test_an_index_whose_model_has_no_words_says_so(demo_index):
    with pytest.raises(ModelError, match="cannot search by words"):
        demo_index.search(text="red dress")


def test_cli_text_search(photos_only, fpi_sample):
    import json

    result = run_cli("search", photos_only.path, "--text", "white sneakers", "-k", "5", "--json")
    data = json.loads(result.stdout)
    assert data["text"] == "white sneakers" and len(data["results"]) == 5
    truth = labels(fpi_sample)
    assert sum(truth[r["id"]]["articleType"] in SHOES for r in data["results"]) >= 4
    for bad in ("", "!!!"):
        out = run_cli("search", photos_only.path, "--text", bad, code=2).output.strip()
        assert len(out.splitlines()) == 1 and "error" in out.lower()


def test_http_text_search(with_names):
    from fastapi.testclient import TestClient

    from lookalike.serve.app import create_app

    client = TestClient(create_app(with_names.path))
    ok = client.get("/api/search", params={"q": "black purse", "k": 8})
    assert ok.status_code == 200
    body = ok.json()
    assert body["query"] == {"text": "black purse"} and len(body["results"]) == 8
    assert sum(r["metadata"]["articleType"] in BAGS for r in body["results"]) >= 6
    filtered = client.get("/api/search", params={"q": "black purse", "gender": "Women"}).json()
    assert all(r["metadata"]["gender"] == "Women" for r in filtered["results"])
    pid = body["results"][0]["id"]
    refined = client.get(f"/api/products/{pid}/similar", params={"q": "in red"})
    assert refined.status_code == 200 and refined.json()["query"]["text"] == "in red"
    for params, status in [({"q": ""}, 400), ({"q": "!!!"}, 400), ({"q": "x" * 10_000}, 400), ({}, 422),
                           ({"q": "shoes", "colour": "Red"}, 400)]:
        r = client.get("/api/search", params=params)
        assert r.status_code == status, (params, r.text)
        assert "Traceback" not in r.text and r.json()["detail"]
    assert client.post("/api/search").status_code == 400
    photo = with_names.get(pid).path
    with open(photo, "rb") as fh:
        both = client.post("/api/search", params={"q": "in red"}, files={"image": ("p.jpg", fh, "image/jpeg")})
    assert both.status_code == 200 and both.json()["query"]["text"] == "in red"


def test_http_text_search_on_a_model_without_words(demo_index):
    from fastapi.testclient import TestClient

    from lookalike.serve.app import create_app

    r = TestClient(create_app(demo_index.path)).get("/api/search", params={"q": "red dress"})
    assert r.status_code == 409 and "cannot search by words" in r.json()["detail"]


def test_query_checks_and_fusion_rules():
    assert check_query("  white \n sneakers ") == "white sneakers"
    assert fuse([[1, 2, 3], [3, 4]]) [:2] == [3, 1]        # found by both first, then the best of one
    assert '"casual shoes"' in match_expression("white sneakers")
    assert match_expression("white sneakers", expand=False) == '"white" OR "sneakers"'
    names = {"name": ["Nike Men White Running Shoes", "Puma Women Black Top", "Roadster Blue Jeans"] * 5,
             "colour": ["White", "Black", "Blue"] * 5}
    assert text_columns(["name", "colour"], names) == ["name"]


def test_our_wordpiece_is_hugging_faces(fpi_sample):
    tokenizers = pytest.importorskip("tokenizers", reason="the test extra has Hugging Face's tokenizers")
    theirs = tokenizers.Tokenizer.from_file(str(SHIPPED / "tokenizer.json"))
    theirs.enable_truncation(64)
    theirs.no_padding()
    ours = WordPiece(SHIPPED / "tokenizer.json")
    texts = [r["productDisplayName"] for r in labels(fpi_sample).values()] + [
        "Lévis jeans ünïcode", "白色运动鞋", "tee-shirt's", "a\tb\nc", "ﬁne", "x" * 150, "Ｆｕｌｌ width", "₹500 off!!",
        "e\u0301", "\u200bzero", "word " * 100, "ß straße", "İstanbul", "🙂 shoes", "don't", "U.S.A.", "3.5mm"]
    assert [ours.ids(t, 64) for t in texts] == [theirs.encode(t).ids for t in texts]


def test_the_sentence_encoder_knows_shoppers_words():
    enc = load_text_encoder()
    v = enc.encode(["purse", "handbag", "sneakers", "casual shoes"])
    assert v.shape == (4, 384)
    assert v[0] @ v[1] > v[0] @ v[2] and v[2] @ v[3] > v[2] @ v[1]


def test_train_text_only_aligns_a_shops_own_words(fpi_sample, tmp_path, photos_only):
    out = tmp_path / "words-model"
    run_cli("train", fpi_sample / "images", "--metadata", fpi_sample / "styles.csv", "--init", "default",
            "--text-only", "--text-column", "productDisplayName", "--out", out)
    assert (out / "text.onnx").is_file() and (out / "model.json").is_file()
    # the image side is untouched: an index built with the default model answers with the new words
    idx = Index.load(photos_only.path, model=str(out))
    truth = labels(fpi_sample)
    results = idx.search(text="white sneakers", k=10)
    assert sum(truth[r.id]["articleType"] in SHOES for r in results) >= 7
    shutil.rmtree(out)
