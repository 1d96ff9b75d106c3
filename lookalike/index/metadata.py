"""Product metadata in SQLite: one row per indexed vector, in vector order.

Table `products(row, id, path, sha1, <one TEXT column per metadata column>)`. `row` is the product's
position in the vector matrix and the FAISS index. Each index version's database is immutable once in
place, so readers open it read-only and immutable. One connection is opened when the index is loaded and
shared by all threads (serialised by a lock; queries take microseconds): an index object keeps reading the
version it loaded even after a writer has swapped a newer one into the same path.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
import threading
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import FilterError, IndexStoreError, listed

FILE = "metadata.sqlite"
RESERVED = ("row", "id", "path", "sha1")
#: names a metadata column is renamed from (`NAME_meta`): the built-in columns, and the PostgreSQL store's vector
RENAMED = RESERVED + ("vector",)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: SQLite allows 2,000 columns a table; a catalog with more is a CSV read wrongly (or not a catalog).
MAX_COLUMNS = 1000


def safe_columns(columns: Iterable[str]) -> list[str]:
    """Metadata column names as stored: a name that clashes with a built-in column (in any case: SQLite's names
    are case-insensitive) gets a `_meta` suffix. Names that would still clash, differing only in case, are refused
    with the pairs named, as are more than `MAX_COLUMNS` columns: before any photo is embedded."""
    columns = list(columns)
    if len(columns) > MAX_COLUMNS:
        raise FilterError(f"the metadata has {len(columns):,} columns, over the limit of {MAX_COLUMNS:,}: is it the "
                          "right file, read with the right delimiter?")
    out = [f"{c}_meta" if c.lower() in RENAMED else c for c in columns]
    seen: dict[str, str] = {}
    clashes = []
    for original, name in zip(columns, out):
        if name.lower() in seen:
            clashes.append(f"{seen[name.lower()]!r} and {original!r}")
        seen.setdefault(name.lower(), original)
    if clashes:
        raise FilterError(f"metadata columns whose names differ only in case: {'; '.join(clashes[:5])}; rename one "
                          "of each pair (column names are case-insensitive in the index)")
    return out


def merged_columns(old: Sequence[str], new: Iterable[str]) -> list[str]:
    """An index's stored columns followed by those of `new` (as `safe_columns` stores them) that it lacks; a new
    name that differs from a stored one only in case is refused, as within one header."""
    added = [c for c in safe_columns(new) if c not in old]
    stored = {c.lower(): c for c in old}
    clashes = [f"{stored[c.lower()]!r} (in the index) and {c!r}" for c in added if c.lower() in stored]
    if clashes:
        raise FilterError(f"metadata columns whose names differ only in case: {'; '.join(clashes[:5])}; use the "
                          "index's spelling")
    return list(old) + added


def create(path: Path, columns: Sequence[str]) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    cols = "".join(f", {quote(c)} TEXT" for c in columns)
    db.execute(f"CREATE TABLE products (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, path TEXT, sha1 TEXT{cols})")
    return db


def insert(db: sqlite3.Connection, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    names = ", ".join(quote(c) for c in ("row", "id", "path", "sha1", *columns))
    marks = ", ".join("?" * (4 + len(columns)))
    db.executemany(f"INSERT INTO products ({names}) VALUES ({marks})", rows)


class MetadataStore:
    """Read-only access to an index's metadata, safe to share between threads."""

    def __init__(self, path: Path, data: bytes | None = None):
        """Open the metadata file at `path`, or (`data`) its bytes as read from one version of the index (then
        the database lives in memory and no later swap of the folder can change what this store answers)."""
        self.path = path
        if data is not None and hasattr(sqlite3.Connection, "deserialize"):     # Python 3.11+
            self._conn = sqlite3.connect(":memory:", check_same_thread=False)
            try:
                self._conn.deserialize(data)
            except sqlite3.DatabaseError:
                raise IndexStoreError(f"{path}: not an SQLite database (damaged); rebuild the index") from None
        else:
            # an SQLite URI: the path is percent-encoded, so '%41', '#' or '?' in a folder name stay part of the name
            uri = "file:" + urllib.parse.quote(str(Path(path).absolute())) + "?mode=ro&immutable=1"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        try:
            info = self._query("PRAGMA table_info(products)")
        except sqlite3.DatabaseError:
            raise IndexStoreError(f"{path}: not an SQLite database (damaged); rebuild the index") from None
        if not info:
            raise IndexStoreError(f"{path}: holds no product table (damaged); rebuild the index")
        self.columns = [r[1] for r in info if r[1] not in RESERVED]
        self._facets: dict[str, list[tuple[str, int]]] = {}   # an index version never changes: count once

    def _query(self, sql: str, params=(), with_names: bool = False):
        """Rows of `sql`. A damaged page past the header is only found when a query reads it: SQLite's "database
        disk image is malformed" (a plain DatabaseError, not one of its subclasses for misuse) is the index's
        damage, told in one line."""
        with self._lock:
            try:
                cur = self._conn.execute(sql, params)
                rows = cur.fetchall()
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:
                    raise
                raise IndexStoreError(f"{self.path}: {exc} (damaged); rebuild the index") from None
            return (rows, [d[0] for d in cur.description]) if with_names else rows

    def ids(self) -> list[str]:
        return [r[0] for r in self._query("SELECT id FROM products ORDER BY row")]

    def hashes(self) -> np.ndarray:
        """First 64 bits of each product's image sha1 as int64, by row (0 when unknown)."""
        return np.array([int(h[:15], 16) if h else 0 for (h,) in
                         self._query("SELECT sha1 FROM products ORDER BY row")], dtype=np.int64)

    def records(self, rows: Sequence[int]) -> dict[int, dict]:
        """Full records for the given rows, by row."""
        out: dict[int, dict] = {}
        rows = [int(r) for r in rows]
        for start in range(0, len(rows), 900):
            part = rows[start:start + 900]
            found, names = self._query(f"SELECT * FROM products WHERE row IN ({','.join('?' * len(part))})", part,
                                       with_names=True)
            for values in found:
                rec = dict(zip(names, values))
                out[rec["row"]] = rec
        return out

    def column(self, name: str) -> list:
        self._check_column(name)
        return [r[0] for r in self._query(f"SELECT {quote(name)} FROM products ORDER BY row")]

    def sample(self, columns: Sequence[str], n: int) -> dict[str, list]:
        """Up to `n` values of each column, spread over the rows (for telling free text from labels)."""
        if not columns:
            return {}
        total = self._query("SELECT COUNT(*) FROM products")[0][0]
        step = max(1, total // max(n, 1))
        names = ", ".join(quote(c) for c in columns)
        found = self._query(f"SELECT {names} FROM products WHERE row % ? = 0 ORDER BY row LIMIT ?", (step, n))
        return {c: [r[i] for r in found] for i, c in enumerate(columns)}

    def rows_of(self, columns: Sequence[str]) -> list[tuple]:
        """(row, *values) of every product for `columns`."""
        for c in columns:
            self._check_column(c)
        names = ", ".join(quote(c) for c in columns)
        return self._query(f"SELECT row, {names} FROM products ORDER BY row")

    def facets(self, name: str) -> list[tuple[str, int]]:
        """Values of a column with their counts, most common first."""
        self._check_column(name)
        if name not in self._facets:
            q = quote(name)
            self._facets[name] = [(v, n) for v, n in self._query(
                f"SELECT {q}, COUNT(*) AS n FROM products WHERE {q} IS NOT NULL GROUP BY {q} ORDER BY n DESC, {q}")]
        return self._facets[name]

    def _check_column(self, name: str) -> None:
        if name not in self.columns:
            known = listed(self.columns) or "none: this index has no metadata"
            raise FilterError(f"unknown column {name!r}; columns are: {known}")

    def check_where(self, where: dict[str, list[str]]) -> None:
        """A `FilterError` naming the first unknown column or value (with the known ones) of `where`."""
        for column, values in where.items():
            self._check_column(column)
            known = {v for v, _ in self.facets(column)}
            unknown = [v for v in values if v not in known]
            if unknown:
                sample = sorted(known)
                hint = ", ".join(sample[:30]) + (f", ... ({len(sample)} values)" if len(sample) > 30 else "")
                raise FilterError(f"no product has {column}={unknown[0]!r}; known values: {hint}")

    def rows_where(self, where: dict[str, list[str]]) -> np.ndarray:
        """Rows matching every column's list of accepted values."""
        self.check_where(where)
        clauses, params = [], []
        for column, values in where.items():
            clauses.append(f"{quote(column)} IN ({','.join('?' * len(values))})")
            params.extend(values)
        sql = "SELECT row FROM products" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        return np.fromiter((r for (r,) in self._query(sql, params)), dtype=np.int64)
