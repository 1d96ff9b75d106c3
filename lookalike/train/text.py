"""Align words with photos: `lookalike train PHOTOS --metadata CSV --init MODEL --text-only [--text-column NAME]`.

The image model is not touched, and neither is the sentence encoder (all-MiniLM-L6-v2, `lookalike.text`): a small
network (sentence vector -> 768 GELU -> the model's search vector, unit length) learns to put a product's words
where its photo's search vector is, so that an index built with the model answers words without being built again.

Each product teaches with its name (the `--text-column`, when the catalog has one) and with texts made from its
label columns, the way shoppers combine them ("navy blue shirts", "shirts for men", "men navy blue shirts
casual"), so a catalog without names still teaches. The loss is CLIP's, from the words' side, with every photo of
the batch that fits the words as a positive: all of a label text's labels match, or, for a name, the product itself
(half the weight) and the products of the same type, colour and gender (the other half).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..progress import NoProgress, Progress

TEXT_FILE = "text.onnx"
#: label columns a label text is made of, in the order a shopper writes them
LABEL_COLUMNS = ("gender", "baseColour", "articleType", "usage")
#: the columns a name's "same kind" positives share
KIND = ("gender", "baseColour", "articleType")
_PLURAL_KEEP = {"jeans", "shorts", "trousers", "leggings", "jeggings", "capris", "briefs", "boxers", "socks",
                "clothes", "glasses", "sunglasses", "pants", "track pants", "lounge pants", "flip flops", "heels",
                "flats", "sandals", "shoes", "tights", "dungarees", "patiala", "salwar", "churidar"}


@dataclass
class TextConfig:
    hidden: int = 768
    epochs: int = 40
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01
    dropout: float = 0.1
    temperature: float = 0.05
    variants: int = 8          # label texts made per product
    seed: int = 0


def singular(word: str) -> str:
    low = word.lower()
    if low in _PLURAL_KEEP or any(low.endswith(" " + k) for k in _PLURAL_KEEP) or not low.endswith("s"):
        return word
    if low.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    return word[:-1] if not low.endswith("ss") else word


def _value(meta: Mapping, column: str) -> str | None:
    v = meta.get(column)
    v = str(v).strip() if v is not None else ""
    return v if v and v.upper() not in ("NA", "N/A", "NONE", "NULL") else None


def load_glossary(path: str | Path | None = None) -> dict[str, dict[str, list[str]]]:
    """Shoppers' words per column and catalog value (`lookalike/text/glossary.json`, or a file of the same form
    merged over it)."""
    from ..text import GLOSSARY

    glossary = {c: {k: list(v) for k, v in words.items()} for c, words in
                json.loads(GLOSSARY.read_text()).items() if not c.startswith("_")}
    if path is not None:
        for column, words in json.loads(Path(path).read_text()).items():
            if not column.startswith("_"):
                for value, more in words.items():
                    glossary.setdefault(column, {}).setdefault(value, []).extend(more)
    return glossary


def label_texts(meta: Mapping, rng: np.random.Generator, n: int, columns: Sequence[str] = LABEL_COLUMNS,
                glossary: Mapping[str, Mapping[str, Sequence[str]]] | None = None
                ) -> list[tuple[str, tuple[str, ...]]]:
    """Up to `n` texts made of a product's labels, each with the columns it mentions: the full label text
    ("Men Navy Blue Shirts Casual") first, then random subsets in shoppers' word orders, half of the words
    swapped for a shopper's word from the `glossary` ("navy", "tee", "for her")."""
    values = {c: _value(meta, c) for c in columns}
    present = [c for c in columns if values[c]]
    if not present:
        return []
    glossary = glossary or {}
    out = [(" ".join(values[c] for c in present), tuple(present))]

    def word(column: str) -> str:
        options = glossary.get(column, {}).get(values[column])
        if options and rng.random() < 0.5:
            return options[int(rng.integers(len(options)))]
        return singular(values[column]) if column == "articleType" and rng.random() < 0.5 else values[column]

    for _ in range(n * 3):
        if len(out) >= n:
            break
        chosen = [c for c in present if rng.random() < 0.5] or [present[int(rng.integers(len(present)))]]
        words = {c: word(c) for c in chosen}
        gender = words.pop("gender", None)
        usage = words.pop("usage", None)
        body = " ".join(words[c] for c in ("baseColour", "articleType") if c in words)
        if gender and body and rng.random() < 0.5:
            body = f"{body} for {gender.lower()}"
        elif gender:
            body = f"{gender} {body}".strip()
        if usage:
            body = f"{usage} {body}" if rng.random() < 0.5 else f"{body} {usage}"
        text = body.strip()
        if rng.random() < 0.5:
            text = text.lower()
        if text and text not in (t for t, _ in out):
            out.append((text, tuple(chosen)))
    return out


