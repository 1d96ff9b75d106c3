"""Approximate search at 1,000,000 products (issue 28): `index --vectors DIR --index-type auto` (IVF-PQ, candidates
re-scored on the stored float16 vectors) against exact search over the same vectors, in one run.

The million is made from the 35k catalog's own vectors (the index benchmarks/core.py builds with the default
model): the 35,311 products themselves, then, for each further product, a random catalog product i and either
- a jittered copy: i's vector plus Gaussian noise of norm 0.35 (cosine about 0.94 to i), or
- a mixture: 0.3 to 0.7 of i's vector and the rest of another product of i's articleType, plus noise of norm 0.1,
renormalised; the copy carries i's metadata (articleType, baseColour, gender, subCategory), so filters and
agreement re-ranking see a catalog's label mix. Written as Parquet shards and indexed from them, as a shop would.

Measured: build time (reading the shards, training, adding, writing), bytes a product on disk for vectors and
index, recall@10 of search by id (plain similarity order) against exact search, p50/p95 latency by id (plain and
re-ranked as users get it), filters (every result passes; recall on a narrow and a wide filter). Queries: 1,000
random products; the first 500 chose NPROBE and CANDIDATES, the last 500 only measure (reported).

    python benchmarks/ann.py [--products 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from common import CACHE, percentiles, save
from lookalike import Index
from lookalike.catalog import Product
from lookalike.index import ann
from lookalike.vectors import write_shard

console = Console()
COLUMNS = ["articleType", "baseColour", "gender", "subCategory"]
SHARD = 100_000


def source(path) -> Index:
    if not path.exists():
        raise SystemExit(f"needs {path}: run benchmarks/core.py first (it indexes the 35k catalog)")
    return Index.load(path)


def synthesize(base: Index, n: int, out, seed: int = 0) -> np.ndarray:
    """Write n products as Parquet shards in `out`; returns their float32 vectors."""
    rng = np.random.default_rng(seed)
    v = base.vectors()
    meta = base.meta.records(range(len(base)))
    labels = [{c: meta[r].get(c) for c in COLUMNS} for r in range(len(base))]
    by_type: dict = {}
    for r, lab in enumerate(labels):
        by_type.setdefault(lab["articleType"], []).append(r)
    src = np.concatenate([np.arange(len(base)), rng.integers(0, len(base), n - len(base))])
    x = v[src].copy()
    extra = np.arange(len(base), n)
    mix = extra[rng.random(len(extra)) < 0.5]
    jitter = np.setdiff1d(extra, mix)
    d = v.shape[1]
    x[jitter] += 0.35 * rng.standard_normal((len(jitter), d)).astype(np.float32) / np.sqrt(d)
    partners = np.array([rng.choice(by_type[labels[s]["articleType"]]) for s in src[mix]])
    alpha = rng.uniform(0.3, 0.7, (len(mix), 1)).astype(np.float32)
    x[mix] = alpha * v[src[mix]] + (1 - alpha) * v[partners] + \
        0.1 * rng.standard_normal((len(mix), d)).astype(np.float32) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    model = base.manifest["model"]
    for number, start in enumerate(range(0, n, SHARD)):
        rows = range(start, min(n, start + SHARD))
        products = [Product(f"s{r}", None, labels[src[r]]) for r in rows]
        write_shard(out, number, model, COLUMNS, products, [None] * len(products), x[start:start + len(products)])
    return x


def exact(x: np.ndarray, rows: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[set[int]]:
    out = []
    pool = x if allowed is None else x[allowed]
    for r in rows:
        sims = pool @ x[r]
        top = np.argpartition(-sims, k + 1)[:k + 1]
        found = top if allowed is None else allowed[top]
        order = found[np.argsort(-sims[top])]
        out.append({int(i) for i in [j for j in order if j != r][:k]})
    return out


def recall(index: Index, x: np.ndarray, rows: np.ndarray, k: int = 10, where=None, allowed=None) -> float:
    truth = exact(x, rows, k, allowed)
    got = [{index.row(r.id) for r in index.search(index.ids[q], k=k, agree=False, where=where)} for q in rows]
    return float(np.mean([len(t & g) / k for t, g in zip(truth, got)]))


def latency(index: Index, rows: np.ndarray, **kw) -> dict:
    times = []
    for q in rows:
        pid = index.ids[q]
        start = time.perf_counter()
        index.search(pid, k=10, **kw)
        times.append(time.perf_counter() - start)
    return percentiles(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=1_000_000)
    ap.add_argument("--index-type", default="auto", help="auto (ivf from 200,000 products) or ivf")
    ap.add_argument("--source", type=Path, default=CACHE / "fpi-default-flat.idx", help="the 35k catalog's index")
    args = ap.parse_args()
    work = CACHE / f"ann-{args.products}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "vectors").mkdir(parents=True)
    base = source(args.source)
    console.print(f"making {args.products:,} products from {len(base):,} catalog vectors ({base.manifest['model']['id']})")
    x = synthesize(base, args.products, work / "vectors")

    started = time.perf_counter()
    ivf = Index.from_vectors(work / "vectors", out=work / "auto.idx", index_type=args.index_type)
    build_s = time.perf_counter() - started
    files = ivf.manifest["files"]
    per_product = (files["vectors.npy"]["bytes"] + files["index.faiss"]["bytes"]) / len(ivf)
    started = time.perf_counter()
    flat = Index.from_vectors(work / "vectors", out=work / "flat.idx", index_type="flat")
    flat_build_s = time.perf_counter() - started
    flat_files = flat.manifest["files"]
    flat_per_product = (flat_files["vectors.npy"]["bytes"] + flat_files["index.faiss"]["bytes"]) / len(flat)

    rng = np.random.default_rng(1)
    queries = rng.choice(args.products, 1000, replace=False)
    choose, measure = queries[:500], queries[500:]
    res = {"products": args.products, "model": base.manifest["model"]["id"], "index_type": ivf.manifest["index_type"],
           "nlist": getattr(ivf.faiss, "nlist", None), "nprobe": ann.NPROBE, "candidates": ann.CANDIDATES,
           "filter_nprobe": ann.FILTER_NPROBE, "filter_candidates": ann.FILTER_CANDIDATES,
           "build_s": round(build_s, 1), "bytes_per_product": round(per_product, 1),
           "flat_build_s": round(flat_build_s, 1), "flat_bytes_per_product": round(flat_per_product, 1)}
    res["recall10_choosing"] = round(recall(ivf, x, choose), 4)
    res["recall10"] = round(recall(ivf, x, measure), 4)
    ivf.warm()
    flat.warm()
    res["ivf_by_id"] = latency(ivf, measure, agree=False)
    res["ivf_by_id_reranked"] = latency(ivf, measure)
    res["flat_by_id"] = latency(flat, measure[:200], agree=False)
    res["flat_by_id_reranked"] = latency(flat, measure[:200])
    narrow = {"gender": ["Women"], "articleType": ["Jeans"]}
    wide = {"gender": ["Men"]}
    for name, where in (("narrow", narrow), ("wide", wide)):
        allowed = np.asarray(ivf.meta.rows_where(where), dtype=np.int64)
        rows = measure[:200]
        res[f"filter_{name}_recall10_choosing"] = round(recall(ivf, x, choose[:200], where=where, allowed=allowed), 4)
        hits = [ivf.search(ivf.ids[q], k=10, agree=False, where=where) for q in rows]
        ok = all(all(h.metadata[c] in v for c, v in where.items()) for hs in hits for h in hs)
        res[f"filter_{name}"] = {"products": int(len(allowed)), "all_pass": ok,
                                 "recall10": round(recall(ivf, x, rows, where=where, allowed=allowed), 4),
                                 **latency(ivf, rows, agree=False, where=where)}
    save("ann", res)
    report(res)


def report(res: dict) -> None:
    t = Table(title=f"search by id at {res['products']:,} products ({res['index_type']}: nlist {res['nlist']}, "
                    f"nprobe {res['nprobe']}, {res['candidates']} candidates re-scored)")
    for col in ("measure", "auto (ivf)", "exact (flat, float16)", "target"):
        t.add_column(col)
    t.add_row("recall@10 vs exact (choosing / measuring queries)",
              f"{res['recall10_choosing']:.3f} / {res['recall10']:.3f}", "1", ">= 0.95")
    t.add_row("p50 / p95 by id, plain", f"{res['ivf_by_id']['p50_ms']:.2f} / {res['ivf_by_id']['p95_ms']:.2f} ms",
              f"{res['flat_by_id']['p50_ms']:.2f} / {res['flat_by_id']['p95_ms']:.2f} ms", "p50 <= 5 ms")
    t.add_row("p50 / p95 by id, re-ranked",
              f"{res['ivf_by_id_reranked']['p50_ms']:.2f} / {res['ivf_by_id_reranked']['p95_ms']:.2f} ms",
              f"{res['flat_by_id_reranked']['p50_ms']:.2f} / {res['flat_by_id_reranked']['p95_ms']:.2f} ms", "")
    t.add_row("bytes a product (vectors + index)", f"{res['bytes_per_product']:.0f}", f"{res['flat_bytes_per_product']:.0f}",
              "<= 1,000")
    t.add_row("build from Parquet", f"{res['build_s'] / 60:.1f} min", f"{res['flat_build_s'] / 60:.1f} min", "<= 15 min")
    for name in ("narrow", "wide"):
        f = res[f"filter_{name}"]
        t.add_row(f"{name} filter ({f['products']:,} products): recall@10 (choosing / measuring), p50, all pass",
                  f"{res[f'filter_{name}_recall10_choosing']:.3f} / {f['recall10']:.3f}, {f['p50_ms']:.2f} ms, "
                  f"{f['all_pass']}", "", "all pass")
    console.print(t)


if __name__ == "__main__":
    main()
