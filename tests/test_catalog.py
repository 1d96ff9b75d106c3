"""Reading catalogs: Kaggle styles.csv, generic CSVs, and every kind of mismatch reported, never fatal."""

from pathlib import Path

import pytest
from PIL import Image

from conftest import DEMO, DEMO_CSV, FPI, need_shared
from lookalike import Catalog, CatalogError
from lookalike.catalog import CatalogProblems, read_metadata

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


def photo(path: Path, colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (60, 80), colour).save(path)
    return path


def test_kaggle_rows_with_unquoted_commas(tmp_path):
    csv = tmp_path / "styles.csv"
    csv.write_text("\n".join([HEADER,
                              "1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt",
                              "2,Women,Apparel,Topwear,Tops,Red,Summer,2012,Casual,Tops, Tees and More, Red",
                              "3,Men,Apparel,Topwear",
                              "1,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,duplicate of 1",
                              ""]))
    for pid in ("1", "2", "4"):
        photo(tmp_path / "images" / f"{pid}.jpg")
    cat = Catalog.read(tmp_path / "images", csv)
    by_id = {p.id: p for p in cat.products}
    assert by_id["2"].metadata["productDisplayName"] == "Tops, Tees and More, Red"
    assert by_id["2"].metadata["baseColour"] == "Red"
    assert by_id["1"].metadata["baseColour"] == "Navy Blue"  # the first of a duplicated id is kept
    assert any("line 4" in r for r in cat.problems.bad_rows)
    assert any(d.startswith("1 ") for d in cat.problems.duplicate_ids)
    assert cat.problems.images_without_row == ["4"] and "4" in by_id and by_id["4"].metadata == {}
    assert "id" not in cat.columns and cat.columns[0] == "gender"


def test_require_metadata_skips_orphan_photos(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("sku,colour\nA,red\nB,blue\n")
    photo(tmp_path / "p" / "A.png")
    photo(tmp_path / "p" / "Z.png")
    cat = Catalog.read(tmp_path / "p", csv, require_metadata=True)
    assert [p.id for p in cat.products] == ["A"]
    assert cat.problems.rows_without_image == ["B"] and cat.problems.images_without_row == ["Z"]


def test_generic_csv_with_image_column(tmp_path):
    photo(tmp_path / "shots" / "front-1.jpg")
    photo(tmp_path / "shots" / "other.jpg")
    csv = tmp_path / "products.csv"
    csv.write_text('product_id,name,image\nP1,"Dress, long",shots/front-1.jpg\nP2,Lost,shots/missing.jpg\n')
    cat = Catalog.read(None, csv)
    assert [(p.id, p.metadata["name"]) for p in cat.products] == [("P1", "Dress, long")]
    assert cat.problems.rows_without_image == ["P2"]
    assert "image" not in cat.columns


def test_a_sub_folder_with_the_whole_catalogs_csv_matches_its_photos_by_id():
    # the CSV's paths (dress/ID.jpg) are relative to examples/catalog, neither to the folder given nor to the CSV's
    cat = Catalog.read(DEMO / "dress", DEMO_CSV)
    assert len(cat.products) == 20 and {p.metadata["class"] for p in cat.products} == {"dress"}
    assert all(p.path.parent == DEMO / "dress" for p in cat.products)
    assert cat.problems.images_without_row == [] and len(cat.problems.rows_without_image) == 180


def test_files_of_other_types_are_listed_not_indexed(tmp_path):
    photo(tmp_path / "p" / "a.jpg")
    photo(tmp_path / "p" / "b" / "c.png")
    (tmp_path / "p" / "vector.svg").write_text("<svg/>")
    (tmp_path / "p" / "b" / "notes.txt").write_text("x")
    (tmp_path / "p" / ".DS_Store").write_bytes(b"x")                      # hidden: passed over
    (tmp_path / "p" / "meta.csv").write_text("id,colour\na,red\n")        # the metadata itself: passed over
    cat = Catalog.read(tmp_path / "p", tmp_path / "p" / "meta.csv")
    assert sorted(p.id for p in cat.products) == ["a", "c"]
    assert cat.problems.unread_files == ["vector.svg", "b/notes.txt"]
    assert "skipped 2 files of a type lookalike does not read: vector.svg, b/notes.txt" in cat.problems.lines()
    assert "1 photos without a metadata row, indexed without labels: c" in cat.problems.lines()


def test_duplicate_ids_in_folder(tmp_path):
    photo(tmp_path / "a" / "x.jpg")
    photo(tmp_path / "b" / "x.png")
    cat = Catalog.read(tmp_path, None)
    assert len(cat.products) == 1 and len(cat.problems.duplicate_ids) == 1


@pytest.mark.parametrize("content,message", [("", "empty"), ("name,colour\na,b\n", "no id column")])
def test_unusable_metadata(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(CatalogError, match=message):
        Catalog.read(None, tmp_path / "m.csv")


def test_a_missing_id_column_names_the_option(tmp_path):
    (tmp_path / "meta.csv").write_text("ref,colour\na,b\n")
    with pytest.raises(CatalogError, match=r"no id column in .*meta.csv \(looked for id, .*sku.*\); name it with "
                                           r"--id-column; its columns are ref, colour"):
        Catalog.read(None, tmp_path / "meta.csv")
    with pytest.raises(CatalogError, match="no id column 'code' in"):
        Catalog.read(None, tmp_path / "meta.csv", id_column="code")


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CatalogError, match="not a folder"):
        Catalog.read(tmp_path / "nope")


def test_shared_styles_csv_reads_every_row():
    csv = need_shared(FPI / "styles.csv")
    problems = CatalogProblems()
    columns, rows, image_col = read_metadata(csv, problems)
    assert len(rows) == 35600 and not problems.bad_rows and not problems.duplicate_ids and image_col is None
    with_commas = [r for r in rows.values() if "," in (r["productDisplayName"] or "")]
    assert len(with_commas) == 16
    assert all(r["usage"] in {None, "Casual", "Ethnic", "Formal", "Sports", "Smart Casual", "Travel", "Party",
                              "Home"} for r in rows.values())