@dataclass
class Texts:
    """Training texts: `text[i]` belongs to product `product[i]` and constrains the columns `mentions[i]`
    (None for a name: the product itself and its kind)."""
    text: list[str]
    product: np.ndarray
    mentions: list[tuple[str, ...] | None]


def make_texts(metadata: Sequence[Mapping], text_column: str | None, config: TextConfig,
               columns: Sequence[str] = LABEL_COLUMNS, glossary=None) -> Texts:
    rng = np.random.default_rng(config.seed)
    text, product, mentions = [], [], []
    for i, meta in enumerate(metadata):
        name = _value(meta, text_column) if text_column else None
        if name:
            text.append(name)
            product.append(i)
            mentions.append(None)
        for t, cols in label_texts(meta, rng, config.variants, columns, glossary):
            text.append(t)
            product.append(i)
            mentions.append(cols)
    return Texts(text, np.array(product, np.int64), mentions)


def label_codes(metadata: Sequence[Mapping], columns: Sequence[str]) -> np.ndarray:
    """(N, len(columns)) int codes; -1 where a product has no value."""
    out = np.full((len(metadata), len(columns)), -1, np.int64)
    for j, c in enumerate(columns):
        codes: dict[str, int] = {}
        for i, meta in enumerate(metadata):
            v = _value(meta, c)
            if v:
                out[i, j] = codes.setdefault(v, len(codes))
    return out


class Projection:
    """The trained network as a torch module factory (kept apart so the runtime never imports torch)."""

    @staticmethod
    def build(dim_in: int, dim_out: int, config: TextConfig):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.body = torch.nn.Sequential(
                    torch.nn.Linear(dim_in, config.hidden), torch.nn.GELU(), torch.nn.Dropout(config.dropout),
                    torch.nn.Linear(config.hidden, dim_out)) if config.hidden else None
                self.skip = torch.nn.Linear(dim_in, dim_out, bias=False)

            def forward(self, sentence):
                out = self.skip(sentence)
                return torch.nn.functional.normalize(out + self.body(sentence) if self.body is not None else out, dim=1)

        return Net()


def train_projection(sentences: np.ndarray, texts: Texts, vectors: np.ndarray, codes: np.ndarray,
                     columns: Sequence[str], config: TextConfig, progress: Progress | None = None, start: dict | None = None):
    """Fit the projection: `sentences` (T, 384) encode `texts`; `vectors` (N, D) are the products' search vectors;
    `codes` their label codes for `columns`; `start`: weights to start from. Returns the torch module (eval mode)."""
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    progress = progress or NoProgress()
    net = Projection.build(sentences.shape[1], vectors.shape[1], config)
    if start is not None:
        net.load_state_dict(start)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(vectors)
    by_product = [[] for _ in range(n)]
    for t, p in enumerate(texts.product):
        by_product[p].append(t)
    has_text = np.array([bool(b) for b in by_product])
    products = np.flatnonzero(has_text)
    steps = max(1, len(products) // config.batch_size) * config.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    col = {c: j for j, c in enumerate(columns)}
    masks = np.zeros((len(texts.text), len(columns)), bool)      # the columns each text constrains
    for t, m in enumerate(texts.mentions):
        for c in (KIND if m is None else m):
            if c in col:
                masks[t, col[c]] = True
    is_name = np.array([m is None for m in texts.mentions])
    S = torch.from_numpy(np.ascontiguousarray(sentences, np.float32))
    V = torch.from_numpy(np.ascontiguousarray(vectors, np.float32))
    log_scale = math.log(1 / config.temperature)
    progress.start(steps, "aligning words")
    net.train()
    for step in range(steps):
        batch = rng.choice(products, size=min(config.batch_size, len(products)), replace=False)
        picked = np.array([by_product[p][int(rng.integers(len(by_product[p])))] for p in batch])
        bc = codes[batch]
        eq = bc[:, None, :] == bc[None, :, :]                  # (B, B, columns): same value
        mask = masks[picked]                                    # (B, columns): what each text constrains
        same = (eq | ~mask[:, None, :]).all(2)
        target = same / same.sum(1, keepdims=True)
        named = is_name[picked]
        if named.any():     # a name: half on the product itself, half on its kind
            target[named] *= 0.5
            target[np.flatnonzero(named), np.flatnonzero(named)] += 0.5
        target = target.astype(np.float32)
        q = net(S[picked])
        logits = q @ V[batch].T * math.exp(log_scale)
        loss = -(torch.from_numpy(target) * torch.log_softmax(logits, 1)).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        progress.advance(1)
    return net.eval()


def export_projection(net, dim_in: int, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, dim_in),), str(path), input_names=["sentence"], output_names=["vector"],
                          dynamic_axes={"sentence": {0: "batch"}, "vector": {0: "batch"}}, opset_version=17,
                          dynamo=False)


