"""Photos on object storage: `s3://` and `gs://` folders, through pyarrow's file systems (the export extra).

A photo folder given as a URL (`lookalike embed s3://shop/photos/ --out vectors/`, `lookalike index s3://...`) is
listed through pyarrow, and each photo is read as bytes and decoded exactly as a local one (`images.load_image`).
A photo's location stays its URL, with the folder URL's query string (endpoint, region):
`s3://shop/photos/dress/1.jpg?region=eu-west-1`, so the Parquet shards, an index, `serve` and the Ray workers
read it from there again. Credentials come from the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
GOOGLE_APPLICATION_CREDENTIALS, or the machine's role), never from the URL: the URL is stored with every photo,
so a key in it is refused.
"""

from __future__ import annotations

import atexit
import threading
import urllib.parse
from pathlib import Path, PurePosixPath

from .errors import CatalogError, ImageError, LookalikeError

SCHEMES = ("s3://", "gs://", "gcs://")
#: query parameters of pyarrow's file system URLs that are secrets
SECRETS = {"access_key", "secret_key", "session_token"}

_filesystems: dict[tuple, object] = {}      # a file system, or the error opening it raised
_lock = threading.Lock()


def is_remote(path) -> bool:
    return isinstance(path, str) and path.lower().startswith(SCHEMES)


def location(path) -> str | None:
    """Where a photo is, as stored: its URL, or a local path made absolute."""
    if path is None:
        return None
    return path if is_remote(path) else str(Path(path).absolute())


def as_source(path: str | None):
    """A stored location back as what `images.load_image` reads: the URL itself, or a local `Path`."""
    if not path:
        return None
    return path if is_remote(path) else Path(path)


def shown(url: str) -> str:
    """A URL for messages: without its query string (nor anything before an @ in its host part)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _filesystem(url: str) -> tuple[object, str, urllib.parse.SplitResult]:
    """The pyarrow file system of `url` (one per bucket and settings, kept), the path in it, and the URL's parts."""
    try:
        from pyarrow import fs
    except ImportError:
        raise LookalikeError(f"{shown(url)}: photos on object storage need pyarrow: pip install "
                             "'lookalike[export]'") from None
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    if SECRETS & set(query) or "@" in parts.netloc:
        raise CatalogError(f"{shown(url)}: credentials do not go in the URL (it is stored with every photo); set "
                           "them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)")
    if parts.fragment:
        raise CatalogError(f"{shown(url)}#{parts.fragment}: a '#' in a bucket URL must be written %23")
    key = (parts.scheme.lower(), parts.netloc, parts.query)
    found = _filesystems.get(key)
    if found is None:
        with _lock:
            if key not in _filesystems:
                base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
                try:
                    _filesystems[key] = fs.FileSystem.from_uri(base)[0]
                except (OSError, ValueError) as exc:
                    _filesystems[key] = CatalogError(f"{shown(url)}: cannot open ({_reason(exc)})")
                if len(_filesystems) == 1:
                    atexit.register(_filesystems.clear)     # before pyarrow's own exit (arrow issue 41087)
            found = _filesystems[key]
    if isinstance(found, Exception):
        raise found
    return found, parts.netloc + urllib.parse.unquote(parts.path), parts


def scan(url: str, problems) -> tuple[dict[str, str], dict[str, str]]:
    """Image files below the folder `url` by id (file name without extension), as `catalog.scan_folder` does for
    a local folder (other files and duplicate ids are listed in `problems`); and all of them by key below the
    folder (`dress/1.jpg`: what a metadata CSV's image column names)."""
    filesystem, root, parts = _filesystem(url)
    from pyarrow import fs as pafs

    from .images import IMAGE_EXTENSIONS

    root = root.rstrip("/")
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except FileNotFoundError:
        raise CatalogError(f"{shown(url)}: no such folder") from None
    except OSError as exc:
        raise CatalogError(f"{shown(url)}: cannot list the photos ({_reason(exc)})") from None
    found: dict[str, str] = {}
    keys: dict[str, str] = {}
    suffix = f"?{parts.query}" if parts.query else ""
    files = [(PurePosixPath(i.path).relative_to(root), i) for i in infos if i.type == pafs.FileType.File]
    # in os.walk's order, as a local folder is read: a folder's own files, then its sub-folders, each sorted
    for relative, info in sorted(files, key=lambda f: [(1, d) for d in f[0].parts[:-1]] + [(0, f[0].name)]):
        if any(part.startswith(".") for part in relative.parts):
            continue
        if relative.suffix.lower() not in IMAGE_EXTENSIONS:
            problems.unread_files.append(str(relative))
            continue
        keys[str(relative)] = f"{parts.scheme}://{urllib.parse.quote(info.path)}{suffix}"
        if relative.stem in found:
            problems.duplicate_ids.append(f"{relative.stem} ({relative})")
            continue
        found[relative.stem] = keys[str(relative)]
    return found, keys


def read_bytes(url: str, max_bytes: int) -> bytes:
    """The bytes of the photo at `url`, or an `ImageError` (missing, empty, over `max_bytes`, unreadable)."""
    filesystem, path, _ = _filesystem(url)
    try:
        with filesystem.open_input_file(path) as fh:
            size = fh.size()
            if size == 0:
                raise ImageError(f"{shown(url)}: empty file")
            if size > max_bytes:
                raise ImageError(f"{shown(url)}: {size / 2**20:,.0f} MB is over the limit of "
                                 f"{max_bytes / 2**20:.0f} MB for a photo")
            return fh.readall()
    except FileNotFoundError:
        raise ImageError(f"{shown(url)}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{shown(url)}: cannot read ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
