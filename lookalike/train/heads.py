"""Attribute heads fitted on a frozen model: `lookalike train PHOTOS --init MODEL --heads-only`.

The backbone is not touched: each photo (and its mirror image) goes once through the model as it runs (its own
input policy), then one small network per label column (features -> 512 ReLU -> classes, dropout 0.3, label
smoothing 0.1, AdamW with a one-cycle schedule) learns the column from what the model gave. The features are
the unit embedding, or another output of the model: a model trained by lookalike has its pooled features
(`pooled`, 512-d, before the projection to the embedding), which carry more than the embedding and are the
default for such models (a model exported before that output existed is exported again from its weights). The
heads are written as a second ONNX file (`heads.onnx`) beside a copy of the model, and the manifest reads every
head from it. Minutes on a CPU instead of hours, and it works on any ONNX backbone, including an imported one
that had no heads (so `classify` and the agreement re-ranking work with it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from ..catalog import Catalog
from ..errors import ImageError, LookalikeError, ModelError
from ..files import sha256_file
from ..index.store import replaceable, write_atomically, write_lock
from ..models import load_model
from ..models.manifest import MANIFEST, HeadSpec
from ..models.onnx import OnnxEmbedder
from ..models.pipeline import prepare
from ..progress import NoProgress, Progress
from . import WEIGHTS
from .data import MISSING, default_labels, encode_labels, is_validation
from .export import POOLED

HEADS_FILE = "heads.onnx"
EMBEDDING = "embedding"   # `features` naming the unit embedding rather than an output of the model
AUTO = "auto"             # `features`: the pooled output for a model trained by lookalike, else the embedding
MODEL_FOLDER = (MANIFEST, "model folder", LookalikeError)    # what may be replaced (lookalike.index.store)
MIN_STEPS = 400         # optimiser steps per head at least, however small the catalog


@dataclass
class HeadsConfig:
    hidden: int = 512
    epochs: int = 30
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.01
    dropout: float = 0.3
    label_smoothing: float = 0.1
    extra_repeat: int = 4
    seed: int = 0
    features: str = AUTO      # what the heads read: auto, embedding, or the name of one of the model's outputs
    blend: float = 0.5        # weight of the network's own head (same name and labels) averaged with the new one


@dataclass
class HeadsReport:
    out: Path
    products: int
    validation: int
    skipped: list[tuple[str, str]]
    top1: dict[str, dict[str, float | None]]   # head -> {"before": base model's head (None if it had none), "after"}
    seconds: float


@dataclass
class Views:
    """Each readable photo (row `kept[i]` of the input) and its mirror image through a model."""
    features: np.ndarray            # (2, N, D): what the heads will read
    probs: dict[str, np.ndarray]    # the model's head probabilities per view, as it reports them: head -> (2, N, C)
    network: dict[str, np.ndarray]  # the same from the heads that are outputs of the network itself
    kept: list[int]
    errors: list[tuple[int, str]]
    embedding_dim: int


def embed_views(model: OnnxEmbedder, paths: list[Path], progress: Progress, features: str = EMBEDDING,
                batch: int = 128) -> Views:
    """Run each photo, decoded as indexing decodes it, and its mirror image through `model`: the unit embedding
    or the output named `features`, and the model's own heads."""
    feats, probs, network, kept, errors, dim = [], {}, {}, [], [], 0
    outputs = [o.name for o in model.session.get_outputs()]
    own = [h for h, spec in model.manifest.heads.items() if spec.output in outputs]
    extra = ([] if features == EMBEDDING else [features]) + [model.manifest.heads[h].output for h in own]

    def decode(i):
        try:
            return i, prepare(model, paths[i])[0], None
        except ImageError as exc:
            return i, None, str(exc)

    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        for start in range(0, len(paths), batch):
            ready = []
            for i, x, error in pool.map(decode, range(start, min(len(paths), start + batch))):
                (errors.append((i, error)) if x is None else ready.append((i, x)))
            if ready:
                x = np.stack([x for _, x in ready])
                views = [model.run_all(x, mirrored=m, also=extra) for m in (False, True)]
                dim = views[0][0].shape[1]
                feats.append(np.stack([e for e, _, _ in views] if features == EMBEDDING else
                                      [o[features].reshape(len(x), -1).astype(np.float32) for _, _, o in views]))
                for head in views[0][1]:
                    probs.setdefault(head, []).append(np.stack([h[head] for _, h, _ in views]))
                mine = [model.probabilities([o[model.manifest.heads[h].output] for h in own], len(x), own)
                        for _, _, o in views]
                for head in own:
                    network.setdefault(head, []).append(np.stack([m[head] for m in mine]))
                kept += [i for i, _ in ready]
            progress.advance(min(batch, len(paths) - start))
    if not feats:
        raise LookalikeError("none of the photos could be read")
    return Views(np.concatenate(feats, axis=1), {h: np.concatenate(v, axis=1) for h, v in probs.items()},
                 {h: np.concatenate(v, axis=1) for h, v in network.items()}, kept, errors, dim)


