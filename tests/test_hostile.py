"""What a fault probe threw at the CLI and the library: hostile paths, files and permissions. Each must end in one
line naming the problem and exit code 2, never a traceback, or be read with the problem listed in the summary."""

from __future__ import annotations

import codecs
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from conftest import DEMO, DEMO_CSV, run_cli
from lookalike import Index
from lookalike.catalog import Catalog
from lookalike.errors import IndexStoreError

run = run_cli


def said(result) -> str:
    """A command's output with rich's wrapping undone (the summary's notes wrap at the console's width)."""
    return " ".join(result.output.split())


def error_line(*args) -> str:
    """The one line a failing command prints (exit code 2)."""
    lines = run(*args, code=2).output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def index_demo(*args, code=0):
    return run("index", DEMO, "--model", "classic", *args, code=code)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A demo index, copied by the tests that damage it."""
    out = tmp_path_factory.mktemp("built") / "demo.idx"
    Index.build(DEMO, DEMO_CSV, out=out, model="classic")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_write_access(monkeypatch, folder: Path) -> None:
    """Make `folder` read-only. Root writes anyway, so then os.access (what lookalike asks) says no for it
    (undone with `monkeypatch`)."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: False if Path(path) == folder and
                            mode & os.W_OK else real(path, mode, *a, **k))


# ---- where an index is written ------------------------------------------------------------------------------
def test_index_out_below_a_regular_file(tmp_path):
    (tmp_path / "somefile.txt").write_text("notes")
    line = error_line("index", DEMO, "--model", "classic", "--out", tmp_path / "somefile.txt" / "x.idx")
    assert f"{tmp_path / 'somefile.txt'} is a file, not a folder" in line
    line = error_line("index", DEMO, "--model", "classic", "--out", tmp_path / "somefile.txt" / "a" / "x.idx")
    assert "somefile.txt is a file, not a folder" in line


def test_index_out_in_a_read_only_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    try:
        no_write_access(monkeypatch, folder)
        line = error_line("index", DEMO, "--model", "classic", "--out", folder / "x.idx")
        assert f"cannot write {folder / 'x.idx'}: the folder {folder} is read-only" in line
        assert not list(folder.iterdir())      # refused before any work: not even a lock file
    finally:
        folder.chmod(0o755)


def test_a_write_failing_midway_is_one_line(tmp_path, monkeypatch):
    """A folder made read-only (or a disk filled) after the checks: the writer's own steps fail in one line."""
    import lookalike.index.store as store

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store.tempfile, "mkdtemp", refuse)
    with pytest.raises(IndexStoreError, match=r"^cannot write .*x\.idx: Permission denied$"):
        Index.build(DEMO / "hat", out=tmp_path / "x.idx", model="classic")


def test_a_reader_without_write_access_reads_a_stranded_version(built, tmp_path, monkeypatch):
    """A writer crashed between the two renames of a swap: the index is only in `.x.idx.old-*`. A reader that
    may not write the folder cannot rename it back, and reads it there instead of saying "no such index"."""
    folder = tmp_path / "shop"
    folder.mkdir()
    shutil.copytree(built, folder / ".x.idx.old-1234-abcd")
    try:
        with monkeypatch.context() as patch:
            no_write_access(patch, folder)
            index = Index.load(folder / "x.idx")
            assert len(index) == 200 and index.search(index.ids[0], k=3)
            assert not (folder / "x.idx").exists()       # nothing was renamed: the reader may not
            assert "products 200" in said(run("info", folder / "x.idx"))
    finally:
        folder.chmod(0o755)
    assert len(Index.load(folder / "x.idx")) == 200 and (folder / "x.idx").is_dir()   # a writer's load recovers


# ---- damaged indexes ----------------------------------------------------------------------------------------
def damaged(built: Path, tmp_path: Path, damage) -> Path:
    copy = tmp_path / "damaged.idx"
    shutil.copytree(built, copy)
    damage(copy)
    return copy


def files_five(folder: Path) -> None:
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = 5
    (folder / "manifest.json").write_text(json.dumps(manifest))


def overwrite(offset: int):
    def damage(folder: Path) -> None:
        with open(folder / "metadata.sqlite", "r+b") as fh:
            fh.seek(offset)
            fh.write(b"\xff" * 300)
    return damage


@pytest.mark.parametrize("damage,message", [(files_five, "its list of files is damaged"),
                                            (overwrite(0), "metadata.sqlite: file is not a database"),
                                            (overwrite(4096), "metadata.sqlite: database disk image is malformed")])
