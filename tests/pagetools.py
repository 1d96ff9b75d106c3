"""What the page tests share: a server on a free port, pages in headless Chromium (Debian's, driven by Playwright)
on a desktop or a phone screen, waiting without eval (the page's CSP forbids it), screenshots, and the check that
nothing sticks out past the screen's edges. The `browser`, `page` and `screen` fixtures are in conftest.py."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time

import pytest

from conftest import DEMO, DEMO_CSV, ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "build" / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORTS = {"phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
             "desktop": {"viewport": {"width": 1280, "height": 900}}}
MEASURE = """sel => {
  const root = document.documentElement, right = root.clientWidth;
  const out = [...document.querySelectorAll(sel)].filter(e => e.getClientRects().length)
    .filter(e => e.getBoundingClientRect().left < -0.5 || e.getBoundingClientRect().right > right + 0.5)
    .map(e => `${e.id || e.className} (${Math.round(e.getBoundingClientRect().right)} px)`);
  return {innerWidth, page: root.scrollWidth, body: document.body.scrollWidth, out: out.slice(0, 8)};
}"""


def need_browser() -> None:
    """Skip the calling test module unless the test extra (Playwright), the serve extra (uvicorn) and Debian's
    Chromium are there."""
    pytest.importorskip("playwright.sync_api", reason="the test extra (playwright) drives the browser")
    pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) runs the server")
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(path):
    """`lookalike serve PATH` in a thread of this process; yields its URL."""
    import uvicorn

    from lookalike.serve.app import create_app

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


@contextlib.contextmanager
def serving_demo(tmp_path_factory, model: str = "default"):
    """The 200-photo demo catalog indexed with `model` and served; yields (URL, index)."""
    from lookalike import Index

    index = Index.build(DEMO, DEMO_CSV, out=tmp_path_factory.mktemp(f"serve-{model}") / "demo.idx", model=model)
    with serving(index.path) as url:
        yield url, index


def new_page(browser, screen="desktop"):
    """(context, page) on that screen; the page records console errors, page errors and the searches it sends."""
    ctx = browser.new_context(**VIEWPORTS[screen])
    pg = ctx.new_page()
    pg.width, pg.name = VIEWPORTS[screen]["viewport"]["width"], screen
    pg.console_errors, pg.page_errors, pg.searches = [], [], []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.page_errors.append(str(e)))
    pg.on("request", lambda r: pg.searches.append(r.url) if "/api/search" in r.url or "/similar" in r.url else None)
    return ctx, pg


def wait_until(page, expression, timeout=20):
    """page.wait_for_function, polled from here: Playwright's own runs the expression through eval in the page,
    which the page's Content-Security-Policy (no 'unsafe-eval') refuses."""
    deadline = time.time() + timeout
    while not page.evaluate(expression):
        assert time.time() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(50)


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait_until(page, "[...document.images].every(i => i.complete || i.getBoundingClientRect().top > innerHeight)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def assert_fits(page, state, reachable):
    """No horizontal scrolling and none of `reachable` cut off at either edge. A mobile browser zooms a too-wide page
    out, which makes innerWidth grow to the page's width: so innerWidth must also still be the screen's width."""
    m = page.evaluate(MEASURE, reachable)
    assert m["innerWidth"] == page.width, f"{page.name}, {state}: the page is {m['innerWidth']} px wide ({m})"
    assert m["page"] <= m["innerWidth"] and m["body"] <= m["innerWidth"], f"{page.name}, {state}: {m}"
    assert m["out"] == [], f"{page.name}, {state}: past the edge: {m['out']}"
