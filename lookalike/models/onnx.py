"""Running any ONNX image model through ONNX Runtime, as its manifest says."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..background import whiten_background
from ..errors import ModelError
from ..images import fit
from .base import Embedder, Outputs, l2_normalise
from ..files import sha256_file
from .manifest import BACKGROUNDS, ModelManifest

RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
            "area": Image.BOX, "lanczos": Image.LANCZOS}


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"{path}: ONNX Runtime cannot load this model ({exc})") from None


class OnnxEmbedder(Embedder):
    def __init__(self, folder: str | Path, manifest: ModelManifest | None = None, verify: bool = True):
        self.folder = Path(folder)
        self.manifest = manifest or ModelManifest.read(self.folder)
        m = self.manifest
        onnx_path = self.folder / m.onnx
        self.session = self._open(m.onnx, m.sha256, verify)
        inputs = self.session.get_inputs()
        self.input_name = m.input.name or inputs[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.embedding_output = m.embedding.output or outputs[0]
        self.heads_session = self._open(m.heads_onnx, m.heads_sha256, verify, threads=1, strict=True) if m.heads_onnx else None
        for path, session, needed in [(onnx_path, self.session, [self.embedding_output, *filter(None, [m.heads_input])]),
                                      (self.folder / (m.heads_onnx or m.onnx), self.heads_session or self.session,
                                       [h.output for h in m.heads.values()])]:
            names = [o.name for o in session.get_outputs()]
            for name in needed:
                if name not in names:
                    raise ModelError(f"{path}: no output named {name!r} (outputs: {', '.join(names)})")
        # heads whose probabilities blend the heads file's with the model's own output of the same name
        self._blended = [h for h in m.heads_blend if h in m.heads] if self.heads_session is not None else []
        for head in self._blended:
            if m.heads[head].output not in outputs:
                raise ModelError(f"{onnx_path}: heads_blend names {head!r}, but the model has no output {m.heads[head].output!r}")
        self.name = m.name
        self.id = m.id
        self.dim = m.dim
        self.input_size = (m.input.width, m.input.height)
        self.heads = {k: list(h.labels) for k, h in m.heads.items()}
        unknown = [h for h in m.embedding.append_heads if h not in m.heads]
        if unknown:
            raise ModelError(f"{m.name}: embedding.append_heads names heads the model does not have: {', '.join(unknown)}")
        if m.input.background not in BACKGROUNDS:
            raise ModelError(f"{m.name}: unknown input background {m.input.background!r} ({', '.join(BACKGROUNDS)})")
        self._resample = RESAMPLE.get(m.input.interpolation)
        if self._resample is None:
            raise ModelError(f"{m.name}: unknown interpolation {m.input.interpolation!r} ({', '.join(RESAMPLE)})")
        card = self.folder / m.card if m.card else None
        self.card = card.read_text() if card and card.is_file() else None
        self._text = None
        self._text_lock = threading.Lock()
        scale = np.float32(m.input.scale)
        self._mean = np.asarray(m.input.mean, np.float32) / scale if m.input.dtype != "uint8" else None
        self._std = np.asarray(m.input.std, np.float32) / scale if m.input.dtype != "uint8" else None

    @property
    def has_text(self) -> bool:
        return bool(self.manifest.text_onnx)

    def text_alignment(self):
        """The model's words-to-search-space projection (`lookalike.text.align`), loaded on first use."""
        if not self.manifest.text_onnx:
            return super().text_alignment()
        with self._text_lock:
            if self._text is None:
                from ..text.align import TextAlignment

                m = self.manifest
                self._text = TextAlignment(self.folder, m.text_onnx, m.text_sha256, m.text_encoder, m.name, m.dim)
            return self._text

    def _open(self, file: str, sha256: str, verify: bool, threads: int | None = None, strict: bool = False):
        """An ONNX Runtime session on `file` of this folder, after checking it is there and matches `sha256` (when the
        manifest gives one; `strict`: an empty one does not match either)."""
        path = self.folder / file
        if not path.is_file():
            raise ModelError(f"{self.folder}: model file {file} is missing")
        if verify and (sha256 or strict) and sha256_file(path) != sha256:
            raise ModelError(f"{path}: checksum does not match its manifest (file changed or damaged)")
        return _session(path, threads)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        spec = self.manifest.input
        if spec.background == "whiten":
            image = whiten_background(image)
        pixels = np.asarray(fit(image, self.input_size, spec.resize, self._resample), dtype=np.uint8)
        if spec.channels == "BGR":
            pixels = pixels[..., ::-1]
        if spec.dtype == "uint8":
            arr = np.ascontiguousarray(pixels)
        else:
            arr = (pixels.astype(np.float32) - self._mean) / self._std
        return np.ascontiguousarray(arr.transpose(2, 0, 1)) if spec.layout == "NCHW" else arr

    def forward(self, batch: np.ndarray) -> Outputs:
        emb, heads = self.run_once(batch)
        if self.manifest.embedding.flip:
            mirrored, mirrored_heads = self.run_once(batch, mirrored=True)
            emb = emb + mirrored
            heads = {k: (v + mirrored_heads[k]) / 2 for k, v in heads.items()}
        vectors = self._search_vector(l2_normalise(emb), heads)
        if self.dim and vectors.shape[1] != self.dim:
            raise ModelError(f"{self.name}: the manifest says {self.dim} dims but the model gives {vectors.shape[1]}")
        return Outputs(vectors, heads)

    def run_once(self, batch: np.ndarray, mirrored: bool = False, heads: bool = True
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One pass of the network over a preprocessed batch (or its mirror image): unit embeddings and, per
        head, probabilities (`forward` adds mirror averaging and the search vector)."""
        emb, probs, _ = self.run_all(batch, mirrored, heads)
        return emb, probs

    def run_all(self, batch: np.ndarray, mirrored: bool = False, heads: bool = True, also: Sequence[str] = ()
                ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """`run_once`, plus the raw outputs named in `also`, from the same pass of the network."""
        m = self.manifest
        specs = list(m.heads.values()) if heads else []
        apart = bool(specs) and self.heads_session is not None
        names = [self.embedding_output, *([m.heads_input] if apart and m.heads_input else []),
                 *(h.output for h in specs if not apart), *(m.heads[h].output for h in self._blended if apart), *also]
        names = list(dict.fromkeys(names))
        raw = dict(zip(names, self.run_outputs(batch, names, mirrored)))
        emb = raw[self.embedding_output]
        if emb.ndim == 4:
            axes = (2, 3) if m.embedding.layout == "NCHW" else (1, 2)
            emb = emb.max(axis=axes) if m.embedding.pooling == "max" else emb.mean(axis=axes)
        emb = l2_normalise(emb.reshape(len(batch), -1).astype(np.float32))
        if apart:
            probs = self.heads_of(raw[m.heads_input].reshape(len(batch), -1).astype(np.float32) if m.heads_input else emb)
            own = self.probabilities([raw[m.heads[h].output] for h in self._blended], len(batch), self._blended)
            return emb, self.blend(probs, own), {n: raw[n] for n in also}
        return emb, self.probabilities([raw[h.output] for h in specs], len(batch)), {n: raw[n] for n in also}

    def blend(self, probs: dict[str, np.ndarray], own: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The heads file's probabilities averaged with the model's own (`heads_blend`), for the heads in `own`."""
        b = self.manifest.heads_blend
        return {h: (1 - b[h]) * p + b[h] * own[h] if h in own else p for h, p in probs.items()}

    def run_outputs(self, batch: np.ndarray, names: list[str], mirrored: bool = False) -> list[np.ndarray]:
        """The model's raw outputs `names` for a preprocessed batch (or its mirror image)."""
        if mirrored:
            batch = np.ascontiguousarray(np.flip(batch, axis=3 if self.manifest.input.layout == "NCHW" else 2))
        return self.session.run(names, {self.input_name: batch})

    def heads_of(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Head probabilities, for a model whose heads are a file of their own (`heads_onnx`), of what that file
        reads: unit embeddings, or the model's `heads_input` output."""
        feed = {self.heads_session.get_inputs()[0].name: x}
        outputs = self.heads_session.run([h.output for h in self.manifest.heads.values()], feed)
        return self.probabilities(outputs, len(x))

    def probabilities(self, outputs: list[np.ndarray], n: int, heads: list[str] | None = None) -> dict[str, np.ndarray]:
        """Per head (all the manifest's, or `heads`), probabilities of its raw output."""
        probs = {}
        names = list(self.manifest.heads) if heads is None else heads
        for head, out in zip(names, outputs):
            spec = self.manifest.heads[head]
            out = out.astype(np.float32).reshape(n, -1)
            if spec.activation == "softmax":
                out = np.exp(out - out.max(axis=1, keepdims=True))
                out /= out.sum(axis=1, keepdims=True)
            probs[head] = out
        return probs

    def _search_vector(self, emb: np.ndarray, heads: dict[str, np.ndarray]) -> np.ndarray:
        """The embedding, with the predictions of `embedding.append_heads` appended (see EmbeddingSpec)."""
        spec = self.manifest.embedding
        if not spec.append_heads:
            return emb
        parts = [emb]
        for head, weight in spec.append_heads.items():
            p = np.clip(heads[head], 0, None) ** spec.append_power
            p /= np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
            parts.append(np.sqrt(weight * p))
        return l2_normalise(np.concatenate(parts, axis=1))