def test_a_damaged_index_is_one_line(built, tmp_path, damage, message):
    idx = damaged(built, tmp_path, damage)
    pid = Index.load(built).ids[0]
    for args in (("info", idx), ("search", idx, "--id", pid), ("serve", idx, "--port", free_port())):
        assert message in error_line(*args)


def test_serve_with_a_missing_api_key_file(built, tmp_path):
    line = error_line("serve", built, "--port", free_port(), "--api-key-file", tmp_path / "nope.txt")
    assert line == f"error: {tmp_path / 'nope.txt'}: no such API key file"


# ---- metadata files -----------------------------------------------------------------------------------------
def test_a_csv_cell_over_the_csv_field_limit(tmp_path):
    lines = DEMO_CSV.read_text().splitlines()
    pid, cls, image = lines[2].split(",")
    lines[2] = ",".join([pid, cls + "x" * 140_000, image])
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    result = index_demo("--metadata", tmp_path / "long.csv", "--out", tmp_path / "x.idx")
    assert "1 malformed metadata rows (skipped): line 3: a field over 131,072 characters (an unclosed quote?)" \
        in said(result)
    index = Index.load(tmp_path / "x.idx")
    assert len(index) == 200 and index.get(pid).metadata == {"class": None}    # the photo, without its row
    assert index.get(lines[3].split(",")[0]).metadata["class"] == lines[3].split(",")[1]   # the next row read


def test_a_utf16_csv_or_a_photo_as_metadata(tmp_path):
    (tmp_path / "u16.csv").write_bytes(codecs.BOM_UTF16_LE + DEMO_CSV.read_text().encode("utf-16-le"))
    line = error_line("index", DEMO, "--metadata", tmp_path / "u16.csv", "--out", tmp_path / "x.idx")
    assert line == f"error: {tmp_path / 'u16.csv'} is not a UTF-8 CSV (looks like UTF-16): save it as CSV UTF-8"
    (tmp_path / "nobom.csv").write_bytes(DEMO_CSV.read_text().encode("utf-16-be"))
    assert "(looks like UTF-16)" in error_line("index", DEMO, "--metadata", tmp_path / "nobom.csv", "--out",
                                               tmp_path / "x.idx")
    jpeg = sorted((DEMO / "hat").glob("*.jpg"))[0]
    line = error_line("index", DEMO, "--metadata", jpeg, "--out", tmp_path / "x.idx")
    assert f"{jpeg} is not a UTF-8 CSV (looks like binary" in line and line.isprintable()
    (tmp_path / "latin.csv").write_bytes("id,name\n1,Café\n".encode("cp1252"))
    assert "is not a UTF-8 CSV (looks like text in another encoding: byte 0xe9" in error_line(
        "index", DEMO, "--metadata", tmp_path / "latin.csv", "--out", tmp_path / "x.idx")
    assert not (tmp_path / "x.idx").exists()


def test_a_csv_of_a_million_columns_gives_a_short_error(tmp_path):
    (tmp_path / "wide.csv").write_text(",".join(f"c{i}" for i in range(1_000_000)) + "\n")
    for more in ((), ("--id-column", "sku")):
        line = error_line("index", DEMO, "--metadata", tmp_path / "wide.csv", "--out", tmp_path / "x.idx", *more)
        assert len(line) < 400 and line.endswith("c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ... (1,000,000 in all)")


# ---- photo folders ------------------------------------------------------------------------------------------
def test_an_unreadable_sub_folder_is_listed(demo_copy, tmp_path, monkeypatch):
    hat = demo_copy / "hat"
    hat.chmod(0)
    try:
        if os.access(hat, os.R_OK):     # root reads it anyway: make listing it fail as it would for a user
            real = os.scandir

            def scandir(path="."):
                if Path(path) == hat:
                    raise PermissionError(13, "Permission denied", os.fspath(path))
                return real(path)

            monkeypatch.setattr(os, "scandir", scandir)
        catalog = Catalog.read(demo_copy)
        assert len(catalog) == 8 and catalog.problems.unreadable_folders == ["hat"]
        assert "skipped 1 folder that cannot be read: hat" in catalog.problems.lines()
        result = run("index", demo_copy, "--model", "classic", "--out", tmp_path / "x.idx")
        assert "skipped 1 folder that cannot be read: hat" in said(result)
    finally:
        hat.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
