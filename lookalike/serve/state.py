"""The index a server answers from, swapped for a fresh one after every write (its own or another
process's), so requests in flight finish on the version they started with."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

from ..index import Index
from ..index.database import is_url
from ..index.store import MANIFEST

T = TypeVar("T")


class IndexHolder:
    """For a directory, the version loaded last; an index in PostgreSQL is live (`PgIndex` follows other
    processes' writes itself) and is the same object throughout."""

    def __init__(self, path: str | Path, check_every: float = 1.0):
        self.live = is_url(path)
        self.path = path if self.live else Path(path)
        self._index = Index.load(self.path).warm()
        self._stamp = self._manifest_stamp()
        self._checked = time.monotonic()
        self._check_every = check_every
        self._swap = threading.Lock()
        self._writes = threading.Lock()

    def _manifest_stamp(self):
        if self.live:
            return None
        try:
            st = os.stat(self.path / MANIFEST)
            return st.st_ino, st.st_mtime_ns
        except FileNotFoundError:
            return None

    @property
    def index(self) -> Index:
        """The current index; reloaded when the directory on disk changed (checked at most once a second)."""
        now = time.monotonic()
        if now - self._checked >= self._check_every:
            self._checked = now
            stamp = self._manifest_stamp()
            if stamp is not None and stamp != self._stamp:
                self._reload(stamp)
        return self._index

    def _reload(self, stamp=None) -> None:
        with self._swap:
            fresh = Index.load(self.path, model=self._index._model).warm()
            self._index, self._stamp = fresh, stamp or self._manifest_stamp()

    def write(self, change: Callable[[Index], T]) -> T:
        """Run `change` on a private copy of the index (the library's locked, atomic update), then swap the
        served index for the new version."""
        with self._writes:
            if self.live:          # a transaction in the database: every server sees it at once
                return change(self._index)
            result = change(Index.load(self.path, model=self._index._model))
            self._reload()
            return result