@dataclass
class TextReport:
    out: Path
    products: int
    validation: int
    texts: int
    skipped: list[tuple[str, str]]
    validation_scores: dict[str, float]     # label-text queries on the validation products (see _score)
    seconds: float


def fit_text(photos, metadata=None, *, init: str, out: str | Path, text_column: str | None = None,
             config: TextConfig | None = None, glossary: str | Path | None = None, name: str | None = None,
             progress: Progress | None = None, log=print, command: str | None = None) -> TextReport:
    """Align words with `init`'s photos and write the model with its text projection to `out` (atomically: a copy
    of the model, text.onnx, its manifest and training.json). Validation: the products `is_validation(id, 0.1)`
    picks are held out and searched with their label texts."""
    import torch

    from ..catalog import Catalog
    from ..errors import LookalikeError, ModelError
    from ..files import sha256_file
    from ..index.store import replaceable, write_atomically, write_lock
    from ..models import load_model
    from ..models.manifest import MANIFEST
    from ..models.onnx import OnnxEmbedder
    from ..models.pipeline import embed_batch
    from ..text import load_text_encoder
    from .data import is_validation
    from .heads import MODEL_FOLDER

    config = config or TextConfig()
    progress = progress or NoProgress()
    started = time.perf_counter()
    out = replaceable(Path(out), MODEL_FOLDER)
    base = load_model(str(init))
    if not isinstance(base, OnnxEmbedder):
        raise ModelError(f"--text-only needs an ONNX model folder to start from, not {base.name!r}")
    catalog = Catalog.read(photos, metadata)
    if text_column and text_column not in catalog.columns:
        raise LookalikeError(f"no text column {text_column!r}; columns are {', '.join(catalog.columns) or 'none'}")
    columns = [c for c in LABEL_COLUMNS if c in catalog.columns]
    if not columns and not text_column:
        raise LookalikeError("nothing to learn words from: the metadata has no name column (--text-column) and none "
                             f"of the label columns {', '.join(LABEL_COLUMNS)}")
    progress.start(len(catalog.products), "embedding")
    got = embed_batch(base, [(i, p.path) for i, p in enumerate(catalog.products)], progress=progress)
    products = [catalog.products[i] for i in got.keys]
    metas = [p.metadata for p in products]
    val = np.array([is_validation(p.id, 0.1) for p in products])
    train_rows = np.flatnonzero(~val)
    encoder = load_text_encoder()
    texts = make_texts([metas[i] for i in train_rows], text_column, config, columns, load_glossary(glossary))
    if not texts.text:
        raise LookalikeError("no product has a name or a label to learn words from")
    unique = sorted(set(texts.text))
    log(f"{len(texts.text):,} texts ({len(unique):,} different) for {len(train_rows):,} products; "
        f"{int(val.sum()):,} held out")
    progress.start(len(unique), "reading texts")
    position = {t: i for i, t in enumerate(unique)}
    sentences = np.zeros((len(unique), encoder.dim), np.float32)
    for start in range(0, len(unique), 2048):
        sentences[start:start + 2048] = encoder.encode(unique[start:start + 2048])
        progress.advance(min(2048, len(unique) - start))
    sentences = sentences[[position[t] for t in texts.text]]
    torch.set_num_threads(os.cpu_count() or 1)
    codes = label_codes([metas[i] for i in train_rows], columns)
    start = _start_weights(base.folder, encoder.dim, got.vectors.shape[1], config, log)
    net = train_projection(sentences, texts, got.vectors[train_rows], codes, columns, config, progress, start)
    vrows = np.flatnonzero(val)
    scores = _score(net, encoder, [metas[i] for i in vrows], got.vectors[vrows], columns, config) if len(vrows) else {}
    seconds = time.perf_counter() - started

    def fill(tmp: Path) -> None:
        for f in base.folder.iterdir():
            if f.is_file() and f.name not in (MANIFEST, TEXT_FILE, "training.json", "CARD.md"):
                shutil.copyfile(f, tmp / f.name)
        export_projection(net, encoder.dim, tmp / TEXT_FILE)
        manifest = replace(base.manifest, name=name or base.manifest.name, text_onnx=TEXT_FILE,
                           text_sha256=sha256_file(tmp / TEXT_FILE), text_encoder=encoder.id)
        if base.manifest.card and (base.folder / base.manifest.card).is_file():
            shutil.copyfile(base.folder / base.manifest.card, tmp / base.manifest.card)
        (tmp / MANIFEST).write_text(manifest.to_json())
        training = base.folder / "training.json"
        earlier = json.loads(training.read_text()) if training.is_file() else None
        (tmp / "training.json").write_text(json.dumps({
            **(earlier or {}),
            "text": {"command": command, "base": base.id, "config": asdict(config), "text_column": text_column,
                     "label_columns": columns, "glossary": str(glossary) if glossary else "lookalike/text/glossary.json",
                     "encoder": encoder.id, "products": len(train_rows), "validation": int(val.sum()),
                     "texts": len(texts.text), "validation_scores": scores, "seconds": round(seconds, 1)},
        }, indent=2) + "\n")

    with write_lock(out):
        write_atomically(out, fill, MODEL_FOLDER)
    return TextReport(out, len(train_rows), int(val.sum()), len(texts.text),
                      [(str(catalog.products[k].path), e) for k, e in got.errors], scores, seconds)


