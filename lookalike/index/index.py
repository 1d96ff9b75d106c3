"""`Index`: a catalog's vectors, FAISS index and metadata in one directory, searchable by image or id."""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..catalog import Catalog, CatalogProblems, Product
from ..errors import FilterError, IndexStoreError, LookalikeError, ModelError, NotFoundError, listed
from ..images import ImageSource
from ..models import Embedder, load_model
from ..models.registry import shipped_models
from ..models.base import Prediction, predictions_for
from ..models.pipeline import embed_batch
from ..progress import NoProgress, Progress
from ..remote import is_remote, location
from ..rerank import CLASSIFY, Agreement, LabelCodes, agreement_from
from ..search import Result, SelectorCache, Where, normalise_where, top_k
from . import ann, metadata as md
from .database import is_url
from .store import (read_version, replaceable, writable_folder, write_atomically, write_lock,
                    write_manifest)

VECTORS, FAISS = "vectors.npy", "index.faiss"
INDEX_TYPES = ("flat", "hnsw", "ivf", "auto")
DTYPES = ("float16", "float32")
#: words + photo: the words' vector is added to the photo's with this weight (chosen on "in red/black/white"; 1.0: 0.48,
#: 1.5: 0.59, 2.0: 0.63, 3.0: 0.60 of the top 10 in that colour and the same type; benchmarks/text.py)
TEXT_WEIGHT = 2.0
#: how many of each ranking (vectors, BM25) a text query fuses (BM25's weight: `lookalike.text.fulltext.words_weight`)
FUSION_POOL = 100


@dataclass
class BuildReport:
    """What a build or an add did: shown as the closing summary."""

    indexed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)        # (id, reason): unreadable images
    already_indexed: list[str] = field(default_factory=list)           # add: ids kept as they were
    problems: CatalogProblems = field(default_factory=CatalogProblems)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return (self.indexed + len(self.skipped)) / self.seconds if self.seconds else 0.0


