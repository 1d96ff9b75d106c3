"""The training loop: proxy (cosine-softmax) heads + optional distillation, early stopping, resumable
checkpoints as safetensors plus JSON (lookalike.train.safe): nothing is pickled."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import safe
from .augment import augment, normalise
from ..errors import LookalikeError
from .data import MISSING, TrainData
from .net import WIDTHS, FashionNet

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
HEAD_WEIGHTS = {"articleType": 1.0, "subCategory": 0.5, "masterCategory": 0.25, "baseColour": 1.0, "gender": 0.5,
                "usage": 0.25, "articleType+baseColour": 1.0}
CHECKPOINT, BEST = "checkpoint.safetensors", "best.safetensors"


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    photo_p: float = 0.5
    distill_weight: float = 2.0
    label_smoothing: float = 0.1
    seed: int = 0
    patience: int = 3
    max_minutes: float | None = None
    extra_repeat: int = 4             # how many times per epoch each extra-domain sample is seen
    width: int = 64
    height: int = 80
    dim: int = 256
    widths: tuple | None = None       # channels per stage; None: those of --init, else 32, 64, 128, 256
    backbone: str = "fashionnet"      # or efficientnet-lite0 / lite1 / lite2 (ImageNet-initialised)
    frozen: int = 6                   # EfficientNet: leading blocks kept as ImageNet trained them
    blocks: tuple | None = None       # residual blocks per stage; None: those of --init, else one each
    threads: int = 0


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def build_net(config: TrainConfig, vocab: dict[str, list[str]], teacher_dim: int | None,
              distill: bool = False) -> FashionNet:
    heads = {name: len(classes) for name, classes in vocab.items()}
    if config.backbone != "fashionnet":
        from .effnet import EfficientFashionNet, variant_of

        return EfficientFashionNet(heads, dim=config.dim, variant=variant_of(config.backbone), frozen=config.frozen,
                                   teacher_dim=teacher_dim, distill=distill)
    return FashionNet(heads, dim=config.dim, widths=tuple(config.widths or WIDTHS), teacher_dim=teacher_dim,
                      blocks=tuple(config.blocks or (1, 1, 1, 1)))


def input_norm(config: TrainConfig) -> tuple[list[float], list[float]]:
    """Mean and std (of pixels scaled to [0, 1]) the network expects."""
    if config.backbone != "fashionnet":
        from .effnet import MEAN as EMEAN, STD as ESTD

        return list(EMEAN), list(ESTD)
    return list(MEAN), list(STD)


def embed(net: FashionNet, images: np.ndarray, batch: int = 256, norm=(MEAN, STD)) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(images[start:start + batch]).permute(0, 3, 1, 2).float() / 255
            out.append(net(normalise(x, *norm))[0].numpy())
    return np.concatenate(out) if out else np.zeros((0, net.project[0].out_features), np.float32)


def precision_at_10(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out P@10 within the set (the validation score used for early stopping)."""
    keep = labels != MISSING
    v, y = vectors[keep], labels[keep]
    if len(v) < 12:
        return 0.0
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, 10, axis=1)[:, :10]
    return float((y[top] == y[:, None]).mean())


def _ntxent(a: torch.Tensor, b: torch.Tensor, t: float = 0.1) -> torch.Tensor:
    z = torch.cat([a, b])
    sims = z @ z.t() / t
    sims.fill_diagonal_(-1e9)
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sims, target)


def validate(net: FashionNet, data: TrainData, norm=(MEAN, STD)) -> dict:
    val = np.flatnonzero(data.val)
    vecs = embed(net, data.images[val], norm=norm)
    scores = {name: precision_at_10(vecs, y[val]) for name, y in data.labels.items()}
    scores["score"] = float(np.mean(list(scores.values()))) if scores else 0.0
    return scores


