"""Search by words (issue 27): shoppers' queries against the validation products, as users get them.

Queries: benchmarks/text_queries.json, written the way shoppers type, each with the labels a right answer has
(any of the listed values per column). Half of them (crc32 of the text, even) may be looked at to choose
settings; the other half (odd) are for measuring only. Score per query: relevant products in the top 10 divided by
min(10, relevant products among the validation products); the mean over queries.

Indexes, built once from the validation products' photos (held out from training, `is_validation`):
- photos only: no metadata at all, so the words must reach the pictures;
- with names: the catalog's columns (productDisplayName and the labels), so BM25 on the names is fused in.
Beside them in the same run: BM25 on the names alone (SQLite FTS5, no glossary), and the floor the issue names:
ridge regression from MiniLM sentence vectors to the search vectors, fitted on the training products' names and
full label texts. Also: words + photo ("in red" with a product's id), text query latency on the 35k catalog, and
what the text model adds to an install.

Run: `python benchmarks/text.py [--model default]`. Writes benchmarks/results/text.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from common import CACHE, FPI, ROOT, catalog_images, percentiles, save
from lookalike import Index
from lookalike.models import load_model
from lookalike.models.pipeline import embed_batch
from lookalike.text import load_text_encoder
from lookalike.text.fulltext import FullText
from lookalike.train.data import is_validation
from lookalike.train.text import LABEL_COLUMNS

console = Console()
QUERIES = Path(__file__).resolve().parent / "text_queries.json"
NAME = "productDisplayName"
COLOURS = ["Red", "Black", "White", "Blue", "Green", "Pink"]


def measuring(q: str) -> bool:
    return zlib.crc32(q.encode()) % 2 == 1


def relevant(query: dict, metas: list[dict]) -> np.ndarray:
    return np.array([all(m.get(c) in v for c, v in query.items() if c != "q") for m in metas])


def score(ranked: list[list[int]], queries: list[dict], metas: list[dict]) -> dict:
    """Mean score on the choosing and the measuring half; `ranked[i]`: row numbers of `metas`, best first."""
    per = []
    for q, rows in zip(queries, ranked):
        rel = relevant(q, metas)
        per.append(rel[rows[:10]].sum() / min(10, rel.sum()) if len(rows) else 0.0)
    per = np.array(per)
    meas = np.array([measuring(q["q"]) for q in queries])
    return {"choose": round(float(per[~meas].mean()), 3), "measure": round(float(per[meas].mean()), 3),
            "all": round(float(per.mean()), 3), "per_query": {q["q"]: round(float(s), 2) for q, s in zip(queries, per)}}


def catalog() -> tuple[list[str], list[Path], list[dict]]:
    images = catalog_images()
    rows = {r["id"]: r for r in csv.DictReader(open(FPI / "styles.csv", encoding="utf-8"))}
    ids = sorted((p.stem for p in images.glob("*.jpg") if p.stem in rows), key=int)
    return ids, [images / f"{i}.jpg" for i in ids], [rows[i] for i in ids]


def build(out: Path, ids: list[str], paths: list[Path], metas: list[dict] | None, model) -> Index:
    """An index of these products (rebuilt when the model changed)."""
    if (out / "manifest.json").exists():
        idx = Index.load(out)
        if idx.manifest["model"]["id"] == model.id and len(idx) == len(ids):
            return Index.load(out, model=model)
    folder = out.with_suffix(".photos")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for pid, path in zip(ids, paths):
        (folder / f"{pid}.jpg").symlink_to(path)
    csv_path = None
    if metas is not None:
        csv_path = out.with_suffix(".csv")
        columns = ["id", *[c for c in metas[0] if c != "id"]]
        with open(csv_path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, columns)
            w.writeheader()
            w.writerows(metas)
    return Index.build(folder, csv_path, out=out, model=model, overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    model = load_model(args.model)
    queries = json.loads(QUERIES.read_text())
    ids, paths, metas = catalog()
    val = [i for i, pid in enumerate(ids) if is_validation(pid, 0.1)]
    vids, vpaths, vmetas = [ids[i] for i in val], [paths[i] for i in val], [metas[i] for i in val]
    console.print(f"{len(queries)} queries ({sum(measuring(q['q']) for q in queries)} for measuring only); "
                  f"{len(val):,} validation products; model {model.id}")
    results: dict = {"model": model.id, "queries": len(queries), "validation_products": len(val)}
    photos = build(CACHE / "text-val-photos.idx", vids, vpaths, None, model)
    named = build(CACHE / "text-val-names.idx", vids, vpaths, vmetas, model)
    row_of = {pid: i for i, pid in enumerate(vids)}

    def ranked(idx: Index, **kw) -> list[list[int]]:
        return [[row_of[r.id] for r in idx.search(text=q["q"], k=10, **kw)] for q in queries]

    rows = {}
    rows["photos only (vectors)"] = score(ranked(photos), queries, vmetas)
    rows["with names (vectors + BM25, fused)"] = score(ranked(named), queries, vmetas)
    rows["with names, no re-ranking"] = score(ranked(named, agree=False), queries, vmetas)
    names = FullText([NAME], [(i, m[NAME]) for i, m in enumerate(vmetas)])
    rows["BM25 on names alone"] = score([[r for r, _ in names.search(q["q"], 10, expand=False)] for q in queries],
                                        queries, vmetas)
    rows["ridge floor (photos only)"] = score(ridge_floor(model, ids, paths, metas, val, photos, queries), queries, vmetas)
    results["scores"] = rows
    results["words_and_photo"] = words_and_photo(named, vmetas)
    results["latency_35k"] = latency(model, ids, paths, metas, queries)
    results["install_megabytes"] = install_size(model)
    path = save("text", results)
    report(results)
    console.print(f"written to {path}")


def ridge_floor(model, ids, paths, metas, val, photos: Index, queries) -> list[list[int]]:
    """The issue's calibration: ridge from MiniLM sentence vectors to the search vectors (names + label texts)."""
    encoder = load_text_encoder()
    vset = set(val)
    train = [i for i in range(len(ids)) if i not in vset]
    cache = CACHE / f"text-train-vectors-{model.id.replace('@', '-').replace('+', '-')}.npy"
    if cache.exists():
        vectors = np.load(cache)
    else:
        vectors = embed_batch(model, [(i, paths[i]) for i in train]).vectors
        np.save(cache, vectors)
    texts, targets = [], []
    for j, i in enumerate(train):
        m = metas[i]
        labels = " ".join(m[c] for c in LABEL_COLUMNS if m.get(c) and m[c] != "NA")
        for t in (m.get(NAME), labels):
            if t:
                texts.append(t)
                targets.append(j)
    x = encoder.encode(texts)
    y = vectors[targets]
    w = np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ y)
    q = encoder.encode([q["q"] for q in queries]) @ w
    base = photos.vectors()
    row_of = {pid: j for j, pid in enumerate(ids[i] for i in val)}
    return [[row_of[photos.ids[r]] for r in np.argsort(-(base @ v))[:10]] for v in q]


