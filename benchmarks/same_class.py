"""Searching only within the query's predicted class (`Index.search(..., same=["articleType"])`, seed 002's
"category gating") against the default agreement re-ranking and plain similarity.

An index of the shared catalog's training products (validation products left out by id); each validation
product's photo is the query, as a shopper's upload would be. P@10 of articleType, baseColour, gender and both
type and colour among the results; time per query.

Run: `python benchmarks/same_class.py [--queries N]`. Writes benchmarks/results/same_class.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from common import CACHE, FPI, catalog_images, percentiles, save
from lookalike import Index
from lookalike.catalog import Catalog
from lookalike.train.data import is_validation

FIELDS = ["articleType", "baseColour", "gender", "articleType+baseColour"]
console = Console()


def training_index() -> tuple[Index, list[tuple[Path, dict]]]:
    """The index of the training products (built once, cached) and the validation products (photo, labels)."""
    products = Catalog.read(catalog_images(), FPI / "styles.csv").products
    held = [(p.path, p.metadata) for p in products if is_validation(p.id, 0.1)]
    out = CACHE / "fpi-train.idx"
    if out.exists():
        return Index.load(out), held
    folder = CACHE / "fpi-train-photos"
    folder.mkdir(exist_ok=True)
    keep = {p.id: p.path for p in products if not is_validation(p.id, 0.1)}
    for pid, path in keep.items():
        link = folder / Path(path).name
        if not link.exists():
            link.symlink_to(Path(path).resolve())
    lines = (FPI / "styles.csv").read_text(encoding="utf-8", errors="replace").splitlines()
    (CACHE / "fpi-train.csv").write_text("\n".join([lines[0]] + [l for l in lines[1:] if l.split(",", 1)[0] in keep]) + "\n",
                                         encoding="utf-8")
    return Index.build(folder, CACHE / "fpi-train.csv", out=out), held


def precision(results, labels: dict) -> dict[str, float]:
    out = {}
    for field in FIELDS:
        parts = field.split("+")
        same = [all(r.metadata.get(p) == labels.get(p) for p in parts) for r in results[:10]]
        out[field] = sum(same) / 10
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=1000, help="validation products to query (spread evenly)")
    args = parser.parse_args()
    index, held = training_index()
    held = held[:: max(1, len(held) // args.queries)][: args.queries]
    ways = {"plain similarity": dict(agree=False), "agreement re-ranking (default)": dict(),
            "same predicted articleType (same=articleType)": dict(same=["articleType"])}
    results = {"model": index.model.id, "products": len(index), "queries": len(held)}
    for name, options in ways.items():
        scores, times = {f: [] for f in FIELDS}, []
        for photo, labels in held:
            start = time.perf_counter()
            found = index.search(photo, k=10, **options)
            times.append(time.perf_counter() - start)
            for field, p in precision(found, labels).items():
                scores[field].append(p)
        results[name] = {**{f: round(float(np.mean(v)), 4) for f, v in scores.items()}, **percentiles(times)}
        console.print(f"{name}: done")
    table = Table(title=f"{len(held)} validation photos against {len(index):,} training products ({index.model.id}), P@10")
    table.add_column("search")
    for field in FIELDS:
        table.add_column(field, justify="right")
    table.add_column("p50 ms", justify="right")
    for name in ways:
        r = results[name]
        table.add_row(name, *(f"{r[f]:.3f}" for f in FIELDS), f"{r['p50_ms']:.1f}")
    console.print(table)
    console.print(f"written to {save('same_class', results)}")


if __name__ == "__main__":
    main()
