"""Index folders named with characters that mean something in a URI ('%41', '#', '?') are just names."""

import urllib.parse

import pytest

from conftest import DEMO
from lookalike import Index


@pytest.mark.parametrize("name", ["mix%41.idx", "a#b.idx", "what?.idx", "sp ace.idx"])
def test_an_index_path_with_uri_characters_reads_its_own_metadata(tmp_path, name):
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((DEMO / "hat").glob("*.jpg"))[:3]:
        shutil.copy(p, photos / p.name)
    other = tmp_path / "other"
    other.mkdir()
    for p in sorted((DEMO / "shoes").glob("*.jpg"))[:2]:
        shutil.copy(p, other / p.name)
    # the name as a URI would read it ('mixA.idx', 'a', 'what') holds another index, whose metadata it would open
    as_uri = urllib.parse.unquote(name).split("#")[0].split("?")[0]
    if as_uri != name:
        Index.build(other, out=tmp_path / as_uri, model="classic")
    Index.build(photos, out=tmp_path / name, model="classic")
    index = Index.load(tmp_path / name)
    assert sorted(index.ids) == sorted(p.stem for p in photos.glob("*.jpg"))
    assert index.get(index.ids[0]).id == index.ids[0]


def test_columns_that_differ_only_in_case_are_refused_before_any_work(tmp_path):
    from lookalike.errors import LookalikeError

    photos = sorted((DEMO / "hat").glob("*.jpg"))[:2]
    header = "id,gender,Gender,Row"
    (tmp_path / "m.csv").write_text(header + "\n" + "\n".join(f"{p.stem},Men,Women,1" for p in photos) + "\n")
    with pytest.raises(LookalikeError, match="differ only in case: 'gender' and 'Gender'"):
        Index.build(DEMO / "hat", tmp_path / "m.csv", out=tmp_path / "x.idx", model="classic")
    assert not (tmp_path / "x.idx").exists()
    # 'Row' and 'ID' are the index's own columns in another case: stored with a suffix, not a crash
    (tmp_path / "ok.csv").write_text("id,Row,SHA1\n" + "\n".join(f"{p.stem},1,x" for p in photos) + "\n")
    index = Index.build(DEMO / "hat", tmp_path / "ok.csv", out=tmp_path / "ok.idx", model="classic")
    assert {"Row_meta", "SHA1_meta"} <= set(index.columns)
    # adding a column that only differs in case from one the index has
    (tmp_path / "add.csv").write_text("id,ROW_META\n" + f"{photos[0].stem},2\n")
    with pytest.raises(LookalikeError, match="differ only in case"):
        index.add(DEMO / "hat", tmp_path / "add.csv", replace=True)


def test_two_thousand_columns_are_refused_with_one_short_line(tmp_path):
    from lookalike.errors import LookalikeError

    photo = sorted((DEMO / "hat").glob("*.jpg"))[0]
    names = [f"c{i}" for i in range(2500)]
    (tmp_path / "wide.csv").write_text("id," + ",".join(names) + "\n" + photo.stem + "," + ",".join("x" * len(names)) + "\n")
    with pytest.raises(LookalikeError) as info:
        Index.build(DEMO / "hat", tmp_path / "wide.csv", out=tmp_path / "x.idx", model="classic")
    assert "2,500 columns" in str(info.value) and len(str(info.value)) < 200


def test_writing_through_a_symlinked_index_updates_its_target(tmp_path):
    photos = sorted((DEMO / "hat").glob("*.jpg"))
    v1 = tmp_path / "catalog-v1.idx"
    Index.build(DEMO / "hat", out=v1, model="classic")
    link = tmp_path / "current.idx"
    link.symlink_to(v1.name)
    index = Index.load(link)
    assert index.remove([photos[0].stem]) == 1
    assert link.is_symlink() and Index.load(v1).ids == Index.load(link).ids and len(Index.load(v1)) == len(photos) - 1
    assert not list(tmp_path.glob(".current.idx.*")) and not list(tmp_path.glob(".catalog-v1.idx.old-*"))
