"""File helpers shared by the model and index stores: checksums and JSON manifests with clear errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest_json(path: Path, error: type[Exception], what: str, fmt: str) -> dict:
    """Parse the JSON manifest at `path`, raising `error` (naming `what`) when missing, unreadable, or not
    of format `fmt`."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path.parent}: not a {what} (no {path.name})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise error(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise error(f"{path.parent}: not a {what} (format {raw.get('format') if isinstance(raw, dict) else None!r})")
    return raw
