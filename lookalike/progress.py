"""Progress reporting for long work. Library functions take any object with `start` and `advance`;
the CLI passes a Rich progress bar, Python users may pass `RichProgress()` or nothing."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class NoProgress:
    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


class RichProgress:
    """A Rich progress bar with count, rate and time left; one task at a time."""

    def __init__(self, console=None, transient: bool = False):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as _Progress, TaskProgressColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)

        self._bar = _Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TaskProgressColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                              console=console, transient=transient)
        self._task = None

    def __enter__(self) -> "RichProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def start(self, total: int, description: str) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)
