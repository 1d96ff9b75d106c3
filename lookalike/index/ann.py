"""Approximate search for large catalogs: FAISS IVF-PQ for candidates, re-scored exactly on the stored vectors.

`index_type="ivf"` (chosen by `auto` from AUTO_IVF_FROM products) keeps a compressed copy of each vector in an
inverted file: `nlist` clusters (about 2 sqrt(N), a power of two, trained on TRAIN_PER_LIST vectors each) and per
vector a product-quantised code of one byte per 4 dimensions (105 bytes for 420 dims). A query visits the `nprobe`
nearest clusters, takes the CANDIDATES best codes and scores them again against the index's own float16 vectors
(`vectors.npy`, kept anyway), so the order shown is exact among the candidates, and what is stored is the float16
vectors plus about 113 bytes a product. Filters stay exact: a filter that leaves few products (EXACT_BELOW) is
searched exhaustively over them; a wider one restricts the inverted file's scan to its rows and visits
proportionally more clusters (a bitmap of its rows decides which codes are scored).
"""

from __future__ import annotations

import math

import numpy as np

#: catalogs at least this large get `ivf` from `index_type="auto"` (smaller ones: exact `flat`)
AUTO_IVF_FROM = 200_000
#: candidates re-scored exactly per query (at least k)
CANDIDATES = 128
#: clusters visited per query (more for a filter that keeps a small share of the catalog)
NPROBE = 32
#: clusters visited per query under a filter, before scaling by the share of the catalog the filter keeps
FILTER_NPROBE = 64
#: candidates re-scored under a filter (chosen with FILTER_NPROBE on benchmarks/ann.py's choosing queries)
FILTER_CANDIDATES = 256
#: a filter keeping at most this many products is searched exhaustively over them. Above it the bitmap scan is
#: faster (at 1M products, choosing queries: 3,106 rows 3.3 ms against 8.0 exhaustively, 14,405 rows 4.1 against
#: 15.9, 40,410 rows 5.3 against 46.4) and as exact in practice (recall@10 0.999 to 1.0)
EXACT_BELOW = 2_000
#: fewer vectors than this cannot train the quantisers well
IVF_MIN = 10_000
#: training sample: this many vectors per cluster (FAISS's k-means wants at least 39)
TRAIN_PER_LIST = 40


def nlist_for(count: int) -> int:
    return int(2 ** round(math.log2(max(16.0, 2 * math.sqrt(max(count, 1))))))


def check_size(count: int) -> None:
    """Refuse an ivf index for fewer than IVF_MIN products."""
    from ..errors import LookalikeError

    if count < IVF_MIN:
        raise LookalikeError(f"an ivf index needs at least {IVF_MIN:,} products to train on ({count:,} here); "
                             "use flat (exact, and fast at this size) or auto")


def new_ivf(dim: int, vectors: np.ndarray, seed: int = 0):
    """An IVF-PQ index trained on (a sample of) `vectors`: dims padded to a multiple of 4, one byte per 4 dims."""
    import faiss

    check_size(len(vectors))

    padded = -(-dim // 4) * 4
    nlist = min(nlist_for(len(vectors)), max(1, len(vectors) // TRAIN_PER_LIST))
    quantizer = faiss.IndexFlatIP(padded)
    ivf = faiss.IndexIVFPQ(quantizer, padded, nlist, padded // 4, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.own_fields = True
    quantizer.this.disown()
    ivf.cp.min_points_per_centroid = ivf.pq.cp.min_points_per_centroid = 5   # small samples are fine, say nothing
    index = faiss.IndexPreTransform(faiss.RemapDimensionsTransform(dim, padded, False), ivf)
    rng = np.random.default_rng(seed)
    sample = vectors if len(vectors) <= nlist * TRAIN_PER_LIST else \
        vectors[np.sort(rng.choice(len(vectors), nlist * TRAIN_PER_LIST, replace=False))]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def ivf_of(index):
    import faiss

    return faiss.extract_index_ivf(index)


class Refined:
    """An IVF index searched through its stored float16 `vectors`, with the interface `top_k` and `Index` use
    (`ntotal`, `search`, `reconstruct*`). `index` is the FAISS index itself (what is written and cloned)."""

    approximate = True

    def __init__(self, index, vectors: np.ndarray):
        self.index = index
        self.vectors = vectors
        self.nlist = ivf_of(index).nlist
        self._decoder = None

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def reconstruct(self, row: int) -> np.ndarray:
        return self._float32(self.vectors[row:row + 1])[0]

    def reconstruct_batch(self, rows: np.ndarray) -> np.ndarray:
        return self._float32(self.vectors[np.asarray(rows)])

    def reconstruct_n(self, start: int, n: int) -> np.ndarray:
        return self._float32(self.vectors[start:start + n])

    def _float32(self, vectors: np.ndarray) -> np.ndarray:
        """float16 rows to float32 with FAISS's SIMD decoder: 3x faster than NumPy's cast, the same values (the
        exact search over a filter's rows is mostly this)."""
        if vectors.dtype != np.float16 or not len(vectors):
            return np.asarray(vectors, dtype=np.float32)
        import faiss

        if self._decoder is None:
            self._decoder = faiss.IndexScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16)
        return self._decoder.sa_decode(np.ascontiguousarray(vectors).view(np.uint8))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, selector=None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the best `k` per query, rows -1 where fewer; among `allowed` rows when given."""
        import faiss

        if allowed is not None and len(allowed) <= max(EXACT_BELOW, k):
            return self._exact(queries, np.asarray(allowed, dtype=np.int64), k)
        fetch = max(k, CANDIDATES)
        inner = faiss.SearchParametersIVF(nprobe=NPROBE)
        if allowed is not None:          # a filter keeping a share s of the catalog: visit about 1/s as many clusters
            fetch = max(k, FILTER_CANDIDATES)
            inner.nprobe = min(self.nlist, math.ceil(FILTER_NPROBE * self.ntotal / max(len(allowed), 1)))
            inner.sel = selector if selector is not None else self.selector(allowed)
        params = faiss.SearchParametersPreTransform()
        params.index_params = inner
        _, candidates = self.index.search(queries, fetch, params=params)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for i, found in enumerate(candidates):
            found = found[found >= 0]
            exact = self.reconstruct_batch(found) @ queries[i]
            order = np.argsort(-exact, kind="stable")[:k]
            scores[i, :len(order)], rows[i, :len(order)] = exact[order], found[order]
        return scores, rows

    def selector(self, rows: np.ndarray):
        """A FAISS bitmap selector of `rows` (a bit a product: a lookup per code scanned, where a batch selector
        hashes); it holds its bits. `Index` caches one per filter."""
        import faiss

        mask = np.zeros(self.ntotal, dtype=bool)
        mask[rows] = True
        bits = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        selector.bits = bits            # the selector points into the array: kept alive with it
        return selector

    def _exact(self, queries: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        if not len(allowed):
            return scores, rows
        sims = queries @ self.reconstruct_batch(allowed).T
        take = min(k, len(allowed))
        for i, row_sims in enumerate(sims):
            top = np.argpartition(-row_sims, take - 1)[:take]
            top = top[np.argsort(-row_sims[top], kind="stable")]
            scores[i, :take], rows[i, :take] = row_sims[top], allowed[top]
        return scores, rows
