"""The sentence encoder behind search by words: all-MiniLM-L6-v2 as int8 ONNX (exported once by
`lookalike.train.minilm`, shipped in `lookalike/models/text/minilm-l6`), tokenized by BERT's WordPiece
(`lookalike.text.wordpiece`). Sentences in, 384-d unit vectors out; no PyTorch, nothing beyond the core install."""

from __future__ import annotations

import json
import os
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import LookalikeError, ModelError

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "text" / "minilm-l6"
#: Longer text queries are refused: a shopper's query is a few words; a page of text is a mistake or an attack.
MAX_CHARS = 500


class QueryError(LookalikeError):
    """A text query that cannot be searched: empty, no words, too long, or no word the model knows."""


def check_query(text: object) -> str:
    """The query as searched (whitespace collapsed), or a QueryError that says what is wrong with it."""
    if not isinstance(text, str):
        raise QueryError(f"a text query must be a string, not {type(text).__name__}")
    text = " ".join(text.split())
    if not text:
        raise QueryError("empty text query: type a few words, e.g. \"white sneakers\"")
    if len(text) > MAX_CHARS:
        raise QueryError(f"text query too long ({len(text):,} characters; at most {MAX_CHARS})")
    if not any(unicodedata.category(c)[0] in "LN" for c in text):
        raise QueryError(f"the text query {text[:40]!r} has no words, only punctuation or symbols")
    return text


class TextEncoder:
    """`encode(["white sneakers"])` -> `(1, 384)` float32 unit vectors."""

    def __init__(self, folder: str | Path = SHIPPED, threads: int | None = None):
        self.folder = Path(folder)
        path = self.folder / "text.json"
        try:
            self.manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read the text encoder's manifest ({exc})") from None
        import onnxruntime as ort

        from .wordpiece import WordPiece

        self.id, self.dim = self.manifest["id"], int(self.manifest["dim"])
        self.max_tokens = int(self.manifest.get("max_tokens", 64))
        try:
            self.tokenizer = WordPiece(self.folder / "tokenizer.json")
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{self.folder}: cannot read the text encoder's tokenizer ({exc})") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.folder / "model.onnx"), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:     # onnxruntime raises its own exception types
            raise ModelError(f"{self.folder}: ONNX Runtime cannot load the text encoder ({exc})") from None

    def tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.tokenizer.batch(list(texts), self.max_tokens)

    def known(self, text: str) -> bool:
        """Whether the model can read `text`: it learnt English, so most letters must be Latin ones (Chinese,
        Arabic or Greek come out as [UNK] or single letters it never learnt to combine), and most word pieces in
        its vocabulary."""
        letters = [c for c in text if c.isalpha()]
        latin = sum(unicodedata.name(c, "").startswith("LATIN") for c in letters)
        if letters and latin < len(letters) / 2:
            return False
        ids = self.tokenizer.ids(text)[1:-1]
        return sum(i != self.tokenizer.unk for i in ids) >= len(ids) / 2

    def encode(self, texts: Sequence[str] | str, batch_size: int = 256) -> np.ndarray:
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        out = np.zeros((len(items), self.dim), np.float32)
        # short texts first, so each batch pads to about its own length
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        for start in range(0, len(items), batch_size):
            rows = order[start:start + batch_size]
            ids, mask = self.tokens([items[i] for i in rows])
            out[rows] = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out[0] if single else out


@lru_cache(maxsize=4)
def load_text_encoder(folder: str | None = None) -> TextEncoder:
    return TextEncoder(folder or SHIPPED)
