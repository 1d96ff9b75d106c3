"""Vectors as Parquet shards: the hand-off between batch embedding and serving.

`lookalike embed PHOTOS --metadata CSV --out DIR` writes `DIR/part-NNNNN.parquet`, each shard holding a fixed
run of the catalog's products (in catalog order): `id`, `path`, `sha1` (of the photo file, for duplicate
collapsing), `vector` (a fixed-size list of float32) and the metadata columns as strings. Every shard's file
metadata records the model (`lookalike` key: name, id, dim) and the shard's place in the plan (`DIR/plan.json`:
model, shard size, product count, columns). Each shard is written to a temporary name and renamed when complete,
so a killed job leaves whole shards only, and a rerun embeds just the shards that are missing (no duplicate rows).

`lookalike index --vectors DIR --out catalog.idx` builds an index from them without the photos; vectors of
another model than the one asked for, or shards without `id` and `vector`, are refused before anything is written.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .catalog import Catalog, CatalogProblems, Product
from .errors import LookalikeError
from .index.store import pid_alive
from .progress import NoProgress, Progress
from .remote import as_source, location

PLAN = "plan.json"
SHARD = "part-{:05d}.parquet"
KEY = b"lookalike"
FORMAT = "lookalike-vectors"
RESERVED = ("id", "path", "sha1", "vector")
SHARD_SIZE = 10_000


class VectorsError(LookalikeError):
    """Parquet vectors that cannot be used: another model, missing columns, a damaged shard."""


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise LookalikeError("Parquet vectors need pyarrow: pip install 'lookalike[export]'") from None
    return pa, pq


@dataclass
class EmbedReport:
    """What `embed_catalog` did: shown as the closing summary."""

    embedded: int = 0
    shards_written: int = 0
    shards_kept: int = 0                                          # already complete from an earlier run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason): unreadable photos
    problems: CatalogProblems = field(default_factory=CatalogProblems)
    seconds: float = 0.0
    out: Path | None = None
    already_indexed: tuple = ()                                  # (what `cli.common.print_report` also reads)

    @property
    def indexed(self) -> int:
        return self.embedded

    @property
    def images_per_second(self) -> float:
        return (self.embedded + len(self.skipped)) / self.seconds if self.seconds else 0.0


@dataclass
class Vectors:
    """Everything an index needs from a folder of shards, in shard order."""

    model: dict
    ids: list[str]
    paths: list[str | None]
    hashes: list[str | None]
    vectors: np.ndarray
    columns: list[str]
    metadata: list[dict[str, str | None]]

    def products(self) -> list[Product]:
        return [Product(pid, as_source(p), meta) for pid, p, meta in zip(self.ids, self.paths, self.metadata)]


def plan_shards(count: int, shard_size: int) -> list[range]:
    """The products (by position in catalog order) each shard holds."""
    return [range(start, min(count, start + shard_size)) for start in range(0, count, shard_size)]


def fingerprint(products: Sequence[Product]) -> str:
    """What a shard (or a catalog) is made of: its products' ids and photo paths, hashed; a rerun keeps a shard
    only when its products are the same."""
    import hashlib

    digest = hashlib.sha1()
    for p in products:
        digest.update(f"{p.id}\0{p.path}\n".encode())
    return digest.hexdigest()


def write_shard(folder: Path, number: int, model: dict, columns: Sequence[str], products: Sequence[Product],
                hashes: Sequence[str | None], vectors: np.ndarray, planned: str | None = None) -> Path:
    """Write shard `number` atomically (a temporary file renamed into place). `planned`: the fingerprint of the
    products the plan gave it (skipped photos included)."""
    pa, pq = _pyarrow()
    dim = int(model["dim"])
    if vectors.shape != (len(products), dim):
        raise VectorsError(f"shard {number}: {vectors.shape} vectors for {len(products)} products of {dim} dims")
    flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
    arrays = [pa.array([p.id for p in products], pa.string()),
              pa.array([location(p.path) for p in products], pa.string()),
              pa.array([h or None for h in hashes], pa.string()),
              pa.FixedSizeListArray.from_arrays(flat, dim),
              *(pa.array([p.metadata.get(c) for p in products], pa.string()) for c in columns)]
    meta = {"format": FORMAT, "version": 1, "model": model, "shard": number, "columns": list(columns),
            "products": planned}
    table = pa.Table.from_arrays(arrays, names=[*RESERVED, *columns]).replace_schema_metadata(
        {KEY: json.dumps(meta).encode()})
    path = folder / SHARD.format(number)
    tmp = folder / f".{path.name}.tmp-{os.getpid()}"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise VectorsError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def shard_model(path: Path) -> dict | None:
    """The lookalike record of a shard (model, shard number, columns), or None when it is not a whole shard of ours."""
    _, pq = _pyarrow()
    try:
        meta = pq.read_schema(path).metadata or {}
        record = json.loads(meta.get(KEY, b"null"))
    except Exception:           # truncated or not Parquet: pyarrow raises several kinds
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def _write_plan(out: Path, model: dict, shard_size: int, count: int, columns: list[str], catalog: str,
                overwrite: bool) -> None:
    plan = {"format": FORMAT, "version": 1, "model": model, "shard_size": shard_size, "products": count,
            "columns": columns, "catalog": catalog}
    path = out / PLAN
    if path.exists() and not overwrite:
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        same = isinstance(old, dict) and all(old.get(k) == plan[k] for k in ("model", "shard_size", "products", "columns",
                                                                             "catalog"))
        if not same:
            raise VectorsError(f"{out} holds vectors of another run (another model, catalog or shard size); "
                               "write elsewhere or pass overwrite (--overwrite) to start again")
        return
    if overwrite:
        for old_shard in out.glob("part-*.parquet"):
            old_shard.unlink()
    tmp = out / f".{PLAN}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(plan, indent=2) + "\n")
    os.replace(tmp, path)


def embed_catalog(photos: str | Path | None, metadata: str | Path | None = None, *, out: str | Path,
                  model="default", shard_size: int = SHARD_SIZE, batch_size: int = 64, overwrite: bool = False,
                  progress: Progress | None = None, id_column: str | None = None, image_column: str | None = None,
                  require_metadata: bool = False, ray: str | None = None) -> EmbedReport:
    """Embed a catalog into Parquet shards in `out` (see the module's doc). A rerun into the same folder with the
    same model and catalog keeps the shards already complete and embeds the rest. `ray`: 'auto' (a local Ray) or
    a cluster's address embeds the shards on Ray actors (`lookalike.distributed`), with the same result."""
    from .models import load_model

    started = time.perf_counter()
    from .index.store import writable_folder

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VectorsError(f"{out} is a file; --out names a folder for the Parquet shards")
    writable_folder(out / PLAN)      # a folder below a file, or a read-only one: refused before any work
    if shard_size < 1:
        raise VectorsError("shard size must be at least 1")
    _pyarrow()
    embedder = load_model(model)
    catalog = Catalog.read(photos, metadata, id_column=id_column, image_column=image_column,
                           require_metadata=require_metadata)
    if not catalog.products:
        raise LookalikeError("no photos found to embed" + "".join(f"; {l}" for l in catalog.problems.lines()))
    columns = [c for c in catalog.columns if c not in RESERVED]
    if len(columns) != len(catalog.columns):
        raise VectorsError(f"metadata columns named {', '.join(c for c in catalog.columns if c in RESERVED)} clash "
                           f"with the shards' own ({', '.join(RESERVED)}); rename them")
    record = embedder.record
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".part-*.tmp-*"):     # shards a killed run was writing
        pid = stale.name.rsplit("-", 1)[1]
        if not pid.isdigit() or not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)
    _write_plan(out, record, shard_size, len(catalog.products), columns, fingerprint(catalog.products), overwrite)
    report = EmbedReport(problems=catalog.problems, out=out)
    plan = plan_shards(len(catalog.products), shard_size)
    todo = []
    for number, positions in enumerate(plan):
        done = shard_model(out / SHARD.format(number))
        if done is not None and done.get("model", {}).get("id") == record["id"] and done.get("shard") == number \
                and done.get("products") == fingerprint([catalog.products[i] for i in positions]):
            report.shards_kept += 1
        else:
            todo.append(number)
    progress = progress or NoProgress()
    progress.start(sum(len(plan[n]) for n in todo), "embedding")
    if ray is not None and todo:
        from .distributed import embed_shards

        results = embed_shards(ray, record, out, columns, catalog.products, plan, todo, batch_size, progress)
    else:
        results = (embed_shard(embedder, out, number, record, columns, [catalog.products[i] for i in plan[number]],
                               batch_size, progress) for number in todo)
    for embedded, skipped in results:
        report.embedded += embedded
        report.skipped.extend(skipped)
        report.shards_written += 1
    report.seconds = time.perf_counter() - started
    return report


