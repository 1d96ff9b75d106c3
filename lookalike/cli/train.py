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
from ..images import is_image_file
from ..models import load_model
from ..progress import RichProgress
from .common import cli_errors, err, out


@cli_errors
def train(photos: Path = typer.Argument(..., help="folder of product photos"),
          metadata: Optional[Path] = typer.Option(None, "--metadata", help="labels CSV (any subset of columns)"),
          out_dir: Path = typer.Option(..., "--out", "-o", help="model folder to write"),
          label: Optional[List[str]] = typer.Option(None, "--label", help="label columns (default: the known ones present)"),
          init: Optional[str] = typer.Option(None, help="start from a model: 'default' or a folder trained by lookalike"),
          teacher: Optional[Path] = typer.Option(None, help="teacher features to distil (.npy + .ids.txt from `lookalike embed`)"),
          backgrounds: Optional[Path] = typer.Option(None, help="folder of scene photos pasted behind products"),
          epochs: int = typer.Option(8, min=1), batch_size: int = typer.Option(128, min=8),
          lr: float = typer.Option(3e-3), photo_p: float = typer.Option(0.5, min=0, max=1, help="share of photo-like augmentation"),
          max_minutes: Optional[float] = typer.Option(None, help="stop training after this long"),
          quantize: str = typer.Option("auto", help="auto, int8 or float32"),
          seed: int = typer.Option(0), name: Optional[str] = typer.Option(None, help="model name (default: folder name)")):
    """Train an embedding model with attribute heads on a catalog (CPU; needs the train extra)."""
    from ..train import train as run
    from ..train.loop import TrainConfig

    if quantize not in ("auto", "int8", "float32"):
        raise LookalikeError("--quantize is auto, int8 or float32")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, photo_p=photo_p, seed=seed,
                         max_minutes=max_minutes)
    command = "lookalike " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with RichProgress(err) as progress:
        report = run(photos, metadata, out=out_dir, labels=label, init=init, teacher=teacher, backgrounds=backgrounds,
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


@cli_errors
def classify(inputs: List[Path] = typer.Argument(..., help="photos or folders"),
             model: str = typer.Option("default", "--model", "-m"),
             top: int = typer.Option(1, min=1, max=10, help="labels per attribute"),
             as_json: bool = typer.Option(False, "--json")):
    """Predicted category / colour / gender of photos, with confidence (needs a model with heads)."""
    from ..models.pipeline import embed_batch
    from ..models.base import predictions_for

    embedder = load_model(model)
    if not embedder.heads:
        raise LookalikeError(f"model {embedder.id} has no attribute heads, so it cannot classify; "
                             "use a model trained by `lookalike train` (the default model once trained)")
    files = [p for item in inputs for p in (sorted(x for x in item.rglob("*") if x.is_file() and is_image_file(x))
                                              if item.is_dir() else [item])]
    result = embed_batch(embedder, [(str(f), f) for f in files], with_heads=True)
    rows = []
    for i, key in enumerate(result.keys):
        preds = predictions_for(embedder.heads, result.heads, i, top)
        rows.append({"image": key, **{h: [{"label": l, "p": round(p, 4)} for l, p in zip(pr.labels, pr.probs)]
                                      for h, pr in preds.items()}})
    if as_json:
        out.print_json(json.dumps({"predictions": rows, "skipped": [{"image": str(k), "error": e} for k, e in result.errors]}))
    else:
        table = Table("image", *embedder.heads)
        for row in rows:
            table.add_row(Path(row["image"]).name, *(f"{row[h][0]['label']} ({row[h][0]['p']:.2f})" for h in embedder.heads))
        out.print(table)
    for key, reason in result.errors:
        err.print(f"[yellow]skipped[/] {reason}", highlight=False)
