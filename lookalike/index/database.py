"""A PostgreSQL database holding an index: its address, connections, tables and metadata queries.

An index in PostgreSQL is two tables (their prefix is `lookalike`, or `?table=NAME` in the URL):

- `NAME_products(row, id, path, sha1, <one TEXT column per metadata column>, vector halfvec(D))`: `row` is a
  product's key (never reused), `vector` its unit search vector in float16, with an HNSW index (pgvector,
  inner product) and a b-tree index on each label-like metadata column (filters are SQL on them);
- `NAME_index`: one row with the manifest (model, created, updated), the metadata columns in order, the product
  count and a version number that every write increments (servers drop their caches when it changes).

Connections come from a pool (psycopg 3). A database that is down or refuses the login is `DatabaseUnavailable`:
one line naming the host and user, never the password; `lookalike serve` answers 503 with it and recovers by
itself when the database is back.
"""

from __future__ import annotations

import contextlib
import re
import struct
import threading
import urllib.parse
from typing import Iterator, Sequence

import numpy as np

from ..errors import FilterError, IndexStoreError, LookalikeError, listed
from .metadata import MetadataStore, quote


def ident(name: str) -> str:
    """A quoted name for SQL that psycopg also reads placeholders in (a `%` in a column name is doubled)."""
    return quote(name).replace("%", "%%")

SCHEMES = ("postgresql://", "postgres://")
DEFAULT_TABLE = "lookalike"
#: PostgreSQL truncates longer names (63 bytes), which would make two columns one
MAX_NAME_BYTES = 63
#: how long a request waits for a connection before the database counts as unavailable
CONNECT_TIMEOUT = 3


class DatabaseUnavailable(IndexStoreError):
    """The database cannot be reached or refuses the login: the server answers 503, and retrying may work."""


def is_url(path) -> bool:
    """Whether `path` names a database (`postgresql://...`) rather than a directory."""
    return isinstance(path, str) and path.lower().startswith(SCHEMES)


def _require_psycopg():
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise LookalikeError("a postgresql:// index needs psycopg: pip install 'lookalike[postgres]'") from None
    return psycopg, psycopg_pool


