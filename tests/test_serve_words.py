"""Search by words on the web page, in real headless Chromium (Debian's, driven by Playwright): the words box,
words alone, words refining a photo or a product, the server's errors, and the layout on a phone and a desktop.
Screenshots go to build/test-artifacts/."""

from urllib.parse import parse_qs, urlparse

import pytest

from conftest import DEMO
from pagetools import assert_fits as fits
from pagetools import need_browser, serving_demo, shot, wait_until

need_browser()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo catalog indexed with the default model, which answers words (its text alignment, text.onnx)."""
    with serving_demo(tmp_path_factory) as (url, index):
        assert index.answers_words, "the default model does not answer words: no text.onnx beside it?"
        yield url


@pytest.fixture(scope="module")
def classic_server(tmp_path_factory):
    """The demo catalog indexed with the classic model, which cannot read words."""
    with serving_demo(tmp_path_factory, "classic") as (url, _):
        yield url


def open_page(page, server):
    page.goto(server)
    page.wait_for_selector(".chip")
    page.wait_for_selector("#words", state="visible")


def words(url: str) -> list[str]:
    return parse_qs(urlparse(url).query).get("q", [])


def kinds(page, n=8) -> list[str]:
    """The class of the first `n` result cards, as a user reads it (the card's first metadata line: "dress")."""
    return [m.split(" · ")[0] for m in page.locator(".card .meta").all_inner_texts()[:n]]


CARDS_SHOWN = "document.querySelectorAll('.card button').length > 0"


def test_words_alone_find_what_they_say(server, page):
    open_page(page, server)
    assert page.inner_text("label[for='words']") == "Search by words"
    assert "white sneakers" in page.get_attribute("#words", "placeholder")
    page.fill("#words", "red dress")
    with page.expect_response(lambda r: "/api/search?" in r.url) as answer:
        page.press("#words", "Enter")
    assert answer.value.request.method == "GET" and words(answer.value.url) == ["red dress"]
    wait_until(page, CARDS_SHOWN)
    assert page.locator(".card button").count() >= 6
    found = kinds(page)
    assert sum(k == "dress" for k in found) >= 5, found
    assert [r["metadata"]["class"] for r in answer.value.json()["results"][:8]] == found
    assert page.is_visible("#query") and not page.is_visible("#query-image")
    assert page.inner_text("#query-label").lower() == "results for"
    assert page.inner_text("#query-title") == "“red dress”"
    assert "red dress" in page.inner_text("#status")
    assert page.page_errors == [] and page.console_errors == []

    # a result searches from it, the words still refining it: both go, and the page says so
    target = page.locator(".card button").nth(1).get_attribute("data-id")
    with page.expect_request(lambda r: "/similar?" in r.url) as sent:
        page.locator(".card button").nth(1).click()
    assert f"/api/products/{target}/similar?" in sent.value.url and words(sent.value.url) == ["red dress"]
    wait_until(page, f"location.hash.startsWith('#id={target}') && " + CARDS_SHOWN)
    assert page.is_visible("#query-image") and page.inner_text("#query-words-text") == "red dress"


def test_the_button_searches_too_and_empty_words_send_nothing(server, page):
    open_page(page, server)
    page.click("#words-submit")
    page.wait_for_timeout(300)
    assert page.searches == [] and "Type a few words" in page.inner_text("#status")
    assert page.is_visible("#empty") and not page.is_visible("#error")
    page.fill("#words", "   ")
    page.press("#words", "Enter")
    page.wait_for_timeout(300)
    assert page.searches == []
    page.fill("#words", "shoes")
    page.click("#words-submit")
    wait_until(page, CARDS_SHOWN)
    assert sum(k == "shoes" for k in kinds(page)) >= 5, kinds(page)
    # × clears the words, and with words alone there is nothing left to show
    assert page.is_visible("#words-clear")
    page.click("#words-clear")
    assert page.input_value("#words") == "" and page.is_visible("#empty")
    assert page.locator(".card").count() == 0 and not page.is_visible("#query")


def test_filters_apply_to_words(server, page):
    open_page(page, server)
    page.click(".chip[data-column='class'][data-value='hat']")
    page.fill("#words", "red dress")
    with page.expect_request(lambda r: "/api/search?" in r.url) as sent:
        page.press("#words", "Enter")
    assert parse_qs(urlparse(sent.value.url).query)["class"] == ["hat"]
    wait_until(page, CARDS_SHOWN)
    assert set(kinds(page, 100)) == {"hat"}


def test_no_words_box_when_the_model_cannot_read(classic_server, page):
    page.goto(classic_server)
    page.wait_for_selector(".chip")
    assert page.evaluate("fetch('/api/health').then(r => r.json()).then(h => h.text)") is False
    assert not page.is_visible("#words-form") and not page.is_visible("#words")
    assert page.get_attribute("#words-form", "hidden") is not None
    assert page.is_visible("#drop") and page.page_errors == []


def test_a_bad_query_shows_the_servers_error(server, page):
    open_page(page, server)
    expected = page.request.get(server + "/api/search?q=!!!")
    assert expected.status == 400
    page.fill("#words", "!!!")
    page.press("#words", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == expected.json()["detail"]
    assert "punctuation" in page.inner_text("#error")
    assert page.locator(".card").count() == 0 and page.inner_text("#status") == ""
    assert page.page_errors == []
    assert [e for e in page.console_errors if "status of 400" not in e] == [], page.console_errors
    # corrected words search again, and the error goes
    page.fill("#words", "hat")
    page.press("#words", "Enter")
    wait_until(page, CARDS_SHOWN)
    assert not page.is_visible("#error")


def test_words_refine_a_product_and_a_photo(server, page):
    open_page(page, server)
    page.click("#random-button")
    wait_until(page, "location.hash.startsWith('#id=') && " + CARDS_SHOWN)
    pid = page.evaluate("new URLSearchParams(location.hash.slice(1)).get('id')")
    assert not page.is_visible("#query-words")

    page.fill("#words", "shoes")
    with page.expect_request(lambda r: "/similar?" in r.url) as sent:
        page.press("#words", "Enter")
    assert f"/api/products/{pid}/similar?" in sent.value.url and words(sent.value.url) == ["shoes"]
    wait_until(page, "location.hash.includes('q=shoes') && " + CARDS_SHOWN)
    assert page.is_visible("#query-image") and page.is_visible("#query-words")
    assert page.inner_text("#query-words-text") == "shoes" and "refined by" in page.inner_text("#status")

    # the × on the query card takes the words away: the product alone again
    with page.expect_request(lambda r: "/similar?" in r.url) as sent:
        page.click("#query-words-clear")
    assert words(sent.value.url) == [] and f"/api/products/{pid}/similar?" in sent.value.url
    wait_until(page, CARDS_SHOWN)
    assert page.input_value("#words") == "" and not page.is_visible("#query-words")

    # a photo dropped while words are in the box: both go in one POST
    page.fill("#words", "shoes")
    hat = sorted((DEMO / "hat").glob("*.jpg"))[0]
    with page.expect_response(lambda r: "/api/search?" in r.url) as answer:
        page.set_input_files("#file", str(hat))
    assert answer.value.request.method == "POST" and words(answer.value.url) == ["shoes"]
    # (Chromium does not show Playwright a multipart body: what the server received says the photo went too)
    assert answer.value.json()["query"] == {"upload": hat.name, "text": "shoes"}
    wait_until(page, CARDS_SHOWN)
    assert page.inner_text("#query-title") == hat.name and page.inner_text("#query-words-text") == "shoes"
    assert page.get_attribute("#query-image", "src").startswith("blob:")
    assert page.locator(".card button").count() >= 6
    shot(page, "page-words-photo")

    # new words for the same photo: the photo goes again with them
    page.fill("#words", "dress")
    with page.expect_response(lambda r: "/api/search?" in r.url) as answer:
        page.click("#words-submit")
    assert answer.value.request.method == "POST"
    assert answer.value.json()["query"] == {"upload": hat.name, "text": "dress"}
    wait_until(page, "document.getElementById('query-words-text').textContent === 'dress' && " + CARDS_SHOWN)

    # words the server refuses leave the photo as the query: corrected words refine it again
    page.fill("#words", "???")
    page.press("#words", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "punctuation" in page.inner_text("#error") and page.locator(".card").count() == 0
    assert page.inner_text("#query-title") == hat.name
    page.fill("#words", "shoes")
    with page.expect_request(lambda r: "/api/search?" in r.url) as sent:
        page.press("#words", "Enter")
    assert sent.value.method == "POST" and words(sent.value.url) == ["shoes"]
    wait_until(page, CARDS_SHOWN)
    assert not page.is_visible("#error") and page.page_errors == []


def test_back_and_forward_restore_the_words(server, page):
    open_page(page, server)
    page.fill("#words", "hat")
    page.press("#words", "Enter")
    wait_until(page, "location.hash === '#q=hat' && " + CARDS_SHOWN)
    page.fill("#words", "pants")
    page.press("#words", "Enter")
    wait_until(page, "location.hash === '#q=pants' && " + CARDS_SHOWN)
    page.go_back()
    wait_until(page, "location.hash === '#q=hat' && document.getElementById('query-title').textContent === '“hat”'")
    assert page.input_value("#words") == "hat"
    shared = page.context.new_page()                 # a link someone shared
    shared.goto(server + "/#q=white%20shirt")
    shared.wait_for_selector(".card button")
    assert shared.input_value("#words") == "white shirt" and shared.inner_text("#query-title") == "“white shirt”"


#: What a user must be able to reach: none may stick out past the right edge of the screen.
REACHABLE = ("#words-form, #words, #words-submit, #drop, .switch, .actions .button, .chip, #query, #query-words, "
             "#status, #error, .card")


def assert_fits(page, state):
    """No horizontal scrolling, and the words box and the first result lie inside the screen's width."""
    fits(page, state, REACHABLE)
    for selector in ("#words-form", "#words-submit", ".card >> nth=0"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= page.width, (page.name, state, selector, box)


def test_layout_with_words_fits_the_screen(server, screen):
    page = screen
    open_page(page, server)
    page.fill("#words", "red dress")
    page.press("#words", "Enter")
    wait_until(page, CARDS_SHOWN)
    assert_fits(page, "words alone")
    shot(page, "page-words" if page.name == "desktop" else "page-words-phone")
    # a long query that does not fit the box, refining a product: the query card wraps it
    page.fill("#words", "long sleeved embroidered summer dress with a floral print " * 3)
    page.click(".card button >> nth=0")
    wait_until(page, "location.hash.includes('q=') && !document.getElementById('query-words').hidden && "
                     + CARDS_SHOWN)
    assert_fits(page, "words refining a product")
    shot(page, f"{page.name}-words-product")
    assert page.page_errors == [] and page.console_errors == []
