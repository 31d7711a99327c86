"""The ``mini-mlflow`` command line (click + rich, imported only when the CLI runs)."""

from __future__ import annotations


def main() -> None:
    from ._main import cli

    cli()
