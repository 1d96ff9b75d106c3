"""Reading a catalog: a folder of product photos plus an optional metadata CSV.

Ids come from file names (`images/15970.jpg` is product `15970`) or from the CSV's image column. The Kaggle
"Fashion Product Images" `styles.csv` is read natively, including its rows with unquoted commas in the last
field; any other CSV needs an id column and may have an image-path column. Nothing here raises on a bad row:
problems are collected in `Catalog.problems` and the good rows go on.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import CatalogError, listed
from .remote import is_remote, scan as remote_scan
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
    path: Path | str | None         # a local file, or a photo's URL on object storage (`lookalike.remote`)
    metadata: dict[str, str | None] = field(default_factory=dict)


@dataclass
class CatalogProblems:
    """Everything that was skipped or looked wrong while reading, for the summary a user sees."""

    rows_without_image: list[str] = field(default_factory=list)
    images_without_row: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)
    #: Files in the photo folder of a type lookalike does not read (`notes.txt`, `logo.svg`), relative to it.
    unread_files: list[str] = field(default_factory=list)
    #: Sub-folders of the photo folder that cannot be listed (no permission), relative to it: their photos are
    #: missing from the catalog, which the user must hear about.
    unreadable_folders: list[str] = field(default_factory=list)
    #: Whether `images_without_row` are in the catalog (with empty metadata) or were left out (`require_metadata`).
    images_without_row_kept: bool = True

    def lines(self, verb: str = "indexed") -> list[str]:
        """One line per kind of problem: how many, and the first few. `verb` says what happened to the
        photos that have no metadata row but are kept ("indexed", "added")."""
        without_row = (f"photos without a metadata row, {verb} without labels" if self.images_without_row_kept
                       else "photos without a metadata row (skipped: metadata required)")
        out = []
        for label, items in (("metadata rows without an image", self.rows_without_image),
                             (without_row, self.images_without_row),
                             ("duplicate ids (first kept)", self.duplicate_ids),
                             ("malformed metadata rows (skipped)", self.bad_rows)):
            if items:
                out.append(f"{len(items)} {label}: {listed(items, 5)}")
        if self.unread_files:
            n = len(self.unread_files)
            out.append(f"skipped {n} file{'s' if n != 1 else ''} of a type lookalike does not read: "
                       f"{listed(self.unread_files, 5)}")
        if self.unreadable_folders:
            n = len(self.unreadable_folders)
            out.append(f"skipped {n} folder{'s' if n != 1 else ''} that cannot be read: "
                       f"{listed(self.unreadable_folders, 5)}")
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

        A row's image path is looked for relative to the photo folder, then to the CSV's own folder. When it is
        found in neither, the photo of the folder whose file name is the row's id is used: the CSV of a whole
        catalog names paths from the catalog's root (`dress/123.jpg`), and a user who points at one of its
        sub-folders (`catalog/dress`, a new batch) with that CSV means "these photos, with their rows"; the file
        name is the id everywhere else in lookalike, so this is the match they expect.
        """
        problems = CatalogProblems(images_without_row_kept=not require_metadata)
        images: dict[str, Path] = {}
        keys: dict[str, str] = {}       # a bucket's photos by key below the folder (for a CSV's image column)
        if photos is not None and is_remote(photos):      # s3://, gs://: listed through pyarrow
            images, keys = remote_scan(str(photos), problems)
        elif photos is not None:
            images = scan_folder(Path(photos), problems, ignore={Path(metadata)} if metadata is not None else set())
        columns: list[str] = []
        rows: dict[str, dict[str, str | None]] = {}
        row_paths: dict[str, Path] = {}
        if metadata is not None:
            meta_path = Path(metadata)
            columns, rows, image_col = read_metadata(meta_path, problems, id_column=id_column,
                                                     image_column=image_column)
            if image_col:
                bases = ([Path(photos)] if photos is not None and not is_remote(photos) else []) + [meta_path.parent]
                row_paths = _row_paths(rows, image_col, bases, keys)
                columns = [c for c in columns if c != image_col]
        elif photos is None:
            raise CatalogError("give a photo folder, a metadata file, or both")
        products: list[Product] = []
        used: set[Path] = set()
        for pid, row in rows.items():  # metadata order first
            path = row_paths.get(pid) or images.get(pid)
            if path is not None:
                products.append(Product(pid, path, dict(row)))
                used.add(path)
            else:
                problems.rows_without_image.append(pid)
        for pid, path in images.items():  # then photos nobody described
            if path in used:
                continue
            if pid in rows:  # the row's own image path named another photo
                problems.duplicate_ids.append(f"{pid} ({PurePosixPath(str(path)).name}: the metadata's image was used)")
                continue
            if rows:
                problems.images_without_row.append(pid)
                if require_metadata:
                    continue
            products.append(Product(pid, path, {}))
        return cls(products, columns, problems)


