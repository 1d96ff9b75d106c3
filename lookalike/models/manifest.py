"""The model manifest: a small JSON file beside an ONNX file that says how to feed it and read it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ModelError
from ..files import read_manifest_json

MANIFEST = "model.json"
FORMAT = "lookalike-model"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
BACKGROUNDS = ("keep", "whiten")    # InputSpec.background: leave photos as they are, or lookalike.background


@dataclass
class InputSpec:
    name: str | None = None           # ONNX input name (None: the model's first input)
    width: int = 224
    height: int = 224
    layout: str = "NCHW"              # or NHWC
    resize: str = "pad"               # pad (white), stretch, crop
    interpolation: str = "bilinear"   # nearest, bilinear, bicubic, area, lanczos
    channels: str = "RGB"             # or BGR (Keras "caffe" models)
    scale: float = 1 / 255            # pixel * scale, then (x - mean) / std
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    dtype: str = "float32"            # or uint8 (then scale/mean/std are not applied)
    background: str = "keep"          # or whiten: paint a plain non-white background white first (lookalike.background)


@dataclass
class EmbeddingSpec:
    output: str | None = None         # ONNX output name (None: the model's first output)
    pooling: str = "none"             # none, avg, max: applied when the output is a 4-D feature map
    layout: str = "NCHW"              # layout of a 4-D output
    # The search vector may append the heads' predictions: for each head named here (with a weight w), the
    # square roots of its probabilities (raised to `append_power`, renormalised) times sqrt(w). The cosine of
    # two such vectors adds, per head, w x the Bhattacharyya overlap of the two predictions to the embedding's
    # cosine, so neighbours tend to share the predicted type and colour. `dim` counts the appended columns.
    append_heads: dict[str, float] = field(default_factory=dict)
    append_power: float = 1.0
    # Average the outputs (embedding and head probabilities) for the photo and its mirror image: a garment
    # and its mirror are the same product. Runs the network twice per image.
    flip: bool = False


@dataclass
class HeadSpec:
    output: str
    labels: list[str]
    activation: str = "softmax"       # softmax (output is logits) or none (output is probabilities)


@dataclass
class ModelManifest:
    name: str
    onnx: str = "model.onnx"
    sha256: str = ""
    dim: int = 0
    input: InputSpec = field(default_factory=InputSpec)
    embedding: EmbeddingSpec = field(default_factory=EmbeddingSpec)
    heads: dict[str, HeadSpec] = field(default_factory=dict)
    # Heads fitted after the fact (`lookalike train --heads-only`): a second ONNX file whose one input is the unit
    # embedding or, when `heads_input` names one, that output of the model (e.g. its pooled features), and whose
    # outputs are the heads. When set, every head is read from it.
    heads_onnx: str | None = None
    heads_sha256: str = ""
    heads_input: str = ""
    # With heads_onnx, per head: the weight of the model's own output for that head (in `onnx`, same name and labels)
    # in an average with the heads file's probabilities. Heads not named here are the heads file's alone.
    heads_blend: dict[str, float] = field(default_factory=dict)
    # With heads_onnx: the labels of the network's own head outputs in `onnx` (its manifest's heads before they
    # were fitted apart), so a later fit knows which of them it may blend with.
    network_heads: dict[str, list[str]] = field(default_factory=dict)
    # Search by words (`lookalike train --text-only`, `lookalike.text`): an ONNX file mapping the sentence encoder's
    # vectors (`text_encoder` names it by id) into this model's search space. It does not change the search vectors,
    # so it is not part of the model id: indexes built before the text side was added answer words as they are.
    text_onnx: str | None = None
    text_sha256: str = ""
    text_encoder: str = ""
    card: str | None = None           # a Markdown model card beside the manifest
    format: str = FORMAT
    version: int = 1

    @property
    def id(self) -> str:
        """name@checksum; a search vector recipe (appended heads, mirror averaging, background whitening, heads
        fitted apart) adds a digest of it, so an index built with another recipe of the same network is told apart."""
        base = f"{self.name}@{self.sha256[:12]}"
        e = self.embedding
        extras = (["flip"] if e.flip else []) + ([f"background={self.input.background}"]
                                                 if self.input.background != "keep" else [])
        extras += [f"heads={self.heads_sha256[:12]}"] if self.heads_onnx else []
        extras += [f"blend={sorted(self.heads_blend.items())}"] if self.heads_onnx and self.heads_blend else []
        if not e.append_heads and not extras:
            return base
        recipe = json.dumps([sorted(e.append_heads.items()), e.append_power] + extras)
        return f"{base}+{hashlib.sha1(recipe.encode()).hexdigest()[:6]}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def read(cls, folder: Path) -> "ModelManifest":
        path = folder / MANIFEST
        raw = read_manifest_json(path, ModelError, "model directory", FORMAT)
        try:
            return cls(**{**raw, "input": InputSpec(**raw.get("input", {})),
                          "embedding": EmbeddingSpec(**raw.get("embedding", {})),
                          "heads": {k: HeadSpec(**v) for k, v in raw.get("heads", {}).items()}})
        except TypeError as exc:
            raise ModelError(f"{path}: malformed model manifest ({exc})") from None
