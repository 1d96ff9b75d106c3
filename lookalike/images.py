"""Safe image decoding: the one function every part of lookalike uses to turn bytes into RGB pixels.

`load_image` accepts a path, raw bytes, a file object or a PIL image and always returns an 8-bit RGB image,
upright (EXIF orientation applied), with transparency composited on white (the catalog's background), or
raises `ImageError` naming the file.
"""

from __future__ import annotations

import io
import stat
import threading
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .remote import is_remote, read_bytes, shown

#: Decoded images larger than this many pixels are refused (a guard against decompression bombs).
MAX_PIXELS = 50_000_000
#: Photo files larger than this are refused before they are read (a 3 GB sparse file named like a photo).
MAX_FILE_BYTES = 200 * 1024 * 1024
#: A JPEG this many times larger than needed each way is reduced by the decoder (draft mode); see `load_image`.
DRAFT_FACTOR = 8
#: Images over this many pixels (after draft mode) are decoded a few at a time (`_BIG_DECODES`): four concurrent
#: 50-megapixel uploads would otherwise hold gigabytes at once.
BIG = 8_000_000
_BIG_DECODES = threading.BoundedSemaphore(2)
#: Modes Pillow reduces directly (others are converted to RGB first).
REDUCIBLE = ("RGB", "RGBA", "L", "LA", "I", "F")
#: File extensions read from photo folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")

ImageFile.LOAD_TRUNCATED_IMAGES = False
ImageSource = Union[str, Path, bytes, bytearray, BinaryIO, Image.Image]


def _describe(source: ImageSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, Path)):
        return str(source)
    return "<upload>" if isinstance(source, (bytes, bytearray)) else "<image>"