def _row_paths(rows: dict[str, dict[str, str | None]], image_col: str, bases: list[Path],
               keys: dict[str, str] | None = None) -> dict[str, Path | str]:
    """Each row's image file, where its path (relative to one of `bases`, in order, or absolute) names one
    that exists, or (`keys`: a bucket folder's photos by key) one of the bucket's; the image column is removed
    from the rows."""
    found: dict[str, Path | str] = {}
    for pid, row in rows.items():
        rel = row.pop(image_col, None)
        if rel and keys and rel.replace("\\", "/").lstrip("/") in keys:
            found[pid] = keys[rel.replace("\\", "/").lstrip("/")]
        elif rel:
            path = next((b / rel for b in bases if (b / rel).is_file()), None)
            if path is not None:
                found[pid] = path
    return found


def scan_folder(folder: Path, problems: CatalogProblems, ignore: set[Path] = frozenset()) -> dict[str, Path]:
    """Image files below `folder` by id (file name without extension), in a stable order. Other files are
    listed in `problems.unread_files` (a `.svg` or `.tiff` a user expected to be indexed should not vanish
    silently), as are sub-folders that cannot be read (`problems.unreadable_folders`); hidden files and folders
    and the files in `ignore` (the metadata CSV) are passed over."""
    if not folder.is_dir():
        raise CatalogError(f"{folder}: not a folder of photos")
    ignored = {p.resolve() for p in ignore}
    ignored_names = {p.name for p in ignored}
    found: dict[str, Path] = {}

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else folder
        if where == folder:
            raise CatalogError(f"{folder}: cannot read the folder ({exc.strerror or exc})")
        problems.unreadable_folders.append(str(where.relative_to(folder)))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or (name in ignored_names and path.resolve() in ignored):
                continue
            if not is_image_file(path):
                problems.unread_files.append(str(path.relative_to(folder)))
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
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read metadata ({exc.strerror or exc})") from None
    _check_utf8(path, raw[:4096])
    text = raw.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise CatalogError(f"{path}: empty metadata file")
    try:
        header = next(csv.reader([lines[0]]))
    except csv.Error as exc:
        raise CatalogError(f"{path}: cannot read its header line ({exc})") from None
    header = [h.strip() for h in header]
    kaggle = header == KAGGLE_COLUMNS
    id_col = id_column or next((h for h in header if h.lower() in ID_COLUMNS), None)
    if id_column and id_column not in header:
        raise CatalogError(f"no id column {id_column!r} in {path}; its columns are {listed(header)}")
    if id_col is None:
        raise CatalogError(f"no id column in {path} (looked for {', '.join(ID_COLUMNS)}); name it with "
                           f"--id-column; its columns are {listed(header)}")
    img_col = image_column or next((h for h in header if h.lower() in IMAGE_COLUMNS), None)
    if image_column and image_column not in header:
        raise CatalogError(f"{path}: no image column {image_column!r}; columns are {listed(header)}")
    id_pos = header.index(id_col)
    records = (enumerate(_split_kaggle(lines[1:], len(header)), start=2) if kaggle
               else _csv_records(lines[1:], problems))
    rows: dict[str, dict[str, str | None]] = {}
    for lineno, fields in records:
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


def _check_utf8(path: Path, head: bytes) -> None:
    """Refuse a metadata file that is not UTF-8 text, judged by its first bytes: a UTF-16 CSV (Excel's "Unicode
    text") or a photo given as --metadata would otherwise be read as one line of garbage and reported as having
    "no id column", with its bytes printed as the column names."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
            b"\0" in head and (head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4)):
        raise CatalogError(f"{path} is not a UTF-8 CSV (looks like UTF-16): save it as CSV UTF-8")
    if b"\0" in head:
        raise CatalogError(f"{path} is not a UTF-8 CSV (looks like binary: a photo, a spreadsheet or an archive?)")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a character cut at 4 KB is fine
    except UnicodeDecodeError as exc:
        kind = "binary" if any(b < 32 and b not in b"\t\n\r\f" for b in head) else "text in another encoding"
        raise CatalogError(f"{path} is not a UTF-8 CSV (looks like {kind}: byte 0x{head[exc.start]:02x} at "
                           f"offset {exc.start}); save it as CSV UTF-8") from None


def _csv_records(lines: list[str], problems: CatalogProblems):
    """(line number, fields) of each record after the header. A record the csv module cannot read (a field over
    its limit of 131,072 characters: an unclosed quote swallowing the lines after it) is listed in
    `problems.bad_rows` with its line number, and reading goes on after it."""
    reader = csv.reader(io.StringIO("\n".join(lines)))
    while True:
        start = reader.line_num + 2
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = (f"a field over {csv.field_size_limit():,} characters (an unclosed quote?)"
                      if "field limit" in str(exc) else str(exc))
            problems.bad_rows.append(f"line {start}: {reason}")
            if reader.line_num + 2 == start:
                return          # nothing was consumed: reading on would raise the same error forever
            continue
        yield start, fields


def _value(raw: str) -> str | None:
    value = raw.strip()
    return None if not value or value.lower() in MISSING else value


def _split_kaggle(lines: list[str], n_fields: int):
    """styles.csv rows: the last field (productDisplayName) may hold unquoted commas, so split on the first
    n-1 commas only."""
    for line in lines:
        yield line.split(",", n_fields - 1) if line.strip() else []
