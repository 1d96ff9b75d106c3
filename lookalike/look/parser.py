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
MIN_SCORE = 0.5         # mean probability of the kind over its pixels


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
    area: float                             # share of the photo


class GarmentParser:
    def __init__(self, folder: str | Path = SHIPPED):
        import onnxruntime as ort

        folder = Path(folder)
        try:
            self.manifest = json.loads((folder / "parser.json").read_text())
        except FileNotFoundError:
            raise ModelError(f"{folder}: no garment parser (parser.json) here") from None
        path = folder / self.manifest["onnx"]
        if sha256_file(path) != self.manifest["sha256"]:
            raise ModelError(f"{path}: checksum does not match its manifest")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.width, self.height = self.manifest["width"], self.manifest["height"]

    def parse(self, image: Image.Image) -> Parsed:
        """Fit the photo inside the parser input (keeping its aspect, padding with grey) and label pixels."""
        w, h = image.size
        scale = min(self.width / w, self.height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        x0, y0 = (self.width - nw) // 2, (self.height - nh) // 2
        canvas = Image.new("RGB", (self.width, self.height), (128, 128, 128))
        canvas.paste(image.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0), (x0, y0))
        x = (np.asarray(canvas, np.float32) / 255 - self.manifest["mean"]) / self.manifest["std"]
        probs = self.session.run(None, {"image": x.transpose(2, 0, 1)[None]})[0][0]
        probs = probs[:, y0:y0 + nh, x0:x0 + nw]
        return Parsed((w, h), probs.argmax(0), probs)

    @staticmethod
    def regions(parsed: Parsed) -> list[Region]:
        """One box per garment kind present: the robust extent (1st-99th percentile) of its pixels."""
        h, w = parsed.labels.shape
        sx, sy = parsed.size[0] / w, parsed.size[1] / h
        out = []
        for kind in KINDS:
            c = CLASSES.index(kind)
            ys, xs = np.nonzero(parsed.labels == c)
            area = len(xs) / (w * h)
            if area < MIN_AREA:
                continue
            score = float(parsed.probs[c][ys, xs].mean())
            if score < MIN_SCORE:
                continue
            lo_x, hi_x = np.percentile(xs, [1, 99])
            lo_y, hi_y = np.percentile(ys, [1, 99])
            box = (int(lo_x * sx), int(lo_y * sy), int(min(parsed.size[0], (hi_x + 1) * sx)),
                   int(min(parsed.size[1], (hi_y + 1) * sy)))
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue
            out.append(Region(kind, box, round(score * min(1.0, area / (4 * MIN_AREA)), 4), area))
        return out
