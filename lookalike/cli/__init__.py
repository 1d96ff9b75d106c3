"""The `lookalike` command: a thin shell over the library (see `lookalike --help`)."""

from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
