"""`lookalike model ...`: register, list and describe models."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markdown import Markdown
from rich.table import Table

from ..errors import LookalikeError
from ..models import EmbeddingSpec, InputSpec, import_model, list_models, load_model, model_home
from ..models.manifest import BACKGROUNDS, IMAGENET_MEAN, IMAGENET_STD
from .common import cli_errors, err, out

model_app = typer.Typer(help="Register, list and describe embedding models.", no_args_is_help=True)

NORMS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD, 1 / 255), "caffe": ([103.939, 116.779, 123.68], [1, 1, 1], 1.0),
         "tf": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], 1 / 255), "none": ([0, 0, 0], [1, 1, 1], 1 / 255)}


@model_app.command("import")
@cli_errors
def import_(onnx_file: Path = typer.Argument(..., help="an ONNX image model"),
            name: str = typer.Option(..., help="name to register it under"),
            size: Optional[int] = typer.Option(None, help="square input size (sets width and height)"),
            width: int = typer.Option(224), height: int = typer.Option(224),
            resize: str = typer.Option("pad", help="pad (white), stretch or crop"),
            interpolation: str = typer.Option("bilinear", help="nearest, bilinear, bicubic, area, lanczos"),
            norm: str = typer.Option("imagenet", help="imagenet, caffe (BGR, mean subtraction), tf ([-1, 1]), none"),
            mean: Optional[List[float]] = typer.Option(None, help="per-channel mean (overrides --norm)"),
            std: Optional[List[float]] = typer.Option(None, help="per-channel std (overrides --norm)"),
            layout: str = typer.Option("NCHW", help="input layout: NCHW (PyTorch) or NHWC (Keras/TF)"),
            input_name: Optional[str] = typer.Option(None, "--input", help="input name (default: the first)"),
            output: Optional[str] = typer.Option(None, help="embedding output name (default: the first)"),
            pooling: str = typer.Option("none", help="for a 4-D feature-map output: avg or max"),
            flip: bool = typer.Option(False, help="average each photo's outputs with its mirror image's (a second pass of the network)"),
            background: str = typer.Option("keep", help="keep, or whiten: paint a plain coloured background white first"),
            force: bool = typer.Option(False, help="replace a model registered under the same name")):
    """Register any ONNX image backbone (see docs/models.md for ResNet50, Xception, InceptionV3 recipes)."""
    if norm not in NORMS:
        raise LookalikeError(f"unknown --norm {norm!r} ({', '.join(NORMS)})")
    if layout not in ("NCHW", "NHWC") or pooling not in ("none", "avg", "max") or resize not in ("pad", "stretch", "crop") \
            or background not in BACKGROUNDS:
        raise LookalikeError("--layout is NCHW or NHWC, --pooling none/avg/max, --resize pad/stretch/crop, "
                             "--background keep/whiten")
    m, s, scale = NORMS[norm]
    spec = InputSpec(name=input_name, width=size or width, height=size or height, layout=layout, resize=resize,
                     interpolation=interpolation, channels="BGR" if norm == "caffe" else "RGB", scale=scale,
                     mean=list(mean or m), std=list(std or s), background=background)
    embedder = import_model(onnx_file, name, input=spec, embedding=EmbeddingSpec(output=output, pooling=pooling,
                                                                                  layout=layout, flip=flip), force=force)
    err.print(f"registered [bold]{embedder.id}[/] ({embedder.dim} dims) in {model_home() / name}; "
              f"use it with --model {name}")


@model_app.command("list")
@cli_errors
def list_():
    """Built-in and registered models."""
    table = Table("name", "id", "dims", "heads")
    for name in ["default", "classic", *list_models()]:
        try:
            m = load_model(name)
            table.add_row(name, m.id, str(m.dim), ", ".join(m.heads) or "-")
        except LookalikeError as exc:
            table.add_row(name, f"[red]{exc}[/]", "", "")
    out.print(table)


@model_app.command()
@cli_errors
def card(name: str = typer.Argument("default")):
    """A model's card: what it is, how it was trained, its measured figures."""
    m = load_model(name)
    if m.card:
        out.print(Markdown(m.card))
    else:
        doc = (type(m).__doc__ or "") + "\n\n" + (getattr(__import__(type(m).__module__, fromlist=["x"]), "__doc__") or "")
        out.print(f"[bold]{m.id}[/] ({m.dim} dims, heads: {', '.join(m.heads) or 'none'})\n{doc.strip()}")
