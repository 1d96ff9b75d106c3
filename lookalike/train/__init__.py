"""`lookalike train`: train an embedding model (with attribute heads) on a catalog, on CPU, and write a
model folder that `index`, `search` and `classify` load. Needs the `train` extra (PyTorch)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import LookalikeError
from ..images import fit as fit_image, image_files, load_image
from ..progress import NoProgress, Progress

try:
    import torch
except ImportError:  # pragma: no cover - depends on the install
    torch = None

WEIGHTS = "weights.safetensors"     # float16 network weights, for --init and the parser's encoder


@dataclass
class TrainReport:
    folder: Path
    variant: str                                   # "int8" or "float32": the one written as model.onnx
    history: list[dict] = field(default_factory=list)
    variants: dict[str, dict] = field(default_factory=dict)   # per variant: val P@10 per head, images/s, MB
    seconds: float = 0.0
    products: int = 0
    validation: int = 0


def _require_torch():
    if torch is None:
        raise LookalikeError("training needs PyTorch: pip install 'lookalike[train]' (torch==2.13.0 on CPU)")


def load_backgrounds(folder: Path, size: tuple[int, int], per_photo: int = 4, limit: int = 4000,
                     seed: int = 0) -> np.ndarray:
    """Random crops of the photos in `folder` (scenes without products: floors, beds, walls, streets)."""
    rng = np.random.default_rng(seed)
    w, h = size
    crops = []
    for path in image_files([folder]):
        try:
            img = load_image(path)
        except LookalikeError:
            continue
        for _ in range(per_photo):
            scale = rng.uniform(0.3, 1.0)
            cw, ch = max(8, int(img.width * scale)), max(8, int(img.height * scale))
            x0, y0 = rng.integers(0, img.width - cw + 1), rng.integers(0, img.height - ch + 1)
            crops.append(np.asarray(fit_image(img.crop((x0, y0, x0 + cw, y0 + ch)), size, "stretch")))
        if len(crops) >= limit:
            break
    if not crops:
        raise LookalikeError(f"{folder}: no readable background photos")
    return np.stack(crops)


def is_imagenet(init) -> bool:
    """`--init efficientnet-lite0` (lite1, lite2): start from ImageNet weights rather than a model folder."""
    return str(init).startswith("efficientnet-")


def model_folder(init: str | Path) -> Path:
    """The folder of a model to start from: 'default', a shipped or registered name, or a path (as `--model`)."""
    from ..models.registry import model_dir

    folder = model_dir(str(init))
    return folder if folder is not None and folder.is_dir() else Path(init)     # a typo is named as typed


def _init_weights(init: str | Path) -> dict:
    from . import safe

    folder = model_folder(init)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise LookalikeError(f"{folder}: no {WEIGHTS} to start from (only models trained by lookalike have one)")
    return {k: v.float() for k, v in safe.load(weights)[0].items()}


def network_record(training: dict) -> dict:
    """The training record of the run that made a model's network: its own, or for heads fitted apart
    (`--heads-only`, which keeps the network) the record of the model it started from."""
    while training.get("base_training"):    # heads fitted again on a heads-only model: the network is older still
        training = training["base_training"]
    return training


def init_blocks(init: str | Path) -> tuple:
    """Residual blocks per stage of the model to start from (one each for models trained before the option)."""
    return tuple(_network_config(init).get("blocks") or (1, 1, 1, 1))


def init_widths(init: str | Path) -> tuple:
    """Channels per stage of the model to start from."""
    from .net import WIDTHS

    return tuple(_network_config(init).get("widths") or WIDTHS)


def _network_config(init: str | Path) -> dict:
    record = model_folder(init) / "training.json"
    training = json.loads(record.read_text()) if record.is_file() else {}
    return network_record(training).get("config", {})


def _val_scores(model, data, rows: np.ndarray) -> dict:
    from PIL import Image

    from .loop import precision_at_10

    vecs = []
    for start in range(0, len(rows), 256):
        batch = np.stack([model.preprocess(Image.fromarray(data.images[r])) for r in rows[start:start + 256]])
        vecs.append(model.forward(batch).embeddings)
    v = np.concatenate(vecs)
    return {name: round(precision_at_10(v, y[rows]), 4) for name, y in data.labels.items()}


def train(photos, metadata=None, *, out: str | Path, labels: list[str] | None = None, init: str | None = None,
          teacher: str | Path | None = None, backgrounds: str | Path | None = None, extra: tuple | None = None,
          config=None,
          name: str | None = None, quantize: str = "auto", progress: Progress | None = None,
          log=print, command: str | None = None, card: str | None = None) -> TrainReport:
    """Train on a catalog and write a model folder to `out` (model.onnx, model.json, weights.safetensors, training.json).

    `quantize`: `auto` writes the int8 model if its validation P@10 is within 0.01 of float32 on every head
    and it is faster; `int8` or `float32` force one."""
    _require_torch()
    from . import data as data_mod
    from . import safe
    from .export import export_onnx, quantize as quantize_model, throughput, write_model
    from .loop import TrainConfig, fit, input_norm
    from .net import WIDTHS

    config = config or TrainConfig()
    if init and is_imagenet(init):
        from .effnet import variant_of

        variant_of(init)           # a clear error for an unknown variant, before any data loads
        config = replace(config, backbone=init)
    elif init:
        network = _network_config(init)
        config = replace(config, backbone=network.get("backbone", "fashionnet"))
        if (config.width, config.height) == (64, 80) and "width" in network:   # a fine-tune keeps its input size
            config = replace(config, width=network["width"], height=network["height"])
    if config.backbone != "fashionnet" and (config.width, config.height) == (64, 80):
        config = replace(config, width=128, height=160)    # a pretrained backbone needs more pixels than 64x80
    if config.blocks is None:
        config = replace(config, blocks=init_blocks(init) if init and not is_imagenet(init) else (1, 1, 1, 1))
    base_widths = init_widths(init) if init and not is_imagenet(init) else WIDTHS
    if config.widths is None:
        config = replace(config, widths=base_widths)
    if init and any(a < b for a, b in zip(config.widths, base_widths)):
        raise LookalikeError(f"widths {config.widths} are narrower than those of {init} {base_widths}: "
                             "a network can only be widened from --init")
    progress = progress or NoProgress()
    out = Path(out)
    started = time.perf_counter()
    size = (config.width, config.height)
    data = data_mod.load(photos, metadata, size=size, labels=labels, teacher=teacher, extra=extra, progress=progress)
    bank = load_backgrounds(Path(backgrounds), size) if backgrounds else None
    log(f"{len(data):,} products ({int(data.val.sum()):,} held out for validation"
        + (f", {int(data.extra.sum()):,} from the extra domain" if data.extra is not None else "") + "); heads: "
        + (", ".join(f"{k} ({len(v)})" for k, v in data.vocab.items()) or "none (self-supervised)")
        + (f"; distilling {data.teacher.shape[1]}-d teacher features" if data.teacher is not None else ""))
    n_train = int((~data.val).sum()) + (int(data.extra.sum()) * (config.extra_repeat - 1) if data.extra is not None else 0)
    steps = max(1, n_train // config.batch_size) * config.epochs
    progress.start(steps, "training")
    work = out / "work"
    weights = _init_weights(init) if init and not is_imagenet(init) else None
    net, result = fit(data, work, config, init=weights, bank=bank, log=log,
                      on_step=lambda e, s, loss: progress.advance(1))
    tmp = Path(tempfile.mkdtemp(prefix="export-", dir=work))
    heads = export_onnx(net, tmp / "float32.onnx", config)
    val_rows = np.flatnonzero(data.val)
    variants = {}
    candidates = {"float32": tmp / "float32.onnx"}
    if quantize in ("auto", "int8"):
        calib = data.images[np.flatnonzero(~data.val)[:: max(1, int((~data.val).sum()) // 256)][:256]]
        quantize_model(tmp / "float32.onnx", tmp / "int8.onnx", calib, *input_norm(config))
        candidates["int8"] = tmp / "int8.onnx"
    name = name or out.name
    for variant, path in candidates.items():
        model = write_model(tmp / variant, path, name, config, data.vocab, heads)
        variants[variant] = {"val_P@10": _val_scores(model, data, val_rows),
                             "images_per_s_model_only": round(throughput(model, data.images[val_rows]), 1),
                             "megabytes": round(path.stat().st_size / 1e6, 2)}
        log(f"{variant}: {json.dumps(variants[variant])}")
    chosen = "float32"
    if quantize == "int8":
        chosen = "int8"
    elif quantize == "auto" and "int8" in variants:
        f, q = variants["float32"], variants["int8"]
        close = all(q["val_P@10"][h] >= f["val_P@10"][h] - 0.01 for h in f["val_P@10"])
        if close and q["images_per_s_model_only"] > f["images_per_s_model_only"]:
            chosen = "int8"
    write_model(out, candidates[chosen], name, config, data.vocab, heads, card=card)
    safe.save(out / WEIGHTS, {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()})
    report = TrainReport(out, chosen, result.history, variants, time.perf_counter() - started, len(data),
                         int(data.val.sum()))
    (out / "training.json").write_text(json.dumps({
        "command": command, "config": asdict(config), "variant": chosen, "variants": variants,
        "history": result.history, "best_epoch": result.best_epoch, "seconds": round(report.seconds, 1),
        "products": report.products, "validation": report.validation, "heads": {k: len(v) for k, v in data.vocab.items()},
        "teacher": str(teacher) if teacher else None, "backgrounds": str(backgrounds) if backgrounds else None,
        "extra": [str(e) for e in extra] if extra else None,
        "extra_products": int(data.extra.sum()) if data.extra is not None else 0,
    }, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return report
