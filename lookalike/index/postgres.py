"""`PgIndex`: an `Index` kept in PostgreSQL + pgvector, opened with `Index.load("postgresql://user@host/db")`.

Everything an index does (search by photo, id or words, filters, `same=`, re-ranking, classify, shop the look,
add, remove) works the same; what differs is the store (`lookalike.index.database`):

- searches are SQL: pgvector's HNSW index in inner product over float16 vectors, filters as `WHERE` on the
  metadata columns, with pgvector's iterative index scan so a narrow filter still returns `k` products;
- add and remove are transactions: every server reading the database sees all of a write or none of it, and a
  killed `add` leaves the database as it was;
- the index object holds no products in memory, only caches of whole-catalog answers (facet counts, the labels
  that re-ranking reads, the full-text table), dropped when the database's version number changes (checked at
  most once a second, and whenever a search returns a product newer than the caches).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..catalog import CatalogProblems, Product
from ..errors import IndexStoreError, LookalikeError, NotFoundError
from ..models import Embedder, load_model
from ..progress import NoProgress, Progress
from ..rerank import LabelCodes
from ..search import Where, _kept, normalise_where
from . import metadata as md
from .database import (EF_SEARCH, HNSW_EF_CONSTRUCTION, HNSW_M, Database, PgMetadata, check_names, is_url,
                       where_sql)
from .index import BuildReport, Index, _now, _records

#: how often (seconds) an open index asks the database whether another process changed it
CHECK_EVERY = 1.0
#: a metadata column with at most this many distinct values gets a b-tree index (labels; not free text)
LABEL_VALUES = 1000

__all__ = ["PgIndex", "is_url", "create", "check_options", "check_target", "whole_catalog"]


class PgIndex(Index):
    """An index in a PostgreSQL database (see the module's notes). Open it with `Index.load(url)`."""

    def __init__(self, url: str, model: "str | Embedder | None" = None, verify: bool = False):
        self.db = Database(url)
        self.path = self.db.name        # what messages and `info` show: the URL without its password
        self._version: int | None = None
        self._checked = 0.0
        self._newest = -1               # the highest row a search has returned
        self._state_lock = threading.Lock()
        self._codes: dict[str, LabelCodes] = {}
        self._seen = _Recent()          # row -> (photo hash, vector): a row's never change (rows are not reused)
        self._fulltext = False
        self._fulltext_lock = threading.Lock()
        self._model: Embedder | None = None
        self.report: BuildReport | None = None
        self.meta = PgMetadata(self.db, [])
        self._refresh(force=True)
        if model is not None:
            self._model = self._check_model(load_model(model))

    def close(self) -> None:
        """Close the connection pool (it is opened again on the next use)."""
        self.db.close()

    def _refresh(self, force: bool = False) -> None:
        """Take another process's writes into account: the manifest, columns and count, and caches dropped."""
        now = time.monotonic()
        if not force and now - self._checked < CHECK_EVERY:
            return
        state = self.db.state()
        with self._state_lock:
            self._checked = now
            if state["version"] != self._version:     # (a rebuild numbers rows from 0 again: forget them too)
                self.manifest = {**state["manifest"], "count": state["count"]}
                self._count = state["count"]
                self.meta.forget(state["columns"])
                self._codes, self._fulltext, self._version = {}, False, state["version"]
                self._seen, self._newest = _Recent(), -1

    # ---- reading ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        self._refresh()
        return self._count

    def __contains__(self, pid: object) -> bool:
        return self._row_or_none(str(pid)) is not None

    @property
    def ids(self) -> list[str]:
        """Every product id, in row order (reads them all: for batch jobs, not for requests)."""
        return self.meta.ids()

    @property
    def columns(self) -> list[str]:
        self._refresh()
        return self.meta.columns

    def row(self, pid: str) -> int:
        row = self._row_or_none(pid)
        if row is None:
            raise NotFoundError(f"no product with id {pid!r}")
        return row

    def _row_or_none(self, pid: str) -> int | None:
        """The product's row; its photo hash and vector are kept for the search that usually follows."""
        found = self.meta._select("SELECT row, sha1, vector FROM {products} WHERE id = %s", (str(pid),))
        if not found:
            return None
        row, sha1, vector = found[0]
        self._seen.put(row, (_hash(sha1), vector))
        self._newest = max(self._newest, row)
        return row

    def _rows_of(self, ids: Sequence[str]) -> dict[str, int]:
        return dict(self.meta._select("SELECT id, row FROM {products} WHERE id = ANY(%s)", (list(ids),)))

    def _hash_of(self, row: int) -> int:
        seen = self._seen.get(row)
        if seen is not None:
            return seen[0]
        found = self.meta._select("SELECT sha1 FROM {products} WHERE row = %s", (int(row),))
        return _hash(found[0][0]) if found else 0

    def vector(self, pid: str) -> np.ndarray:
        return self.vectors_of([self.row(pid)])[0]

    def vectors(self) -> np.ndarray:
        found = self.meta._select("SELECT vector FROM {products} ORDER BY row")
        return np.stack([v for (v,) in found]) if found else np.zeros((0, self.dim), np.float32)

    def vectors_of(self, rows: Sequence[int]) -> np.ndarray:
        rows = [int(r) for r in rows]
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        if len(rows) == 1 and self._seen.get(rows[0]) is not None:
            return self._seen.get(rows[0])[1][None]
        found = dict(self.meta._select("SELECT row, vector FROM {products} WHERE row = ANY(%s)", (rows,)))
        missing = [r for r in rows if r not in found]
        if missing:
            raise NotFoundError(f"no product at row {missing[0]} (removed meanwhile?)")
        return np.stack([found[r] for r in rows])

    def random_id(self, where: Where | None = None) -> str | None:
        """A product `where` keeps, at a random place in row order (not uniform: the first after a random row)."""
        where = normalise_where(where)
        self.meta.check_where(where)
        clause, params = where_sql(where)
        pick = " AND " if clause else " WHERE "
        sql = "SELECT id FROM {products}" + clause + pick + "row >= %s ORDER BY row LIMIT 1"
        top = self.meta._select("SELECT COALESCE(MAX(row), -1) FROM {products}")[0][0]
        for start in (int(np.random.randint(0, top + 1)) if top >= 0 else 0, 0):
            found = self.meta._select(sql, [*params, start])
            if found:
                return found[0][0]
        return None

    def info(self) -> dict:
        self._refresh(force=True)
        m = self.manifest
        size = self.meta._select("SELECT pg_total_relation_size(%s)", (self.db.products,))[0][0]
        return {"path": self.path, "products": self._count, "model": m["model"], "index_type": m["index_type"],
                "dtype": m["dtype"], "columns": self.columns, "created": m.get("created"),
                "updated": m.get("updated"), "bytes": int(size)}

    def snapshot(self, folder) -> Index:
        """A directory index (exact search) of the products as they are now, read in one transaction: what batch
        jobs over the whole catalog (`evaluate`, `recommend-all`) run on, with rows numbered densely."""
        with self.db.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            columns = list(conn.execute(f"SELECT columns FROM {md.quote(self.db.settings)}").fetchone()[0])
            names = ", ".join(md.quote(c) for c in ("id", "path", "sha1", *columns, "vector"))
            found = conn.execute(f"SELECT {names} FROM {md.quote(self.db.products)} ORDER BY row",
                                 binary=True).fetchall()
        products = [Product(r[0], r[1], {c: v for c, v in zip(columns, r[3:-1]) if v is not None}) for r in found]
        vectors = np.stack([r[-1] for r in found]) if found else np.zeros((0, self.dim), np.float32)
        Index._create(Path(folder), self.manifest["model"], vectors, products, [r[2] for r in found], columns,
                      "flat", "float16", True, None)
        return Index.load(folder, model=self._model)

    # ---- searching -------------------------------------------------------------------------------------
    def _nearest(self, vectors: np.ndarray, k: int, *, where: Where | None = None,
                 exclude: Sequence[set[int]] | None = None, exclude_hashes: Sequence[set[int]] | None = None,
                 collapse: bool = True) -> list[list[tuple[int, float]]]:
        self._refresh()
        where = normalise_where(where)
        self.meta.check_where(where)
        clause, params = where_sql(where)
        sql = (f"SELECT row, sha1, vector <#> %s AS distance FROM {{products}}{clause} "
               "ORDER BY distance LIMIT %s")
        out = []
        for qi, vec in enumerate(np.asarray(vectors, np.float32)):
            skip = exclude[qi] if exclude else set()
            skip_hashes = exclude_hashes[qi] if exclude_hashes else set()
            fetch = k + len(skip) + (k if collapse else 0) + 8
            while True:
                found = sorted(self.meta._select(sql, [vec, *params, fetch]), key=lambda r: r[2])  # iterative
                rows = [r for r, _, _ in found]       # scans return nearly, not exactly, in order
                if rows:
                    self._newest = max(self._newest, max(rows))
                positions = np.arange(len(found))
                kept = _kept(positions, np.array([-d for _, _, d in found], np.float64), k,
                             {i for i, r in enumerate(rows) if r in skip},
                             np.array([_hash(h) for _, h, _ in found], np.int64) if collapse else None,
                             skip_hashes)
                if len(kept) >= k or len(found) < fetch:
                    break
                fetch *= 4
            out.append([(rows[i], score) for i, score in kept])
        return out

    def _allowed(self, where: Where | None) -> np.ndarray | None:
        where = normalise_where(where)
        if not where:
            return None
        rows = self.meta.rows_where(where)
        if len(rows):
            self._newest = max(self._newest, int(rows.max()))
        return rows

    def _label_codes(self, column: str) -> LabelCodes:
        """A column's labels by row (`LabelCodes`), read once per version of the database. A row newer than them
        (added by another process since) makes them read again if the version moved; a row they still lack
        (added and removed meanwhile) counts as unlabelled."""
        codes = self._codes.get(column)
        if codes is not None and len(codes.rows) <= self._newest:
            self._refresh(force=True)
            codes = self._codes.get(column)
        if codes is None:
            codes = self._codes[column] = LabelCodes(self.meta.column(column))
        if len(codes.rows) <= self._newest:
            codes.rows = np.concatenate([codes.rows, np.full(self._newest + 1 - len(codes.rows), -1, np.int32)])
        return codes

    def fulltext(self):
        self._refresh()
        return super().fulltext()

    # ---- writing ---------------------------------------------------------------------------------------
    def add_products(self, products: Sequence[Product], columns: Sequence[str] | None = None, *,
                     replace: bool = False, batch_size: int = 64, progress: Progress | None = None,
                     problems: CatalogProblems | None = None) -> BuildReport:
        """As `Index.add_products`; the new products appear to every reader at once, in one transaction."""
        started = time.perf_counter()
        if columns is None:
            columns = list(dict.fromkeys(c for p in products for c in p.metadata))
        progress = progress or NoProgress()
        self._refresh(force=True)
        check_names(md.merged_columns(self.columns, columns))     # refused before any embedding
        present = {pid for (pid,) in self.meta._select("SELECT id FROM {products} WHERE id = ANY(%s)",
                                                       ([p.id for p in products],))}
        report, done, result = self._embed_new(products, present, replace, batch_size, progress, problems)
        if done:
            inserted = self._insert(done, result.vectors, result.hashes, list(columns), replace)
            report.indexed = len(inserted)
            report.already_indexed += [p.id for p in done if p.id not in inserted]   # added meanwhile by another
        report.seconds = time.perf_counter() - started
        return report

    def _insert(self, products: list[Product], vectors: np.ndarray, hashes: list[str], columns: list[str],
                replace: bool) -> set[str]:
        """One transaction: new columns, the rows (replacing, or keeping products another writer added
        meanwhile), the count and the version. Returns the ids inserted."""
        db = self.db
        with db.connection() as conn, conn.transaction():
            _lock(conn, db)
            stored = list(conn.execute(f"SELECT columns FROM {md.quote(db.settings)}").fetchone()[0])
            merged = md.merged_columns(stored, columns)
            safe = md.safe_columns(columns)
            for name in merged[len(stored):]:
                conn.execute(f"ALTER TABLE {md.quote(db.products)} ADD COLUMN {md.quote(name)} text")
            ids = [p.id for p in products]
            if replace:
                removed = conn.execute(f"DELETE FROM {md.quote(db.products)} WHERE id = ANY(%s)", (ids,)).rowcount
            else:
                removed = 0
                there = {pid for (pid,) in conn.execute(
                    f"SELECT id FROM {md.quote(db.products)} WHERE id = ANY(%s)", (ids,))}
                keep = [i for i, p in enumerate(products) if p.id not in there]
                products, vectors, hashes = [products[i] for i in keep], vectors[keep], [hashes[i] for i in keep]
            _copy(conn, db, safe, _records(products, hashes, columns, 0), vectors)
            conn.execute(f"UPDATE {md.quote(db.settings)} SET columns = %s, count = count + %s, version = version + 1, "
                         "manifest = manifest || jsonb_build_object('updated', %s::text)",
                         (_json(merged), len(products) - removed, _now()))
        self._refresh(force=True)
        return {p.id for p in products}

    def remove(self, ids: Iterable[str], missing_ok: bool = False) -> int:
        ids = [str(i) for i in ids]
        db = self.db
        with db.connection() as conn, conn.transaction():
            _lock(conn, db)
            found = {pid for (pid,) in conn.execute(
                f"SELECT id FROM {md.quote(db.products)} WHERE id = ANY(%s)", (ids,))}
            unknown = [i for i in ids if i not in found]
            if unknown and not missing_ok:
                raise NotFoundError(f"not in the index: {', '.join(unknown[:10])}; nothing was removed")
            removed = conn.execute(f"DELETE FROM {md.quote(db.products)} WHERE id = ANY(%s)", (ids,)).rowcount
            conn.execute(f"UPDATE {md.quote(db.settings)} SET count = count - %s, version = version + 1, "
                         "manifest = manifest || jsonb_build_object('updated', %s::text)", (removed, _now()))
        self._refresh(force=True)
        return removed


@contextlib.contextmanager
def whole_catalog(index: Index) -> Iterator[Index]:
    """`index` itself, or for a database a snapshot of it in a temporary folder (`PgIndex.snapshot`)."""
    if not isinstance(index, PgIndex):
        yield index
        return
    with tempfile.TemporaryDirectory(prefix="lookalike-snapshot-") as tmp:
        yield index.snapshot(Path(tmp) / "snapshot.idx")


# ---- building ----------------------------------------------------------------------------------------------
def check_target(url: str, overwrite: bool) -> None:
    """Refuse, before any photo is embedded, a database that cannot be reached, lacks pgvector (and may not
    create it), or already holds this index without `overwrite`."""
    db = Database(url)
    try:
        _ensure_extension(db)
        if db.exists() and not overwrite:
            raise IndexStoreError(f"{db.name} already holds an index: pass overwrite (--overwrite) to rebuild it, "
                                  "or use `lookalike add` to add products")
    finally:
        db.close()


def check_options(index_type: str, dtype: str) -> None:
    if index_type not in ("auto", "hnsw"):
        raise LookalikeError(f"a PostgreSQL index is pgvector's HNSW (--index-type auto or hnsw); {index_type} is "
                             "for a directory index")
    if dtype != "float16":
        raise LookalikeError("a PostgreSQL index keeps float16 vectors (halfvec); --dtype float32 is for a "
                             "directory index")


def create(url: str, model: dict, vectors: np.ndarray, products: list[Product], hashes: Sequence,
           columns: list[str], index_type: str, dtype: str, overwrite: bool) -> None:
    """Write a new index into the database in one transaction: readers see the old one until it commits."""
    check_options(index_type, dtype)
    safe = md.safe_columns(columns)
    check_names(safe)
    db = Database(url)
    settings = {"model": {k: model[k] for k in ("name", "id", "dim", "source") if k in model},
                "metric": "cosine", "index_type": "hnsw", "store": "postgresql", "dtype": "float16",
                "hnsw": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": EF_SEARCH},
                "created": _now()}
    products_table, new = md.quote(db.products), md.quote(db.products + "_new")
    labels = [name for c, name in zip(columns, safe) if len({p.metadata.get(c) for p in products}) <= LABEL_VALUES]
    try:
        _ensure_extension(db)
        with db.connection() as conn, conn.transaction():
            _lock(conn, db)
            if not overwrite and conn.execute("SELECT to_regclass(%s) IS NOT NULL", (db.settings,)).fetchone()[0]:
                raise IndexStoreError(f"{db.name} already holds an index: pass overwrite (--overwrite)")
            conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
            conn.execute(f"DROP TABLE IF EXISTS {new}")
            cols = "".join(f", {md.quote(c)} text" for c in safe)
            conn.execute(f"CREATE TABLE {new} (row bigint GENERATED BY DEFAULT AS IDENTITY (MINVALUE 0 START WITH 0) "
                         f"PRIMARY KEY, id text NOT NULL UNIQUE, path text, sha1 text{cols}, "
                         f"vector halfvec({int(model['dim'])}) NOT NULL)")
            _copy(conn, db, safe, _records(products, list(hashes), columns, 0), vectors, table=db.products + "_new")
            conn.execute(f"CREATE INDEX ON {new} USING hnsw (vector halfvec_ip_ops) "
                         f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
            for name in labels:
                conn.execute(f"CREATE INDEX ON {new} ({md.quote(name)})")
            conn.execute(f"ANALYZE {new}")     # the planner's statistics: which filter is narrow, which is wide
            had = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (db.settings,)).fetchone()[0]
            version = conn.execute(f"SELECT version FROM {md.quote(db.settings)}").fetchone()[0] if had else 0
            conn.execute(f"DROP TABLE IF EXISTS {products_table}")
            conn.execute(f"ALTER TABLE {new} RENAME TO {products_table}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {md.quote(db.settings)} (one boolean PRIMARY KEY DEFAULT true "
                         "CHECK (one), manifest jsonb NOT NULL, columns jsonb NOT NULL, count bigint NOT NULL, "
                         "version bigint NOT NULL)")
            conn.execute(f"DELETE FROM {md.quote(db.settings)}")
            conn.execute(f"INSERT INTO {md.quote(db.settings)} (manifest, columns, count, version) "
                         "VALUES (%s, %s, %s, %s)", (_json(settings), _json(safe), len(products), version + 1))
    finally:
        db.close()


def _ensure_extension(db: Database) -> None:
    import psycopg

    with db.errors():
        with psycopg.connect(db.conninfo, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
                return
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                raise IndexStoreError(f"{db.where}: pgvector is not installed in this database and user "
                                      f"{db.user or '?'} cannot install it ({str(exc).splitlines()[0]}); "
                                      "ask an administrator for CREATE EXTENSION vector") from None


def _lock(conn, db: Database) -> None:
    """One writer at a time per index (released when the transaction ends, even when the process is killed)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (db.products,))


def _copy(conn, db: Database, columns: list[str], records, vectors: np.ndarray, table: str | None = None) -> None:
    """COPY the rows (binary; vectors as halfvec). `records` as `index._records` makes them (row first: the
    database numbers the rows itself)."""
    oid = db._types["halfvec"]
    names = ", ".join(md.quote(c) for c in ("id", "path", "sha1", *columns, "vector"))
    with conn.cursor().copy(f"COPY {md.quote(table or db.products)} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["text"] * (3 + len(columns)) + [oid])
        for record, vec in zip(records, vectors):
            copy.write_row((*(None if v is None else str(v) for v in record[1:]), vec))


def _json(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def _hash(sha1: str | None) -> int:
    return int(sha1[:15], 16) if sha1 else 0


class _Recent:
    """A small least-recently-used map, safe to share between threads."""

    def __init__(self, size: int = 4096):
        self._items: OrderedDict = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self._size:
                self._items.popitem(last=False)
