"""The `lookalike` command as a user runs it: exit codes, JSON, pictures, and errors without tracebacks."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO, DEMO_CSV, run_cli
from tests_models_helper import tiny_onnx_file

run = run_cli


@pytest.fixture
def idx(tmp_path):
    out = tmp_path / "demo.idx"
    result = run("index", DEMO, "--metadata", DEMO_CSV, "--out", out, "--model", "classic")
    assert "indexed" in result.output and "200" in result.output
    return out


def test_search_by_id_json_and_grid(idx, tmp_path):
    from lookalike import Index

    pid = Index.load(idx).ids[0]
    result = run("search", idx, "--id", pid, "-k", "4", "--json", "--where", "class=shoes,hat", "--grid", tmp_path / "g.png")
    payload = json.loads(result.stdout)
    assert len(payload["results"]) == 4 and pid not in [r["id"] for r in payload["results"]]
    assert {r["class"] for r in payload["results"]} <= {"shoes", "hat"}
    grid = Image.open(tmp_path / "g.png")
    assert grid.width > 4 * 160 and grid.height > 200


def test_search_by_photo_table(idx):
    photo = sorted((DEMO / "skirt").glob("*.jpg"))[0]
    result = run("search", idx, photo, "-k", "3")
    assert photo.stem in result.stdout and "skirt" in result.stdout


def test_search_same_class_as_a_photo(idx):
    photo = sorted((DEMO / "skirt").glob("*.jpg"))[0]
    payload = json.loads(run("search", idx, photo, "-k", "30", "--same", "class", "--json").stdout)
    assert len(payload["results"]) == 20 and {r["class"] for r in payload["results"]} == {"skirt"}


def test_add_remove_info(idx, tmp_path):
    extra = tmp_path / "new"
    extra.mkdir()
    Image.new("RGB", (60, 80), (20, 200, 20)).save(extra / "green-1.png")
    (extra / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = run("add", idx, extra)
    assert "added" in result.output and "broken" in result.output
    info = json.loads(run("info", idx, "--json", "--verify").stdout)
    assert info["products"] == 201
    run("remove", idx, "green-1")
    assert json.loads(run("info", idx, "--json").stdout)["products"] == 200
    assert "not in the index" in run("remove", idx, "green-1", code=2).output


def test_embed_writes_vectors_and_ids(tmp_path):
    (tmp_path / "bad.jpg").write_text("x")
    out = tmp_path / "v" / "vectors.npy"
    result = run("embed", DEMO / "hat", tmp_path / "bad.jpg", "--out", out, "--model", "classic")
    vectors = np.load(out)
    ids = (tmp_path / "v" / "vectors.ids.txt").read_text().split()
    assert vectors.shape[0] == len(ids) == 20 and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert "1 skipped" in result.output


def test_evaluate(idx):
    rows = json.loads(run("evaluate", idx, "--field", "class", "--json").stdout)
    assert rows[0]["queries"] == 200 and 0.1 < rows[0]["P@10"] <= 1


def test_model_import_and_list(tmp_path):
    onnx_file = tiny_onnx_file(tmp_path / "t.onnx")
    result = run("model", "import", onnx_file, "--name", "tiny", "--size", "32", "--output", "features")
    assert "registered" in result.output
    assert "tiny@" in run("model", "list").stdout
    run("embed", DEMO / "hat", "--out", tmp_path / "v.npy", "--model", "tiny")
    assert np.load(tmp_path / "v.npy").shape == (20, 8)
    assert "classic" in run("model", "card", "classic").stdout
    # --flip: the same network reads each photo and its mirror, so a mirrored photo gives the same vector
    run("model", "import", onnx_file, "--name", "tiny-flip", "--size", "32", "--output", "features", "--flip")
    from PIL import ImageOps

    from lookalike import Embedder

    photo = Image.open(sorted((DEMO / "hat").iterdir())[0]).convert("RGB")
    mirror = ImageOps.mirror(photo)
    plain, flipped = Embedder.load("tiny"), Embedder.load("tiny-flip")
    assert plain.id != flipped.id
    assert np.abs(flipped.encode(photo) - flipped.encode(mirror)).max() < 1e-5
    assert np.abs(plain.encode(photo) - plain.encode(mirror)).max() > 1e-3
    # --background whiten: a plain coloured background is painted white before the model looks
    run("model", "import", onnx_file, "--name", "tiny-white", "--size", "32", "--output", "features", "--background", "whiten")
    white = Embedder.load("tiny-white")
    assert white.manifest.input.background == "whiten" and white.id != plain.id
    sheet = Image.new("RGB", (96, 120), (178, 34, 52))
    sheet.paste(photo.resize((48, 60)), (24, 30))
    assert float(white.encode(sheet) @ white.encode(photo)) > float(plain.encode(sheet) @ plain.encode(photo))


@pytest.mark.parametrize("args,message", [
    (["search", "{idx}", "--id", "nope"], "neither a product id"),
    (["search", "{idx}"], "give a query photo, --id PRODUCT_ID or --text"),
    (["search", "{idx}", "--id", "x", "--where", "class"], "bad filter"),
    (["search", "{idx}", "--id", "x", "--agree", "colour"], "cannot re-rank by 'colour'"),
    (["search", "{idx}", "--id", "x", "--same", "colour"], "cannot keep the same 'colour'"),
    (["search", "{tmp}/missing.idx", "--id", "x"], "no such index"),
    (["search", "{idx}", "{tmp}/missing.jpg"], "no such file"),
    (["index", "{tmp}/nowhere", "--out", "{tmp}/o.idx"], "not a folder"),
    (["index", str(DEMO), "--out", "{idx}", "--model", "classic"], "already exists"),
    (["index", str(DEMO), "--out", "{tmp}/o.idx", "--model", "nope"], "unknown model"),
])
def test_user_errors_exit_2_with_a_message(idx, tmp_path, args, message):
    args = [a.format(idx=idx, tmp=tmp_path) for a in args]
    result = run(*args, code=2)
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize("option,value", [("--blocks", "1,2"), ("--blocks", "1,1,0,2"), ("--blocks", "one"),
                                          ("--widths", "32,64,128"), ("--widths", "32,64,4,256")])
def test_train_refuses_a_malformed_depth_or_width(tmp_path, option, value):
    result = run("train", DEMO, "--out", tmp_path / "m", option, value, code=2)
    assert option in result.output and not (tmp_path / "m").exists()


def flat(result) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.mark.parametrize("command", ["classify", "categories"])
def test_classify_names_a_path_that_does_not_exist_or_holds_no_readable_photo(tmp_path, command):
    # the default model (with heads): the classic one would fail for having none, whatever the path
    assert "no/such/dir: no such file or folder" in flat(run(command, "no/such/dir", code=2))
    (tmp_path / "empty").mkdir()
    assert "no photos in" in flat(run(command, tmp_path / "empty", code=2))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"not a photo")
    assert "none of the 1 photo(s) could be read" in flat(run(command, tmp_path / "bad", code=2))


def test_add_a_sub_folder_with_the_whole_catalogs_metadata(tmp_path):
    out = tmp_path / "i.idx"
    run("index", DEMO / "hat", "--metadata", DEMO_CSV, "--out", out, "--model", "classic")
    result = run("add", out, DEMO / "dress", "--metadata", DEMO_CSV)
    assert "added 20" in flat(result) and "without a metadata row" not in flat(result)
    info = json.loads(run("info", out, "--json").stdout)
    assert info["products"] == 40 and dict(info["facets"]["class"]) == {"dress": 20, "hat": 20}
    again = flat(run("add", out, DEMO / "dress", "--metadata", DEMO_CSV, code=2))
    assert "nothing added: all 20 products are already in the index" in again
    (tmp_path / "empty").mkdir()
    assert "nothing added: no photos found in" in flat(run("add", out, tmp_path / "empty", code=2))


@pytest.mark.parametrize("target", ["photos", "other"])
def test_index_refuses_a_target_that_is_not_an_index_before_any_work(demo_copy, target, monkeypatch):
    import lookalike.index.index as ix

    monkeypatch.setattr(ix, "embed_batch", lambda *a, **k: pytest.fail("embedded before refusing"))
    out = demo_copy if target == "photos" else demo_copy.parent / "other"
    if target == "other":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    result = flat(run("index", demo_copy, "--out", out, "--model", "classic", "--overwrite", code=2))
    assert ("the photo folder itself" if target == "photos" else "is not a lookalike index") in result
    assert not list(demo_copy.parent.glob(".*.lock"))


def test_recommend_all_refuses_a_format_it_does_not_write(idx, tmp_path):
    assert "a .parquet or .csv file (not .xlsx)" in flat(run("recommend-all", idx, "--out", tmp_path / "x.xlsx",
                                                             code=2))
    assert not (tmp_path / "x.xlsx").exists()
    run("recommend-all", idx, "--out", tmp_path / "x.csv", "-k", "2")
    assert (tmp_path / "x.csv").read_text().splitlines()[0] == "id,rank,neighbour_id,score"


def test_version_and_help_without_type_tags():
    from importlib.metadata import version

    assert run("--version").stdout.strip() == f"lookalike {version('lookalike')}"
    for command in (["search"], ["index"], ["model", "import"]):
        page = run(*command, "--help").output
        assert "<bool>" not in page and "<path>" not in page and "<str>" not in page and "{INDEX}" not in page
        assert "--help" in page


def test_summary_lists_unread_files_and_photos_indexed_without_labels(demo_copy, tmp_path):
    (demo_copy / "vector.svg").write_text("<svg/>")
    (demo_copy / "hat" / "notes.txt").write_text("x")
    (demo_copy / ".hidden").write_text("x")
    hats = sorted(p.stem for p in (demo_copy / "hat").glob("*.jpg"))
    ids = [p.stem for p in sorted(demo_copy.glob("*/*.jpg")) if p.stem not in hats]
    (demo_copy / "meta.csv").write_text("id,class\n" + "".join(f"{i},x\n" for i in ids))
    out = flat(run("index", demo_copy, "--metadata", demo_copy / "meta.csv", "--out", tmp_path / "i.idx",
                   "--model", "classic"))
    assert "indexed 12" in out
    assert "4 photos without a metadata row, indexed without labels" in out
    assert "skipped 2 files of a type lookalike does not read: vector.svg, hat/notes.txt" in out
    assert ".hidden" not in out and "meta.csv" not in out
    extra = tmp_path / "new"
    extra.mkdir()
    Image.new("RGB", (60, 80), (20, 200, 20)).save(extra / "green-1.png")
    (extra / "logo.svg").write_text("<svg/>")
    assert "skipped 1 file of a type lookalike does not read: logo.svg" in flat(run("add", tmp_path / "i.idx", extra))


def test_a_missing_id_column_names_the_option(tmp_path, demo_copy):
    (tmp_path / "meta.csv").write_text("ref,colour\na,b\n")
    result = flat(run("index", demo_copy, "--metadata", tmp_path / "meta.csv", "--out", tmp_path / "i.idx",
                      "--model", "classic", code=2))
    assert "no id column in" in result and "name it with --id-column" in result


def test_an_error_naming_brackets_prints_them(tmp_path):
    """Rich markup must not eat '[train]' or a file name with brackets from an error message."""
    missing = tmp_path / "photos[1]"
    result = run("classify", missing, code=2)
    assert "photos[1]" in flat(result)
