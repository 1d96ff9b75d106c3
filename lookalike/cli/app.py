"""Commands for building and querying an index."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.table import Table

from ..errors import LookalikeError
from ..evaluate import evaluate as run_evaluate
from ..grid import draw_rows
from ..images import load_image
from ..index import Index
from ..index.database import is_url
from ..remote import is_remote
from ..models import load_model
from ..models.pipeline import embed_batch
from ..progress import RichProgress
from ..search import parse_where
from .common import cli_errors, err, nothing_added, out, photo_files, print_report
from .help import Group
from .model import model_app
from .train import categories as categories_cmd, classify as classify_cmd, train as train_cmd

app = typer.Typer(help="Visual search for fashion catalogs: index photos, find lookalikes.", cls=Group,
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(model_app, name="model")
app.command()(train_cmd)
app.command()(classify_cmd)
app.command()(categories_cmd)

MODEL = typer.Option("default", "--model", "-m", help="default, classic, a registered name or a model folder")
METADATA = typer.Option(None, "--metadata", help="CSV: Kaggle styles.csv or any CSV with an id column")
INDEX = typer.Argument(..., metavar="INDEX", help="an index directory, or a postgresql:// URL")
ID_COL = typer.Option(None, "--id-column", help="metadata id column (default: id, sku, ...)")
IMG_COL = typer.Option(None, "--image-column", help="metadata column with photo paths (default: image, path, ...)")


def _version(value: bool) -> None:
    if value:
        out.print(f"lookalike {version()}", highlight=False)
        raise typer.Exit()


def version() -> str:
    """The installed distribution's version; the package's own when it runs from a source tree not installed."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("lookalike")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="print the version and exit")):
    pass


@app.command()
@cli_errors
def index(photos: Optional[str] = typer.Argument(None, help="folder of product photos (searched recursively; "
                                                "local, or s3:// or gs://)"),
          metadata: Optional[Path] = METADATA,
          out_dir: str = typer.Option(..., "--out", "-o", help="index directory to write, or a postgresql:// URL"),
          vectors: Optional[Path] = typer.Option(None, "--vectors", help="build from Parquet vectors (`lookalike "
                                                 "embed --out DIR`) instead of photos"),
          model: Optional[str] = typer.Option(None, "--model", "-m", help="default, classic, a registered name or a "
                                              "model folder (with --vectors: the vectors' own model by default)"),
          index_type: Optional[str] = typer.Option(None, help="flat (exact; the default), hnsw, ivf (approximate: "
                                                   "compressed, for millions) or auto (ivf from 200,000 products, "
                                                   "else flat); in PostgreSQL always pgvector's hnsw"),
          dtype: str = typer.Option("float16", help="stored vector precision: float16 or float32"),
          overwrite: bool = typer.Option(False, help="replace an existing index"),
          require_metadata: bool = typer.Option(False, help="skip photos without a metadata row"),
          id_column: Optional[str] = ID_COL, image_column: Optional[str] = IMG_COL,
          batch_size: int = typer.Option(64, min=1, max=4096)):
    """Index a catalog: embed every photo (or read Parquet vectors) and write an index directory."""
    if vectors is not None:
        if photos is not None or metadata is not None:
            raise LookalikeError("--vectors builds from the Parquet shards alone (they hold the metadata); "
                                 "give photos or --vectors, not both")
        idx = Index.from_vectors(vectors, out=out_dir, model=model, index_type=index_type, dtype=dtype,
                                 overwrite=overwrite)
        err.print(f"read {len(idx):,} vectors from {vectors} in {idx.report.seconds:.1f} s")
    else:
        if photos is None and metadata is None:
            raise LookalikeError("give a folder of photos (and/or --metadata CSV), or --vectors DIR")
        with RichProgress(err) as progress:
            idx = Index.build(photos, metadata, out=out_dir, model=model or "default", index_type=index_type,
                              dtype=dtype, overwrite=overwrite, batch_size=batch_size, progress=progress,
                              id_column=id_column, image_column=image_column, require_metadata=require_metadata)
        print_report(idx.report)
    err.print(f"index written to [bold]{idx.path}[/] ({len(idx):,} products, model {idx.manifest['model']['id']})")


