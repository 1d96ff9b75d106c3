"""Batch "similar items" for every product: what a shop precomputes for its product pages.

Streams rows (id, rank, neighbour_id, score) to Parquet (or CSV) batch by batch, so memory stays bounded by
the batch size, not the catalog. Written to a temporary file and renamed into place when complete.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import LookalikeError
from .index import Index
from .progress import NoProgress, Progress
from .search import Where, normalise_where, top_k


@dataclass
class RecommendReport:
    products: int
    rows: int
    groups: int
    seconds: float
    path: Path


class _Writer:
    def __init__(self, path: Path, fmt: str):
        self.fmt, self.path = fmt, path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        if fmt == "parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise LookalikeError("Parquet output needs pyarrow: pip install 'lookalike[export]' (or use --csv)") from None
            self.pa = pa
            self.schema = pa.schema([("id", pa.string()), ("rank", pa.int16()), ("neighbour_id", pa.string()),
                                     ("score", pa.float32())])
            self.writer = pq.ParquetWriter(self.tmp, self.schema)
        else:
            self.fh = open(self.tmp, "w", newline="")
            self.writer = csv.writer(self.fh)
            self.writer.writerow(["id", "rank", "neighbour_id", "score"])

    def write(self, ids, ranks, neighbours, scores) -> None:
        if self.fmt == "parquet":
            self.writer.write_table(self.pa.table([ids, np.asarray(ranks, np.int16), neighbours,
                                                   np.asarray(scores, np.float32)], schema=self.schema))
        else:
            self.writer.writerows(zip(ids, ranks, neighbours, (f"{s:.6f}" for s in scores)))

    def close(self, ok: bool) -> None:
        (self.writer if self.fmt == "parquet" else self.fh).close()
        if ok:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


#: File name endings and the format written.
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def output_format(path: str | Path, fmt: str | None = None) -> str:
    """The format to write `path` in: `fmt` ("csv", "parquet") or its file name's ending. Anything else (`.xlsx`,
    `.json`, no ending) is refused, as is a Parquet file without pyarrow: a file named for one format and holding
    another would mislead whatever opens it, and the refusal comes before any work."""
    path = Path(path)
    named = FORMATS.get(path.suffix.lower())
    if fmt not in (None, "csv", "parquet"):
        raise LookalikeError(f"unknown output format {fmt!r} (csv or parquet)")
    if fmt is None and named is None:
        raise LookalikeError(f"{path.name}: write recommendations to a .parquet or .csv file "
                             f"(not {path.suffix or 'a name without an ending'})")
    if fmt is not None and named is not None and named != fmt:
        raise LookalikeError(f"{path.name}: a {named} file name for {fmt} output; name it .{fmt}")
    fmt = fmt or named
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise LookalikeError("Parquet output needs pyarrow: pip install 'lookalike[export]' (or write a .csv)")
    return fmt


def recommend_all(index: Index, out: str | Path, k: int = 10, *, where: Where | None = None,
                  same: Sequence[str] = (), fmt: str | None = None, batch: int = 2048,
                  progress: Progress | None = None, agree: "bool | Sequence[str]" = True) -> RecommendReport:
    """Top-k neighbours of every product (matching `where`), among products matching `where` and sharing
    the values of the `same` columns. Duplicate photos are collapsed, the product itself left out. As in
    `Index.search` by id, `agree` re-ranks the nearest so those sharing the product's own articleType,
    baseColour and gender come first (`lookalike.rerank`)."""
    import faiss

    started = time.perf_counter()
    out = Path(out)
    fmt = output_format(out, fmt)
    progress = progress or NoProgress()
    where = normalise_where(where)
    rows = index.meta.rows_where(where) if where else np.arange(len(index))
    groups: dict[tuple, list[int]] = {}
    if same:
        keys = list(zip(*(index.meta.column(c) for c in same)))
        for r in rows:
            if None not in keys[r]:
                groups.setdefault(keys[r], []).append(int(r))
    else:
        groups[()] = [int(r) for r in rows]
    agreement, columns = index.agreement(agree)
    fetch = max(k, agreement.pool) if columns else k
    vectors = index.vectors()
    hashes = index._hashes
    writer = _Writer(out, fmt)
    total = 0
    progress.start(sum(len(g) for g in groups.values()), "recommending")
    ok = False
    try:
        for members in groups.values():
            allowed = np.array(members, dtype=np.int64)
            whole = len(allowed) == len(index)
            selector = None if whole else faiss.IDSelectorBatch(allowed)
            for start in range(0, len(allowed), batch):
                q = allowed[start:start + batch]
                hits = top_k(index.faiss, vectors[q], fetch, allowed=None if whole else allowed, selector=selector,
                             exclude=[{int(r)} for r in q], hashes=hashes,
                             exclude_hashes=[{int(hashes[r])} if hashes[r] else set() for r in q])
                ids, ranks, neigh, scores = [], [], [], []
                for r, found in zip(q, hits):
                    if columns:
                        found = index._agreeing(found, agreement, columns, None, int(r))
                    for rank, (row, s) in enumerate(found[:k], 1):
                        ids.append(index.ids[r])
                        ranks.append(rank)
                        neigh.append(index.ids[row])
                        scores.append(s)
                writer.write(ids, ranks, neigh, scores)
                total += len(ids)
                progress.advance(len(q))
        ok = True
    finally:
        writer.close(ok)
    return RecommendReport(int(sum(len(g) for g in groups.values())), total, len(groups),
                           time.perf_counter() - started, out)
