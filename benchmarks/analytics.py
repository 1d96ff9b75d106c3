"""Catalog analytics and batch outputs on the 35k shared catalog (issue 6): time of `report` (with and
without near-duplicate groups) and of `recommend-all` (k=10; whole catalog, and within subCategory+gender),
with output sizes. Baseline: the seeds' way of "similar items for every product", scikit-learn
NearestNeighbors brute on the same vectors. Run after benchmarks/core.py (uses its index):
    python benchmarks/analytics.py
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from common import CACHE, FPI, catalog_images, save
from lookalike import Index
from lookalike.recommend import recommend_all
from lookalike.report import build_report


def main() -> None:
    index = Index.load(CACHE / "fpi-default-flat.idx")
    out = CACHE / "analytics"
    out.mkdir(exist_ok=True)
    res = {"products": len(index), "model": index.manifest["model"]["id"]}
    s = build_report(catalog_images(), FPI / "styles.csv", out=out / "report.html", index=index)
    res["report"] = {"seconds": round(s.seconds, 1), "megabytes": round(s.path.stat().st_size / 1e6, 2),
                     "unreadable": s.unreadable, "greyscale": s.greyscale, "near_duplicate_groups": s.duplicate_groups,
                     "rows_without_image": s.rows_without_image}
    r = recommend_all(index, out / "similar.parquet", k=10)
    res["recommend_all"] = {"seconds": round(r.seconds, 1), "rows": r.rows,
                            "megabytes": round(r.path.stat().st_size / 1e6, 2)}
    r = recommend_all(index, out / "similar-same.parquet", k=10, same=["subCategory", "gender"])
    res["recommend_all_same_subcategory_gender"] = {"seconds": round(r.seconds, 1), "rows": r.rows, "groups": r.groups}
    from sklearn.neighbors import NearestNeighbors

    vectors = index.vectors()
    start = time.perf_counter()
    NearestNeighbors(n_neighbors=11, algorithm="brute").fit(vectors).kneighbors(vectors)
    res["sklearn_brute_all_seconds"] = round(time.perf_counter() - start, 1)
    save("analytics", res)
    t = Table(title=f"analytics on {len(index):,} products ({res['model']})")
    for c in ("job", "time", "output", "baseline"):
        t.add_column(c)
    rep = res["report"]
    t.add_row("report (with near-duplicates)", f"{rep['seconds']} s", f"{rep['megabytes']} MB HTML; {rep['greyscale']} greyscale, "
              f"{rep['near_duplicate_groups']} duplicate groups, {rep['rows_without_image']} rows without photo", "")
    ra = res["recommend_all"]
    t.add_row("recommend-all k=10", f"{ra['seconds']} s", f"{ra['rows']:,} rows, {ra['megabytes']} MB Parquet",
              f"sklearn brute kneighbors: {res['sklearn_brute_all_seconds']} s (in memory, no output)")
    rs = res["recommend_all_same_subcategory_gender"]
    t.add_row("recommend-all k=10 --same subCategory --same gender", f"{rs['seconds']} s", f"{rs['rows']:,} rows, {rs['groups']} groups", "")
    Console().print(t)


if __name__ == "__main__":
    main()