@app.command()
@cli_errors
def search(index_dir: str = INDEX,
           query: Optional[Path] = typer.Argument(None, help="a query photo"),
           pid: Optional[str] = typer.Option(None, "--id", help="search from a product of the index"),
           text: Optional[str] = typer.Option(None, "--text", "-t", help="search by words (\"white sneakers\"), "
                                              "or refine a photo or --id with them (\"in red\")"),
           k: int = typer.Option(10, "-k", min=1, max=1000),
           where: List[str] = typer.Option([], "--where", "-w", help="COLUMN=VALUE[,VALUE] (repeatable)"),
           include_self: bool = typer.Option(False, help="with --id: keep the product itself in the results"),
           agree: List[str] = typer.Option([], "--agree", help="re-rank by agreement on this column (repeatable; "
                                           "default: articleType, baseColour, gender when the index has them)"),
           no_agree: bool = typer.Option(False, "--no-agree", help="plain similarity order, no re-ranking"),
           same: List[str] = typer.Option([], "--same", help="only products with the query's value of this column: "
                                          "a product's own, a photo's predicted (repeatable; e.g. articleType)"),
           as_json: bool = typer.Option(False, "--json", help="print JSON"),
           grid: Optional[Path] = typer.Option(None, help="write a PNG of the query and its results")):
    """Find the products most like a photo, a product, or words."""
    if query is not None and pid is not None:
        raise LookalikeError("give a query photo or --id PRODUCT_ID, not both")
    if query is None and pid is None and text is None:
        raise LookalikeError("give a query photo, --id PRODUCT_ID or --text WORDS")
    idx = Index.load(index_dir)
    results = idx.search(pid if pid is not None else query, k=k, text=text, where=parse_where(where),
                         exclude_self=not include_self, agree=False if no_agree else (agree or True), same=same)
    label = " + ".join(x for x in (pid or (str(query) if query is not None else None),
                                    repr(text) if text is not None else None) if x)
    if as_json:
        out.print_json(json.dumps({"query": pid or (str(query) if query is not None else None), "text": text,
                                   "results": [r.to_dict() for r in results]}))
    else:
        table = Table("#", "id", "score", *idx.columns[:5])
        for rank, r in enumerate(results, 1):
            table.add_row(str(rank), r.id, f"{r.score:.3f}", *(str(r.metadata.get(c) or "") for c in idx.columns[:5]))
        out.print(table)
    if grid:
        image = load_image(idx.get(pid).path) if pid is not None else load_image(query) if query is not None else None
        draw_rows([(image, f"query {label}", results)], grid)
        err.print(f"grid written to {grid}")
    if not results:
        err.print("[yellow]no results[/] (the filters may match no product)")


@app.command()
@cli_errors
def add(index_dir: str = INDEX,
        photos: str = typer.Argument(..., help="folder of new product photos (local, or s3:// or gs://)"),
        metadata: Optional[Path] = METADATA,
        replace: bool = typer.Option(False, help="re-embed ids already in the index (default: keep them)"),
        id_column: Optional[str] = ID_COL, image_column: Optional[str] = IMG_COL):
    """Add products to an index without rebuilding it."""
    idx = Index.load(index_dir)
    with RichProgress(err) as progress:
        report = idx.add(photos, metadata, replace=replace, progress=progress, id_column=id_column,
                         image_column=image_column)
    if report.indexed or report.already_indexed or report.skipped:
        print_report(report, "added")
    if not report.indexed:
        nothing_added(report, photos)
    err.print(f"{idx.path} now holds {len(idx):,} products")


@app.command()
@cli_errors
def remove(index_dir: str = INDEX,
           ids: List[str] = typer.Argument(..., help="product ids"),
           missing_ok: bool = typer.Option(False, help="ignore ids that are not in the index")):
    """Remove products from an index."""
    idx = Index.load(index_dir)
    removed = idx.remove(ids, missing_ok=missing_ok)
    err.print(f"removed {removed} product(s); {idx.path} now holds {len(idx):,}")


