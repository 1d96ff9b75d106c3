"""`classic`: a weight-free embedder of colour, silhouette and texture. No training, no download.

Each image is padded to a white square and resized to 64x64. The foreground is every pixel that is not
near-white (catalog photos are shot on white). Four blocks, each L2-normalised, weighted and concatenated
(293 dims), then L2-normalised again:

- colour (53): a foreground histogram in HSV: 12 hues x 2 saturations x 2 values for coloured pixels, plus
  5 grey levels for pixels with little saturation; square-rooted (Hellinger), so cosine compares
  distributions fairly.
- colour layout (48): the mean RGB colour of a 4x4 grid of cells, centred on the image mean.
- silhouette (64): the foreground fraction of an 8x8 grid: the shape of the garment.
- texture (128): gradient-orientation histograms (8 unsigned orientations) over a 4x4 grid of cells,
  weighted by gradient magnitude, square-rooted (a small HOG).

It is what "no model" can do: good at colour and shape, weak at what a garment *is*. The trained default
model replaces it; it stays selectable as `classic` for catalogs unlike anything the default saw.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..images import fit
from .base import Embedder, Outputs, l2_normalise

SIZE = 64
HUES, GREYS = 12, 5
WEIGHTS = {"colour": 1.0, "layout": 0.5, "silhouette": 0.8, "texture": 0.8}


class ClassicEmbedder(Embedder):
    name = "classic"
    id = "classic-v1"
    input_size = (SIZE, SIZE)
    heads: dict[str, list[str]] = {}
    dim = HUES * 4 + GREYS + 48 + 64 + 128

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return np.asarray(fit(image, (SIZE, SIZE), "pad"), dtype=np.uint8)

    def forward(self, batch: np.ndarray) -> Outputs:
        x = batch.astype(np.float32) / 255.0                       # (B, 64, 64, 3)
        blocks = [
            _colour(x) * WEIGHTS["colour"],
            _layout(x) * WEIGHTS["layout"],
            _silhouette(x) * WEIGHTS["silhouette"],
            _texture(x) * WEIGHTS["texture"],
        ]
        return Outputs(l2_normalise(np.concatenate(blocks, axis=1)))


def _foreground(x: np.ndarray) -> np.ndarray:
    fg = (1.0 - x.min(axis=3)) > 0.12                              # not near-white
    empty = fg.mean(axis=(1, 2)) < 0.02                            # a photo with no white background
    fg[empty] = True
    return fg.astype(np.float32)


def _colour(x: np.ndarray) -> np.ndarray:
    b = len(x)
    maxc, minc = x.max(axis=3), x.min(axis=3)
    delta = maxc - minc
    sat = delta / np.maximum(maxc, 1e-6)
    r, g, bl = x[..., 0], x[..., 1], x[..., 2]
    safe = np.maximum(delta, 1e-6)
    hue = np.where(maxc == r, ((g - bl) / safe) % 6, np.where(maxc == g, (bl - r) / safe + 2, (r - g) / safe + 4))
    hue_bin = np.minimum((hue / 6.0 * HUES).astype(np.int64), HUES - 1)
    chromatic = (sat > 0.25) & (maxc > 0.2)
    coloured = hue_bin * 4 + (sat > 0.6) * 2 + (maxc > 0.6)
    grey = HUES * 4 + np.minimum((maxc * GREYS).astype(np.int64), GREYS - 1)
    bins = np.where(chromatic, coloured, grey)
    n = HUES * 4 + GREYS
    offsets = (np.arange(b) * n)[:, None, None]
    hist = np.bincount((bins + offsets).ravel(), weights=_foreground(x).ravel(), minlength=b * n).reshape(b, n)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1e-6)
    return l2_normalise(np.sqrt(hist))


def _cells(a: np.ndarray, grid: int) -> np.ndarray:
    """Mean of `a` (B, H, W[, C]) over a grid x grid of cells -> (B, grid*grid[*C])."""
    b, h, w = a.shape[:3]
    rest = a.shape[3:]
    return a.reshape(b, grid, h // grid, grid, w // grid, *rest).mean(axis=(2, 4)).reshape(b, -1)


def _layout(x: np.ndarray) -> np.ndarray:
    cells = _cells(x, 4)
    return l2_normalise(cells - cells.mean(axis=1, keepdims=True))


def _silhouette(x: np.ndarray) -> np.ndarray:
    return l2_normalise(_cells(_foreground(x), 8))


def _texture(x: np.ndarray, orientations: int = 8, grid: int = 4) -> np.ndarray:
    grey = x.mean(axis=3)
    gx = np.zeros_like(grey)
    gy = np.zeros_like(grey)
    gx[:, :, 1:-1] = grey[:, :, 2:] - grey[:, :, :-2]
    gy[:, 1:-1, :] = grey[:, 2:, :] - grey[:, :-2, :]
    mag = np.hypot(gx, gy)
    angle = np.arctan2(gy, gx) % np.pi
    obin = np.minimum((angle / np.pi * orientations).astype(np.int64), orientations - 1)
    b, h, w = grey.shape
    cell = (np.arange(h)[:, None] // (h // grid)) * grid + (np.arange(w)[None, :] // (w // grid))
    idx = (np.arange(b)[:, None, None] * grid * grid + cell[None]) * orientations + obin
    n = grid * grid * orientations
    hist = np.bincount(idx.ravel(), weights=mag.ravel(), minlength=b * n).reshape(b, n)
    return l2_normalise(np.sqrt(hist))
