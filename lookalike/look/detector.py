"""A detector in ONNX format (YOLO-style output) as an alternative garment localiser, e.g. one a user trained.

A folder holds the ONNX file and `detector.json`:

    {"format": "lookalike-detector", "onnx": "model.onnx", "width": 640, "height": 640,
     "layout": "yolov8",                       # yolov8: [1, 4 + C, N]; yolov5: [1, N, 5 + C] (with objectness)
     "classes": {"0": "top", "1": "bottom", "2": "footwear"},   # class index -> garment kind (others ignored)
     "score": 0.25, "iou": 0.45}

Boxes are predicted on the photo letterboxed into the input (grey padding, as YOLO trains), then mapped back to
the photo's pixels; after non-maximum suppression, the boxes of one kind are merged into one (a pair of shoes is
one footwear garment, as in the parser's output).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ModelError
from ..files import read_manifest_json
from .kinds import KINDS
from .parser import Region

FORMAT = "lookalike-detector"


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            ix = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            iy = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = ix * iy
            union = ((boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1]) +
                     (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]) - inter)
            if union <= 0 or inter / union < threshold:
                rest.append(j)
        order = rest
    return keep


class OnnxDetector:
    def __init__(self, folder: str | Path):
        import onnxruntime as ort

        folder = Path(folder)
        self.manifest = read_manifest_json(folder / "detector.json", ModelError, "detector folder", FORMAT)
        m = self.manifest
        self.width, self.height = int(m["width"]), int(m["height"])
        self.layout = m.get("layout", "yolov8")
        if self.layout not in ("yolov8", "yolov5"):
            raise ModelError(f"{folder}: layout {self.layout!r} is not yolov8 or yolov5")
        self.kinds = {int(k): v for k, v in m["classes"].items() if v in KINDS}
        if not self.kinds:
            raise ModelError(f"{folder}: no class maps to a garment kind ({', '.join(KINDS)})")
        self.score, self.iou = float(m.get("score", 0.25)), float(m.get("iou", 0.45))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(folder / m["onnx"]), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{folder}: ONNX Runtime cannot load the detector ({exc})") from None
        self.input = self.session.get_inputs()[0].name

    def regions(self, image: Image.Image) -> list[Region]:
        w, h = image.size
        scale = min(self.width / w, self.height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        dx, dy = (self.width - nw) // 2, (self.height - nh) // 2
        canvas = Image.new("RGB", (self.width, self.height), (114, 114, 114))
        canvas.paste(image.resize((nw, nh), Image.BILINEAR), (dx, dy))
        x = (np.asarray(canvas, np.float32) / 255).transpose(2, 0, 1)[None]
        out = np.asarray(self.session.run(None, {self.input: x})[0])[0]
        if self.layout == "yolov8":
            rows = out.T                                   # N x (4 + C)
            xywh, scores = rows[:, :4], rows[:, 4:]
        else:
            xywh, scores = out[:, :4], out[:, 5:] * out[:, 4:5]
        cls = scores.argmax(1)
        best = scores[np.arange(len(scores)), cls]
        keep = best >= self.score
        xywh, cls, best = xywh[keep], cls[keep], best[keep]
        boxes = np.stack([xywh[:, 0] - xywh[:, 2] / 2, xywh[:, 1] - xywh[:, 3] / 2,
                          xywh[:, 0] + xywh[:, 2] / 2, xywh[:, 1] + xywh[:, 3] / 2], 1) if len(xywh) else np.zeros((0, 4))
        boxes = (boxes - [dx, dy, dx, dy]) / scale            # back to the photo's pixels
        boxes = np.clip(boxes, 0, [w, h, w, h])
        merged: dict[str, tuple[list, float]] = {}
        for c in np.unique(cls):
            kind = self.kinds.get(int(c))
            if kind is None:
                continue
            idx = np.flatnonzero(cls == c)
            for i in (idx[j] for j in _nms(boxes[idx], best[idx], self.iou)):
                box, score = merged.get(kind, ([w, h, 0, 0], 0.0))
                merged[kind] = ([min(box[0], boxes[i, 0]), min(box[1], boxes[i, 1]), max(box[2], boxes[i, 2]),
                                 max(box[3], boxes[i, 3])], max(score, float(best[i])))
        out_regions = []
        for kind, (box, score) in merged.items():
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            if x1 - x0 >= 4 and y1 - y0 >= 4:
                out_regions.append(Region(kind, (x0, y0, x1, y1), round(score, 4), (x1 - x0) * (y1 - y0) / (w * h)))
        return sorted(out_regions, key=lambda r: KINDS.index(r.kind))
