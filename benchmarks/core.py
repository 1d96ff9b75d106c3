"""Core engine benchmark on the 35k shared catalog (issue 2), each figure beside its baseline:

- indexing throughput (decode + embed + write) with the default model;
- search latency by id (vector ready) and by upload (decode + embed + search), flat and HNSW;
- the seeds' way on the same vectors: scikit-learn NearestNeighbors brute and KD-tree (fit, query);
- retrieval quality (leave-one-out, `lookalike.evaluate`) of the default and classic models against the
  reference ImageNet MobileNetV2 features, on the catalog and on the real demo photos.

Run: `make bench` (or `python benchmarks/core.py [--quick]`). Writes benchmarks/results/core.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from common import CACHE, FPI, ROOT, Reference, catalog_images, percentiles, save, timed
from lookalike import Embedder, Index
from lookalike.evaluate import evaluate
from lookalike.progress import RichProgress

console = Console()
FIELDS = ["articleType", "subCategory", "baseColour", "gender", "articleType+baseColour"]


def build(images: Path, model: str, index_type: str = "flat") -> Index:
    out = CACHE / f"fpi-{model}-{index_type}.idx"
    with RichProgress(console, transient=True) as progress:
        idx = Index.build(images, FPI / "styles.csv", out=out, model=model, index_type=index_type,
                          overwrite=True, progress=progress)
    return idx


def latency(index: Index, queries, k: int = 10, **kw) -> dict:
    index.search(queries[0], k=k, **kw)  # warm-up
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q, k=k, **kw)
        times.append(time.perf_counter() - start)
    return percentiles(times)


def sklearn_baseline(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> dict:
    from sklearn.neighbors import NearestNeighbors

    out = {}
    for algo in ("brute", "kd_tree"):
        nn = NearestNeighbors(n_neighbors=k, algorithm=algo)
        _, fit_s = timed(nn.fit, vectors)
        times = []
        for q in queries:
            start = time.perf_counter()
            nn.kneighbors(q[None], return_distance=True)
            times.append(time.perf_counter() - start)
        out[algo] = {"fit_s": round(fit_s, 3), **percentiles(times)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer queries, no reference features")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = catalog_images()
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                     "model": Embedder.load(args.model).id}

    console.print(f"[bold]indexing[/] {len(list(images.iterdir())):,} photos with {results['model']}")
    flat = build(images, args.model)
    r = flat.report
    results["index"] = {"products": len(flat), "skipped": len(r.skipped), "seconds": round(r.seconds, 1),
                        "images_per_s": round(r.images_per_second, 1),
                        "bytes": flat.info()["bytes"]}
    hnsw = build(images, args.model, "hnsw")
    results["index_hnsw"] = {"seconds": round(hnsw.report.seconds, 1)}

    n_q = 100 if args.quick else 500
    ids = [flat.ids[i] for i in rng.choice(len(flat), n_q, replace=False)]
    uploads = [Path(flat.get(pid).path).read_bytes() for pid in ids[:200]]
    photos = [p.read_bytes() for p in sorted((ROOT / "examples" / "catalog").glob("*/*.jpg"))[:100]]
    results["latency"] = {
        "flat_by_id": latency(flat, ids), "hnsw_by_id": latency(hnsw, ids),
        "flat_by_id_filtered": latency(flat, ids, where={"gender": "Women", "subCategory": "Topwear"}),
        "flat_by_upload_catalog_60x80": latency(flat, uploads),
        "flat_by_upload_photo_400x534": latency(flat, photos),
    }
    probe = ids[:200]
    hits = sum(len({r.id for r in flat.search(p, k=10)} & {r.id for r in hnsw.search(p, k=10)}) for p in probe)
    results["hnsw_recall_at_10"] = round(hits / (10 * len(probe)), 4)

    vectors = flat.vectors()
    qv = vectors[rng.choice(len(vectors), 200, replace=False)]
    faiss_times = []
    for q in qv:
        start = time.perf_counter()
        flat.faiss.search(q[None], 10)
        faiss_times.append(time.perf_counter() - start)
    results["faiss_flat_raw"] = percentiles(faiss_times)
    results["sklearn"] = sklearn_baseline(vectors, qv)

    console.print("[bold]quality[/] leave-one-out on the catalog")
    columns = {c: flat.meta.column(c) for c in {f for x in FIELDS for f in x.split("+")}}
    quality = {results["model"]: {s.field: s.to_dict() for s in evaluate(vectors, columns, FIELDS)}}
    demo = Index.build(ROOT / "examples" / "catalog", ROOT / "examples" / "catalog.csv",
                       out=CACHE / "demo.idx", model=args.model, overwrite=True)
    demo_cls = {"class": demo.meta.column("class")}
    photo_quality = {results["model"]: evaluate(demo.vectors(), demo_cls, ["class"])[0].to_dict()}
    if results["model"] != "classic-v1":
        classic = build(images, "classic")
        quality["classic-v1"] = {s.field: s.to_dict() for s in evaluate(classic.vectors(), columns, FIELDS)}
    if not args.quick:
        ref = Reference()
        cache = CACHE / "reference-fpi.npy"
        paths = [flat.get(pid).path for pid in flat.ids]
        if cache.exists() and (CACHE / "reference-fpi.ids.txt").read_text().split() == flat.ids:
            ref_vectors = np.load(cache)
            _, secs = timed(ref.embed_paths, paths[:3000])       # its speed in this run, on 3,000 of the photos
            results["reference_images_per_s"] = round(3000 / secs, 1)
        else:
            with RichProgress(console, transient=True) as progress:
                progress.start(len(paths), "reference features")
                ref_vectors, secs = timed(ref.embed_paths, paths, progress)
            results["reference_images_per_s"] = round(len(paths) / secs, 1)
            np.save(cache, ref_vectors)
            (CACHE / "reference-fpi.ids.txt").write_text("\n".join(flat.ids))
        quality[ref.name] = {s.field: s.to_dict() for s in evaluate(ref_vectors, columns, FIELDS)}
        demo_paths = [demo.get(pid).path for pid in demo.ids]
        photo_quality[ref.name] = evaluate(ref.embed_paths(demo_paths), demo_cls, ["class"])[0].to_dict()
    results["quality_catalog"] = quality
    results["quality_demo_photos"] = photo_quality
    path = save("core" if not args.quick else "core-quick", results)
    report(results)
    console.print(f"results written to {path}")


def report(res: dict) -> None:
    t = Table(title=f"lookalike core on {res['index']['products']:,} products ({res['machine']})")
    t.add_column("measure")
    t.add_column("lookalike", justify="right")
    t.add_column("baseline", justify="right")
    t.add_column("target", justify="right")
    lat, sk = res["latency"], res["sklearn"]
    t.add_row("indexing, images/s (decode+embed+write)", f"{res['index']['images_per_s']:.0f}",
              f"{res.get('reference_images_per_s', '-')} (reference CNN, decode + embed)", ">= 250")
    t.add_row("search by id p50 / p95 ms (flat)", f"{lat['flat_by_id']['p50_ms']:.2f} / {lat['flat_by_id']['p95_ms']:.2f}",
              f"{sk['brute']['p50_ms']:.2f} / {sk['brute']['p95_ms']:.2f} (sklearn brute)", "p50 <= 2")
    t.add_row("single query p50 ms: FAISS flat vs sklearn KD-tree", f"{res['faiss_flat_raw']['p50_ms']:.2f}",
              f"{sk['kd_tree']['p50_ms']:.2f} (x{sk['kd_tree']['p50_ms'] / max(res['faiss_flat_raw']['p50_ms'], 1e-6):.0f})",
              ">= 10x faster")
    t.add_row("fit / build s: FAISS flat index vs sklearn KD-tree", "in indexing", f"{sk['kd_tree']['fit_s']:.2f}", "")
    t.add_row("search by id p50 ms (HNSW; recall@10 vs flat)",
              f"{lat['hnsw_by_id']['p50_ms']:.2f} ({res['hnsw_recall_at_10']:.3f})", "", "")
    t.add_row("search by id + filters p50 ms", f"{lat['flat_by_id_filtered']['p50_ms']:.2f}", "", "")
    t.add_row("search by upload p50 / p95 ms, 60x80 catalog photo",
              f"{lat['flat_by_upload_catalog_60x80']['p50_ms']:.2f} / {lat['flat_by_upload_catalog_60x80']['p95_ms']:.2f}", "", "p50 <= 20")
    t.add_row("search by upload p50 / p95 ms, 400x534 photo",
              f"{lat['flat_by_upload_photo_400x534']['p50_ms']:.2f} / {lat['flat_by_upload_photo_400x534']['p95_ms']:.2f}", "", "")
    Console().print(t)
    q = Table(title="retrieval quality, leave-one-out P@10 (P@1)")
    q.add_column("model")
    for f in FIELDS:
        q.add_column(f, justify="right")
    q.add_column("demo photos: class", justify="right")
    for name, scores in res["quality_catalog"].items():
        demo = res["quality_demo_photos"].get(name)
        q.add_row(name, *(f"{scores[f]['P@10']:.3f} ({scores[f]['P@1']:.2f})" for f in FIELDS),
                  f"{demo['P@10']:.3f} ({demo['P@1']:.2f})" if demo else "-")
    Console().print(q)


if __name__ == "__main__":
    main()
