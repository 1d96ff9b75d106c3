"""The `Embedder` interface: images in, L2-normalised vectors (and optional attribute probabilities) out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import ModelError
from ..images import ImageSource
from ..progress import Progress


@dataclass
class Outputs:
    """What a model returns for a batch: `(B, D)` unit vectors and, per head, `(B, n_labels)` probabilities."""

    embeddings: np.ndarray
    heads: dict[str, np.ndarray] = field(default_factory=dict)


#: A prediction shown to a person (the page, `classify`'s table, shop the look's attributes) only at this
#: probability or more: a wrong confident label ("Watches" for a skirt) is worse than none. JSON keeps them all.
CONFIDENT = 0.5


@dataclass
class Prediction:
    """One head's answer for one image: labels with probabilities, best first."""

    head: str
    labels: list[str]
    probs: list[float]

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def confidence(self) -> float:
        return self.probs[0]

    @property
    def confident(self) -> bool:
        return self.probs[0] >= CONFIDENT


class Embedder:
    """Base class. Subclasses set `name`, `id`, `dim`, `input_size`, `heads` and implement
    `preprocess` (one decoded image to one model input, run in worker threads) and `forward` (a batch)."""

    name: str
    id: str
    dim: int
    input_size: tuple[int, int]  # (width, height) the decoder may draft JPEGs down to
    heads: dict[str, list[str]]
    card: str | None = None
    source: str | None = None  # how to load it again: "default", "classic", a registered name or a folder

    @property
    def record(self) -> dict:
        """What an index (or a shard of vectors) records of the model that made its vectors."""
        return {"name": self.name, "id": self.id, "dim": self.dim, "source": self.source or self.name}

    def preprocess(self, image: Image.Image) -> np.ndarray:
        raise NotImplementedError

    def forward(self, batch: np.ndarray) -> Outputs:
        raise NotImplementedError

    @staticmethod
    def load(spec: "str | Embedder" = "default") -> "Embedder":
        """`classic`, `default`, a registered model name, or a model directory."""
        from .registry import load_model

        return load_model(spec)

    def encode(self, images: Sequence[ImageSource] | ImageSource, batch_size: int = 64,
               progress: Progress | None = None) -> np.ndarray:
        """Embed images (paths, bytes, PIL images). Returns `(N, D)` float32 unit vectors.

        Raises `ImageError` on the first bad image; use `lookalike.models.pipeline.embed_batch` to skip them.
        """
        from .pipeline import embed_batch

        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if progress:
            progress.start(len(items), "embedding")
        result = embed_batch(self, list(enumerate(items)), batch_size=batch_size, progress=progress,
                             skip_errors=False)
        return result.vectors[0] if single else result.vectors

    def predict(self, images: Sequence[ImageSource], top: int = 3) -> list[dict[str, Prediction]]:
        """Per image, per head: the `top` labels with their probabilities."""
        if not self.heads:
            raise ModelError(f"model {self.name!r} has no attribute heads, so it cannot classify; "
                             "use a model trained with label columns (the default model has them)")
        from .pipeline import embed_batch

        result = embed_batch(self, list(enumerate(images)), skip_errors=False, with_heads=True)
        return [predictions_for(self.heads, result.heads, i, top) for i in range(len(images))]

    def encode_text(self, texts: "Sequence[str] | str") -> np.ndarray:
        """Words in this model's search space: `(N, D)` unit vectors (`(D,)` for one string), comparable with
        the photos' vectors. Raises `QueryError` for an empty, wordless or over-long query."""
        from ..text import check_query

        single = isinstance(texts, str)
        items = [check_query(t) for t in ([texts] if single else texts)]
        out = self.text_alignment().vectors(items)
        return out[0] if single else out

    @property
    def has_text(self) -> bool:
        return False

    def text_alignment(self):
        raise ModelError(f"model {self.name!r} cannot search by words: it has no text alignment (align one with "
                         "`lookalike train PHOTOS --metadata CSV --init MODEL --text-only`)")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} dim={self.dim} heads={list(self.heads)}>"


def predictions_for(vocab: dict[str, list[str]], heads: dict[str, np.ndarray], row: int,
                    top: int) -> dict[str, Prediction]:
    out = {}
    for head, probs in heads.items():
        p = probs[row]
        order = np.argsort(-p)[:top]
        out[head] = Prediction(head, [vocab[head][j] for j in order], [float(p[j]) for j in order])
    return out


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
