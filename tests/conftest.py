"""Shared fixtures: the committed demo catalog, odd images made on the fly, and the shared data sets
(tests that need ../shared skip with a clear message when it is absent)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "catalog"
DEMO_CSV = ROOT / "examples" / "catalog.csv"
SHARED = ROOT.parent / "shared"
FPI = SHARED / "data" / "fashion-product-images"
CCP = SHARED / "data" / "clothing-co-parsing"


def need_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data beside the project, which CI always has)")
    return path


def extract_ccp(out: Path, numbers) -> Path:
    """CCP photos and masks of the given numbers, as out/photos/NNNN.jpg and out/masks/NNNN.png."""
    need_shared(CCP / "ccp.tar.gz")
    wanted = {f"photos/{n:04d}.jpg" for n in numbers} | {f"masks/{n:04d}.png" for n in numbers}
    with tarfile.open(CCP / "ccp.tar.gz") as tar:
        for member in tar:
            if member.name in wanted:
                (out / member.name).parent.mkdir(parents=True, exist_ok=True)
                (out / member.name).write_bytes(tar.extractfile(member).read())
    return out


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Registered models go to a temporary home, never the user's."""
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path_factory.getbasetemp() / "home"))


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory):
    from lookalike import Index

    return Index.build(DEMO, DEMO_CSV, out=tmp_path_factory.mktemp("idx") / "demo.idx", model="classic")


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    """A writable copy of a few demo photos: 3 classes x 4 photos."""
    out = tmp_path / "photos"
    for cls in ("dress", "shoes", "hat"):
        (out / cls).mkdir(parents=True)
        for photo in sorted((DEMO / cls).glob("*.jpg"))[:4]:
            shutil.copy(photo, out / cls / photo.name)
    return out


@pytest.fixture(scope="session")
def fpi_sample(tmp_path_factory):
    """1,500 catalog products (photos and styles.csv rows) from the shared Kaggle set."""
    need_shared(FPI / "images.tar.gz")
    out = tmp_path_factory.mktemp("fpi")
    lines = (FPI / "styles.csv").read_text(encoding="utf-8").splitlines()
    wanted = {}
    with tarfile.open(FPI / "images.tar.gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                wanted[Path(member.name).stem] = member
            if len(wanted) >= 1500:
                break
        (out / "images").mkdir()
        for pid, member in wanted.items():
            (out / "images" / f"{pid}.jpg").write_bytes(tar.extractfile(member).read())
    rows = [lines[0]] + [l for l in lines[1:] if l.split(",", 1)[0] in wanted]
    (out / "styles.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium with its own fresh profile (the page tests skip without playwright or chromium)."""
    from pagetools import CHROMIUM, FLAGS
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page on a desktop screen (1280 px)."""
    from pagetools import new_page

    ctx, pg = new_page(browser)
    yield pg
    ctx.close()


@pytest.fixture(params=["phone", "desktop"])
def screen(browser, request):
    """A page on a phone (390 px, mobile) or a desktop (1280 px) screen; `page.width` is the screen's width."""
    from pagetools import new_page

    ctx, pg = new_page(browser, request.param)
    yield pg
    ctx.close()


def run_cli(*args, code=0):
    """`lookalike ARGS` in-process: the exit code must be `code` and no traceback may show."""
    from typer.testing import CliRunner

    from lookalike.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result
