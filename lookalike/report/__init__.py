"""`lookalike report`: one self-contained HTML page about a catalog, for merchandisers and data scientists
to see their data before trusting recommendations. Charts are inline SVG, thumbnails inline JPEG: the file
opens offline, on a phone, and can be mailed around."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import Catalog
from ..progress import Progress
from ..remote import as_source
from .html import render
from .scan import PhotoInfo, scan

CATEGORICAL_MAX = 60
STOPWORDS = {"men", "women", "unisex", "boys", "girls", "and", "with", "for", "the", "of", "a", "in", "&", "-"}


@dataclass
class ColumnInfo:
    name: str
    kind: str                  # numeric, categorical or text
    unique: int
    missing: int
    top: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class ReportSummary:
    path: Path
    products: int
    photos: int
    unreadable: int
    greyscale: int
    rows_without_image: int
    images_without_row: int
    duplicate_groups: int
    seconds: float


def describe_columns(catalog: Catalog) -> list[ColumnInfo]:
    out = []
    n = len(catalog.products)
    for column in catalog.columns:
        values = [p.metadata.get(column) for p in catalog.products]
        present = [v for v in values if v is not None]
        counts = Counter(present)
        numeric = bool(present) and all(re.fullmatch(r"-?\d+(\.\d+)?", v) for v in present)
        kind = "categorical" if len(counts) <= CATEGORICAL_MAX or (numeric and len(counts) <= 100) else \
            ("numeric" if numeric else "text")
        if numeric and kind == "categorical":
            top = sorted(counts.items(), key=lambda kv: float(kv[0]))
        else:
            top = counts.most_common(25)
        out.append(ColumnInfo(column, kind, len(counts), n - len(present), top))
    return out


def word_counts(catalog: Catalog, column: str | None, limit: int = 80) -> list[tuple[str, int]]:
    if column is None:
        return []
    counts: Counter = Counter()
    for p in catalog.products:
        for word in re.findall(r"[A-Za-z][A-Za-z'-]+", p.metadata.get(column) or ""):
            if word.lower() not in STOPWORDS and len(word) > 2:
                counts[word.capitalize()] += 1
    return counts.most_common(limit)


def near_duplicates(index, threshold: float = 0.97, limit: int = 40) -> tuple[list[list[str]], int]:
    """Groups of products whose embeddings are nearly identical (cosine >= threshold), largest first:
    the `limit` largest groups (as ids) and the number of groups."""
    from ..search import top_k

    import faiss

    vecs, ids = index.vectors(), index.ids          # in the same order
    searchable = getattr(index, "faiss", None)      # a database store has none: search a copy of its vectors
    if searchable is None:
        searchable = faiss.IndexFlatIP(vecs.shape[1])
        searchable.add(vecs)
    found_hits = top_k(searchable, vecs, 5, exclude=[{i} for i in range(len(ids))])
    vectors = range(len(ids))
    parent = list(vectors)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, hits in enumerate(found_hits):
        for j, s in hits:
            if s >= threshold:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in vectors:
        groups.setdefault(find(i), []).append(i)
    found = sorted((g for g in groups.values() if len(g) > 1), key=len, reverse=True)
    return [[ids[i] for i in g] for g in found[:limit]], len(found)


def build_report(photos, metadata=None, *, out: str | Path, index=None, title: str | None = None,
                 progress: Progress | None = None, id_column: str | None = None,
                 image_column: str | None = None) -> ReportSummary:
    started = time.perf_counter()
    out = Path(out)
    catalog = Catalog.read(photos, metadata, id_column=id_column, image_column=image_column)
    infos: list[PhotoInfo] = scan([(p.id, p.path) for p in catalog.products], progress)
    columns = describe_columns(catalog)
    name_column = next((c for c in ("productDisplayName", "name", "title") if c in catalog.columns), None)
    dupes, n_groups = near_duplicates(index) if index is not None else ([], 0)
    paths = {p.id: p.path for p in catalog.products}
    if index is not None:
        paths.update({pid: as_source(index.get(pid).path) for g in dupes for pid in g if pid not in paths})
    html = render(title=title or f"Catalog report: {Path(photos or metadata).name}", catalog=catalog, infos=infos,
                  columns=columns, words=word_counts(catalog, name_column), dupes=dupes, dupe_groups=n_groups,
                  paths=paths, with_index=index is not None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return ReportSummary(out, len(catalog.products), sum(1 for i in infos if not i.error),
                         sum(1 for i in infos if i.error), sum(1 for i in infos if i.greyscale),
                         len(catalog.problems.rows_without_image), len(catalog.problems.images_without_row),
                         n_groups, time.perf_counter() - started)
