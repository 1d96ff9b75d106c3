"""Words into an image model's search space: the sentence encoder's vector through the model's text projection
(`text.onnx`, trained by `lookalike train --text-only`), so an index's photos answer words."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelError
from ..files import sha256_file
from .encoder import TextEncoder, load_text_encoder


class TextAlignment:
    """`vectors(["white sneakers"])` -> `(1, dim)` unit vectors comparable with the model's image vectors."""

    def __init__(self, folder: Path, file: str, sha256: str, encoder_id: str, model_name: str, dim: int,
                 verify: bool = True):
        from ..models.onnx import _session

        path = Path(folder) / file
        if not path.is_file():
            raise ModelError(f"{folder}: text projection {file} is missing")
        if verify and sha256 and sha256_file(path) != sha256:
            raise ModelError(f"{path}: checksum does not match its manifest (file changed or damaged)")
        self.encoder: TextEncoder = load_text_encoder()
        if encoder_id and encoder_id != self.encoder.id:
            raise ModelError(f"{model_name}'s words were aligned with text encoder {encoder_id}, but this lookalike "
                             f"has {self.encoder.id}; align them again (lookalike train --text-only)")
        self.session = _session(path, threads=1)
        self.input = self.session.get_inputs()[0].name
        width = self.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != dim:
            raise ModelError(f"{path} gives {width}-d vectors but {model_name}'s search vectors have {dim}: the "
                             "alignment is not this model's; align words again (lookalike train --text-only)")

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors in the model's search space for checked queries (`check_query`)."""
        from .encoder import QueryError

        for text in texts:
            if not self.encoder.known(text):
                raise QueryError(f"the text model knows none of the words of {text[:40]!r} (it reads English)")
        sentences = self.encoder.encode(list(texts))
        out = self.session.run(None, {self.input: sentences})[0].astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
