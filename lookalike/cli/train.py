"""`lookalike train` and `lookalike classify`."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import LookalikeError
from ..models import load_model
from ..models.base import CONFIDENT
from ..progress import RichProgress
from .common import cli_errors, err, nothing_read, out, photo_files


@cli_errors
def train(photos: Path = typer.Argument(..., help="folder of product photos"),
          metadata: Optional[Path] = typer.Option(None, "--metadata", help="labels CSV (any subset of columns)"),
          out_dir: Path = typer.Option(..., "--out", "-o", help="model folder to write"),
          label: Optional[List[str]] = typer.Option(None, "--label", help="label columns (default: the known ones present)"),
          init: Optional[str] = typer.Option(None, help="start from a model: 'default', a folder trained by lookalike, or ImageNet weights: "
                                        "efficientnet-lite0, efficientnet-lite1, efficientnet-lite2"),
          teacher: Optional[Path] = typer.Option(None, help="teacher features to distil (.npy + .ids.txt from `lookalike embed`)"),
          backgrounds: Optional[Path] = typer.Option(None, help="folder of scene photos pasted behind products"),
          extra: Optional[Path] = typer.Option(None, help="photos of a second domain (e.g. garment crops of real photos)"),
          extra_metadata: Optional[Path] = typer.Option(None, help="labels of the --extra photos (same column names)"),
          extra_repeat: int = typer.Option(4, min=1, help="times per epoch each --extra photo is seen"),
          heads_only: bool = typer.Option(False, "--heads-only", help="keep --init's network as it is and fit only "
                                          "the attribute heads on its embedding (minutes; any ONNX model folder)"),
          features: str = typer.Option("auto", help="with --heads-only, what the heads read: 'embedding', an output of "
                                       "the model, or auto (a lookalike model's pooled features, else the embedding)"),
          hidden: int = typer.Option(512, min=8, help="with --heads-only, units of each head's hidden layer"),
          blend: float = typer.Option(0.5, min=0, max=1, help="with --heads-only, weight of the network's own head of "
                                      "the same name and labels, averaged with the new one (0: the new one alone)"),
          text_only: bool = typer.Option(False, "--text-only", help="keep --init's network and heads as they are and "
                                         "align only words with its photos (search by words; minutes)"),
          text_column: Optional[str] = typer.Option(None, "--text-column", help="a metadata column of product names or "
                                                    "descriptions to learn words from (besides the label columns); "
                                                    "training then aligns words too"),
          glossary: Optional[Path] = typer.Option(None, help="shoppers' words for label values (JSON like "
                                                  "lookalike/text/glossary.json), added to the shipped ones"),
          epochs: Optional[int] = typer.Option(None, min=1, help="default: 8; 30 with --heads-only; 40 with --text-only"),
          batch_size: int = typer.Option(128, min=8),
          lr: float = typer.Option(3e-3), photo_p: float = typer.Option(0.5, min=0, max=1, help="share of photo-like augmentation"),
          blocks: Optional[str] = typer.Option(None, help="residual blocks per stage, e.g. 1,1,2,2 (default: those of "
                                               "--init, else one each); added blocks start as the identity"),
          widths: Optional[str] = typer.Option(None, help="channels per stage, e.g. 32,64,128,384 (default: those of "
                                               "--init, else 32,64,128,256); with --init, added channels start "
                                               "unused, so the network first computes the same function"),
          size: Optional[str] = typer.Option(None, help="input WIDTHxHEIGHT (default: 64x80, or 128x160 from an "
                                             "ImageNet backbone; a fine-tune keeps its --init's)"),
          frozen: int = typer.Option(6, min=0, max=16, help="with an EfficientNet backbone: leading blocks kept as "
                                     "ImageNet trained them (0: train all)"),
          max_minutes: Optional[float] = typer.Option(None, help="stop training after this long"),
          quantize: str = typer.Option("auto", help="auto, int8 or float32"),
          seed: int = typer.Option(0), name: Optional[str] = typer.Option(None, help="model name (default: folder name)")):
    """Train an embedding model with attribute heads on a catalog (CPU; needs the train extra)."""
    if quantize not in ("auto", "int8", "float32"):
        raise LookalikeError("--quantize is auto, int8 or float32")
    # the options are checked before PyTorch is imported: a mistake is named even where the train extra is missing
    dims = dict(zip(("width", "height"), _size(size))) if size else {}
    stages = {"blocks": _stages(blocks, "--blocks", "1,1,2,2", 1), "widths": _stages(widths, "--widths", "32,64,128,384", 8)}
    command = "lookalike " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        from ..train import train as run
        from ..train.loop import TrainConfig
    except ImportError:
        raise LookalikeError("training needs the train extra: pip install 'lookalike[train]' (torch==2.13.0 on CPU)") from None
    if text_only:
        if not init:
            raise LookalikeError("--text-only aligns words with an existing model: name it with --init (e.g. --init default)")
        return _text(photos, metadata, init, out_dir, text_column, glossary, name, seed, command, epochs)
    if heads_only:
        _heads_only(photos, metadata, out_dir, label, init, extra, extra_metadata, extra_repeat, epochs, seed,
                    name, quantize, command, features, hidden, blend)
        return _text_after(photos, metadata, init, out_dir, text_column, glossary, seed, command)
    config = TrainConfig(epochs=epochs or 8, batch_size=batch_size, lr=lr, photo_p=photo_p, seed=seed, frozen=frozen, **dims,
                         max_minutes=max_minutes, extra_repeat=extra_repeat, **stages)
    with RichProgress(err) as progress:
        report = run(photos, metadata, out=out_dir, labels=label, init=init, teacher=teacher, backgrounds=backgrounds,
                     extra=(extra, extra_metadata) if extra else None,
                     config=config, name=name, quantize=quantize, progress=progress, command=command,
                     log=lambda m: err.print(m, highlight=False))
    table = Table("variant", "val P@10 per head", "images/s (model only)", "MB")
    for variant, v in report.variants.items():
        mark = " (written)" if variant == report.variant else ""
        table.add_row(variant + mark, ", ".join(f"{h} {p:.3f}" for h, p in v["val_P@10"].items()),
                      f"{v['images_per_s_model_only']:.0f}", f"{v['megabytes']:.1f}")
    err.print(table)
    err.print(f"trained on {report.products:,} products ({report.validation:,} validation) in "
              f"{report.seconds / 60:.1f} min; model written to [bold]{out_dir}[/]; use it with --model {out_dir}")
    _text_after(photos, metadata, init, out_dir, text_column, glossary, seed, command)


def _text_after(photos, metadata, init, out_dir, text_column, glossary, seed, command) -> None:
    """After training: align words with the new model when asked (--text-column) or when --init could search by
    words (its alignment would not fit the new search vectors)."""
    had_words = False
    if init and not text_column:
        try:
            had_words = load_model(init).has_text
        except LookalikeError:
            had_words = False
    if text_column:
        _text(photos, metadata, str(out_dir), out_dir, text_column, glossary, None, seed, command)
    elif had_words:     # not asked for: a catalog with nothing to learn words from leaves the model without them
        try:
            _text(photos, metadata, str(out_dir), out_dir, None, glossary, None, seed, command)
        except LookalikeError as exc:
            err.print(f"[yellow]words not aligned[/] ({exc}); the new model cannot search by words: align them with "
                      "--text-only --text-column NAME", highlight=False)


def _text(photos, metadata, init, out_dir, text_column, glossary, name, seed, command, epochs=None) -> None:
    from ..train.text import TextConfig, fit_text

    config = TextConfig(seed=seed, **({"epochs": epochs} if epochs else {}))
    with RichProgress(err) as progress:
        report = fit_text(photos, metadata, init=init, out=out_dir, text_column=text_column, glossary=glossary,
                          config=config, name=name, progress=progress, command=command,
                          log=lambda m: err.print(m, highlight=False))
    for path, reason in report.skipped:
        err.print(f"[yellow]skipped[/] {reason}", highlight=False)
    scores = ", ".join(f"{k} {v:.3f}" for k, v in report.validation_scores.items()) or "no validation products"
    err.print(f"words aligned on {report.products:,} products ({report.texts:,} texts; held-out label queries: "
              f"{scores}) in {report.seconds / 60:.1f} min; model written to [bold]{out_dir}[/]", highlight=False)


def _heads_only(photos, metadata, out_dir, label, init, extra, extra_metadata, extra_repeat, epochs, seed, name,
                quantize, command, features, hidden, blend) -> None:
    from ..train.heads import HeadsConfig, fit_heads

    if not init:
        raise LookalikeError("--heads-only fits heads on an existing model: name it with --init (e.g. --init default)")
    config = HeadsConfig(extra_repeat=extra_repeat, seed=seed, features=features, hidden=hidden, blend=blend,
                         **({"epochs": epochs} if epochs else {}))
    with RichProgress(err) as progress:
        report = fit_heads(photos, metadata, init=init, out=out_dir, labels=label, config=config, name=name, quantize=quantize,
                           extra=(extra, extra_metadata) if extra else None, progress=progress, command=command,
                           log=lambda m: err.print(m, highlight=False))
    table = Table("head", "validation top-1", "the model's own head", title=f"{report.validation:,} validation products")
    for head, t in report.top1.items():
        table.add_row(head, *(f"{t[k]:.3f}" if t[k] is not None else "-" for k in ("after", "before")))
    err.print(table)
    for path, reason in report.skipped:
        err.print(f"[yellow]skipped[/] {reason}", highlight=False)
    err.print(f"heads fitted on {report.products:,} products ({len(report.skipped)} skipped) in "
              f"{report.seconds / 60:.1f} min; model written to [bold]{out_dir}[/]; use it with --model {out_dir}")


def _cell(prediction) -> str:
    """A table cell: the label and its probability, or "unsure" when the model is not confident."""
    if prediction is None:
        return "-"
    if not prediction.confident:
        return f"[dim]unsure ({prediction.confidence:.2f})[/]"
    return f"{prediction.label} ({prediction.confidence:.2f})"


def _size(text: str) -> tuple[int, int]:
    """'128x160' -> (128, 160)."""
    try:
        w, h = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise LookalikeError(f"--size {text!r}: give WIDTHxHEIGHT, e.g. 128x160") from None
    if not (16 <= w <= 1024 and 16 <= h <= 1024):
        raise LookalikeError(f"--size {text!r}: each side between 16 and 1024 pixels")
    return w, h


def _stages(text: Optional[str], option: str, example: str, least: int) -> Optional[tuple]:
    """Four numbers, one per stage (`--blocks`, `--widths`)."""
    if text is None:
        return None
    try:
        counts = tuple(int(n) for n in text.split(","))
    except ValueError:
        counts = ()
    if len(counts) != 4 or min(counts) < least:
        raise LookalikeError(f"{option} {text!r}: give four numbers of at least {least}, e.g. {example}")
    return counts


@cli_errors
def classify(inputs: List[Path] = typer.Argument(..., help="photos or folders"),
             model: str = typer.Option("default", "--model", "-m"),
             index: Optional[str] = typer.Option(None, "--index", "-i", help="blend the model's prediction with the "
                                                  "labels of this catalog's nearest products (its model is used)"),
             column: Optional[List[str]] = typer.Option(None, "--column", "-c", help="with --index: a column to "
                                                        "predict (repeatable; default: the model's heads)"),
             top: int = typer.Option(1, min=1, max=10, help="labels per attribute"),
             as_json: bool = typer.Option(False, "--json")):
    """Predicted category / colour / gender of photos, with confidence (needs a model with heads, or an index and
    the columns to predict)."""
    from ..classify import classify_images, classify_with_catalog

    if column and index is None:
        raise LookalikeError("--column needs --index: columns are predicted from a catalog's labels")
    files = photo_files(inputs)
    with RichProgress(err, transient=True) as progress:
        if index is not None:
            from ..index import Index

            rows, skipped = classify_with_catalog(Index.load(index), files, top=top, columns=column or None,
                                                  progress=progress)
        else:
            rows, skipped = classify_images(load_model(model), files, top=top, progress=progress)
    if not rows:
        _print_skipped(skipped)
        nothing_read(skipped)
    if as_json:
        out.print_json(json.dumps({"predictions": [
            {"image": r.image, **{h: [{"label": l, "p": round(p, 4)} for l, p in zip(pr.labels, pr.probs)]
                                  for h, pr in r.predictions.items()}} for r in rows],
            "skipped": [{"image": k, "error": e} for k, e in skipped]}))
    else:
        heads = list(dict.fromkeys(h for r in rows for h in r.predictions))
        table = Table("image", *heads)
        for r in rows:
            table.add_row(Path(r.image).name, *(_cell(r.predictions.get(h)) for h in heads))
        out.print(table)
        if any(not p.confident for r in rows for p in r.predictions.values()):
            err.print(f"[dim]unsure: below {CONFIDENT:.0%} the label is not shown (--json gives every probability)[/]")
    _print_skipped(skipped)


@cli_errors
def categories(photos: List[Path] = typer.Argument(..., help="photos or folders"),
               k: int = typer.Option(3, "-k", min=1, help="how many categories to list"),
               head: Optional[str] = typer.Option(None, help="which attribute (default: articleType, else the first)"),
               model: str = typer.Option("default", "--model", "-m"),
               sheet: Optional[Path] = typer.Option(None, help="write a contact sheet PNG of the photos with their labels"),
               as_json: bool = typer.Option(False, "--json")):
    """The most common predicted categories in a set of photos, with an optional contact sheet."""
    from ..classify import classify_images, common_categories
    from ..grid import contact_sheet
    from ..images import load_image

    files = photo_files(photos)
    embedder = load_model(model)
    with RichProgress(err, transient=True) as progress:
        rows, skipped = classify_images(embedder, files, top=1, progress=progress)
    if not rows:
        _print_skipped(skipped)
        nothing_read(skipped)
    if not embedder.heads:
        raise LookalikeError("this model has no attribute heads")
    head = head or ("articleType" if "articleType" in embedder.heads else next(iter(embedder.heads)))
    if head not in embedder.heads:
        raise LookalikeError(f"the model has no head {head!r}; heads: {', '.join(embedder.heads)}")
    top = common_categories(rows, head, k)
    if as_json:
        out.print_json(json.dumps({"head": head, "images": len(rows), "skipped": len(skipped),
                                   "categories": [{"label": l, "count": n, "share": round(s, 4)} for l, n, s in top]}))
    else:
        table = Table("#", head, "photos", "share", title=f"{len(rows)} photos")
        for i, (label, n, share) in enumerate(top, 1):
            table.add_row(str(i), label, str(n), f"{share:.0%}")
        out.print(table)
    if sheet:
        contact_sheet([(load_image(r.image), [Path(r.image).name, f"{r.predictions[head].label} "
                                                                  f"{r.predictions[head].confidence:.2f}"]) for r in rows], sheet)
        err.print(f"contact sheet written to {sheet}")
    _print_skipped(skipped)


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    for key, reason in skipped:
        err.print(f"[yellow]skipped[/] {reason}", highlight=False)