def load_image(
    source: ImageSource,
    name: str | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode `source` into an upright 8-bit RGB image.

    `draft_size` (width, height) lets decoding skip detail that a model resizing to that size throws away: the
    image is reduced by the largest of 8, 4 or 2 that keeps it at least twice `draft_size`, by averaging blocks of
    pixels, so a photo gives the same pixels whether it comes as a path, bytes, an upload or a PIL image. A JPEG at
    least 16 times that size each way (a phone's 12-megapixel upload) is reduced in the decoder itself (draft mode,
    several times faster and a 64th of the memory), whose pixels differ slightly from block averages.
    """
    label = _describe(source, name)
    if isinstance(source, Image.Image):
        return _finish(source, label, draft_size)
    try:
        if isinstance(source, (bytes, bytearray)):
            if not source:
                raise ImageError(f"{label}: empty file")
            fp: BinaryIO | str = io.BytesIO(source)
        elif is_remote(source):        # s3://..., gs://...: read, then decoded as any bytes
            fp = io.BytesIO(read_bytes(source, MAX_FILE_BYTES))
            label = name or shown(source)
        elif isinstance(source, (str, Path)):
            path = Path(source)
            check_file(path, label)
            fp = str(path)
        else:
            fp = source
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{label}: {width}x{height} pixels is over the limit of {max_pixels:,} pixels"
                )
            if draft_size and img.format == "JPEG" and _factor(img.size, draft_size) == DRAFT_FACTOR:
                img.draft(img.mode, (img.width // DRAFT_FACTOR, img.height // DRAFT_FACTOR))
            if img.width * img.height > BIG:     # the size to decode, after draft mode
                with _BIG_DECODES:       # a few large decodes at a time, not one per request
                    img.load()
                    return _finish(img, label, draft_size)
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{label}: cannot decode image ({exc})") from None
    return _finish(img, label, draft_size)


def _finish(img: Image.Image, label: str, draft_size: tuple[int, int] | None) -> Image.Image:
    """The one path from a decoded image (a file's, an upload's or the caller's own PIL image) to what a model
    reads: upright, reduced (in the image's own mode where Pillow can, so a large RGBA or greyscale image is
    converted at its reduced size), then 8-bit RGB."""
    img = _upright(img)
    if img.mode in REDUCIBLE:
        return _to_rgb(_reduced(img, draft_size), label)
    return _reduced(_to_rgb(img, label), draft_size)


def check_file(path: Path, label: str | None = None) -> int:
    """The size of `path` if it is a regular, non-empty file of at most `MAX_FILE_BYTES`; else an `ImageError`
    saying which it is not (a FIFO or a device named like a photo would hang or exhaust memory if read)."""
    label = label or str(path)
    try:
        info = path.stat()
    except OSError:
        raise ImageError(f"{label}: no such file") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{label}: not a regular file")
    if info.st_size == 0:
        raise ImageError(f"{label}: empty file")
    if info.st_size > MAX_FILE_BYTES:
        raise ImageError(f"{label}: {info.st_size / 2**20:,.0f} MB is over the limit of {MAX_FILE_BYTES / 2**20:.0f} MB for a photo")
    return info.st_size


def _factor(size: tuple[int, int], draft_size: tuple[int, int] | None) -> int:
    """The largest of 8, 4, 2 (else 1) by which an image of `size` can shrink and stay at least twice `draft_size`
    (the resize to the model's input and background whitening still have pixels to work with)."""
    if not draft_size:
        return 1
    room = min(size[0] // max(1, draft_size[0]), size[1] // max(1, draft_size[1]))
    return next((f for f in (8, 4, 2) if room >= 2 * f), 1)


def _reduced(img: Image.Image, draft_size: tuple[int, int] | None) -> Image.Image:
    """`img` shrunk as JPEG draft mode would have shrunk it (block averages), if it is still large enough."""
    factor = _factor(img.size, draft_size)
    return img.reduce(factor) if factor > 1 else img


def _upright(img: Image.Image) -> Image.Image:
    try:
        if img.getexif().get(0x0112, 1) == 1:     # already upright: no copy (80 MB for a 20-megapixel RGBA)
            return img
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not lose the picture
        return img


def _to_rgb(img: Image.Image, label: str) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    try:
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            return _high_depth_to_rgb(img)
        if mode == "P":
            img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
            mode = img.mode
        if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            rgba = img.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            canvas.alpha_composite(rgba)
            return canvas.convert("RGB")
        return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    except (OSError, ValueError) as exc:
        raise ImageError(f"{label}: cannot convert {mode} image to RGB ({exc})") from None


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale: scale to 8 bits instead of clipping (Pillow's convert saturates at 255)."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        grey = np.clip(np.nan_to_num((arr - lo) / (hi - lo or 1.0) * 255.0), 0, 255).astype(np.uint8)
    elif arr.max(initial=0) > 255:     # 16 bits: scale (integers, no float copy of a large image)
        grey = ((np.clip(arr, 0, 65535).astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    else:
        grey = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def is_image_file(path: Path) -> bool:
    """True if `path` has an image extension lookalike reads."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def image_files(inputs) -> list[Path]:
    """Photos named on a command line: files as given, folders expanded (recursively, sorted) to their images."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
        else:
            files.append(item)
    return files


def fit(img: Image.Image, size: tuple[int, int], policy: str = "pad", resample: int = Image.BILINEAR,
        fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Resize to exactly `size` (width, height).

    - `pad`: keep the aspect ratio, fit inside and pad with `fill` (white, like catalog photos).
    - `stretch`: resize to the size, ignoring the aspect ratio.
    - `crop`: keep the aspect ratio, cover the size and cut the centre.
    """
    width, height = size
    if policy == "stretch":
        return img.resize((width, height), resample)
    if policy == "crop":
        return ImageOps.fit(img, (width, height), method=resample)
    if policy != "pad":
        raise ValueError(f"unknown resize policy {policy!r} (pad, stretch, crop)")
    scale = min(width / img.width, height / img.height)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resized = img.resize(new, resample, reducing_gap=3.0 if scale < 0.5 else None)
    if new == (width, height):
        return resized
    canvas = Image.new("RGB", (width, height), fill)
    canvas.paste(resized, ((width - new[0]) // 2, (height - new[1]) // 2))
    return canvas


def image_header(data: bytes, name: str = "<upload>") -> tuple[str, tuple[int, int]] | None:
    """The format (e.g. "JPEG") and size (width, height) that Pillow reads in the header of `data`, without
    decoding pixels (an upload's pixel budget is checked on this, before any memory is spent); None if it is not
    an image. A header declaring so many pixels that Pillow's own guard refuses to open it is an `ImageError`
    ("too many pixels"), not None: a decompression bomb is an image too large, not a file of the wrong type."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format, img.size
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too many pixels (its header declares over "
                         f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,}): refused as a decompression bomb") from None
    except Exception:
        return None


def sniff_format(data: bytes) -> str | None:
    """The image format Pillow recognises in `data` (e.g. "JPEG"), without decoding pixels; None if none.
    A decompression bomb raises `ImageError` (see `image_header`)."""
    header = image_header(data)
    return header[0] if header else None
