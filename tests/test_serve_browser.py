"""The web page in real headless Chromium (Debian's, driven by Playwright): upload, results, filters,
click-through, and an error for a non-image. Screenshots go to build/test-artifacts/."""

import shutil
import socket
import threading
import time

import pytest

from conftest import DEMO, DEMO_CSV, ROOT

playwright = pytest.importorskip("playwright.sync_api", reason="the test extra (playwright) drives the browser")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) runs the server")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)", allow_module_level=True)

ARTIFACTS = ROOT / "build" / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from lookalike import Index
    from lookalike.serve.app import create_app

    path = tmp_path_factory.mktemp("serve") / "demo.idx"
    Index.build(DEMO, DEMO_CSV, out=path, model="classic")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(path), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)  # its own fresh profile
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    yield pg
    ctx.close()


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function("[...document.images].every(i => i.complete || i.getBoundingClientRect().top > innerHeight)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


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
    page.wait_for_function("document.querySelectorAll('.card button').length === 20")
    metas = page.locator(".card .meta").all_inner_texts()
    assert metas and all(m.startswith("shoes") for m in metas)
    shot(page, "filtered")

    target = page.locator(".card button").nth(2).get_attribute("data-id")
    page.locator(".card button").nth(2).click()
    page.wait_for_function(f"location.hash === '#id={target}'")
    page.wait_for_function(f"!document.querySelector(\".card button[data-id='{target}']\") && "
                           "document.querySelectorAll('.card button').length > 0")
    assert page.is_visible("#query") and page.inner_text("#query-title") in {"Shoes", target}
    assert page.console_errors == []


def test_same_type_switch_keeps_the_querys_type(server, page):
    page.goto(server)
    page.wait_for_selector(".chip")
    assert page.is_visible("#same-switch") and page.inner_text("#same-column") == "class"
    skirt = sorted((DEMO / "skirt").glob("*.jpg"))[0]
    page.set_input_files("#file", str(skirt))
    page.wait_for_function("document.querySelectorAll('.card button').length === 24")
    assert not all(m.startswith("skirt") for m in page.locator(".card .meta").all_inner_texts())
    page.check("#same-kind")
    page.wait_for_function("document.querySelectorAll('.card button').length === 20")   # the 20 skirts
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
    page.wait_for_function(f"location.hash === '#id={first}'")


def test_shop_the_look_view_draws_boxes(server, page, tmp_path):
    from conftest import SHARED, need_shared
    from lookalike.look.parser import SHIPPED
    import tarfile

    if not (SHIPPED / "parser.json").exists():
        pytest.skip("the garment parser is not shipped in this checkout")
    with tarfile.open(need_shared(SHARED / "data" / "clothing-co-parsing" / "ccp.tar.gz")) as tar:
        photo = tmp_path / "street.jpg"
        photo.write_bytes(tar.extractfile("photos/0001.jpg").read())
    page.goto(server)
    page.wait_for_selector(".chip")
    page.check("#look-mode")
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#look .box")
    assert page.locator("#look .box").count() >= 2
    assert page.locator("#look .garment .card").count() >= 2 * 1
    assert "garment" in page.inner_text("#status")
    shot(page, "shop-the-look")
