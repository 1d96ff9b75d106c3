"""Helpers shared by the benchmarks: the shared data, the reference model, timing. Never shipped."""

from __future__ import annotations

import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FPI = SHARED / "data" / "fashion-product-images"
CACHE = Path(__file__).resolve().parent / ".cache"
RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = SHARED / "reference" / "mobilenet_v2_1.0_224_quant.tflite"


def need(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"this benchmark needs {path} (the shared data beside the project)")
    return path


def extracted(archive: Path, name: str) -> Path:
    """`archive` (a shared .tar.gz) extracted once into benchmarks/.cache/NAME."""
    out = CACHE / name
    if not (out / ".done").exists():
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(need(archive)) as tar:
            tar.extractall(out, filter="data")
        (out / ".done").touch()
    return out


def catalog_images() -> Path:
    """The 35k shared catalog photos, extracted once into benchmarks/.cache/fpi/images."""
    return extracted(FPI / "images.tar.gz", "fpi") / "images"


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def timed(fn, *args, **kw):
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - start


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


class Reference:
    """The ImageNet MobileNetV2 baseline (`../shared/reference`): 1280-d average-pooled features.
    As the reference README says: pad to a white square, bilinear resize to 224, uint8 input."""

    name = "reference MobileNetV2 (ImageNet)"

    def __init__(self, threads: int = 2):
        import warnings

        from ai_edge_litert.interpreter import Interpreter

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.it = Interpreter(model_path=str(need(REFERENCE)), num_threads=threads,
                                  experimental_preserve_all_tensors=True)
        self.it.allocate_tensors()
        self.input = self.it.get_input_details()[0]["index"]
        feat = next(t for t in self.it.get_tensor_details()
                    if t["name"] == "MobilenetV2/Logits/AvgPool" and len(t["shape"]) == 4)
        self.feature, (self.scale, self.zero) = feat["index"], feat["quantization"]

    def embed_image(self, image) -> np.ndarray:
        from lookalike.images import fit

        side = max(image.size)
        square = fit(image, (side, side), "pad").resize((224, 224))
        self.it.set_tensor(self.input, np.asarray(square, np.uint8)[None])
        self.it.invoke()
        v = (self.it.get_tensor(self.feature).reshape(-1).astype(np.float32) - self.zero) * self.scale
        return v / max(np.linalg.norm(v), 1e-12)

    def embed_paths(self, paths, progress=None) -> np.ndarray:
        from lookalike.images import load_image

        out = np.zeros((len(paths), 1280), np.float32)
        for i, p in enumerate(paths):
            out[i] = self.embed_image(load_image(p))
            if progress:
                progress.advance(1)
        return out