class Database:
    """One database URL: where it is (for messages, without the password), its tables, and a connection pool."""

    def __init__(self, url: str):
        psycopg, _ = _require_psycopg()
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        table = (query.pop("table", None) or [DEFAULT_TABLE])[-1]
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", table):
            raise IndexStoreError(f"bad table name {table!r} in the URL: use lower-case letters, digits and _")
        self.conninfo = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, doseq=True)))
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        except psycopg.ProgrammingError as exc:
            raise IndexStoreError(f"bad database URL: {_first_line(exc, parts.password)}") from None
        self.password = info.get("password") or None
        host = str(info.get("host") or "localhost")
        port = str(info.get("port") or 5432)
        self.user = str(info.get("user") or "")
        self.where = f"PostgreSQL at {host}" + ("" if host.startswith("/") else f":{port}")
        shown = "" if host.startswith("/") else f"{host}:{port}"
        self.name = (f"postgresql://{self.user + '@' if self.user else ''}{shown}/{info.get('dbname') or ''}"
                     + (f"?table={table}" if table != DEFAULT_TABLE else ""))
        self.table = table
        self.products, self.settings = f"{table}_products", f"{table}_index"
        self._pool = None
        self._lock = threading.Lock()
        self._types: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"Database({self.name!r})"

    # ---- connections ------------------------------------------------------------------------------------
    def _open_pool(self):
        psycopg, psycopg_pool = _require_psycopg()
        with self._lock:
            if self._pool is None:
                with self.errors():     # the first connection: a precise error (refused, bad login) at once
                    psycopg.connect(self.conninfo, connect_timeout=CONNECT_TIMEOUT).close()
                self._pool = psycopg_pool.ConnectionPool(
                    self.conninfo, min_size=1, max_size=16, open=False, configure=self._configure,
                    check=psycopg_pool.ConnectionPool.check_connection, name=self.name,
                    kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT}, reconnect_timeout=0)
                self._pool.open(wait=False)
            return self._pool

    def _configure(self, conn) -> None:
        """Each new connection: numpy vectors in and out as binary halfvec, and pgvector's search settings."""
        if "halfvec" not in self._types:
            from psycopg.types import TypeInfo

            found = TypeInfo.fetch(conn, "halfvec")
            if found is None:
                raise IndexStoreError(f"{self.where}: the pgvector extension is not installed in this database "
                                      "(CREATE EXTENSION vector, as a superuser)")
            self._types["halfvec"] = found.oid
        _register_halfvec(conn, self._types["halfvec"])
        conn.execute("SET hnsw.iterative_scan = relaxed_order")     # filtered searches still find k products
        conn.execute(f"SET hnsw.ef_search = {EF_SEARCH}")

    @contextlib.contextmanager
    def connection(self) -> Iterator:
        """A pooled connection (autocommit; `with conn.transaction():` for writes), with the database's
        failures as one-line errors."""
        pool = self._open_pool()
        with self.errors():
            with pool.connection(timeout=CONNECT_TIMEOUT) as conn:
                yield conn

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        psycopg, psycopg_pool = _require_psycopg()
        try:
            yield
        except psycopg.errors.UndefinedTable:
            raise IndexStoreError(f"{self.name}: no lookalike index here (build one with `lookalike index PHOTOS "
                                  f"--out {self.name}`)") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise IndexStoreError(f"{self.where}: user {self.user or '?'} may not do this: "
                                  f"{_first_line(exc, self.password)}") from None
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            reason = ("no connection within "
                      f"{CONNECT_TIMEOUT} s" if isinstance(exc, psycopg_pool.PoolTimeout) else _first_line(exc, self.password))
            raise DatabaseUnavailable(f"cannot use {self.where} (user {self.user or 'default'}): {reason}") from None
        except psycopg.Error as exc:
            raise IndexStoreError(f"{self.where}: {_first_line(exc, self.password)}") from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # ---- what the tables hold ---------------------------------------------------------------------------
    def exists(self) -> bool:
        with self.connection() as conn:
            return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.settings,)).fetchone()[0]

    def state(self) -> dict:
        """The index row: manifest, columns, count, version."""
        with self.connection() as conn:
            found = conn.execute(f"SELECT manifest, columns, count, version FROM {quote(self.settings)}").fetchone()
        if found is None:
            raise IndexStoreError(f"{self.name}: the index table is empty (damaged); rebuild the index")
        manifest, columns, count, version = found
        return {"manifest": manifest, "columns": list(columns), "count": int(count), "version": int(version)}


#: pgvector's HNSW: graph degree and build-time candidate list (its defaults), and the search-time list
HNSW_M, HNSW_EF_CONSTRUCTION, EF_SEARCH = 16, 64, 100


def _first_line(exc: Exception, password: str | None) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    line = re.sub(r"^connection failed: ", "", line)
    return line.replace(password, "***") if password else line


def _register_halfvec(conn, oid: int) -> None:
    """NumPy arrays go to PostgreSQL as binary halfvec, and halfvec comes back as float32 arrays."""
    from psycopg.adapt import Dumper, Loader
    from psycopg.pq import Format

    class HalfvecDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj):
            vec = np.asarray(obj, dtype=">f2").reshape(-1)
            return struct.pack(">HH", len(vec), 0) + vec.tobytes()

    class HalfvecLoader(Loader):
        format = Format.BINARY

        def load(self, data):
            dim = struct.unpack_from(">H", data)[0]
            return np.frombuffer(bytes(data), dtype=">f2", count=dim, offset=4).astype(np.float32)

    HalfvecDumper.oid = oid
    conn.adapters.register_dumper(np.ndarray, HalfvecDumper)
    conn.adapters.register_dumper(None, HalfvecDumper)      # for COPY with set_types
    conn.adapters.register_loader(oid, HalfvecLoader)


