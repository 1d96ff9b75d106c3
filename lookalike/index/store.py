"""Atomic directories: indexes (and model folders that `lookalike train --heads-only` writes).

Every write (build, add, remove) fills a temporary sibling directory and swaps it into place, so a crash or a
kill at any moment leaves either the old index or the new one, never a mix:

1. `.NAME.tmp-PID-XXXX/` is written and fsynced.
2. The live `NAME/` is renamed to `.NAME.old-XXXX/`, the temporary one to `NAME/`, and the old one removed.

If a crash falls between the two renames, `recover()` (run by every load and write) renames the old copy back;
a reader that may not write the parent folder cannot, and reads the old copy where it is (`stranded`).
Writers hold an exclusive lock (`.NAME.lock`) so that two updates never race; readers never lock: each
version of the directory is immutable once in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from ..errors import IndexStoreError
from ..files import sha256_file

MANIFEST = "manifest.json"
FORMAT = "lookalike-index"
VERSION = 1


def _siblings(target: Path, kind: str) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.{kind}-*"), key=lambda p: p.stat().st_mtime)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(target: Path) -> None:
    """Undo a swap interrupted between its two renames, and remove leftovers of dead writers.
    Does nothing while a writer holds the lock (its swap is not interrupted, only under way), nor when there
    are no leftovers: then it makes no lock file either (opening a missing index must leave nothing behind)."""
    lock = target.parent / f".{target.name}.lock"
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        return
    if not any(target.parent.glob(f".{target.name}.old-*")) and not any(target.parent.glob(f".{target.name}.tmp-*")):
        return
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            _recover_locked(target)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _recover_locked(target: Path) -> None:
    olds = _siblings(target, "old")
    if not target.exists() and olds:
        os.rename(olds[-1], target)
        olds = olds[:-1]
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in _siblings(target, "tmp"):
        try:
            pid = int(tmp.name.split("tmp-")[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if not pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def stranded(target: Path) -> Path | None:
    """The newest `.NAME.old-*` copy of a missing `target` that `recover` could not rename back because this
    process may not write the parent folder: a writer crashed between the two renames of a swap, and a reader
    without write access (a server run as another user) finds the data there rather than "no such index". That
    copy is the last complete version, immutable like any other. None when the parent is writable: then the
    state is a swap under way (or just recovered), and the caller looks again."""
    if os.access(target.parent, os.W_OK):
        return None
    olds = _siblings(target, "old")
    return olds[-1] if olds else None


def writable_folder(target: Path) -> None:
    """Refuse, before any work, an index path whose folder cannot be made or written: a folder below a regular
    file (`--out notes.txt/x.idx`) or a read-only one. Makes nothing (the writer's own steps make the folder)."""
    folder = resolved(target).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise IndexStoreError(f"cannot write {target}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise IndexStoreError(f"cannot write {target}: the folder {folder} is read-only (for this user)")


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    """OSErrors of a writer's own steps (making the folder, the lock, the temporary copy, the renames) as one
    line naming the index: a folder made read-only or a disk filled meanwhile is the user's to fix."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            writable_folder(target)     # names the file in the way
        raise IndexStoreError(f"cannot write {target}: {exc.strerror or exc}") from None


def resolved(target: Path) -> Path:
    """`target` with symbolic links resolved: writing through `current.idx -> catalog-v1.idx` locks and swaps
    catalog-v1.idx, and the link keeps pointing at it (never replaced by a real folder)."""
    return Path(os.path.realpath(target))


@contextlib.contextmanager
def write_lock(target: Path) -> Iterator[None]:
    target = resolved(target)
    with _writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fh = open(target.parent / f".{target.name}.lock", "a")
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


#: What write_atomically writes and may replace: (the file that marks such a folder, its name in errors, the error).
INDEX = (MANIFEST, "lookalike index", IndexStoreError)


def replaceable(target: Path, kind: tuple = INDEX) -> Path:
    """`target`, if it is absent or a folder of `kind` (holding its marker file); else `kind`'s error."""
    marker, what, error = kind
    if target.exists() and not (target / marker).is_file():
        raise error(f"{target} exists and is not a {what}; refusing to replace it")
    return target


def write_atomically(target: Path, fill: Callable[[Path], None], kind: tuple = INDEX) -> None:
    """Call `fill(tmpdir)` to write a complete folder of `kind` (an index by default), then put it in place of
    `target`. The caller holds `write_lock(target)`."""
    target = resolved(target)
    with _writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        _recover_locked(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; an index is as shareable as any folder
    try:
        fill(tmp)
        with _writing(target):
            _fsync_tree(tmp)
            if replaceable(target, kind).exists():
                old = target.parent / f".{target.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
            _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: Path) -> dict:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_manifest(folder: Path, manifest: dict) -> None:
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {"format": FORMAT, "version": VERSION, **manifest,
                "files": {name: file_digest(folder / name) for name in files}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_version(folder: Path, names: "tuple[str, ...] | Callable[[dict], tuple[str, ...]]", verify: bool = False,
                 attempts: int = 20) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the bytes of the files `names` (or `names(manifest)`) of ONE version of the index at
    `folder`: all are read
    through one handle on the directory, so a writer's swap between two reads cannot mix versions (each version's
    folder is immutable once in place). When the version is swapped out and removed mid-read, the read starts
    again on the new one (up to `attempts` times). Each file's size (and, with `verify`, checksum) must match the
    manifest's record of it.

    When `folder` is missing after a crash between the two renames of a swap, and this process may not write its
    parent to put it back (see `recover`), the version read is the newest `.NAME.old-*` copy (`stranded`)."""
    folder = Path(folder)
    for attempt in range(attempts):
        handle = _wait_for_version(folder)
        try:
            manifest = _check_manifest(folder, json.loads(_read_at(handle, MANIFEST, folder)), verify=False)
            wanted = names(manifest) if callable(names) else names     # which files may depend on the manifest
            data = {name: _read_at(handle, name, folder) for name in wanted}
            _check_files(folder, manifest, data, verify)
            for name, expected in manifest.get("files", {}).items():    # the files not read now are there too
                if name not in data:
                    if verify:
                        _check_files(folder, manifest, {name: _read_at(handle, name, folder)}, True)
                    elif os.stat(name, dir_fd=handle).st_size != expected["bytes"]:
                        raise IndexStoreError(f"{folder}: {name} has the wrong size (damaged); rebuild the index")
            return manifest, data
        except FileNotFoundError as exc:
            if attempt + 1 < attempts and _moved(handle, folder):
                continue            # this version was replaced and removed while being read: read the new one
            raise IndexStoreError(f"{folder}: {exc.filename or 'a file'} is missing; rebuild the index") from None
        except (ValueError, TypeError) as exc:      # not JSON, not UTF-8, or a field of the wrong type
            raise IndexStoreError(f"{folder / MANIFEST}: unreadable manifest ({exc})") from None
        except OSError as exc:                       # a file the user may not read, a folder named like a file
            raise IndexStoreError(f"{folder}: cannot read {exc.filename or 'a file'} ({exc.strerror})") from None
        finally:
            os.close(handle)
    raise IndexStoreError(f"{folder}: the index kept changing while being read; try again")


#: How long a reader waits for a writer to finish a swap (its two renames) before calling the index missing.
#: The gap is microseconds, unless the writer is descheduled between the renames on a busy machine.
SWAP_WAIT = 5.0


def _wait_for_version(folder: Path) -> int:
    """A handle on the directory of one version of `folder`, waiting (with growing sleeps, up to SWAP_WAIT
    seconds) while a writer is between the two renames of a swap."""
    deadline = time.monotonic() + SWAP_WAIT
    pause = 0.0005
    while True:
        recover(resolved(folder))
        handle = _open_version(folder, last=time.monotonic() > deadline)
        if handle is not None:
            return handle
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _open_version(folder: Path, last: bool) -> int | None:
    """A handle on the directory of `folder` (or of its stranded old copy); None to look again."""
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        target = resolved(folder)
        old = stranded(target)
        if old is not None:
            try:
                return os.open(old, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:   # a writer removed it after all (it had put a new version in place)
                pass
        if not last and (target.exists() or any(target.parent.glob(f".{target.name}.old-*"))):
            return None             # mid-swap: the old copy is aside, or the new one is already in place
        raise IndexStoreError(f"{folder}: no such index (build one with `lookalike index`)") from None
    except NotADirectoryError:
        raise IndexStoreError(f"{folder}: not an index (a file, not a folder)") from None
    except OSError as exc:
        raise IndexStoreError(f"{folder}: cannot open ({exc.strerror})") from None


def _read_at(handle: int, name: str, folder: Path) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=handle)
    try:
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def _moved(handle: int, folder: Path) -> bool:
    """True when `folder` is no longer the directory `handle` was opened on (a writer swapped a new version in)."""
    try:
        now = os.stat(folder)
    except FileNotFoundError:
        return True
    then = os.fstat(handle)
    return (now.st_dev, now.st_ino) != (then.st_dev, then.st_ino)


def _check_manifest(folder: Path, manifest, verify: bool) -> dict:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexStoreError(f"{folder}: not a lookalike index (format "
                              f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version", 0) > VERSION:
        raise IndexStoreError(f"{folder}: index format version {manifest['version']} is newer than this "
                              f"lookalike reads ({VERSION}); upgrade lookalike")
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, dict) and isinstance(v.get("bytes"), int)
                                              for v in files.values()):
        raise IndexStoreError(f"{folder / MANIFEST}: its list of files is damaged; rebuild the index")
    return manifest


def _check_files(folder: Path, manifest: dict, data: dict[str, bytes], verify: bool) -> None:
    import hashlib

    for name, content in data.items():
        expected = manifest["files"].get(name)
        if expected is None:
            raise IndexStoreError(f"{folder}: the manifest does not list {name}; rebuild the index")
        if len(content) != expected["bytes"]:
            raise IndexStoreError(f"{folder}: {name} has the wrong size (damaged); rebuild the index")
        if verify and hashlib.sha256(content).hexdigest() != expected.get("sha256"):
            raise IndexStoreError(f"{folder}: {name} fails its checksum (damaged); rebuild the index")


