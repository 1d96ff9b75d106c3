"""Whitening a photo's plain background, so a shopper's photo looks like a catalog photo on white.

A garment laid on a red bed sheet or held against a wall is, to a model trained on studio shots, mostly sheet or
wall. `whiten_background` finds the background as the pixels close in colour to the photo's border (its median
colour) and connected to the border, and paints them white. It leaves the photo alone when there is nothing to do
or nothing it can do safely:

- the border is already near white (a catalog photo; whitening would eat into a light garment);
- the border is not one colour (a patterned carpet, a street: the background cannot be told from the garment by
  colour alone);
- almost the whole photo would go (the garment is the colour of its background).

What is left is cropped to the garment with a margin, as a catalog photo frames its product.

It works on a small copy (at most `WORK` pixels), so it costs well under a millisecond a photo.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

WORK = (96, 120)          # the size (width, height) the mask is computed at
TOLERANCE = 120           # L1 distance (sum over RGB, 0-765) from the border colour still counted as background
ALREADY_WHITE = 235       # a border whose median colour has every channel at least this is left alone
MIXED_BORDER = 40         # mean per-channel standard deviation of the border above which it is not one colour
MOST = 0.9                # a background covering more than this share of the photo is not trusted
# White kept around the garment when cropping to it, each side, as a share of its width and height: the median
# margins of the shared catalog's studio photos (18% and 11%), so the garment fills the frame as a product does there.
MARGIN = (0.18, 0.11)


def background_mask(image: Image.Image, tolerance: float = TOLERANCE) -> np.ndarray | None:
    """Boolean mask (at `WORK` scale, same aspect as `image`) of the plain background connected to the border, or
    None when the photo should be left as it is (see the module docstring)."""
    small = image.convert("RGB")
    small.thumbnail(WORK, Image.BILINEAR)
    raw = np.asarray(small)
    if np.median(np.concatenate([raw[0], raw[-1], raw[:, 0], raw[:, -1]]), axis=0).min() >= ALREADY_WHITE:
        return None                  # the cheap answer for a catalog photo, before any blurring
    pixels = np.asarray(small.filter(ImageFilter.GaussianBlur(1)), np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = np.median(border, axis=0)
    if colour.min() >= ALREADY_WHITE:
        return None
    if border.std(axis=0).mean() > MIXED_BORDER:
        return None
    distance = np.abs(pixels - colour).sum(axis=2)
    similar = distance < tolerance
    reached = np.zeros_like(similar)
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        reached[edge] = similar[edge]
    while True:                      # grow from the border through similar pixels
        grown = _grow(reached) & similar
        if np.array_equal(grown, reached):
            break
        reached = grown
    # one step further into pixels half-way to the background colour: the blended rim around the garment
    reached = _grow(reached) & (distance < 2 * tolerance)
    if not reached.any() or reached.mean() > MOST:
        return None
    return reached


def _grow(mask: np.ndarray) -> np.ndarray:
    """`mask` and its 4-connected neighbours."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def whiten_background(image: Image.Image, tolerance: float = TOLERANCE) -> Image.Image:
    """`image` with its plain background painted white and cropped to what is left plus `MARGIN`, so the garment
    fills the frame as in a catalog photo (the same image object when it is left alone)."""
    mask = background_mask(image, tolerance)
    if mask is None:
        return image
    keep = Image.fromarray((~mask).astype(np.uint8) * 255).resize(image.size, Image.BILINEAR)
    white = Image.composite(image.convert("RGB"), Image.new("RGB", image.size, (255, 255, 255)), keep)
    ys, xs = np.nonzero(~mask)
    sx, sy = image.width / mask.shape[1], image.height / mask.shape[0]
    x0, x1, y0, y1 = xs.min() * sx, (xs.max() + 1) * sx, ys.min() * sy, (ys.max() + 1) * sy
    mx, my = (x1 - x0) * MARGIN[0], (y1 - y0) * MARGIN[1]
    return white.crop((max(0, int(x0 - mx)), max(0, int(y0 - my)),
                       min(image.width, int(x1 + mx)), min(image.height, int(y1 + my))))
