"""The web page in real headless Chromium (Debian's, driven by Playwright): upload, results, filters,
click-through, and an error for a non-image. Screenshots go to build/test-artifacts/."""

import pytest

from conftest import DEMO
from pagetools import assert_fits as fits
from pagetools import need_browser, serving_demo, shot, wait_until

need_browser()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving_demo(tmp_path_factory, "classic") as (url, _):
        yield url


# what a user must be able to reach: none may stick out past the edges of the screen
REACHABLE = "#drop, .switch, .actions .button, .chip, .more, #query, #status, #error, .card, #look .photo, #look .garment"
BROKEN = """[...document.images].filter(i => i.complete && i.naturalWidth === 0 && i.getClientRects().length
                                  && getComputedStyle(i).visibility !== 'hidden').map(i => i.id || i.src)"""


def assert_fits(page, state):
    fits(page, state, REACHABLE)


def test_upload_filter_click_through(server, page):
    page.goto(server)
    page.wait_for_selector(".chip")
    assert "200 products" in page.inner_text("#catalog-info")
    hat = sorted((DEMO / "hat").glob("*.jpg"))[0]
    page.set_input_files("#file", str(hat))
    page.wait_for_selector(".card button")
    cards = page.locator(".card button")
    assert cards.count() == 24
    assert cards.first.get_attribute("data-id") == hat.stem  # the photo itself is in the catalog
    assert "similar products" in page.inner_text("#status")
    shot(page, "upload-results")

    page.click(".chip[data-column='class'][data-value='shoes']")
    wait_until(page, "document.querySelectorAll('.card button').length === 20")
    metas = page.locator(".card .meta").all_inner_texts()
    assert metas and all(m.startswith("shoes") for m in metas)
    shot(page, "filtered")

    target = page.locator(".card button").nth(2).get_attribute("data-id")
    page.locator(".card button").nth(2).click()
    wait_until(page, f"location.hash === '#id={target}'")
    wait_until(page, f"!document.querySelector(\".card button[data-id='{target}']\") && "
                           "document.querySelectorAll('.card button').length > 0")
    assert page.is_visible("#query") and page.inner_text("#query-title") in {"Shoes", target}
    assert page.console_errors == []


def test_same_type_switch_keeps_the_querys_type(server, page):
    page.goto(server)
    page.wait_for_selector(".chip")
    assert page.is_visible("#same-switch") and page.inner_text("#same-column") == "class"
    skirt = sorted((DEMO / "skirt").glob("*.jpg"))[0]
    page.set_input_files("#file", str(skirt))
    wait_until(page, "document.querySelectorAll('.card button').length === 24")
    assert not all(m.startswith("skirt") for m in page.locator(".card .meta").all_inner_texts())
    page.check("#same-kind")
    wait_until(page, "document.querySelectorAll('.card button').length === 20")   # the 20 skirts
    metas = page.locator(".card .meta").all_inner_texts()
    assert metas and all(m.startswith("skirt") for m in metas)
    assert page.console_errors == []


def test_non_image_shows_an_error(server, page, tmp_path):
    page.goto(server)
    page.wait_for_selector(".chip")
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a photo")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    assert "not an image" in page.inner_text("#error")
    shot(page, "error")


def test_random_product_and_phone_layout(server, browser):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.goto(server)
    page.wait_for_selector(".chip")
    assert page.get_attribute("#camera-input", "capture") == "environment"
    page.click("#random-button")
    page.wait_for_selector(".card button")
    assert page.locator(".card button").count() > 0 and page.is_visible("#query")
    shot(page, "phone-random")
    ctx.close()


def test_keyboard_opens_results(server, page):
    page.goto(server + "/#id=" + sorted((DEMO / "skirt").glob("*.jpg"))[0].stem)
    page.wait_for_selector(".card button")
    page.focus(".card button >> nth=0")
    first = page.locator(".card button").first.get_attribute("data-id")
    page.keyboard.press("Enter")
    wait_until(page, f"location.hash === '#id={first}'")


#: Pairs of box labels on the shop-the-look photo that cover each other.
TAGS_OVERLAP = """() => {
  const r = [...document.querySelectorAll('#look .box span')].map(t => [t.textContent, t.getBoundingClientRect()]);
  const out = [];
  for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) {
    const [a, b] = [r[i][1], r[j][1]];
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) out.push([r[i][0], r[j][0]]);
  }
  return out;
}"""