def _fit_head(x, y, classes: int, config: HeadsConfig, standardise: bool):
    """`standardise`: features other than the unit embedding go through a batch norm first (fixed at export)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(config.seed)
    net = torch.nn.Sequential(torch.nn.BatchNorm1d(x.shape[1]) if standardise else torch.nn.Identity(),
                              torch.nn.Linear(x.shape[1], config.hidden), torch.nn.ReLU(),
                              torch.nn.Dropout(config.dropout), torch.nn.Linear(config.hidden, classes))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = -(-len(x) // config.batch_size)
    epochs = max(config.epochs, -(-MIN_STEPS // batches))   # a small catalog gets more passes
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=epochs * batches)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(config.seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for b in range(batches):
            rows = order[b * config.batch_size:(b + 1) * config.batch_size]
            loss = F.cross_entropy(net(x[rows]), y[rows], label_smoothing=config.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def _export(nets: dict, dim: int, path: Path, input_name: str) -> None:
    import torch

    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = torch.nn.ModuleDict(nets)

        def forward(self, x):
            return tuple(self.heads[h](x) for h in nets)

    names = list(nets)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact and dependency-free
        warnings.simplefilter("ignore")
        torch.onnx.export(Heads().eval(), (torch.zeros(2, dim),), str(path), input_names=[input_name],
                          output_names=names, dynamic_axes={n: {0: "batch"} for n in [input_name, *names]},
                          opset_version=17, dynamo=False)


def _top1(probs: np.ndarray, flip: bool, labels: list[str], truth: list) -> float | None:
    """Top-1 accuracy of per-view probabilities (2, N, C) as the model reports them (mirror-averaged or not), over
    the products with a value; a value outside the head's classes counts as a miss."""
    p = probs.mean(axis=0) if flip else probs[0]
    known = [i for i, v in enumerate(truth) if v is not None]
    if not known:
        return None
    predicted = p[known].argmax(axis=1)
    return round(sum(labels[j] == truth[i] for i, j in zip(known, predicted)) / len(known), 4)