def _start_weights(folder: Path, dim_in: int, dim_out: int, config: TextConfig, log) -> dict | None:
    """The `--init` model's projection, read back from its `text.onnx`, when it has the shape this config gives
    (its alignment is then the start). The exporter keeps the Linear layers' names; the linear path's matrix is the
    one unnamed initializer, stored transposed."""
    path = folder / TEXT_FILE
    if not path.is_file():
        return None
    import onnx
    import torch
    from onnx import numpy_helper

    found = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    expected = Projection.build(dim_in, dim_out, config).state_dict()
    state, loose = {}, [a for n, a in found.items() if n not in expected and a.ndim == 2]
    for name, tensor in expected.items():
        value = found.get(name)
        if value is None and name == "skip.weight" and len(loose) == 1:
            value = loose[0].T
        if value is None or tuple(value.shape) != tuple(tensor.shape):
            log(f"{path} does not have the shape --text-only gives here: aligning words from scratch")
            return None
        state[name] = torch.from_numpy(np.array(value, dtype=np.float32))
    log(f"aligning words starting from {folder.name}'s alignment")
    return state


def _score(net, encoder, metas: list[Mapping], vectors: np.ndarray, columns: Sequence[str], config: TextConfig
           ) -> dict[str, float]:
    """Held-out products searched with label texts: for 300 label combinations of the validation products (type
    alone; type and colour; gender, colour and type), the share of the top 10 that has them (of at most the
    number there are). What `lookalike train --text-only` prints; benchmarks/text.py measures shoppers' queries."""
    import torch

    rng = np.random.default_rng(config.seed)
    out = {}
    for label, cols in [("type", ("articleType",)), ("colour+type", ("baseColour", "articleType")),
                        ("gender+colour+type", ("gender", "baseColour", "articleType"))]:
        if not all(c in columns for c in cols):
            continue
        combos = sorted({tuple(_value(m, c) for c in cols) for m in metas} - {None}, key=str)
        combos = [c for c in combos if None not in c]
        if not combos:
            continue
        combos = [combos[i] for i in rng.permutation(len(combos))[:300]]
        queries = [" ".join(v for v in combo) for combo in combos]
        with torch.no_grad():
            q = net(torch.from_numpy(encoder.encode(queries))).numpy()
        truth = [tuple(_value(m, c) for c in cols) for m in metas]
        got = []
        for combo, qv in zip(combos, q):
            relevant = np.array([t == combo for t in truth])
            top = np.argsort(-(vectors @ qv))[:10]
            got.append(relevant[top].sum() / min(10, relevant.sum()))
        out[label] = round(float(np.mean(got)), 4)
    return out
