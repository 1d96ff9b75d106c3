"""Running the garment parser (ONNX) on a photo: per-pixel classes, then one box per garment kind."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ModelError
from ..files import sha256_file
from .kinds import CLASSES, KINDS

SHIPPED = Path(__file__).parent / "parser"
MIN_AREA = 0.004        # of the photo: smaller garments are noise
MIN_SCORE = 0.5         # mean probability of the kind over its pixels (a parser's `min_score` may set it per kind)
#: A bottom or one-piece cut by the lower edge of the parsed view (the photo, or its part around the person) and
#: shorter than this share of it is the hem of a top or a sliver of trousers in a half-body shot, not a garment to
#: shop for (chosen on half-body crops: docs/training.md). A detector's boxes (`--detector`) are taken as they are.
EDGE_SLIVER = 0.2
KEEP_PART = 0.3         # blobs of a kind smaller than this share of its largest blob are stray pixels
#: Which annotated Clothing Co-Parsing photos (by number) a parser's training keeps out (`holdout` in parser.json).
HOLDOUTS = {"odd": lambda n: n % 2 == 1, "quarter": lambda n: n % 4 == 1, "none": lambda n: False}


def held_out(number: int, holdout: str = "odd") -> bool:
    """Whether annotated photo `number` is kept out of training under `holdout` (odd, quarter or none)."""
    if holdout not in HOLDOUTS:
        raise ValueError(f"unknown holdout {holdout!r} (choose: {', '.join(HOLDOUTS)})")
    return HOLDOUTS[holdout](number)


@dataclass
class Parsed:
    """The parser's view of one photo, at the photo's own size (after EXIF rotation)."""

    size: tuple[int, int]                   # (width, height) of the photo
    labels: np.ndarray                      # (h, w) class per pixel at parser resolution, mapped to the photo
    probs: np.ndarray                       # (C, h, w) probabilities at parser resolution

    def mask(self, kind: str) -> np.ndarray:
        return self.labels == CLASSES.index(kind)


@dataclass
class Region:
    kind: str
    box: tuple[int, int, int, int]          # pixels of the photo
    score: float
    area: float                             # share of the parsed image (the photo, or its part around the person)


class GarmentParser:
    """The parser in `folder`: `parser.json` names one ONNX file (`onnx`, `sha256`) or, for an ensemble,
    `members` (each an `onnx` and its `sha256`) whose per-pixel probabilities are averaged. A member may have its
    own input size and normalisation (`width`, `height`, `mean`, `std`; else the manifest's): its probabilities are
    resized to the first member's before averaging. With `"flip": true` each member also reads the mirrored
    photo, and its mirrored-back probabilities join the average. `min_score` (kind -> probability) sets the
    acceptance of a kind (others: MIN_SCORE), e.g. a stricter one for a kind the parser over-reads."""

    def __init__(self, folder: str | Path = SHIPPED):
        import onnxruntime as ort

        folder = Path(folder)
        try:
            self.manifest = json.loads((folder / "parser.json").read_text())
        except FileNotFoundError:
            raise ModelError(f"{folder}: no garment parser (parser.json) here") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.sessions, self.inputs = [], []
        for member in self.manifest.get("members") or [self.manifest]:
            path = folder / member["onnx"]
            if sha256_file(path) != member["sha256"]:
                raise ModelError(f"{path}: checksum does not match its manifest")
            self.sessions.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
            self.inputs.append(tuple(member[k] if k in member else self.manifest[k]
                                     for k in ("width", "height", "mean", "std")))
        self.width, self.height = self.inputs[0][:2]
        self.min_score = dict(self.manifest.get("min_score") or {})
        bad = [k for k, v in self.min_score.items()
               if k not in KINDS or isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1]
        if bad:
            raise ModelError(f"{folder}: min_score must map garment kinds ({', '.join(KINDS)}) to probabilities "
                             f"from 0 to 1; not {bad[0]!r}")

    def never_saw(self, number: int) -> bool:
        """Whether annotated CCP photo `number` was kept out of the training of every member, so that measuring
        on it is fair. Manifests from before `holdout` was recorded trained on the even half."""
        members = self.manifest.get("members") or [self.manifest]
        return all(held_out(number, m.get("holdout", self.manifest.get("holdout", "odd"))) for m in members)

    def parse(self, image: Image.Image) -> Parsed:
        """Fit the photo inside the parser input (keeping its aspect, padding with grey) and label pixels."""
        readings, size = [], None
        for session, (width, height, mean, std) in zip(self.sessions, self.inputs):
            probs = self._read(session, image, width, height, mean, std)
            size = size or probs.shape[:0:-1]
            readings.append(probs if probs.shape[:0:-1] == size else resized(probs, size))
        probs = sum(readings) / len(readings)
        return Parsed(image.size, probs.argmax(0), probs)

    def _read(self, session, image: Image.Image, width: int, height: int, mean: float, std: float) -> np.ndarray:
        """One member's probabilities (classes, h, w) over the photo's part of its input (padding cut off)."""
        w, h = image.size
        scale = min(width / w, height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        x0, y0 = (width - nw) // 2, (height - nh) // 2
        canvas = Image.new("RGB", (width, height), (128, 128, 128))
        canvas.paste(image.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0), (x0, y0))
        x = ((np.asarray(canvas, np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None]
        # output 0 is the per-pixel probabilities (a parser may add others, e.g. its training-time presence head)
        views = [x, x[..., ::-1].copy()] if self.manifest.get("flip") else [x]
        probs = sum(session.run(None, {"image": v})[0][0][..., ::-1 if k else 1] for k, v in enumerate(views)) / len(views)
        return probs[:, y0:y0 + nh, x0:x0 + nw]

    @staticmethod
    def regions(parsed: Parsed, min_score: dict[str, float] | None = None) -> list[Region]:
        """One box per garment kind present: the extent of its main blobs (the largest, and any at least
        KEEP_PART of its size, so both shoes count but a stray patch on the wall does not). A kind whose pixels'
        mean probability is below its `min_score` (else MIN_SCORE) is not present; nor is an EDGE_SLIVER."""
        h, w = parsed.labels.shape
        sx, sy = parsed.size[0] / w, parsed.size[1] / h
        out = []
        for kind in KINDS:
            c = CLASSES.index(kind)
            mask = parsed.labels == c
            area = int(mask.sum()) / (w * h)
            if area < MIN_AREA:
                continue
            score = float(parsed.probs[c][mask].mean())
            if score < (min_score or {}).get(kind, MIN_SCORE):
                continue
            blobs = components(mask)
            largest = max(b[0] for b in blobs)
            kept = [b for b in blobs if b[0] >= KEEP_PART * largest]
            x0, y0 = min(b[1] for b in kept), min(b[2] for b in kept)
            x1, y1 = max(b[3] for b in kept), max(b[4] for b in kept)
            box = (int(x0 * sx), int(y0 * sy), int(min(parsed.size[0], x1 * sx)), int(min(parsed.size[1], y1 * sy)))
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue
            # cut by the lower edge: its last row, or the one above it (the row next to the padding reads mixed)
            if kind in ("bottom", "one-piece") and y1 >= h - 1 and (y1 - y0) < EDGE_SLIVER * h:
                continue
            out.append(Region(kind, box, round(score * min(1.0, area / (4 * MIN_AREA)), 4), area))
        return out


def resized(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per-class probability maps resized (bilinear) to `size` (w, h)."""
    return np.stack([np.asarray(Image.fromarray(c.astype(np.float32), "F").resize(size, Image.BILINEAR)) for c in probs])


def components(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """8-connected blobs of a boolean mask as (pixels, x0, y0, x1, y1), end-exclusive. Runs of each row are
    joined to the overlapping runs of the row above with union-find: a few thousand runs, no pixel loop."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rows_s, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)                 # same row order; runs are [start, end)
    parent = list(range(len(starts)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows_s, np.arange(mask.shape[0] + 1))
    for y in range(1, mask.shape[0]):
        above = range(row_first[y - 1], row_first[y])
        for i in range(row_first[y], row_first[y + 1]):
            for j in above:
                if starts[j] <= ends[i] and starts[i] <= ends[j]:   # touching, diagonals included
                    a, b = find(i), find(j)
                    if a != b:
                        parent[a] = b
    blobs: dict[int, list[int]] = {}
    for i in range(len(starts)):
        r = find(i)
        y = int(rows_s[i])
        b = blobs.setdefault(r, [0, int(starts[i]), y, int(ends[i]), y + 1])
        b[0] += int(ends[i] - starts[i])
        b[1], b[2] = min(b[1], int(starts[i])), min(b[2], y)
        b[3], b[4] = max(b[3], int(ends[i])), max(b[4], y + 1)
    return [tuple(b) for b in blobs.values()]