@app.command()
@cli_errors
def embed(inputs: List[str] = typer.Argument(..., help="photos or folders (for Parquet: one folder, or an s3:// or "
                                             "gs:// folder)"),
          out_path: Path = typer.Option(..., "--out", "-o", help="a folder: Parquet shards with metadata (for "
                                        "`index --vectors`); a .npy file: vectors only (ids in NAME.ids.txt)"),
          metadata: Optional[Path] = METADATA, model: str = MODEL,
          shard_size: int = typer.Option(10_000, min=1, help="products a Parquet shard holds"),
          overwrite: bool = typer.Option(False, help="Parquet: start again instead of resuming an earlier run"),
          ray: Optional[str] = typer.Option(None, "--ray", help="Parquet: embed on Ray (the ray extra): auto starts "
                                            "a local Ray, HOST:PORT joins a running cluster"),
          id_column: Optional[str] = ID_COL, image_column: Optional[str] = IMG_COL,
          batch_size: int = typer.Option(64, min=1, max=4096)):
    """Embed photos: Parquet shards of ids, vectors and metadata (resumable), or an N x D float32 .npy."""
    if out_path.suffix.lower() == ".npy":
        if metadata is not None or ray is not None:
            raise LookalikeError("--metadata and --ray go with Parquet output (--out a folder), not a .npy file")
        if any(is_remote(i) for i in inputs):
            raise LookalikeError("photos on object storage go to Parquet shards (--out a folder), not a .npy file")
        _embed_npy([Path(i) for i in inputs], out_path, model, batch_size)
        return
    from ..vectors import embed_catalog

    if len(inputs) != 1 or not (is_remote(inputs[0]) or Path(inputs[0]).is_dir()):
        raise LookalikeError("Parquet output (--out a folder) embeds one catalog folder; give one folder of photos")
    with RichProgress(err) as progress:
        report = embed_catalog(inputs[0], metadata, out=out_path, model=model, shard_size=shard_size,
                               batch_size=batch_size, overwrite=overwrite, progress=progress, id_column=id_column,
                               image_column=image_column, ray=ray)
    print_report(report, "embedded")
    kept = f", {report.shards_kept} kept from an earlier run" if report.shards_kept else ""
    err.print(f"{report.shards_written} shard(s) written to {out_path}{kept}")


def _embed_npy(inputs: List[Path], out_file: Path, model: str, batch_size: int) -> None:
    files = photo_files(inputs)
    embedder = load_model(model)
    with RichProgress(err) as progress:
        progress.start(len(files), "embedding")
        result = embed_batch(embedder, list(enumerate(files)), batch_size=batch_size, progress=progress)
    ids_file = out_file.with_suffix(".ids.txt")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp_vec, tmp_ids = out_file.with_name(out_file.name + ".tmp.npy"), ids_file.with_name(ids_file.name + ".tmp")
    np.save(tmp_vec, result.vectors)
    tmp_ids.write_text("".join(f"{files[k].stem}\n" for k in result.keys))
    os.replace(tmp_vec, out_file)
    os.replace(tmp_ids, ids_file)
    for k, reason in result.errors[:10]:
        err.print(f"  [yellow]skipped[/] {reason}", highlight=False)
    err.print(f"embedded {len(result.keys):,} ({len(result.errors)} skipped) with {embedder.id}: "
              f"{out_file} {result.vectors.shape}, ids in {ids_file}")


@app.command()
@cli_errors
def evaluate(index_dir: str = INDEX,
             fields: List[str] = typer.Option(..., "--field", "-f", help="column, or columns joined with +"),
             k: int = typer.Option(10, "-k", min=1, max=100),
             sample: Optional[int] = typer.Option(None, help="query this many random products (all by default)"),
             as_json: bool = typer.Option(False, "--json")):
    """Leave-one-out quality: do a product's neighbours share its labels? (P@1, P@k, mAP@k)"""
    from ..index.postgres import whole_catalog

    loaded = Index.load(index_dir)
    title = f"{loaded.path} ({loaded.manifest['model']['id']})"
    with whole_catalog(loaded) as idx:
        needed = sorted({c for f in fields for c in f.split("+")})
        columns = {c: idx.meta.column(c) for c in needed}
        scores = run_evaluate(idx.vectors(), columns, fields, k=k, sample=sample)
    if as_json:
        out.print_json(json.dumps([s.to_dict() for s in scores]))
        return
    table = Table("field", "queries", "P@1", f"P@{k}", f"mAP@{k}", title=title)
    for s in scores:
        table.add_row(s.field, f"{s.queries:,}", f"{s.p_at_1:.3f}", f"{s.p_at_k:.3f}", f"{s.map_at_k:.3f}")
    out.print(table)