def _faiss_index(dim: int, index_type: str, dtype: str = "float32", train: np.ndarray | None = None):
    """`flat` is exhaustive search. With float16 vectors (the default) it keeps them as float16, zero-padded to a
    multiple of 16 dims so FAISS's SIMD kernels apply: half the memory read per query, the same neighbours up to
    float16 rounding (which the stored vectors have anyway); 35k x 420 dims, one query: 1.3 ms against 2.7 ms."""
    import faiss

    if index_type == "flat":
        if dtype != "float16":
            return faiss.IndexFlatIP(dim)
        padded = -(-dim // 16) * 16
        inner = faiss.IndexScalarQuantizer(padded, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        return faiss.IndexPreTransform(faiss.RemapDimensionsTransform(dim, padded, False), inner)
    if index_type == "ivf":
        return ann.new_ivf(dim, train)
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        return index
    raise LookalikeError(f"unknown index type {index_type!r} (choose {', '.join(INDEX_TYPES)})")


class Index:
    """Open with `Index.load(path)`, create with `Index.build(photos, metadata, out=path)`."""

    def __init__(self, path: str | Path, model: "str | Embedder | None" = None, verify: bool = False):
        import faiss

        if str(path).lower().startswith(("postgresql:/", "postgres:/")):    # a URL passed through Path() lost a /
            raise IndexStoreError("a database URL must be given as a string (postgresql://...); as a Path it loses "
                                  "one of its slashes")
        self.path = Path(path)
        # one version of the folder, whatever a writer swaps in meanwhile (see read_version)
        # an approximate index is searched through its stored vectors too (`ann.Refined`)
        self.manifest, data = read_version(self.path, lambda manifest: (FAISS, md.FILE) + (
            (VECTORS,) if manifest.get("index_type") == "ivf" else ()), verify=verify)
        approximate = VECTORS in data
        try:
            self.faiss = faiss.deserialize_index(np.frombuffer(data.pop(FAISS), dtype=np.uint8))
        except RuntimeError as exc:
            raise IndexStoreError(f"{self.path}: cannot read {FAISS} ({str(exc).splitlines()[0]})") from None
        if approximate:
            self.faiss = ann.Refined(self.faiss, _npy(data.pop(VECTORS), self.path / VECTORS))
        self.meta = md.MetadataStore(self.path / md.FILE, data.pop(md.FILE))
        self.ids = self.meta.ids()
        if len(self.ids) != self.faiss.ntotal or len(self.ids) != self.manifest["count"]:
            raise IndexStoreError(f"{self.path}: metadata, vectors and manifest disagree on the count; rebuild")
        self._rows = {pid: row for row, pid in enumerate(self.ids)}
        self._hashes = self.meta.hashes()
        self._selectors = SelectorCache()
        self._codes: dict[str, LabelCodes] = {}
        self._fulltext = False        # not built yet (see fulltext())
        self._fulltext_lock = threading.Lock()
        self._model: Embedder | None = None
        self.report: BuildReport | None = None
        if model is not None:
            self._model = self._check_model(load_model(model))

    # ---- opening and building -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, model: "str | Embedder | None" = None, verify: bool = False) -> "Index":
        """Open an index. `model` overrides the one recorded in the manifest (it must be the same model);
        `verify` checks every file's sha256 as well as its size. A `postgresql://` URL opens an index kept in
        PostgreSQL (`lookalike.index.postgres`)."""
        if is_url(path):
            from .postgres import PgIndex

            return PgIndex(path, model=model)
        return cls(path, model=model, verify=verify)

    @classmethod
    def build(cls, photos: str | Path | None, metadata: str | Path | None = None, *, out: str | Path,
              model: "str | Embedder" = "default", index_type: str | None = None, dtype: str = "float16",
              overwrite: bool = False, batch_size: int = 64, progress: Progress | None = None,
              id_column: str | None = None, image_column: str | None = None,
              require_metadata: bool = False) -> "Index":
        """Read a catalog, embed every photo (skipping unreadable ones), and write the index to `out`.
        The returned index's `.report` says what was indexed and skipped."""
        index_type = _check_options(index_type, dtype, out)
        out = _check_target(out, photos, overwrite)
        started = time.perf_counter()
        embedder = load_model(model)
        catalog = Catalog.read(photos, metadata, id_column=id_column, image_column=image_column,
                               require_metadata=require_metadata)
        if not catalog.products:
            raise LookalikeError("no photos found to index" + "".join(f"; {l}" for l in catalog.problems.lines()))
        if index_type == "ivf":
            ann.check_size(len(catalog.products))       # refused before any embedding
        md.safe_columns(catalog.columns)        # clashing names are refused before any embedding
        progress = progress or NoProgress()
        progress.start(len(catalog.products), "indexing")
        result = embed_batch(embedder, [(i, p.path) for i, p in enumerate(catalog.products)],
                             batch_size=batch_size, progress=progress)
        if not result.keys:
            raise LookalikeError(f"none of the {len(catalog.products)} photos could be read; first error: "
                                 f"{result.errors[0][1] if result.errors else '?'}")
        products = [catalog.products[i] for i in result.keys]
        cls._create(out, embedder.record, result.vectors, products, result.hashes, catalog.columns,
                    index_type, dtype, overwrite, photos)
        index = cls.load(out, model=embedder)
        index.report = BuildReport(len(products), [(catalog.products[k].id, e) for k, e in result.errors],
                                   problems=catalog.problems, seconds=time.perf_counter() - started)
        return index

    @classmethod
    def from_vectors(cls, vectors: str | Path, *, out: str | Path, model: "str | Embedder | None" = None,
                     index_type: str | None = None, dtype: str = "float16", overwrite: bool = False) -> "Index":
        """Build an index from Parquet vectors (`lookalike embed --out DIR`: `lookalike.vectors`) without the
        photos. The index records the vectors' model; `model`, when given, must be that model (else refused before
        anything is written), and is what photo queries will be embedded with."""
        from ..vectors import read_vectors

        index_type = _check_options(index_type, dtype, out)
        out = _check_target(out, None, overwrite)
        started = time.perf_counter()
        embedder = load_model(model) if model is not None else None
        data = read_vectors(vectors, model_id=embedder.id if embedder is not None else None,
                            dim=embedder.dim if embedder is not None else None)
        record = embedder.record if embedder is not None else data.model
        cls._create(out, record, data.vectors, data.products(), data.hashes, data.columns, index_type, dtype,
                    overwrite, None)
        index = cls.load(out, model=embedder)
        index.report = BuildReport(len(data.ids), seconds=time.perf_counter() - started)
        return index

    @classmethod
    def _create(cls, out: "Path | str", model: dict, vectors: np.ndarray, products: list[Product], hashes: Sequence,
                columns: list[str], index_type: str, dtype: str, overwrite: bool, photos) -> None:
        if is_url(out):
            from . import postgres

            return postgres.create(out, model, vectors, products, hashes, columns, index_type, dtype, overwrite)
        if index_type == "auto":
            index_type = "ivf" if len(vectors) >= ann.AUTO_IVF_FROM else "flat"
        settings = {"model": {k: model[k] for k in ("name", "id", "dim", "source") if k in model},
                    "metric": "cosine", "index_type": index_type, "dtype": dtype, "created": _now()}
        safe = md.safe_columns(columns)

        def fill(tmp: Path) -> None:
            index = _faiss_index(int(model["dim"]), index_type, dtype, train=vectors)
            index.add(vectors)
            _write_files(tmp, index, vectors.astype(dtype), safe, _records(products, hashes, columns, 0), safe,
                         settings)

        with write_lock(out):
            _check_target(out, photos, overwrite)  # again: another writer may have made it meanwhile
            write_atomically(out, fill)

    # ---- the model -------------------------------------------------------------------------------------
    @property
    def model(self) -> Embedder:
        """The embedder the index was built with (loaded on first use: search by id does not need it)."""
        if self._model is None:
            recorded = self.manifest["model"]
            try:
                source = recorded.get("source") or recorded["name"]
                if source == "default" and recorded["name"] in shipped_models():
                    # built with a default that a newer one replaced, and that still ships by its name
                    probe = load_model("default")
                    source = source if probe.id == recorded["id"] else recorded["name"]
                self._model = self._check_model(load_model(source))
            except ModelError as exc:
                raise ModelError(f"this index was built with model {recorded['name']!r} ({recorded['id']}), "
                                 f"which cannot be loaded here: {exc}") from None
        return self._model

    def _check_model(self, embedder: Embedder) -> Embedder:
        recorded = self.manifest["model"]
        if embedder.id != recorded["id"] or embedder.dim != recorded["dim"]:
            raise ModelError(f"model mismatch: {self.path} was built with {recorded['id']} ({recorded['dim']} dims) "
                             f"but the query model is {embedder.id} ({embedder.dim} dims); query with the same "
                             "model or rebuild the index with this one")
        return embedder

    # ---- reading ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, pid: object) -> bool:
        return pid in self._rows

    @property
    def columns(self) -> list[str]:
        return self.meta.columns

    def row(self, pid: str) -> int:
        try:
            return self._rows[str(pid)]
        except KeyError:
            raise NotFoundError(f"no product with id {pid!r}") from None

    def vector(self, pid: str) -> np.ndarray:
        return self.faiss.reconstruct(self.row(pid))

    def vectors(self) -> np.ndarray:
        """All vectors, `(N, D)` float32, in `ids` order."""
        return self.faiss.reconstruct_n(0, self.faiss.ntotal) if len(self) else np.zeros((0, self.dim), np.float32)

    @property
    def dim(self) -> int:
        return int(self.manifest["model"]["dim"])

    def get(self, pid: str) -> Result:
        """A product's metadata and photo path, as a result with score 1."""
        row = self.row(pid)
        rec = self.meta.records([row]).get(row)
        if rec is None:         # removed since (a database another process writes)
            raise NotFoundError(f"no product with id {pid!r}")
        return _result(rec, 1.0)

    def random_id(self, where: Where | None = None) -> str | None:
        """A product id drawn at random among those `where` keeps (None when none is)."""
        import random

        rows = self._allowed(where)
        if rows is None:
            return random.choice(self.ids) if self.ids else None
        return self.ids[int(random.choice(rows))] if len(rows) else None

    def facets(self, column: str) -> list[tuple[str, int]]:
        return self.meta.facets(column)

    def info(self) -> dict:
        m = self.manifest
        return {"path": str(self.path), "products": len(self), "model": m["model"], "index_type": m["index_type"],
                "dtype": m["dtype"], "columns": self.columns, "created": m.get("created"),
                "updated": m.get("updated"), "bytes": sum(f["bytes"] for f in m["files"].values())}

    # ---- searching -------------------------------------------------------------------------------------
    def search(self, query: "ImageSource | str | np.ndarray | None" = None, k: int = 10, *, text: str | None = None,
               where: Where | None = None, exclude: Iterable[str] = (), exclude_self: bool = True,
               collapse_duplicates: bool = True, agree: "Agreement | bool | Sequence[str] | None" = True,
               same: Sequence[str] = ()) -> list[Result]:
        """The `k` most similar products to `query`: a product id (str), an image (path, bytes, PIL image) or
        a vector. A string that is not an id but names a file is read as an image.

        `text` searches by words ("white sneakers"), alone or with a `query` it refines ("in red": this product,
        but red): see `search_text`.

        `where` keeps products whose column has one of the given values (`{"gender": "Women",
        "subCategory": ["Topwear", "Dress"]}`). Searching by id leaves that product (and exact copies of
        its photo) out unless `exclude_self=False`; `collapse_duplicates` shows one of several identical photos.
        `agree` re-ranks the nearest candidates so those that agree with the query's likely articleType,
        baseColour and gender come first (`lookalike.rerank`; a list names other columns, False turns it off).
        `same` keeps only products whose value of each named column is the query's: a product's own value, or for
        a photo its predicted one (`classify`: the model's head blended with the nearest products' labels), e.g.
        `same=["articleType"]` searches only among the predicted article type."""
        options = dict(where=where, exclude=exclude, exclude_self=exclude_self, collapse_duplicates=collapse_duplicates,
                       agree=agree, same=same)
        if text is not None:
            return self.search_text(text, k, query=query, **options)
        if query is None:
            raise LookalikeError("nothing to search for: give a photo, a product id or text")
        return self.search_many([query], k, **options)[0]

    def search_text(self, text: str, k: int = 10, *, query: "ImageSource | str | np.ndarray | None" = None,
                    where: Where | None = None, same: Sequence[str] = (), **options) -> list[Result]:
        """Search by words. The words go through the model's text alignment into the photos' search space
        (`Embedder.encode_text`); with a `query` (photo, id or vector), its vector and the words' are added
        (`TEXT_WEIGHT` for the words), so "in red" with a blue shirt's id asks for a shirt like it, in red; `same`
        then keeps the query's own class (its label, or the photo's predicted one). Words alone on an index with
        text columns (a name, a description: `text_columns`) are also matched by BM25 over them, fused with the
        vector ranking (`lookalike.text.fulltext`). Filters, exclusions and re-ranking apply as for photos."""
        from ..text import check_query
        from ..text.fulltext import fuse, words_weight

        text = check_query(text)
        words = self.model.encode_text(text)
        if query is None:
            prepared = _Prepared(words, None, None)
            narrowed = self.same_as(prepared, same, where) if same else where
        else:
            base = query if isinstance(query, _Prepared) else _Prepared(*self._query_vector(query, with_heads=bool(same)))
            narrowed = self.same_as(base, same, where) if same else where
            mixed = base.vector + TEXT_WEIGHT * words
            # the product's own labels do not steer re-ranking: the words may ask for another colour
            prepared = _Prepared(mixed / max(float(np.linalg.norm(mixed)), 1e-12), base.row, None, own=False)
        if narrowed and not all(narrowed.values()):
            return []
        fulltext = self.fulltext() if query is None else None
        if fulltext is None:
            return self.search_many([prepared], k, where=narrowed, **options)[0]
        by_vector = self.search_many([prepared], max(k, FUSION_POOL), where=narrowed, **options)[0]
        allowed = self._allowed(narrowed)
        excluded = {self.row(pid) for pid in options.get("exclude", ())}
        by_words = fulltext.search(text, max(k, FUSION_POOL), allowed=allowed, exclude=excluded)
        rows_of = self._rows_of([r.id for r in by_vector])
        found = {rows_of[r.id]: r for r in by_vector if r.id in rows_of}
        order = fuse([list(found), [row for row, _ in by_words]], [1.0, words_weight(text)])
        kept, shown = [], set()
        for row in order:          # a copy of a photo already shown is left out, as in the vector ranking
            digest = self._hash_of(row)
            if digest and digest in shown and options.get("collapse_duplicates", True):
                continue
            shown.add(digest)
            kept.append(row)
            if len(kept) == k:
                break
        more = [r for r in kept if r not in found]
        records = self.meta.records(more)
        scores = dict(zip(more, self.vectors_of(more) @ words))
        return [found[r] if r in found else _result(records[r], float(scores[r])) for r in kept]

    @property
    def answers_words(self) -> bool:
        """Whether `search(text=...)` works here: the index's model has a text alignment."""
        return self.model.has_text

    def fulltext(self):
        """The full-text table of this index's text columns (built on first use), or None when it has none."""
        from ..text.fulltext import FullText, text_columns

        with self._fulltext_lock:
            if self._fulltext is False:
                sample = self.meta.sample(self.columns, 2000)
                columns = text_columns(self.columns, sample)
                self._fulltext = FullText(columns, self.meta.rows_of(columns)) if columns else None
            return self._fulltext

    def vectors_of(self, rows: Sequence[int]) -> np.ndarray:
        """The vectors of these rows, `(len(rows), D)` float32."""
        if not len(rows):
            return np.zeros((0, self.dim), np.float32)
        return self.faiss.reconstruct_batch(np.asarray(rows, dtype=np.int64))

    def search_many(self, queries: Sequence, k: int = 10, *, where: Where | None = None, exclude: Iterable[str] = (),
                    exclude_self: bool = True, collapse_duplicates: bool = True,
                    agree: "Agreement | bool | Sequence[str] | None" = True, same: Sequence[str] = ()
                    ) -> list[list[Result]]:
        if same:   # each query gets its own filter; the photo is embedded once for both the class and the search
            self._check_same(same)
            out = []
            for query in queries:
                if not isinstance(query, _Prepared):
                    query = _Prepared(*self._query_vector(query, with_heads=True))
                narrowed = self.same_as(query, same, where)
                out.append([] if not all(narrowed.values()) else self.search_many(
                    [query], k, where=narrowed, exclude=exclude, exclude_self=exclude_self,
                    collapse_duplicates=collapse_duplicates, agree=agree)[0])
            return out
        agreement, columns = self.agreement(agree)
        excluded = {self.row(pid) for pid in exclude}
        vecs, excl, excl_hash, rows, heads = [], [], [], [], []
        for query in queries:
            vec, row, probs = self._query_vector(query, with_heads=bool(columns))
            vecs.append(vec)
            rows.append(row if not isinstance(query, _Prepared) or query.own else None)
            heads.append(probs)
            skip, skip_hash = set(excluded), set()
            if row is not None and exclude_self:      # (a query's own row, even when its labels are not used)
                skip.add(row)
                if self._hash_of(row):
                    skip_hash.add(self._hash_of(row))
            excl.append(skip)
            excl_hash.append(skip_hash)
        hits = self._nearest(np.stack(vecs), max(k, agreement.pool) if columns else k, where=where, exclude=excl,
                             exclude_hashes=excl_hash, collapse=collapse_duplicates)
        if columns:
            hits = [self._agreeing(h, agreement, columns, probs, row)[:k] for h, probs, row in zip(hits, heads, rows)]
        records = self.meta.records({r for row_hits in hits for r, _ in row_hits})
        return [[_result(records[r], s) for r, s in row_hits] for row_hits in hits]

    def same_as(self, query, columns: Sequence[str], where: Where | None = None) -> dict[str, list[str]]:
        """`where` narrowed to products with the query's value of each of `columns` (see `search`'s `same`): a
        product's own value, else the predicted one. A value outside `where`'s for that column matches nothing."""
        self._check_same(columns)
        out = normalise_where(where)
        query = query if isinstance(query, _Prepared) else _Prepared(*self._query_vector(query, with_heads=True))
        own = _result(self.meta.records([query.row])[query.row], 1.0).metadata if query.row is not None else {}
        missing = [c for c in columns if not own.get(c)]
        predicted = self.classify(query, top=1, columns=missing) if missing else {}
        for column in columns:
            value = own.get(column) or (predicted[column].labels[0] if column in predicted else None)
            if value is None:
                raise FilterError(f"cannot tell the query's {column!r}: the model has no head for it and no "
                                  "neighbour has a value")
            value = str(value)
            out[column] = [value] if column not in out or value in out[column] else []
        return out

    def _check_same(self, columns: Sequence[str]) -> None:
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise FilterError(f"cannot keep the same {', '.join(map(repr, unknown))}: not a column of this index "
                              f"(columns: {listed(self.columns) or 'none'})")

    def agreement(self, agree: "Agreement | bool | Sequence[str] | None") -> tuple[Agreement | None, list[str]]:
        """The re-ranking settings for `agree` and the columns of this index it applies to. The default
        columns apply when the index has them; columns asked for by name must exist."""
        agreement = agreement_from(agree)
        columns = [c for c in agreement.columns if c in self.columns] if agreement else []
        if agreement and agree is not True and agree is not None and len(columns) < len(agreement.columns):
            missing = [c for c in agreement.columns if c not in self.columns]
            raise FilterError(f"cannot re-rank by {', '.join(map(repr, missing))}: not a column of this index "
                              f"(columns: {listed(self.columns) or 'none'})")
        return agreement, columns

    def warm(self) -> "Index":
        """Do the first-use work now (the label codes that re-ranking reads, one search to page in the
        vectors), so a server's first requests are as fast as the rest."""
        _, columns = self.agreement(True)
        for column in columns:
            self._label_codes(column)
        if len(self):
            self.search(self.random_id(), k=10)
        if self.answers_words:     # the sentence encoder and the full-text table, so words are fast from the first
            self.model.text_alignment()
            self.fulltext()
        return self

    def _agreeing(self, hits: list[tuple[int, float]], agreement: Agreement, columns: list[str],
                  probs: dict | None, row: int | None) -> list[tuple[int, float]]:
        """`hits` re-ranked by agreement with the query's labels (see `lookalike.rerank`)."""
        if len(hits) < 2:
            return hits
        codes = {c: self._label_codes(c) for c in columns}
        rows = np.fromiter((r for r, _ in hits), np.int64, len(hits))
        scores = np.fromiter((s for _, s in hits), np.float64, len(hits))
        order = agreement.order_rows(rows, scores, codes, self.model.heads, probs, row)
        return [hits[i] for i in order]

    def _label_codes(self, column: str) -> LabelCodes:
        if column not in self._codes:
            self._codes[column] = LabelCodes(self.meta.column(column))
        return self._codes[column]

    def classify(self, image: "ImageSource | str", top: int = 3, columns: Sequence[str] | None = None
                 ) -> dict[str, Prediction]:
        """Predicted attributes of a photo in this catalog's own vocabulary: per column, the model's prediction
        blended half and half with the similarity-weighted labels of the 10 nearest catalog products
        (`lookalike.rerank.CLASSIFY`). `columns`: by default the model's heads. A column the index has but the model
        has no head for is predicted from the neighbours alone; a head whose column the index lacks gives the
        model's prediction alone. A product id is classified from its neighbours, never from its own labels."""
        heads = self.model.heads
        columns = list(heads) if columns is None else list(columns)
        if not columns:
            raise ModelError(f"model {self.model.name!r} has no attribute heads: name the index columns to predict "
                             f"(columns: {listed(self.columns) or 'none'})")
        unknown = [c for c in columns if c not in self.columns and c not in heads]
        if unknown:
            raise FilterError(f"cannot predict {', '.join(map(repr, unknown))}: neither a column of this index "
                              f"({listed(self.columns) or 'none'}) nor a head of the model")
        agreement = CLASSIFY
        vec, row, probs = self._query_vector(image, with_heads=True)
        hits = self._nearest(vec[None], agreement.voters, exclude=[{row} if row is not None else set()],
                             collapse=False)[0]
        rows = np.fromiter((r for r, _ in hits), np.int64, len(hits))
        scores = np.fromiter((s for _, s in hits), np.float64, len(hits))
        out = {}
        for column in columns:
            head = probs.get(column) if probs else None
            if column not in self.columns:
                if head is not None:
                    out[column] = predictions_for(heads, {column: head[None]}, 0, top)[column]
                continue
            codes = self._label_codes(column)
            belief = agreement.belief(scores, codes, rows, heads.get(column), head)
            order = [j for j in np.argsort(-belief, kind="stable")[:top] if belief[j] > 0]
            if order:
                out[column] = Prediction(column, [codes.values[j] for j in order], [float(belief[j]) for j in order])
        return out

    def look(self, image: "ImageSource", k: int = 6, **kwargs):
        """Shop the look: each garment of the person in `image`, with `k` similar products of its kind.
        See `lookalike.look.look`."""
        from ..look import look

        return look(self, image, k, **kwargs)

    def _query_vector(self, query, with_heads: bool = False) -> tuple[np.ndarray, int | None, dict | None]:
        """The query's unit vector, its row when it is a product of the index, and (for a photo, when asked
        and the model has heads) the model's predictions."""
        if isinstance(query, _Prepared):
            return query.vector, query.row, query.heads
        if isinstance(query, np.ndarray) and query.dtype != np.uint8:
            vec = np.asarray(query, np.float32).reshape(-1)
            if vec.shape[0] != self.dim:
                raise LookalikeError(f"query vector has {vec.shape[0]} dims, the index {self.dim}")
            return vec / max(float(np.linalg.norm(vec)), 1e-12), None, None
        if isinstance(query, (str, int)) and not isinstance(query, bool):
            pid = str(query)
            row = self._row_or_none(pid)
            if row is not None:
                return self.vectors_of([row])[0], row, None
            if not Path(pid).is_file():
                raise NotFoundError(f"{pid!r} is neither a product id in this index nor an image file")
        if with_heads and self.model.heads:
            out = embed_batch(self.model, [(0, query)], skip_errors=False, with_heads=True)
            return out.vectors[0], None, {h: p[0] for h, p in out.heads.items()}
        return self.model.encode(query), None, None

    # ---- what a store does its own way (`lookalike.index.postgres.PgIndex` does them in SQL) ----------------
    def _row_or_none(self, pid: str) -> int | None:
        return self._rows.get(str(pid))

    def _rows_of(self, ids: Sequence[str]) -> dict[str, int]:
        return {pid: self._rows[pid] for pid in ids if pid in self._rows}

    def _hash_of(self, row: int) -> int:
        """The first 64 bits of the product's image sha1 (0 when unknown)."""
        return int(self._hashes[row])

    def _nearest(self, vectors: np.ndarray, k: int, *, where: Where | None = None,
                 exclude: Sequence[set[int]] | None = None, exclude_hashes: Sequence[set[int]] | None = None,
                 collapse: bool = True) -> list[list[tuple[int, float]]]:
        """The best `k` (row, score) of each query vector among the products `where` keeps (see `top_k`)."""
        allowed, selector = self._filter(where)
        if allowed is not None and len(allowed) == 0:
            return [[] for _ in vectors]
        return top_k(self.faiss, vectors, k, allowed=allowed, exclude=exclude, selector=selector,
                     hashes=self._hashes if collapse else None, exclude_hashes=exclude_hashes)

    def _allowed(self, where: Where | None) -> np.ndarray | None:
        """The rows `where` keeps (None: all)."""
        return self._filter(where)[0]

    def _filter(self, where: Where | None):
        import faiss

        where = normalise_where(where)
        if not where:
            return None, None
        key = tuple(sorted((c, tuple(sorted(v))) for c, v in where.items()))

        def make():
            rows = self.meta.rows_where(where)
            if not len(rows):
                return rows, None
            if isinstance(self.faiss, ann.Refined):      # its scan checks a bitmap (a bit a product)
                return rows, self.faiss.selector(rows)
            return rows, faiss.IDSelectorBatch(rows)

        return self._selectors.get(key, make)

    # ---- writing ---------------------------------------------------------------------------------------
    def add(self, photos: str | Path | None, metadata: str | Path | None = None, *, replace: bool = False,
            batch_size: int = 64, progress: Progress | None = None, id_column: str | None = None,
            image_column: str | None = None, require_metadata: bool = False) -> BuildReport:
        """Embed new products (a photo folder and/or metadata CSV) and add them without rebuilding.
        Ids already in the index are left as they are (listed in the report) unless `replace`, which
        re-embeds them with their new photo and metadata."""
        catalog = Catalog.read(photos, metadata, id_column=id_column, image_column=image_column,
                               require_metadata=require_metadata)
        return self.add_products(catalog.products, catalog.columns, replace=replace, batch_size=batch_size,
                                 progress=progress, problems=catalog.problems)

    def add_products(self, products: Sequence[Product], columns: Sequence[str] | None = None, *,
                     replace: bool = False, batch_size: int = 64, progress: Progress | None = None,
                     problems: CatalogProblems | None = None) -> BuildReport:
        """Add `Product`s (id, photo path, metadata). `columns` orders the metadata columns (default: as
        they first appear in the products' metadata)."""
        started = time.perf_counter()
        if columns is None:
            columns = list(dict.fromkeys(c for p in products for c in p.metadata))
        progress = progress or NoProgress()
        md.merged_columns(self.columns, columns)      # clashing names are refused before any embedding
        with write_lock(self.path):
            self._reload()
            report, done, result = self._embed_new(products, set(self._rows), replace, batch_size, progress,
                                                   problems)
            if done:
                drop = {self._rows[p.id] for p in done if p.id in self._rows}
                self._rewrite(drop, result.vectors, done, result.hashes, list(columns))
            report.indexed = len(done)
        report.seconds = time.perf_counter() - started
        return report

    def _embed_new(self, products: Sequence[Product], present: set[str], replace: bool, batch_size: int,
                   progress: Progress, problems: CatalogProblems | None):
        """The products to add embedded (all of them with `replace`, else those not `present`): the report so
        far (already indexed, skipped), the products embedded, and the batch result."""
        report = BuildReport(problems=problems or CatalogProblems())
        todo = [p for p in products if replace or p.id not in present]
        report.already_indexed = [p.id for p in products if not replace and p.id in present]
        progress.start(len(todo), "adding")
        result = embed_batch(self.model, [(i, p.path) for i, p in enumerate(todo)], batch_size=batch_size,
                             progress=progress)
        report.skipped = [(todo[k].id, e) for k, e in result.errors]
        return report, [todo[i] for i in result.keys], result

    def remove(self, ids: Iterable[str], missing_ok: bool = False) -> int:
        """Remove products by id. Unknown ids raise `NotFoundError` (nothing removed) unless `missing_ok`."""
        ids = [str(i) for i in ids]
        with write_lock(self.path):
            self._reload()
            unknown = [i for i in ids if i not in self._rows]
            if unknown and not missing_ok:
                raise NotFoundError(f"not in the index: {', '.join(unknown[:10])}; nothing was removed")
            drop = {self._rows[i] for i in ids if i in self._rows}
            if drop:
                self._rewrite(drop, np.zeros((0, self.dim), np.float32), [], [], [])
            return len(drop)

    def _reload(self) -> None:
        fresh = Index(self.path, model=self._model)
        self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "report"})

    def _rewrite(self, drop: set[int], vectors: np.ndarray, products: list[Product], hashes: list[str],
                 columns: list[str]) -> None:
        """Write the next version: current rows minus `drop`, plus the new products, then reopen it."""
        import faiss

        keep = np.array([r for r in range(len(self)) if r not in drop], dtype=np.int64)
        old_columns = self.columns
        new_columns = md.merged_columns(old_columns, columns)
        settings = {k: v for k, v in self.manifest.items() if k not in ("files", "count", "format", "version")}
        settings["updated"] = _now()
        dtype = self.manifest["dtype"]

        def fill(tmp: Path) -> None:
            approximate = isinstance(self.faiss, ann.Refined)
            own = self.faiss.index if approximate else self.faiss   # the FAISS index behind an approximate one
            if drop and approximate:        # rows renumber: re-add them, keeping the trained quantisers
                index = faiss.clone_index(own)
                index.reset()
                for start in range(0, len(keep), 100_000):      # float32 a chunk at a time, not the whole catalog
                    index.add(self.vectors_of(keep[start:start + 100_000]))
            elif drop:
                index = _faiss_index(self.dim, self.manifest["index_type"], self.manifest["dtype"])
                index.add(self.vectors()[keep])
            else:
                index = faiss.clone_index(own)
            if len(vectors):
                index.add(vectors)
            stored = np.load(self.path / VECTORS, mmap_mode="r")
            all_vectors = np.concatenate([np.asarray(stored[keep]), vectors.astype(dtype)])
            _write_files(tmp, index, all_vectors, new_columns, _records(products, hashes, columns, len(keep)),
                         md.safe_columns(columns), settings, base=(self.path / md.FILE, drop, old_columns))

        write_atomically(self.path, fill)
        self._reload()