def test_shop_the_look_view_draws_boxes(server, screen, tmp_path):
    from conftest import SHARED, need_shared
    from lookalike.look.parser import SHIPPED
    import tarfile

    if not (SHIPPED / "parser.json").exists():
        pytest.skip("the garment parser is not shipped in this checkout")
    with tarfile.open(need_shared(SHARED / "data" / "clothing-co-parsing" / "ccp.tar.gz")) as tar:
        photo = tmp_path / "street.jpg"
        photo.write_bytes(tar.extractfile("photos/0001.jpg").read())
    page = screen
    page.goto(server)
    page.wait_for_selector(".chip")
    page.check("#look-mode")
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#look .box")
    assert page.locator("#look .box").count() >= 2
    assert page.locator("#look .garment .card").count() >= 2 * 1
    assert "garment" in page.inner_text("#status")
    assert_fits(page, "shop the look")
    assert page.evaluate(BROKEN) == []
    assert page.evaluate(TAGS_OVERLAP) == []
    shot(page, f"{page.name}-shop-the-look")
    # a photo with a bag, a top and a dress starting close together: labels apart, and the bag gets a note
    with tarfile.open(SHARED / "data" / "clothing-co-parsing" / "ccp.tar.gz") as tar:
        (tmp_path / "bag.jpg").write_bytes(tar.extractfile("photos/0005.jpg").read())
    page.set_input_files("#file", str(tmp_path / "bag.jpg"))
    wait_until(page, "[...document.querySelectorAll('#look .box span')].some(t => t.textContent === 'bag')")
    wait_until(page, "document.querySelector('#look .garment .note') !== null")
    assert page.inner_text("#look .garment .note") == "No bags in this catalog"
    assert page.evaluate(TAGS_OVERLAP) == []
    assert_fits(page, "shop the look with a bag")
    shot(page, f"{page.name}-shop-the-look-bag")


def test_layout_fits_the_screen_in_every_state(server, screen, tmp_path):
    page = screen
    page.goto(server)
    page.wait_for_selector(".chip")
    assert_fits(page, "initial page")
    page.set_input_files("#file", str(sorted((DEMO / "hat").glob("*.jpg"))[0]))
    wait_until(page, "document.querySelectorAll('.card button').length === 24")
    assert_fits(page, "after an upload search")
    shot(page, f"{page.name}-upload")
    page.click(".chip[data-column='class'][data-value='shoes']")
    wait_until(page, "document.querySelectorAll('.card button').length === 20")
    assert_fits(page, "after a filter chip")
    page.click(".chip[data-column='class'][data-value='shoes']")      # off again: random picks any class
    page.click("#random-button")
    wait_until(page, "location.hash.startsWith('#id=') && document.querySelectorAll('.card button').length > 0")
    assert_fits(page, "after a random product")
    shot(page, f"{page.name}-random")
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a photo")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    assert_fits(page, "error")
    shot(page, f"{page.name}-error")
    # the 415 of the non-image is expected; anything else (a Content-Security-Policy violation, say) is not
    assert [e for e in page.console_errors if "status of 415" not in e] == [], page.console_errors


def test_no_query_card_or_broken_image_before_a_search(server, screen):
    page = screen
    page.goto(server)
    page.wait_for_selector(".chip")
    assert page.is_visible("#empty") and not page.is_visible("#query")
    assert page.evaluate(BROKEN) == []


def test_an_error_replaces_the_last_query(server, page, tmp_path):
    page.goto(server)
    page.wait_for_selector(".chip")
    page.set_input_files("#file", str(sorted((DEMO / "dress").glob("*.jpg"))[0]))
    page.wait_for_selector(".card button")
    assert page.is_visible("#query")
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a photo")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    assert "not an image" in page.inner_text("#error")
    assert not page.is_visible("#query") and page.locator(".card").count() == 0
    assert page.evaluate(BROKEN) == []
    page.click(".chip[data-column='class'][data-value='hat']")   # a filter does not bring the failed upload back
    page.wait_for_timeout(300)
    assert page.is_visible("#error") and page.locator(".card").count() == 0


def test_docs_render_without_internet(server, page):
    """/docs with every request to another host refused, as on a machine offline: Swagger UI is served locally,
    lists the operations, and "Try it out" works under the page's Content-Security-Policy."""
    outside = []

    def only_local(route):
        url = route.request.url
        if url.startswith((server + "/", "data:", "blob:")):
            return route.continue_()
        outside.append(url)
        return route.abort()

    page.route("**/*", only_local)
    page.goto(server + "/docs")
    page.wait_for_selector(".opblock", timeout=20000)
    assert page.locator(".opblock").count() >= 10 and "/api/search" in page.inner_text("#swagger-ui")
    health = page.locator(".opblock", has_text="/api/health").first
    health.locator(".opblock-summary").click()
    health.locator("button.try-out__btn").click()
    health.locator("button.execute").click()
    status = health.locator(".live-responses-table tr.response .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert '"products": 200' in health.locator(".live-responses-table").inner_text()
    shot(page, "docs")
    assert outside == [] and page.console_errors == [], (outside, page.console_errors)