def check_names(columns: Sequence[str]) -> None:
    """Refuse column names PostgreSQL would truncate, before any photo is embedded."""
    long = [c for c in columns if len(c.encode()) > MAX_NAME_BYTES]
    if long:
        raise FilterError(f"metadata column names over {MAX_NAME_BYTES} bytes cannot be stored in PostgreSQL: "
                          f"{listed(long, 3)}; shorten them")


class PgMetadata(MetadataStore):
    """The metadata queries of `MetadataStore`, answered by the database. Facet counts are cached until the
    index's version changes (`forget`)."""

    def __init__(self, db: Database, columns: Sequence[str]):
        self.db, self.path = db, db.name
        self.columns = list(columns)
        self._facets: dict[str, list[tuple[str, int]]] = {}

    def forget(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._facets = {}

    def _select(self, sql: str, params=(), with_names: bool = False):
        with self.db.connection() as conn:
            cur = conn.execute(sql.replace("{products}", ident(self.db.products)), params, binary=True)
            rows = cur.fetchall()
            return (rows, [d.name for d in cur.description]) if with_names else rows

    def ids(self) -> list[str]:
        return [r[0] for r in self._select("SELECT id FROM {products} ORDER BY row")]

    def records(self, rows: Sequence[int]) -> dict[int, dict]:
        rows = [int(r) for r in rows]
        if not rows:
            return {}
        names = ", ".join(ident(c) for c in ("row", "id", "path", "sha1", *self.columns))
        found, header = self._select(f"SELECT {names} FROM {{products}} WHERE row = ANY(%s)", (rows,), with_names=True)
        return {rec["row"]: rec for rec in (dict(zip(header, values)) for values in found)}

    def column(self, name: str) -> list:
        """The column's values by row (None where no product has that row)."""
        self._check_column(name)
        found = self._select(f"SELECT row, {ident(name)} FROM {{products}}")
        out: list = [None] * (max((r for r, _ in found), default=-1) + 1)
        for row, value in found:
            out[row] = value
        return out

    def sample(self, columns: Sequence[str], n: int) -> dict[str, list]:
        if not columns:
            return {}
        names = ", ".join(ident(c) for c in columns)
        total = self._select("SELECT COUNT(*) FROM {products}")[0][0]
        step = max(1, total // max(n, 1))
        found = self._select(f"SELECT {names} FROM {{products}} WHERE row %% %s = 0 ORDER BY row LIMIT %s", (step, n))
        return {c: [r[i] for r in found] for i, c in enumerate(columns)}

    def rows_of(self, columns: Sequence[str]) -> list[tuple]:
        for c in columns:
            self._check_column(c)
        names = ", ".join(ident(c) for c in columns)
        return self._select(f"SELECT row, {names} FROM {{products}} ORDER BY row")

    def facets(self, name: str) -> list[tuple[str, int]]:
        self._check_column(name)
        if name not in self._facets:
            q = ident(name)
            self._facets[name] = [(v, n) for v, n in self._select(
                f"SELECT {q}, COUNT(*) AS n FROM {{products}} WHERE {q} IS NOT NULL GROUP BY {q} ORDER BY n DESC, {q}")]
        return self._facets[name]

    def rows_where(self, where: dict[str, list[str]]) -> np.ndarray:
        self.check_where(where)
        clause, params = where_sql(where)
        return np.fromiter((r for (r,) in self._select(f"SELECT row FROM {{products}}{clause}", params)), np.int64)


def where_sql(where: dict[str, list[str]]) -> tuple[str, list]:
    """` WHERE "col" = ANY(%s) AND ...` for a checked `where` (an empty string for none), and its parameters."""
    if not where:
        return "", []
    return " WHERE " + " AND ".join(f"{ident(c)} = ANY(%s)" for c in where), [list(v) for v in where.values()]