def words_and_photo(idx: Index, metas: list[dict]) -> dict:
    """"in <colour>" with a product's id: the share of the top 10 of that colour and the product's articleType,
    against the photo alone and the words alone ("<colour> <type>" needs a type the shopper may not have words for)."""
    rng = np.random.default_rng(0)
    out = {}
    for colour in COLOURS:
        types = {m["articleType"] for m in metas if m["baseColour"] == colour}
        pool = [i for i, m in enumerate(metas) if m["baseColour"] != colour and m["articleType"] in types]
        picked = rng.choice(pool, size=min(20, len(pool)), replace=False)
        got = {"photo alone": [], "photo + words": []}
        for i in picked:
            pid, kind = idx.ids[i], metas[i]["articleType"]
            for name, kw in (("photo alone", {}), ("photo + words", {"text": f"in {colour.lower()}"})):
                res = idx.search(pid, k=10, **kw)
                got[name].append(np.mean([r.metadata.get("baseColour") == colour and r.metadata.get("articleType") == kind
                                          for r in res]) if res else 0.0)
        out[colour] = {k: round(float(np.mean(v)), 3) for k, v in got.items()}
    out["mean"] = {k: round(float(np.mean([out[c][k] for c in COLOURS])), 3) for k in ("photo alone", "photo + words")}
    return out


def latency(model, ids, paths, metas, queries) -> dict:
    """p50/p99 of `Index.search(text=...)` on the whole 35k catalog with names (vectors + BM25), after a warm-up."""
    full = CACHE / "fpi-default-flat.idx"
    idx = Index.load(full, model=model) if (full / "manifest.json").exists() and \
        Index.load(full).manifest["model"]["id"] == model.id else build(CACHE / "text-all.idx", ids, paths, metas, model)
    idx.warm()
    idx.fulltext()
    idx.search(text="warm up", k=10)
    times = []
    for _ in range(3):
        for q in queries:
            start = time.perf_counter()
            idx.search(text=q["q"], k=10)
            times.append(time.perf_counter() - start)
    encoder = load_text_encoder()
    enc = []
    for q in queries:
        start = time.perf_counter()
        encoder.encode(q["q"])
        enc.append(time.perf_counter() - start)
    return {"products": len(idx), **percentiles(times), "encoder_p50_ms": percentiles(enc)["p50_ms"]}


def install_size(model) -> dict:
    """What search by words adds to an install: the encoder's files and the model's projection (the tokenizer is
    lookalike's own Python; no package is added)."""
    from lookalike.text.encoder import SHIPPED

    files = sum(f.stat().st_size for f in SHIPPED.iterdir())
    folder = Path(getattr(model, "folder", "."))
    proj = sum((folder / f).stat().st_size for f in ("text.onnx",) if (folder / f).exists())
    return {"encoder_files": round(files / 1e6, 1), "projection": round(proj / 1e6, 1),
            "total": round((files + proj) / 1e6, 1)}


def report(res: dict) -> None:
    table = Table(title=f"search by words, {res['queries']} queries on {res['validation_products']:,} validation products")
    for col in ("", "choose", "measure", "all"):
        table.add_column(col)
    for name, s in res["scores"].items():
        table.add_row(name, f"{s['choose']:.3f}", f"{s['measure']:.3f}", f"{s['all']:.3f}")
    table.add_row("target", "", "photos >= 0.85; names >= 0.90 and BM25 + 0.15", "")
    console.print(table)
    w = res["words_and_photo"]["mean"]
    console.print(f"'in <colour>' with a product: that colour and type in the top 10 {w['photo + words']:.3f} "
                  f"(photo alone {w['photo alone']:.3f})")
    lat = res["latency_35k"]
    console.print(f"text query at {lat['products']:,} products: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
                  f"(encoder {lat['encoder_p50_ms']:.1f} ms); target p50 <= 15 ms")
    console.print(f"install: {res['install_megabytes']}  (target <= 30 MB)")


if __name__ == "__main__":
    main()
