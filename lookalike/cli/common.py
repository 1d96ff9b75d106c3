"""What every command shares: consoles, error handling, the closing summary."""

from __future__ import annotations

import functools
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import LookalikeError
from ..images import IMAGE_EXTENSIONS, image_files
from ..index import BuildReport

out = Console()                     # results: stdout, so they can be piped
err = Console(stderr=True)          # progress, summaries and errors: stderr


def cli_errors(func):
    """User errors become one red line and exit code 2 (no traceback); Ctrl-C exits 130. One line as written
    (soft_wrap: the terminal folds it, rich does not break it), so a path in it can be copied and a log grepped."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except LookalikeError as exc:
            # escaped: a message naming 'lookalike[train]' or a file 'a[1].jpg' is not read as markup
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
    for line in report.problems.lines(verb):
        err.print(f"  [yellow]note[/] {line}", highlight=False)


def photo_files(inputs) -> list[Path]:
    """Photos named on a command line (files as given, folders expanded), or an error naming the input at fault.
    `images.image_files` takes a path that does not exist for a file, which would then be "skipped" as one
    unreadable photo and leave an empty table with exit code 0."""
    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:
        raise LookalikeError(f"{missing[0]}: no such file or folder")
    files = image_files(inputs)
    if not files:
        raise LookalikeError(f"no photos in {', '.join(map(str, inputs))} "
                             f"(lookalike reads {', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)})")
    return files


def nothing_read(skipped: list[tuple[str, str]]) -> None:
    """Fail when photos were given but none could be read: there is no result to show."""
    first = f"; first error: {skipped[0][1]}" if skipped else ""
    raise LookalikeError(f"none of the {len(skipped)} photo(s) could be read{first}")


def nothing_added(report: BuildReport, photos: Path) -> None:
    """Fail, with the reason, when `add` added nothing: a user who expected new products in the index must not
    see exit code 0."""
    if report.already_indexed and not report.skipped:
        reason = f"all {len(report.already_indexed):,} products are already in the index (--replace re-embeds them)"
    elif report.skipped:
        reason = f"none of the {len(report.skipped):,} new photos could be read"
    else:
        reason = f"no photos found in {photos}" + "".join(f"; {line}" for line in report.problems.lines("added"))
    raise LookalikeError(f"nothing added: {reason}")