def embed_shard(embedder, out: Path, number: int, model: dict, columns: list[str], chunk: Sequence[Product],
                batch_size: int = 64, progress: Progress | None = None, workers: int | None = None
                ) -> tuple[int, list[tuple[str, str]]]:
    """Embed the products of shard `number` and write it; returns (products embedded, [(id, reason) skipped]).
    The same on this machine and on a Ray actor (`lookalike.distributed`)."""
    from .models.pipeline import embed_batch

    result = embed_batch(embedder, [(i, p.path) for i, p in enumerate(chunk)], batch_size=batch_size,
                         progress=progress, workers=workers)
    done = [chunk[k] for k in result.keys]
    write_shard(out, number, model, columns, done, result.hashes, result.vectors.reshape(len(done), model["dim"]),
                planned=fingerprint(chunk))
    return len(done), [(chunk[k].id, reason) for k, reason in result.errors]


def shards(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise VectorsError(f"{folder}: no such folder of Parquet vectors (write one with `lookalike embed --out`)")
    found = sorted(folder.glob("*.parquet"))
    if not found:
        raise VectorsError(f"{folder}: no Parquet shards (*.parquet) here")
    return found


def read_vectors(folder: str | Path, model_id: str | None = None, dim: int | None = None) -> Vectors:
    """All shards of `folder`, checked before any is read in full: each must be a lookalike shard (or any Parquet
    file with `id` and a float list `vector` column, when its model is given by `model_id` and `dim`), all of one
    model, of `model_id` when given, every vector of the model's length, no id twice, and every shard of the
    folder's plan (`plan.json`, when there is one) present."""
    pa, pq = _pyarrow()
    import pyarrow.compute as pc

    files = shards(folder)
    _check_complete(Path(folder), files)
    model, columns = None, []
    for path in files:
        schema = _schema_of(path, pq)
        missing = [c for c in ("id", "vector") if c not in schema.names]
        if missing:
            raise VectorsError(f"{path}: no {' or '.join(missing)} column; each shard needs id and vector")
        vec_type = schema.field("vector").type
        if not (pa.types.is_fixed_size_list(vec_type) or pa.types.is_list(vec_type)) or \
                not pa.types.is_floating(vec_type.value_type):
            raise VectorsError(f"{path}: its vector column is {vec_type}, not a list of floats")
        record = json.loads((schema.metadata or {}).get(KEY, b"{}") or b"{}")
        theirs = record.get("model") if isinstance(record, dict) else None
        if theirs is None:
            if model_id is None:
                raise VectorsError(f"{path}: does not say which model made its vectors (not written by `lookalike "
                                   "embed`); give the model (--model) that did")
            theirs = {"id": model_id, **({"dim": dim} if dim else {})}
        if model is None:
            model = theirs
        elif theirs.get("id") != model.get("id"):
            raise VectorsError(f"{path}: vectors of model {theirs.get('id')}, while {files[0].name} has "
                               f"{model.get('id')}; one folder holds one model's vectors")
        for c in schema.names:
            if c not in RESERVED and c not in columns:
                columns.append(c)
    if model_id is not None and model.get("id") != model_id:
        raise VectorsError(f"{folder}: vectors of model {model.get('name', '?')} ({model.get('id')}), not of "
                           f"{model_id}; index them with that model or embed again with this one")
    ids, paths, hashes, chunks, metadata = [], [], [], [], []
    for path in files:
        table = pq.read_table(path)
        n = table.num_rows
        ids += [str(v) for v in table.column("id").to_pylist()]
        paths += table.column("path").to_pylist() if "path" in table.column_names else [None] * n
        hashes += table.column("sha1").to_pylist() if "sha1" in table.column_names else [None] * n
        vec = table.column("vector").combine_chunks()
        lengths = pc.list_value_length(vec).to_numpy(zero_copy_only=False) if n else np.zeros(0)
        if n and (vec.null_count or (lengths != lengths[0]).any()):
            raise VectorsError(f"{path}: vectors of different lengths, or missing")
        flat = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        chunks.append(flat.reshape(n, -1) if n else np.zeros((0, int(model.get("dim") or 0)), np.float32))
        here = [c for c in columns if c in table.column_names]
        values = {c: table.column(c).cast(pa.string()).to_pylist() for c in here}
        metadata += [{c: values[c][i] for c in here} for i in range(n)]
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    dim = model.get("dim")
    if dim is not None and vectors.shape[1] != dim:
        raise VectorsError(f"{folder}: vectors of {vectors.shape[1]} dims, but the model's have {dim}")
    seen: set[str] = set()
    twice = [pid for pid in ids if pid in seen or seen.add(pid)]
    if twice:
        raise VectorsError(f"{folder}: ids found twice across the shards ({', '.join(twice[:5])}); "
                           "remove the stray shard or embed again with --overwrite")
    if not ids:
        raise VectorsError(f"{folder}: the shards hold no vectors")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    return Vectors({**model, "dim": int(vectors.shape[1])}, ids, paths, hashes, vectors, columns, metadata)


def _check_complete(folder: Path, files: list[Path]) -> None:
    """Refuse a folder whose plan (written by `embed_catalog`) names shards that are not there: an interrupted
    `lookalike embed`, to be rerun before indexing."""
    try:
        plan = json.loads((folder / PLAN).read_text())
        expected = len(plan_shards(int(plan["products"]), int(plan["shard_size"])))
    except FileNotFoundError:
        return
    except (ValueError, KeyError, TypeError):
        raise VectorsError(f"{folder / PLAN}: unreadable; embed again with --overwrite") from None
    names = {p.name for p in files}
    missing = [SHARD.format(n) for n in range(expected) if SHARD.format(n) not in names]
    if missing:
        raise VectorsError(f"{folder}: {len(missing)} of {expected} shards missing ({missing[0]}...): the embedding did "
                           "not finish; run the same `lookalike embed` again to complete it")


def _schema_of(path: Path, pq):
    try:
        return pq.read_schema(path)
    except Exception as exc:
        raise VectorsError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
