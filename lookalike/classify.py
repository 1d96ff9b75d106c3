"""Predicted attributes of photos, and the most common categories in a set of photos (from model heads)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import ModelError
from .models import Embedder
from .models.base import Prediction, predictions_for
from .models.pipeline import embed_batch
from .progress import Progress


@dataclass
class Classified:
    image: str
    predictions: dict[str, Prediction]


def classify_images(model: Embedder, images: Sequence[Path], top: int = 3,
                    progress: Progress | None = None) -> tuple[list[Classified], list[tuple[str, str]]]:
    """Predictions per readable image, and (image, reason) for the ones skipped."""
    if not model.heads:
        raise ModelError(f"model {model.id} has no attribute heads, so it cannot classify; use a model trained by "
                         "`lookalike train` (the shipped default model has heads)")
    if progress:
        progress.start(len(images), "classifying")
    result = embed_batch(model, [(str(p), p) for p in images], with_heads=True, progress=progress)
    out = [Classified(key, predictions_for(model.heads, result.heads, i, top)) for i, key in enumerate(result.keys)]
    return out, [(str(k), e) for k, e in result.errors]


def classify_with_catalog(index, images: Sequence[Path], top: int = 3, columns: Sequence[str] | None = None,
                          progress: Progress | None = None) -> tuple[list[Classified], list[tuple[str, str]]]:
    """`Index.classify` per image (the model's prediction blended with the nearest catalog products' labels):
    predictions per readable image, and (image, reason) for the ones skipped."""
    from .errors import ImageError

    if progress:
        progress.start(len(images), "classifying")
    out, skipped = [], []
    for path in images:
        try:
            out.append(Classified(str(path), index.classify(path, top=top, columns=columns)))
        except ImageError as e:
            skipped.append((str(path), str(e)))
        if progress:
            progress.advance(1)
    return out, skipped


def common_categories(classified: Sequence[Classified], head: str, k: int = 3) -> list[tuple[str, int, float]]:
    """The `k` most frequent top-1 labels of `head`: (label, count, share)."""
    counts = Counter(c.predictions[head].label for c in classified)
    n = max(1, len(classified))
    return [(label, count, count / n) for label, count in counts.most_common(k)]
