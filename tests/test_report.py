"""The catalog report on a fixture with planted faults lists each of them, and renders in Chromium."""

import shutil

import pytest
from PIL import Image

from conftest import DEMO, ROOT
from lookalike import Index
from lookalike.report import build_report


@pytest.fixture
def faulty(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    sources = sorted(DEMO.glob("*/*.jpg"))[::20][:8]
    for i, src in enumerate(sources):
        shutil.copy(src, photos / f"p{i}.jpg")
    shutil.copy(sources[0], photos / "dup-of-p0.jpg")                       # duplicate photo
    Image.open(sources[1]).convert("L").convert("RGB").save(photos / "grey.jpg")  # greyscale saved as RGB
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # corrupt file
    shutil.copy(sources[2], photos / "orphan.jpg")                           # photo without a row
    rows = ["id,name,colour,size"] + [f"p{i},Shirt number {i},{'red' if i % 2 else ''},M" for i in range(8)]
    rows += ["dup-of-p0,Shirt copy,red,M", "grey,Grey shirt,grey,L", "broken,Broken,blue,S", "ghost,Missing photo,red,M"]
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    return photos, tmp_path / "meta.csv"


def test_report_lists_every_planted_fault(faulty, tmp_path):
    photos, meta = faulty
    index = Index.build(photos, meta, out=tmp_path / "f.idx", model="classic")
    summary = build_report(photos, meta, out=tmp_path / "report.html", index=index)
    html = (tmp_path / "report.html").read_text()
    assert summary.rows_without_image == 1 and "ghost" in html
    assert summary.images_without_row == 1 and "orphan" in html
    assert summary.unreadable == 1 and "broken: " in html and "cannot decode" in html
    assert summary.greyscale == 1 and "alt='grey'" in html
    assert summary.duplicate_groups >= 1 and "alt='dup-of-p0'" in html
    assert "colour" in html and "missing" in html  # empty fields counted per column
    assert "Shirt" in html                          # the word cloud of names
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # self-contained, offline


def test_report_renders_in_chromium_without_errors(faulty, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra (playwright) drives the browser")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium (.ci/run installs it)")
    photos, meta = faulty
    build_report(photos, meta, out=tmp_path / "report.html")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 390, "height": 1400})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto((tmp_path / "report.html").as_uri())
        assert page.locator("section").count() >= 5
        (ROOT / "build" / "test-artifacts").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ROOT / "build" / "test-artifacts" / "report-phone.png"), full_page=True)
        browser.close()
    assert errors == []
