"""recommend-all: every product's neighbours, in agreement with single searches."""

import csv

import pytest

from lookalike.recommend import recommend_all


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("agree", [False, ["class"]])
def test_agrees_with_single_searches(demo_index, tmp_path, agree):
    report = recommend_all(demo_index, tmp_path / "sim.csv", k=5, batch=37, agree=agree)
    rows = read_csv(tmp_path / "sim.csv")
    assert report.products == 200 and report.rows == len(rows) == 1000
    by_id = {}
    for r in rows:
        by_id.setdefault(r["id"], []).append(r)
    for pid in demo_index.ids[::17]:
        expected = demo_index.search(pid, k=5, agree=agree)
        got = sorted(by_id[pid], key=lambda r: int(r["rank"]))
        assert [r["neighbour_id"] for r in got] == [e.id for e in expected]
        assert [float(r["score"]) for r in got] == pytest.approx([e.score for e in expected], abs=1e-5)


def test_same_column_and_filters(demo_index, tmp_path):
    recommend_all(demo_index, tmp_path / "same.csv", k=3, same=["class"], where={"class": ["hat", "shoes"]})
    rows = read_csv(tmp_path / "same.csv")
    cls = dict(zip(demo_index.ids, demo_index.meta.column("class")))
    assert len(rows) == 40 * 3
    assert all(cls[r["id"]] == cls[r["neighbour_id"]] and cls[r["id"]] in ("hat", "shoes") for r in rows)
    assert all(r["id"] != r["neighbour_id"] for r in rows)


def test_parquet_output(demo_index, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet output needs the export extra (pyarrow)")
    recommend_all(demo_index, tmp_path / "sim.parquet", k=2)
    table = pq.read_table(tmp_path / "sim.parquet")
    assert table.num_rows == 400 and table.column_names == ["id", "rank", "neighbour_id", "score"]
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("name,fmt,message", [("sim.xlsx", None, "a .parquet or .csv file"),
                                              ("sim", None, "without an ending"),
                                              ("sim.parquet", "csv", "name it .csv")])
def test_a_file_name_it_cannot_write_is_refused_before_any_work(demo_index, tmp_path, name, fmt, message):
    from lookalike import LookalikeError

    with pytest.raises(LookalikeError, match=message):
        recommend_all(demo_index, tmp_path / name, k=2, fmt=fmt)
    assert not list(tmp_path.iterdir())