@app.command()
@cli_errors
def info(index_dir: str = INDEX,
         verify: bool = typer.Option(False, help="check every file's sha256"),
         as_json: bool = typer.Option(False, "--json")):
    """What an index holds: products, model, columns, size."""
    idx = Index.load(index_dir, verify=verify)
    data = idx.info()
    data["facets"] = {c: idx.facets(c)[:5] for c in idx.columns}
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table(show_header=False, box=None)
    for key in ("path", "products", "index_type", "dtype", "created", "updated"):
        table.add_row(key, str(data[key]))
    table.add_row("model", f"{data['model']['id']} ({data['model']['dim']} dims)")
    table.add_row("size", f"{data['bytes'] / 1e6:.1f} MB" + (" (checksums verified)" if verify and not is_url(index_dir) else ""))
    for column, values in data["facets"].items():
        table.add_row(column, ", ".join(f"{v} ({n})" for v, n in values) + (" ..." if len(values) == 5 else ""))
    out.print(table)


@app.command()
@cli_errors
def serve(index_dir: str = INDEX,
          host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000),
          api_key_file: Optional[Path] = typer.Option(None, help="file holding the admin API key "
                                                      "(default: the LOOKALIKE_API_KEY variable; none = no writes)"),
          max_upload_mb: float = typer.Option(10.0, help="largest accepted upload"),
          workers: int = typer.Option(1, min=1, help="server processes (each loads the index; writes reach all)"),
          uploads: Optional[Path] = typer.Option(None, help="where admin uploads keep their photos (default: INDEX"
                                                 ".uploads beside a directory; TABLE.uploads here for a database: "
                                                 "give web servers sharing a database a shared folder)")):
    """Serve the web page (/) and the HTTP API (/docs) over an index."""
    try:
        import uvicorn

        from ..serve.app import api_key_from, check_port, create_app, log_config
    except ImportError:
        raise LookalikeError("serving needs the serve extra: pip install 'lookalike[serve]'") from None
    check_port(host, port)
    key = api_key_from(file=api_key_file)
    app_ = create_app(index_dir, api_key=key, max_upload_mb=max_upload_mb, uploads_dir=uploads)
    idx = app_.state.holder.index
    err.print(f"serving {len(idx):,} products ({idx.manifest['model']['id']}) at [bold]http://{host}:{port}/[/] "
              f"(API docs at /docs; admin writes {'enabled' if key else 'disabled'})")
    # one access line per request comes from the app's own logger (log_config): uvicorn's would double it
    logs = {"log_level": "warning", "log_config": log_config(), "access_log": False}
    if workers == 1:
        uvicorn.run(app_, host=host, port=port, **logs)
        return
    os.environ.update({"LOOKALIKE_INDEX": index_dir if is_url(index_dir) else str(Path(index_dir).absolute()),
                       "LOOKALIKE_MAX_UPLOAD_MB": str(max_upload_mb),
                       "LOOKALIKE_UPLOADS": str(uploads.absolute()) if uploads else ""})
    if api_key_file:
        os.environ["LOOKALIKE_API_KEY_FILE"] = str(api_key_file.absolute())
    uvicorn.run("lookalike.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers, **logs)


@app.command("recommend-all")
@cli_errors
def recommend_all_cmd(index_dir: str = INDEX,
                      k: int = typer.Option(10, "-k", min=1, max=1000),
                      out_file: Path = typer.Option(..., "--out", "-o", help="a .parquet or .csv file"),
                      where: List[str] = typer.Option([], "--where", "-w", help="COLUMN=VALUE[,VALUE] (repeatable)"),
                      same: List[str] = typer.Option([], "--same", help="only neighbours sharing this column's value (repeatable)"),
                      as_csv: bool = typer.Option(False, "--csv",
                                                  help="write CSV whatever the file name (not .parquet)"),
                      no_agree: bool = typer.Option(False, "--no-agree", help="plain similarity order, no re-ranking"),
                      batch: int = typer.Option(2048, min=1)):
    """Top-k similar products for every product, streamed to Parquet or CSV (id, rank, neighbour_id, score)."""
    from ..recommend import output_format, recommend_all

    fmt = output_format(out_file, "csv" if as_csv else None)  # a name it cannot write fails here, before any work
    from ..index.postgres import whole_catalog

    loaded = Index.load(index_dir)
    for column in same:
        loaded.meta.facets(column)  # unknown columns fail here, before any work
    with whole_catalog(loaded) as idx, RichProgress(err) as progress:
        report = recommend_all(idx, out_file, k, where=parse_where(where), same=same,
                               fmt=fmt, batch=batch, progress=progress,
                               agree=not no_agree)
    err.print(f"{report.rows:,} recommendations for {report.products:,} products"
              + (f" in {report.groups:,} groups" if same else "")
              + f" written to {report.path} in {report.seconds:.1f} s")


@app.command()
@cli_errors
def report(photos: Optional[str] = typer.Argument(None, help="folder of product photos (local, or s3:// or gs://)"),
           metadata: Optional[Path] = METADATA,
           out_file: Path = typer.Option(Path("report.html"), "--out", "-o", help="the HTML file to write"),
           index_dir: Optional[str] = typer.Option(None, "--index", help="an index of the catalog (a directory or a "
                                                    "postgresql:// URL): adds near-duplicate groups"),
           id_column: Optional[str] = ID_COL, image_column: Optional[str] = IMG_COL):
    """A self-contained HTML report of a catalog: columns, missing values, class balance, photo problems."""
    from ..report import build_report

    from ..index.postgres import whole_catalog

    with contextlib.ExitStack() as stack:
        idx = stack.enter_context(whole_catalog(Index.load(index_dir))) if index_dir else None
        with RichProgress(err) as progress:
            summary = build_report(photos, metadata, out=out_file, index=idx, progress=progress,
                                   id_column=id_column, image_column=image_column)
    table = Table(show_header=False, box=None, padding=(0, 2))
    for label, value in (("products", summary.products), ("photos read", summary.photos),
                         ("unreadable photos", summary.unreadable), ("greyscale photos", summary.greyscale),
                         ("rows without a photo", summary.rows_without_image),
                         ("photos without a row", summary.images_without_row)):
        table.add_row(label, f"{value:,}")
    if idx is not None:
        table.add_row("near-duplicate groups", f"{summary.duplicate_groups:,}")
    table.add_row("time", f"{summary.seconds:.1f} s")
    err.print(table)
    err.print(f"report written to [bold]{summary.path}[/]")


@app.command()
@cli_errors
def look(index_dir: str = INDEX,
         photos: List[Path] = typer.Argument(..., help="photos of people, or folders of them"),
         k: int = typer.Option(6, "-k", min=1, max=100, help="results per garment"),
         gender: str = typer.Option("soft", help="use the predicted gender: soft (re-rank), strict (filter) or off"),
         detector: Optional[Path] = typer.Option(None, help="a YOLO-style ONNX detector folder (detector.json) to "
                                                             "use instead of the built-in garment parser"),
         as_json: bool = typer.Option(False, "--json"),
         grid: Optional[Path] = typer.Option(None, help="PNG with boxes and a row of results per garment "
                                                        "(one photo; with several, NAME-<photo>.png each)")):
    """Shop the look: find each garment in photos of people and recommend similar products per garment."""
    if gender not in ("soft", "strict", "off"):
        raise LookalikeError("--gender is soft, strict or off")
    from ..grid import draw_look

    files = photo_files(photos)
    idx = Index.load(index_dir)
    from ..look.detector import OnnxDetector

    localiser = OnnxDetector(detector) if detector else None
    looks, failed = [], []
    for path in files:
        try:
            result = idx.look(path, k=k, gender_filter=gender, with_crops=grid is not None, detector=localiser)
        except LookalikeError as exc:
            failed.append((path, str(exc)))
            continue
        looks.append(result)
        if not as_json:
            shot = "no person found: searched the whole photo" if result.garments[0].kind == "product" else \
                ("full shot" if result.full_shot else "partial")
            err.print(f"[bold]{path}[/] ({shot}, {result.seconds * 1000:.0f} ms)")
            for g in result.garments:
                attrs = ", ".join(f"{a['label']}" for a in g.attributes.values())
                out.print(f"  {g.kind:9s} box {list(g.box)} score {g.score:.2f}  {attrs}")
                out.print("    " + ("  ".join(f"{r.id} ({r.score:.2f})" for r in g.results) or g.note or "no results"))
        if grid:
            target = grid if len(files) == 1 else grid.with_name(f"{grid.stem}-{path.stem}{grid.suffix}")
            draw_look(load_image(path), result.garments, target)
            err.print(f"picture written to [bold]{target}[/]")
    if as_json:
        out.print_json(json.dumps({"looks": [l.to_dict() for l in looks],
                                   "skipped": [{"image": str(p), "error": e} for p, e in failed]}))
    for path, reason in failed:
        err.print(f"[yellow]skipped[/] {reason}", highlight=False)
    if not looks:
        raise LookalikeError("no photo could be read")