def _head_probs(model: OnnxEmbedder, views: np.ndarray, network: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-view head probabilities (2, N, C) of features (2, N, D), as `model` reports them: blended with the
    network's own (`network`, head -> (2, N, C)) where its manifest says."""
    per_view = [model.blend(model.heads_of(v), {h: network[h][i] for h in model.manifest.heads_blend})
                for i, v in enumerate(views)]
    return {h: np.stack([p[h] for p in per_view]) for h in model.heads}


def fit_heads(photos, metadata=None, *, init: str, out: str | Path, labels: list[str] | None = None,
              extra: tuple | None = None, config: HeadsConfig | None = None, name: str | None = None,
              quantize: str = "auto", progress: Progress | None = None, log=print, command: str | None = None) -> HeadsReport:
    """Fit one head per label column on `init`'s embedding and write the model with them to `out`
    (atomically: a copy of the model, heads.onnx, its manifest and training.json). `quantize`: auto keeps int8
    weights when every head's validation top-1 is within 0.01 of float32's; int8 or float32 force one. `extra` = (photos,
    metadata) of a second domain (e.g. garment crops of real photos), trained on `extra_repeat` times, never
    held out. Validation: the products `is_validation(id, 0.1)` picks, as for full training."""
    from ..train import _require_torch

    _require_torch()
    config = config or HeadsConfig()
    progress = progress or NoProgress()
    started = time.perf_counter()
    out = replaceable(Path(out), MODEL_FOLDER)     # fail before the work, not after
    base = load_model(str(init))
    if not isinstance(base, OnnxEmbedder):
        raise ModelError(f"--heads-only needs an ONNX model folder to start from, not {base.name!r}")
    features, reexport = _resolve_features(base, config.features)
    catalog = Catalog.read(photos, metadata)
    wanted = list(labels) if labels is not None else default_labels(catalog)
    missing = [c for c in wanted if c not in catalog.columns]
    if missing:
        raise LookalikeError(f"no label column {missing[0]!r}; columns are {', '.join(catalog.columns) or 'none'}")
    if not wanted:
        matched = sum(1 for p in catalog.products if p.metadata)
        raise LookalikeError(f"no label columns to fit heads on: {len(catalog.products)} photos, {matched} of them with "
                             f"a metadata row; columns: {', '.join(catalog.columns) or 'none'} (name them with --label)")
    products = catalog.products + (Catalog.read(*extra).products if extra else [])
    origin = base.id
    with TemporaryDirectory(prefix="lookalike-heads-") as staging:
        if reexport:
            log(f"{base.name} was exported without its {features!r} output: exporting its network again from its weights")
            base = _reexported(base, [p.path for p in catalog.products if not is_validation(p.id, 0.1)], Path(staging))
        return _fit(base, features, catalog, products, wanted, out, extra, config, name, quantize, progress, log,
                    command, started, origin if reexport else None)


def _fit(base: OnnxEmbedder, features: str, catalog: Catalog, products: list, wanted: list[str], out: Path, extra,
         config: HeadsConfig, name: str | None, quantize: str, progress: Progress, log, command: str | None,
         started: float, exported_from: str | None) -> HeadsReport:
    """fit_heads after its checks; `exported_from`: the id of the model whose network `base` exported again."""
    progress.start(len(products), "embedding")
    got = embed_views(base, [p.path for p in products], progress, features)
    views, own, kept, errors = got.features, got.probs, got.kept, got.errors
    is_extra = np.array([i >= len(catalog.products) for i in kept])
    ids = [products[i].id for i in kept]
    val = np.array([is_validation(pid, 0.1) for pid in ids]) & ~is_extra
    columns = {c: [products[i].metadata.get(c) for i in kept] for c in wanted}
    encoded, vocab = encode_labels(columns, val)
    if not vocab:
        raise LookalikeError("no label column has two classes with at least 5 products each")
    repeat = np.where(is_extra, config.extra_repeat, 1)
    # The network's own heads join the new ones of the same name (an ensemble of the two) when their labels are
    # the same and the network's output has that many columns.
    network = _network_heads(base, got.network)
    blend = {h: config.blend for h in encoded if config.blend > 0 and network.get(h) == vocab[h]
             and got.network[h].shape[2] == len(vocab[h])}
    dropped = [h for h in base.heads if h not in vocab]
    if dropped:
        log(f"the model's heads {', '.join(dropped)} are not fitted again and will be left out of the new model"
            + (" (and out of its search vector)" if any(h in base.manifest.embedding.append_heads for h in dropped) else "")
            + "; to keep them, fit them too (--label COLUMN) from metadata that has those columns")
    progress.start(len(vocab), "fitting heads")
    nets, top1 = {}, {}
    for head, y in encoded.items():
        rows = np.repeat(np.flatnonzero(~val & (y != MISSING)), repeat[~val & (y != MISSING)])
        x = np.concatenate([views[0, rows], views[1, rows]])
        nets[head] = _fit_head(x, np.concatenate([y[rows], y[rows]]), len(vocab[head]), config, features != EMBEDDING)
        progress.advance(1)
    written: dict = {}

    def fill(tmp: Path) -> None:
        for f in base.folder.iterdir():
            # new heads change the search vector, so --init's words alignment (text.onnx) no longer fits it
            if f.is_file() and f.name not in (MANIFEST, HEADS_FILE, "training.json", "CARD.md", "text.onnx"):
                shutil.copyfile(f, tmp / f.name)
        variants = _export_variants(nets, views.shape[2], tmp, quantize, features)
        megabytes = {v: round(path.stat().st_size / 1e6, 2) for v, path in variants.items()}
        vrows = np.flatnonzero(val)
        flip = base.manifest.embedding.flip
        truth = {h: [columns[h][i] for i in vrows] for h in encoded}
        scores = {}
        for variant, path in variants.items():
            model = _write(base, path, vocab, tmp, name or out.name, got.embedding_dim, features, blend, network)
            new = _head_probs(model, views[:, vrows], {h: v[:, vrows] for h, v in got.network.items()}) if len(vrows) else {}
            scores[variant] = {h: _top1(new[h], flip, vocab[h], truth[h]) if new else None for h in encoded}
        chosen = _choose(scores, quantize)
        os.replace(variants[chosen], tmp / HEADS_FILE)
        for path in variants.values():
            path.unlink(missing_ok=True)
        _write(base, tmp / HEADS_FILE, vocab, tmp, name or out.name, got.embedding_dim, features, blend, network)
        for head in encoded:
            before = _top1(own[head][:, vrows], flip, base.heads[head], truth[head]) if head in own and len(vrows) else None
            top1[head] = {"before": before, "after": scores[chosen][head]}
        written["seconds"] = time.perf_counter() - started
        (tmp / "training.json").write_text(json.dumps({
            "command": command, "stage": "heads", "base": exported_from or base.id,
            "config": {**asdict(config), "features": features}, "network_exported_again": exported_from is not None,
            "blended_with_network_heads": sorted(blend),
            "variant": chosen,
            "variants": {v: {"validation_top1": sc, "megabytes": megabytes[v]} for v, sc in scores.items()},
            "heads": {k: len(v) for k, v in vocab.items()}, "products": len(ids), "validation": int(val.sum()),
            "extra_products": int(is_extra.sum()), "skipped": len(errors), "validation_top1": top1,
            "seconds": round(written["seconds"], 1), "base_training": _base_training(base.folder),
        }, indent=2) + "\n")

    with write_lock(out):
        write_atomically(out, fill, MODEL_FOLDER)
    for head, t in top1.items():
        log(f"{head}: validation top-1 {t['after']}" + (f" (the model's own head: {t['before']})" if t["before"] else ""))
    return HeadsReport(out, len(ids), int(val.sum()), [(str(products[i].path), e) for i, e in errors], top1,
                       written["seconds"])


def _export_variants(nets: dict, dim: int, folder: Path, quantize: str, features: str) -> dict[str, Path]:
    """The heads as float32 ONNX and, unless `quantize` is float32, with int8 weights (dynamic quantization)."""
    variants = {"float32": folder / "heads-float32.onnx"}
    _export(nets, dim, variants["float32"], features)
    if quantize != "float32":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        variants["int8"] = folder / "heads-int8.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)   # its advice to pre-process first applies to conv nets, not to these
        try:
            quantize_dynamic(str(variants["float32"]), str(variants["int8"]), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
    return variants


def _choose(scores: dict[str, dict[str, float | None]], quantize: str) -> str:
    """int8 when asked, or (auto) when every head's validation top-1 is within 0.01 of float32's."""
    if quantize in ("int8", "float32"):
        return quantize
    f, q = scores["float32"], scores["int8"]
    return "int8" if all(q[h] is None or q[h] >= f[h] - 0.01 for h in f) else "float32"


def _write(base: OnnxEmbedder, heads_file: Path, vocab: dict[str, list[str]], folder: Path, name: str, dim: int,
           features: str, blend: dict[str, float], network: dict[str, list[str]]) -> OnnxEmbedder:
    """The manifest of `base` with the heads read from `heads_file` (in `folder`), which reads `features`; `dim`:
    the embedding's."""
    m = base.manifest
    append = {h: w for h, w in m.embedding.append_heads.items() if h in vocab}
    manifest = replace(m, name=name, heads={h: HeadSpec(output=h, labels=list(v)) for h, v in vocab.items()},
                       heads_onnx=heads_file.name, heads_sha256=sha256_file(heads_file),
                       heads_input="" if features == EMBEDDING else features, heads_blend=blend, network_heads=network,
                       dim=dim + sum(len(vocab[h]) for h in append), card=None,
                       embedding=replace(m.embedding, append_heads=append), text_onnx=None, text_sha256="",
                       text_encoder="")
    (folder / MANIFEST).write_text(manifest.to_json())
    return OnnxEmbedder(folder)


def _base_training(folder: Path) -> dict | None:
    record = folder / "training.json"
    return json.loads(record.read_text()) if record.is_file() else None


def _network_heads(base: OnnxEmbedder, outputs: dict) -> dict[str, list[str]]:
    """The labels of the network's own head outputs (those in `outputs`): the model's heads when they are the
    network's; for heads fitted apart, what the manifest recorded of the network's (models written before that
    record list only their fitted heads, which are then taken as the network's, as they were)."""
    m = base.manifest
    known = m.network_heads if base.heads_session is not None and m.network_heads else base.heads
    return {h: list(labels) for h, labels in known.items() if h in outputs}


def _resolve_features(base: OnnxEmbedder, wanted: str) -> tuple[str, bool]:
    """What the heads will read, and whether the network must first be exported again to give it."""
    outputs = [o.name for o in base.session.get_outputs()]
    trained_here = (base.folder / WEIGHTS).is_file() and (base.folder / "training.json").is_file()
    if wanted == AUTO:
        wanted = POOLED if POOLED in outputs or trained_here else EMBEDDING
    if wanted == EMBEDDING or wanted in outputs:
        return wanted, False
    if wanted == POOLED and trained_here:
        return wanted, True
    raise LookalikeError(f"{base.name} has no output {wanted!r} for the heads to read; its outputs: "
                         f"{', '.join(outputs)} (or 'embedding', the unit embedding)")


def _reexported(base: OnnxEmbedder, photos: list[Path], staging: Path, calibration: int = 256) -> OnnxEmbedder:
    """A copy of `base` (in `staging`) whose network is exported again from its weights, with the outputs this
    version exports; int8 models are calibrated on `calibration` of `photos` spread over the list."""
    from .export import export_from_weights

    folder = staging / "model"
    shutil.copytree(base.folder, folder)
    spec = base.manifest.input
    mean, std = (np.asarray(v, np.float32)[:, None, None] / spec.scale for v in (spec.mean, spec.std))
    images = []
    for path in photos[::max(1, len(photos) // calibration)][:calibration]:
        try:
            x = prepare(base, path)[0]
        except ImageError:
            continue
        images.append(np.clip(np.rint(x * std + mean), 0, 255).astype(np.uint8).transpose(1, 2, 0))
    if not images:
        raise LookalikeError("none of the photos could be read")
    export_from_weights(base.folder, folder / base.manifest.onnx, np.stack(images))
    manifest = replace(base.manifest, sha256=sha256_file(folder / base.manifest.onnx))
    (folder / MANIFEST).write_text(manifest.to_json())
    return OnnxEmbedder(folder)
