"""Looking at every photo of a catalog once: size, unreadable, greyscale (from pixels), a thumbnail."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ImageError
from ..images import load_image
from ..progress import NoProgress, Progress

THUMB = 72


@dataclass
class PhotoInfo:
    id: str
    path: Path
    width: int = 0
    height: int = 0
    greyscale: bool = False
    error: str | None = None


def is_greyscale(rgb: np.ndarray, tolerance: int = 2) -> bool:
    """True when R, G and B agree within `tolerance` levels on 99% of pixels: black-and-white or greyscale
    photos, even saved as RGB. The tolerance is tight on purpose: grey, black and silver products shot in
    colour differ by 3-12 levels (white balance, reflections), and are not black-and-white photos."""
    arr = rgb.astype(np.int16)
    spread = np.maximum(np.abs(arr[..., 0] - arr[..., 1]), np.abs(arr[..., 1] - arr[..., 2]))
    return float(np.percentile(spread, 99)) <= tolerance


def thumbnail_uri(path: Path, size: int = THUMB) -> str:
    img = load_image(path)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def scan(items: Sequence[tuple[str, Path]], progress: Progress | None = None) -> list[PhotoInfo]:
    progress = progress or NoProgress()
    progress.start(len(items), "looking at photos")

    def look(item):
        pid, path = item
        info = PhotoInfo(pid, path)
        try:
            img = load_image(path)
            info.width, info.height = img.size
            small = img.copy()
            small.thumbnail((128, 128))
            info.greyscale = is_greyscale(np.asarray(small))
        except ImageError as exc:
            info.error = str(exc)
        return info

    out: list[PhotoInfo] = []
    with ThreadPoolExecutor(4) as pool:
        for start in range(0, len(items), 512):
            out.extend(pool.map(look, items[start:start + 512]))
            progress.advance(len(items[start:start + 512]))
    return out
