"""Batch embedding: decode in worker threads, run the model on batches, skip and report bad images."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np

from ..errors import ImageError
from ..images import MAX_FILE_BYTES, ImageSource, check_file, load_image
from ..remote import is_remote, read_bytes, shown
from ..progress import Progress
from .base import Embedder


@dataclass
class BatchResult:
    keys: list[Hashable]            # keys of the images that embedded, in input order
    vectors: np.ndarray             # (len(keys), D) float32, unit length
    hashes: list[str]               # sha1 of each image's bytes ("" for in-memory images)
    heads: dict[str, np.ndarray] = field(default_factory=dict)
    errors: list[tuple[Hashable, str]] = field(default_factory=list)  # (key, reason) of skipped images


def prepare(embedder: Embedder, source: ImageSource) -> tuple[np.ndarray, str]:
    """A photo decoded and preprocessed for `embedder` as indexing does it, and the sha1 of its bytes ("" for
    an in-memory image)."""
    digest = ""
    if is_remote(source):       # a photo on object storage: its bytes, then as any photo
        data = read_bytes(source, MAX_FILE_BYTES)
        digest = hashlib.sha1(data).hexdigest()
        image = load_image(data, name=shown(source), draft_size=embedder.input_size)
    elif isinstance(source, (str, Path)):
        check_file(Path(source))        # before reading: a FIFO, a device or a huge file named like a photo
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageError(f"{source}: cannot read ({exc.strerror or exc})") from None
        digest = hashlib.sha1(data).hexdigest()
        image = load_image(data, name=str(source), draft_size=embedder.input_size)
    else:
        if isinstance(source, (bytes, bytearray)):
            digest = hashlib.sha1(source).hexdigest()
        image = load_image(source, draft_size=embedder.input_size)
    return embedder.preprocess(image), digest


def embed_batch(embedder: Embedder, items: Sequence[tuple[Hashable, ImageSource]], *, batch_size: int = 64,
                workers: int | None = None, progress: Progress | None = None,
                skip_errors: bool = True, with_heads: bool = False) -> BatchResult:
    """Embed `(key, image)` pairs. Bad images are skipped and listed in `errors` (or raised, if not
    `skip_errors`). `progress.advance(n)` is called after each batch."""
    workers = workers or min(4, os.cpu_count() or 1)
    keys: list[Hashable] = []
    hashes: list[str] = []
    chunks: list[np.ndarray] = []
    head_chunks: dict[str, list[np.ndarray]] = {}
    errors: list[tuple[Hashable, str]] = []

    def work(item):
        key, source = item
        try:
            return key, prepare(embedder, source), None
        except ImageError as exc:
            if not skip_errors:
                raise
            return key, None, str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            ready = []
            for key, prepared, error in pool.map(work, chunk):
                if error is not None:
                    errors.append((key, error))
                else:
                    ready.append((key, prepared))
            if ready:
                out = embedder.forward(np.stack([p[0] for _, p in ready]))
                chunks.append(out.embeddings.astype(np.float32, copy=False))
                keys.extend(k for k, _ in ready)
                hashes.extend(p[1] for _, p in ready)
                if with_heads:
                    for head, probs in out.heads.items():
                        head_chunks.setdefault(head, []).append(probs)
            if progress:
                progress.advance(len(chunk))
    dim = embedder.dim
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    heads = {h: np.concatenate(c) for h, c in head_chunks.items()}
    return BatchResult(keys, vectors, hashes, heads, errors)