def _npy(data: bytes, path: Path) -> np.ndarray:
    """The array in the bytes of a .npy file, without copying them."""
    try:
        stream = io.BytesIO(data)
        major, _ = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
        return np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=stream.tell()).reshape(
            shape, order="F" if fortran else "C")
    except ValueError as exc:
        raise IndexStoreError(f"{path}: unreadable ({str(exc).splitlines()[0]}); rebuild the index") from None


def _check_options(index_type: str | None, dtype: str, out=None) -> str:
    """`index_type` checked, None meaning the store's default: exact (`flat`) for a directory, HNSW in a database."""
    if is_url(out):
        from . import postgres

        postgres.check_options(index_type or "hnsw", dtype)
        return "hnsw"
    index_type = index_type or "flat"
    if index_type not in INDEX_TYPES:
        raise LookalikeError(f"unknown index type {index_type!r} (choose {', '.join(INDEX_TYPES)})")
    if dtype not in DTYPES:
        raise LookalikeError(f"unknown vector dtype {dtype!r} (choose {', '.join(DTYPES)})")
    return index_type


def _check_target(out: "str | Path", photos: str | Path | None, overwrite: bool) -> "Path | str":
    """Refuse an `out` that build would refuse at the end (an existing folder that is not an index, the photo
    folder itself, an index without `overwrite`, a folder it cannot write; a database that cannot be reached)
    before any work is done or any file (a lock) is made. Returns `out` as a Path, or the URL of a database."""
    if is_url(out):
        from . import postgres

        postgres.check_target(out, overwrite)
        return out
    out = Path(out)
    if photos is not None and not is_remote(photos) and out.resolve() == Path(photos).resolve():
        raise IndexStoreError(f"{out} is the photo folder itself; write the index elsewhere (e.g. --out catalog.idx)")
    replaceable(out)
    writable_folder(out)
    if out.exists() and not overwrite:
        raise IndexStoreError(f"{out} already exists: pass overwrite (--overwrite) to rebuild it, "
                              "or use `lookalike add` to add products")
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _records(products: list[Product], hashes: list[str], columns: list[str], first_row: int):
    for offset, (product, digest) in enumerate(zip(products, hashes)):
        yield (first_row + offset, product.id, location(product.path),
               digest or None, *(product.metadata.get(c) for c in columns))


