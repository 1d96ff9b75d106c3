"""Reading a catalog: a folder of product photos plus an optional metadata CSV.

Ids come from file names (`images/15970.jpg` is product `15970`) or from the CSV's image column. The Kaggle
"Fashion Product Images" `styles.csv` is read natively, including its rows with unquoted commas in the last
field; any other CSV needs an id column and may have an image-path column. Nothing here raises on a bad row:
problems are collected in `Catalog.problems` and the good rows go on.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CatalogError
from .images import is_image_file

#: Header of the Kaggle "Fashion Product Images" styles.csv.
KAGGLE_COLUMNS = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season",
                  "year", "usage", "productDisplayName"]
ID_COLUMNS = ("id", "product_id", "productid", "sku", "item_id")
IMAGE_COLUMNS = ("image", "image_path", "imagepath", "path", "file", "filename", "photo")
#: Values read as "missing" (as pandas would), besides the empty string.
MISSING = {"na", "n/a", "nan", "null", "none"}


@dataclass
class Product:
    id: str
    path: Path | None
    metadata: dict[str, str | None] = field(default_factory=dict)


@dataclass
class CatalogProblems:
    """Everything that was skipped or looked wrong while reading, for the summary a user sees."""

    rows_without_image: list[str] = field(default_factory=list)
    images_without_row: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for label, items in (("metadata rows without an image", self.rows_without_image),
                             ("images without a metadata row", self.images_without_row),
                             ("duplicate ids (first kept)", self.duplicate_ids),
                             ("malformed metadata rows (skipped)", self.bad_rows)):
            if items:
                sample = ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")
                out.append(f"{len(items)} {label}: {sample}")
        return out


@dataclass
class Catalog:
    products: list[Product]
    columns: list[str]
    problems: CatalogProblems

    def __len__(self) -> int:
        return len(self.products)

    @classmethod
    def read(cls, photos: str | Path | None, metadata: str | Path | None = None, *,
             id_column: str | None = None, image_column: str | None = None,
             require_metadata: bool = False) -> "Catalog":
        """Read photos (a folder, searched recursively) and/or a metadata CSV.

        With only a CSV, its image column locates the photos. Images without a metadata row are kept
        (with empty metadata) unless `require_metadata`; rows without an image are reported and skipped.
        """
        problems = CatalogProblems()
        images: dict[str, Path] = {}
        if photos is not None:
            images = scan_folder(Path(photos), problems)
        columns: list[str] = []
        rows: dict[str, dict[str, str | None]] = {}
        row_paths: dict[str, Path] = {}
        if metadata is not None:
            meta_path = Path(metadata)
            columns, rows, image_col = read_metadata(meta_path, problems, id_column=id_column,
                                                     image_column=image_column)
            if image_col:
                bases = [Path(photos)] if photos is not None else []
                bases.append(meta_path.parent)
                for pid, row in rows.items():
                    rel = row.pop(image_col, None)
                    if rel:
                        row_paths[pid] = next((b / rel for b in bases if (b / rel).is_file()), bases[0] / rel)
                columns = [c for c in columns if c != image_col]
        elif photos is None:
            raise CatalogError("give a photo folder, a metadata file, or both")

        products: list[Product] = []
        used: set[Path] = set()
        for pid, row in rows.items():  # metadata order first
            path = row_paths.get(pid) or images.get(pid)
            if path is not None and path.is_file():
                products.append(Product(pid, path, dict(row)))
                used.add(path)
            else:
                problems.rows_without_image.append(pid)
        for pid, path in images.items():  # then photos nobody described
            if path in used:
                continue
            if rows:
                problems.images_without_row.append(pid)
                if require_metadata or pid in rows:
                    continue
            products.append(Product(pid, path, {}))
        return cls(products, columns, problems)


def scan_folder(folder: Path, problems: CatalogProblems) -> dict[str, Path]:
    """Image files below `folder` by id (file name without extension), in a stable order."""
    if not folder.is_dir():
        raise CatalogError(f"{folder}: not a folder of photos")
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or not is_image_file(path):
                continue
            pid = path.stem
            if pid in found:
                problems.duplicate_ids.append(f"{pid} ({path.relative_to(folder)})")
                continue
            found[pid] = path
    return found


def read_metadata(path: Path, problems: CatalogProblems, *, id_column: str | None = None,
                  image_column: str | None = None) -> tuple[list[str], dict[str, dict[str, str | None]], str | None]:
    """Rows of a metadata CSV by id. Returns (columns without the id column, rows, image column or None)."""
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read metadata ({exc.strerror or exc})") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise CatalogError(f"{path}: empty metadata file")
    header = next(csv.reader([lines[0]]))
    header = [h.strip() for h in header]
    kaggle = header == KAGGLE_COLUMNS
    id_col = id_column or next((h for h in header if h.lower() in ID_COLUMNS), None)
    if id_col is None or id_col not in header:
        raise CatalogError(f"{path}: no id column (looked for {id_column or ', '.join(ID_COLUMNS)}); "
                           f"columns are {', '.join(header)}")
    img_col = image_column or next((h for h in header if h.lower() in IMAGE_COLUMNS), None)
    if image_column and image_column not in header:
        raise CatalogError(f"{path}: no image column {image_column!r}; columns are {', '.join(header)}")
    id_pos = header.index(id_col)
    records = _split_kaggle(lines[1:], len(header)) if kaggle else csv.reader(io.StringIO("\n".join(lines[1:])))
    rows: dict[str, dict[str, str | None]] = {}
    for lineno, fields in enumerate(records, start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            problems.bad_rows.append(f"line {lineno}: {len(fields)} fields, expected {len(header)}")
            continue
        pid = fields[id_pos].strip()
        if not pid:
            problems.bad_rows.append(f"line {lineno}: empty id")
            continue
        if pid in rows:
            problems.duplicate_ids.append(f"{pid} (line {lineno})")
            continue
        rows[pid] = {h: _value(v) for h, v in zip(header, fields) if h != id_col}
    return [h for h in header if h != id_col], rows, img_col


def _value(raw: str) -> str | None:
    value = raw.strip()
    return None if not value or value.lower() in MISSING else value


def _split_kaggle(lines: list[str], n_fields: int):
    """styles.csv rows: the last field (productDisplayName) may hold unquoted commas, so split on the first
    n-1 commas only."""
    for line in lines:
        yield line.split(",", n_fields - 1) if line.strip() else []
