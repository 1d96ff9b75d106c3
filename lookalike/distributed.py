"""Batch embedding on Ray (`lookalike embed PHOTOS --out DIR --ray auto|ADDRESS`; the `ray` extra).

The same shard plan as the local path (`lookalike.vectors`): Ray Data maps the shards still to do over a pool of
actors, each loading the model once and writing whole shards (decoded and prepared exactly as `embed_batch` does
here, so the vectors equal the local path's). A shard is written under a temporary name and renamed, so a worker
that dies mid-shard leaves nothing; Ray Data restarts it and retries the shard, and a job that is killed outright is
rerun and embeds only the shards that are missing. On a cluster, the photos and the model folder must be at the
same paths on every node (a shared file system); `default` and `classic` ship inside the package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

from .catalog import Product
from .errors import LookalikeError
from .progress import Progress
from .remote import as_source

def start(address: str) -> bool:
    """'auto' (or 'local'): a local Ray on this machine's cores (not Ray's own meaning of 'auto', joining a running
    cluster: give that cluster's HOST:PORT); else the address of a running cluster. False when Ray was running
    already in this process (then the caller leaves it running)."""
    try:
        import ray
    except ImportError:
        raise LookalikeError("--ray needs Ray: pip install 'lookalike[ray]'") from None
    if ray.is_initialized():
        return False
    import logging

    for name in ("ray", "ray.data"):       # our progress bar and summary say what happens; Ray's INFO lines do not
        logging.getLogger(name).setLevel(logging.WARNING)
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    if address not in ("auto", "local"):
        _reachable(address)
    try:
        if address in ("auto", "local"):
            ray.init(num_cpus=os.cpu_count() or 1, **options)
        else:
            ray.init(address=address, **options)
    except Exception as exc:   # ConnectionError, RuntimeError and others: one line, naming the address
        raise LookalikeError(f"cannot start or join Ray at {address!r}: {str(exc).splitlines()[0]}") from None
    return True


def _reachable(address: str, seconds: float = 5.0) -> None:
    """Refuse at once a cluster address that does not answer (Ray itself keeps retrying for minutes)."""
    import socket

    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise LookalikeError(f"--ray {address!r}: expected auto or HOST:PORT of a running Ray cluster")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise LookalikeError(f"cannot start or join Ray at {address!r}: nothing answers there "
                             f"({exc.strerror or exc})") from None


class _ShardEmbedder:
    """A Ray actor: loads the model once, then embeds and writes whole shards."""

    def __init__(self, source: str, out: str, record: dict, columns: list[str], batch_size: int):
        from .models import load_model

        self.embedder = load_model(source)
        if self.embedder.id != record["id"]:
            raise LookalikeError(f"model {source!r} on this worker is {self.embedder.id}, not {record['id']}")
        self.out, self.record, self.columns, self.batch_size = Path(out), record, columns, batch_size

    def __call__(self, batch: dict) -> dict:
        import json

        from .vectors import embed_shard

        numbers, embedded, skipped = [], [], []
        for number, ids, paths, meta in zip(batch["shard"], batch["ids"], batch["paths"], batch["meta"]):
            chunk = [Product(pid, as_source(p), m) for pid, p, m in zip(ids, paths, json.loads(meta))]
            done, bad = embed_shard(self.embedder, self.out, int(number), self.record, self.columns, chunk,
                                    self.batch_size, workers=1)
            numbers.append(int(number))
            embedded.append(done)
            skipped.append(json.dumps(bad))
        return {"shard": numbers, "embedded": embedded, "skipped": skipped, "size": [len(i) for i in batch["ids"]]}


def embed_shards(address: str, record: dict, out: Path, columns: list[str], products: Sequence[Product],
                 plan: list[range], todo: list[int], batch_size: int, progress: Progress
                 ) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """Embed the shards `todo` on Ray; yields (products embedded, [(id, reason) skipped]) per shard as each ends."""
    import json

    started = start(address)
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False

    items = [{"shard": n, "ids": [products[i].id for i in plan[n]],
              "paths": [str(products[i].path) if products[i].path else None for i in plan[n]],
              "meta": json.dumps([products[i].metadata for i in plan[n]])} for n in todo]
    workers = max(1, min(len(todo), int(ray.available_resources().get("CPU", 1))))
    # Ray Data restarts an actor that dies and retries its shard on the pool (its defaults: no limit)
    data = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _ShardEmbedder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
        fn_constructor_kwargs=dict(source=record["source"], out=str(out), record=record, columns=columns,
                                   batch_size=batch_size))
    try:
        for row in data.iter_rows():
            progress.advance(int(row["size"]))
            yield int(row["embedded"]), [tuple(s) for s in json.loads(row["skipped"])]
    except LookalikeError:
        raise
    except Exception as exc:     # a worker's error arrives wrapped by Ray: its last line says what went wrong
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise LookalikeError(f"embedding on Ray failed: {lines[-1] if lines else type(exc).__name__}; the shards "
                             "written so far are kept, run the command again to finish") from None
    finally:
        if started:
            ray.shutdown()
