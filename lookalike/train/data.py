"""Training data: catalog photos decoded once into memory, label columns encoded, split by product id."""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..catalog import Catalog
from ..errors import ImageError, LookalikeError
from ..images import fit, load_image
from ..progress import NoProgress, Progress

#: Label columns trained as heads when present (any other column can be named with --label).
DEFAULT_LABELS = ("articleType", "subCategory", "masterCategory", "baseColour", "gender", "usage")
#: An auxiliary training-only head on the pair (type, colour): neighbours should share both.
PAIR = ("articleType", "baseColour")
MISSING = -1


@dataclass
class TrainData:
    ids: list[str]
    images: np.ndarray                 # (N, H, W, 3) uint8, fitted to the model input (white padding)
    labels: dict[str, np.ndarray]      # head -> (N,) int64 class index, MISSING when unknown or too rare
    vocab: dict[str, list[str]]        # head -> class names
    val: np.ndarray                    # (N,) bool: held-out products
    teacher: np.ndarray | None = None  # (N, T) float32 unit vectors of a teacher model, if distilling
    extra: np.ndarray | None = None    # (N,) bool: rows from the extra domain (oversampled, never validation)

    def __len__(self) -> int:
        return len(self.ids)


def is_validation(pid: str, fraction: float) -> bool:
    """A product's split depends on its id only (stable across runs, machines and catalog growth)."""
    return zlib.crc32(pid.encode()) % 10_000 < fraction * 10_000


def decode_all(paths: list[Path], size: tuple[int, int], progress: Progress) -> tuple[np.ndarray, list[int]]:
    w, h = size
    out = np.empty((len(paths), h, w, 3), np.uint8)
    ok = np.zeros(len(paths), bool)

    def work(i):
        try:
            out[i] = np.asarray(fit(load_image(paths[i], draft_size=size), size, "pad"))
            ok[i] = True
        except ImageError:
            pass

    with ThreadPoolExecutor(4) as pool:
        for start in range(0, len(paths), 512):
            list(pool.map(work, range(start, min(len(paths), start + 512))))
            progress.advance(min(512, len(paths) - start))
    good = np.flatnonzero(ok)
    return out[good], good.tolist()


def default_labels(catalog: Catalog) -> list[str]:
    """The known label columns present; failing those, every column that looks categorical (at least 2
    values, and far fewer values than products: not names, not ids)."""
    known = [c for c in DEFAULT_LABELS if c in catalog.columns]
    if known:
        return known
    out = []
    for column in catalog.columns:
        values = [p.metadata.get(column) for p in catalog.products if p.metadata.get(column) is not None]
        distinct = len(set(values))
        if values and 2 <= distinct <= max(2, len(values) // 4):
            out.append(column)
    return out


def load(photos: str | Path | None, metadata: str | Path | None, *, size: tuple[int, int] = (64, 80),
         labels: list[str] | None = None, min_count: int = 5, val_fraction: float = 0.1,
         teacher: str | Path | None = None, extra: tuple | None = None,
         progress: Progress | None = None) -> TrainData:
    """Decode a catalog for training. `extra` = (photos, metadata) of a second domain (e.g. garment crops of
    real photos) labelled with any subset of the same columns: trained on, never held out."""
    progress = progress or NoProgress()
    catalog = Catalog.read(photos, metadata)
    if not catalog.products:
        raise LookalikeError("no photos to train on")
    wanted = list(labels) if labels is not None else default_labels(catalog)
    missing = [c for c in wanted if c not in catalog.columns]
    if missing:
        raise LookalikeError(f"no label column {missing[0]!r}; columns are {', '.join(catalog.columns) or 'none'}")
    extra_products = Catalog.read(*extra).products if extra else []
    progress.start(len(catalog.products) + len(extra_products), "decoding")
    images, kept = decode_all([p.path for p in catalog.products + extra_products], size, progress)
    products = [(catalog.products + extra_products)[i] for i in kept]
    is_extra = np.array([i >= len(catalog.products) for i in kept])
    ids = [p.id for p in products]
    val = np.array([is_validation(pid, val_fraction) for pid in ids]) & ~is_extra
    columns = {c: [p.metadata.get(c) for p in products] for c in wanted}
    if all(c in wanted for c in PAIR):
        columns["+".join(PAIR)] = [None if None in (a, b) else f"{a}|{b}" for a, b in zip(*(columns[c] for c in PAIR))]
    encoded, vocab = encode_labels(columns, val, min_count)
    teacher_vectors = _teacher(teacher, ids) if teacher else None
    return TrainData(ids, images, encoded, vocab, val, teacher_vectors, is_extra if extra else None)


def encode_labels(columns: dict[str, list], val: np.ndarray, min_count: int = 5
                  ) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Per column, class indices (MISSING when unknown, held out of the vocabulary or too rare) and the classes:
    the values seen at least `min_count` times outside validation. Columns with fewer than 2 classes are left out."""
    encoded, vocab = {}, {}
    for name, values in columns.items():
        counts: dict[str, int] = {}
        for v, is_val in zip(values, val):
            if v is not None and not is_val:
                counts[v] = counts.get(v, 0) + 1
        classes = sorted(v for v, n in counts.items() if n >= min_count)
        if len(classes) < 2:
            continue
        index = {v: i for i, v in enumerate(classes)}
        encoded[name] = np.array([index.get(v, MISSING) if v is not None else MISSING for v in values], np.int64)
        vocab[name] = classes
    return encoded, vocab


def _teacher(path: str | Path, ids: list[str]) -> np.ndarray:
    """Teacher features as `lookalike embed` writes them: NAME.npy plus NAME.ids.txt."""
    path = Path(path)
    vectors = np.load(path)
    names = path.with_suffix(".ids.txt").read_text().split()
    if len(names) != len(vectors):
        raise LookalikeError(f"{path}: {len(vectors)} vectors but {len(names)} ids")
    row = {pid: i for i, pid in enumerate(names)}
    absent = [pid for pid in ids if pid not in row]
    if absent:
        raise LookalikeError(f"{path}: no teacher features for {len(absent)} products (e.g. {absent[0]})")
    return vectors[[row[pid] for pid in ids]].astype(np.float32)