def _write_files(folder: Path, index, vectors: np.ndarray, columns: list[str], records, record_columns: list[str],
                 settings: dict, base: tuple[Path, set[int], list[str]] | None = None) -> None:
    """Write vectors, FAISS index and metadata, then the manifest. The table has `columns`; `records` are
    new rows whose metadata values follow `record_columns`; `base` = (old database, rows to drop, its
    columns) carries the old rows over, renumbered."""
    import faiss

    np.save(folder / VECTORS, vectors)
    faiss.write_index(index, str(folder / FAISS))
    db = md.create(folder / md.FILE, columns)
    try:
        if base is not None:
            old_path, drop, old_columns = base
            db.execute("ATTACH DATABASE ? AS old", (f"file:{old_path}?mode=ro",))
            db.execute("CREATE TEMP TABLE dropped (row INTEGER PRIMARY KEY)")
            db.executemany("INSERT INTO dropped VALUES (?)", ((r,) for r in drop))
            names = ", ".join(md.quote(c) for c in ("row", "id", "path", "sha1", *old_columns))
            picked = ", ".join(md.quote(c) for c in ("id", "path", "sha1", *old_columns))
            db.execute(f"INSERT INTO products ({names}) SELECT ROW_NUMBER() OVER (ORDER BY row) - 1, {picked} "
                       "FROM old.products WHERE row NOT IN (SELECT row FROM dropped) ORDER BY row")
            db.commit()
            db.execute("DETACH DATABASE old")
        md.insert(db, record_columns, records)
        db.commit()
        count = db.execute("SELECT COUNT(*) FROM products").fetchone()[0]
    except sqlite3.Error as exc:
        raise IndexStoreError(f"cannot write metadata: {exc}") from None
    finally:
        db.close()
    if count != index.ntotal or count != len(vectors):
        raise IndexStoreError(f"internal error: {count} metadata rows for {index.ntotal} vectors; nothing written")
    write_manifest(folder, {**settings, "count": count})


def _result(rec: dict, score: float) -> Result:
    meta = {k: v for k, v in rec.items() if k not in md.RESERVED}
    return Result(rec["id"], score, meta, rec.get("path"))


@dataclass
class _Prepared:
    """A query already turned into what searching needs (`Index._query_vector`), so work done for one step (the
    class `same` keeps) is not done again for the next (the search)."""
    vector: np.ndarray
    row: int | None
    heads: dict | None
    own: bool = True      # whether the row's own labels steer re-ranking (not when words changed the query)