def fit(data: TrainData, out: Path, config: TrainConfig, *, init: dict | None = None,
        bank: np.ndarray | None = None, log: Callable[[str], None] = print,
        on_step: Callable[[int, int, float], None] | None = None) -> tuple[FashionNet, TrainResult]:
    """Train, keeping the best epoch by validation P@10. Resumes from `out/checkpoint.safetensors` if present."""
    if config.threads:
        torch.set_num_threads(config.threads)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    teacher_dim = data.teacher.shape[1] if data.teacher is not None else None
    imagenet = config.backbone != "fashionnet" and config.distill_weight > 0 and teacher_dim is None
    net = build_net(config, data.vocab, teacher_dim, distill=imagenet)
    norm = input_norm(config)
    if init:
        own = net.state_dict()
        copied, grown = net.load_grown(init)
        log(f"initialised {copied + grown}/{len(own)} tensors from --init" + (f" ({grown} widened)" if grown else ""))
    elif config.backbone != "fashionnet":
        from .effnet import imagenet_state, variant_of

        missing, unexpected = net.load_imagenet(imagenet_state(variant_of(config.backbone)))
        if missing or unexpected:
            raise LookalikeError(f"{config.backbone}: ImageNet weights do not fit the network (missing: "
                                 f"{', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(unexpected[:3]) or 'none'})")
        log(f"initialised the backbone from {config.backbone}'s ImageNet weights ({config.frozen} leading blocks "
            f"frozen{'; distilling its features on every augmented view' if imagenet else ''})")
    train_rows = np.flatnonzero(~data.val)
    if data.extra is not None and config.extra_repeat > 1:
        train_rows = np.concatenate([train_rows] + [np.flatnonzero(data.extra)] * (config.extra_repeat - 1))
    steps_per_epoch = max(1, len(train_rows) // config.batch_size)
    # a pretrained backbone learns at a third of the rate of the layers that start random
    pretrained = [p for n, p in net.named_parameters() if n.startswith("backbone.")]
    fresh = [p for n, p in net.named_parameters() if not n.startswith("backbone.")]
    rates = [config.lr / 3, config.lr] if pretrained else [config.lr]
    groups = [{"params": pretrained, "lr": rates[0]}, {"params": fresh, "lr": rates[1]}] if pretrained \
        else [{"params": fresh, "lr": config.lr}]
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=rates, total_steps=total, pct_start=0.15)
    result = TrainResult(-1, -math.inf)
    start_epoch = 0
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        if safe.header(ckpt).get("config") == json.loads(json.dumps(asdict(config))):
            state = safe.load_checkpoint(ckpt, net, opt, sched, g)
            rng = np.random.default_rng(state["epoch"] + 1000 * config.seed)
            start_epoch = state["epoch"] + 1
            result = TrainResult(state["best_epoch"], state["best_score"], state["history"])
            log(f"resuming after epoch {state['epoch'] + 1}")
        else:
            log("a checkpoint with other settings is in the way; starting over")
    channels_last = config.backbone != "fashionnet"     # depthwise convolutions train ~1.5x faster so on a CPU
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    images = torch.from_numpy(data.images)
    labels = {k: torch.from_numpy(v) for k, v in data.labels.items()}
    teacher = torch.from_numpy(data.teacher) if data.teacher is not None else None
    bank_t = torch.from_numpy(bank).permute(0, 3, 1, 2).contiguous() if bank is not None else None
    started = time.perf_counter()
    deadline = started + config.max_minutes * 60 if config.max_minutes else None
    bad_epochs = 0
    for epoch in range(start_epoch, config.epochs):
        net.train()
        order = train_rows[rng.permutation(len(train_rows))]
        losses = []
        for step in range(steps_per_epoch):
            rows = torch.from_numpy(order[step * config.batch_size:(step + 1) * config.batch_size])
            x = normalise(augment(images[rows], g, config.photo_p, bank_t), *norm)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            emb, logits, pooled = net(x)
            loss = torch.zeros(())
            for name, logit in logits.items():
                y = labels[name][rows]
                if (y != MISSING).any():
                    loss = loss + HEAD_WEIGHTS.get(name, 0.5) * F.cross_entropy(
                        logit, y, ignore_index=MISSING, label_smoothing=config.label_smoothing)
            if teacher is not None:
                pred = F.normalize(net.teacher(pooled), dim=1)
                loss = loss + config.distill_weight * (1 - (pred * teacher[rows]).sum(1)).mean()
            elif imagenet:     # stay near the ImageNet network's features of the same view
                loss = loss + config.distill_weight * (1 - (F.normalize(pooled, dim=1) * net.imagenet_target).sum(1)).mean()
            if not logits and teacher is None:
                x2 = normalise(augment(images[rows], g, config.photo_p, bank_t), *norm)
                loss = _ntxent(emb, net(x2)[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if on_step:
                on_step(epoch, step, float(np.mean(losses[-20:])))
            if deadline and time.perf_counter() > deadline:
                break
        scores = validate(net, data, norm)
        entry = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                 **{f"val_P@10_{k}": round(v, 4) for k, v in scores.items() if k != "score"},
                 "val_score": round(scores["score"], 4), "minutes": round((time.perf_counter() - started) / 60, 1)}
        result.history.append(entry)
        log(json.dumps(entry))
        if scores["score"] > result.best_score or not data.labels:
            result.best_epoch, result.best_score = epoch + 1, scores["score"]
            safe.save(out / BEST, net.state_dict())
            bad_epochs = 0
        else:
            bad_epochs += 1
        safe.save_checkpoint(ckpt, net, opt, sched, g, epoch=epoch, best_epoch=result.best_epoch,
                             best_score=result.best_score, history=result.history,
                             config=json.loads(json.dumps(asdict(config))))
        if bad_epochs >= config.patience:
            log(f"early stop: no better validation score for {bad_epochs} epochs")
            break
        if deadline and time.perf_counter() > deadline:
            log("time budget reached")
            break
    result.seconds = time.perf_counter() - started
    net.load_state_dict(safe.load(out / BEST)[0])
    return net.eval(), result
