"""What every command shares: consoles, error handling, the closing summary."""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.table import Table

from ..errors import LookalikeError
from ..index import BuildReport

out = Console()                     # results: stdout, so they can be piped
err = Console(stderr=True)          # progress, summaries and errors: stderr


def cli_errors(func):
    """User errors become one red line and exit code 2 (no traceback); Ctrl-C exits 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except LookalikeError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted; nothing was changed[/]")
            raise typer.Exit(130) from None

    return wrapper


def print_report(report: BuildReport, verb: str = "indexed") -> None:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row(f"[green]{verb}[/]", f"{report.indexed:,}")
    if report.already_indexed:
        table.add_row("already in the index (kept)", f"{len(report.already_indexed):,}")
    table.add_row("skipped (unreadable)", f"{len(report.skipped):,}")
    table.add_row("time", f"{report.seconds:.1f} s ({report.images_per_second:,.0f} images/s)")
    err.print(table)
    for pid, reason in report.skipped[:10]:
        err.print(f"  [yellow]skipped[/] {pid}: {reason}", highlight=False)
    if len(report.skipped) > 10:
        err.print(f"  ... and {len(report.skipped) - 10} more")
    for line in report.problems.lines():
        err.print(f"  [yellow]note[/] {line}", highlight=False)
