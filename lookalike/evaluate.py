"""Leave-one-out retrieval quality: for each query product, do its nearest neighbours share its label?

For a field (a metadata column, or several joined with `+` such as `articleType+baseColour`), each query
with a known value is searched against the gallery without itself, and scored on its top k:

- P@1: the nearest neighbour has the same value.
- P@k: the fraction of the k neighbours with the same value.
- mAP@k: mean over queries of AP@k = sum_i P@i * rel_i / min(k, R), R = gallery products with that value.

Products with an empty value are not queried for that field, and count as a mismatch as neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class FieldScore:
    field: str
    queries: int
    p_at_1: float
    p_at_k: float
    map_at_k: float
    k: int

    def to_dict(self) -> dict:
        return {"field": self.field, "queries": self.queries, "P@1": round(self.p_at_1, 4),
                f"P@{self.k}": round(self.p_at_k, 4), f"mAP@{self.k}": round(self.map_at_k, 4)}


def neighbours(gallery: np.ndarray, queries: np.ndarray, query_rows: np.ndarray | None, k: int,
               batch: int = 4096) -> np.ndarray:
    """Rows of the k nearest gallery vectors of each query (by inner product), never the query's own row."""
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), batch):
        q = np.ascontiguousarray(queries[start:start + batch], dtype=np.float32)
        _, rows = index.search(q, k + 1)
        for i, hits in enumerate(rows):
            own = query_rows[start + i] if query_rows is not None else -2
            hits = hits[hits != own]
            out[start + i] = hits[:k]
    return out


def field_labels(columns: dict[str, Sequence], field: str) -> np.ndarray:
    parts = field.split("+")
    values = [columns[p] for p in parts]
    joined = [None if any(v[i] is None for v in values) else "|".join(str(v[i]) for v in values)
              for i in range(len(values[0]))]
    return np.array(joined, dtype=object)


def score(labels: np.ndarray, query_rows: np.ndarray, hits: np.ndarray, k: int, field: str,
          query_labels: np.ndarray | None = None) -> FieldScore:
    """Score neighbour rows `hits` (queries x k) against gallery `labels`. Queries' own labels are
    `labels[query_rows]` unless `query_labels` is given (queries from outside the gallery)."""
    own = labels[query_rows] if query_labels is None else query_labels
    valid = np.array([v is not None for v in own])
    if not valid.any():
        return FieldScore(field, 0, 0.0, 0.0, 0.0, k)
    rel = (labels[hits[valid]] == own[valid][:, None]).astype(np.float64)
    counts: dict = {}
    for v in labels:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    in_gallery = query_labels is None
    total_rel = np.array([counts.get(v, 0) - (1 if in_gallery else 0) for v in own[valid]], dtype=np.float64)
    precision_at = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * rel).sum(axis=1) / np.maximum(np.minimum(total_rel, k), 1)
    return FieldScore(field, int(valid.sum()), float(rel[:, 0].mean()), float(rel.mean()), float(ap.mean()), k)


def evaluate(vectors: np.ndarray, columns: dict[str, Sequence], fields: Sequence[str], k: int = 10,
             sample: int | None = None, seed: int = 0) -> list[FieldScore]:
    """Leave-one-out scores of `vectors` (N, D) against labels in `columns` (column -> N values).
    `sample` queries a random subset (the gallery stays whole)."""
    n = len(vectors)
    rows = np.arange(n)
    if sample and sample < n:
        rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    hits = neighbours(vectors, vectors[rows], rows, k)
    return [score(field_labels(columns, f), rows, hits, k, f) for f in fields]
