"""The ``mini-mlflow`` click group; each command family lives in its own module, named below."""

from __future__ import annotations

import importlib
from typing import Any

import click

from .._version import __version__
from ._common import PointedUsageError, SafePath, one_line


def _one_line(exc: click.ClickException) -> click.ClickException:
    if isinstance(exc, PointedUsageError):  # its lines are escaped and short already; the caret needs them
        return exc
    text = one_line(exc.format_message())
    exc.format_message = lambda: text  # type: ignore[method-assign]
    return exc


#: Each command and where it lives (``module:attribute`` in this package). A command's module is
#: imported when that command runs, so ``mini-mlflow ls`` does not load sync, run or the UI (its whole
#: process on 10,000 runs: 190 -> 124 ms, medians of interleaved runs).
COMMANDS = {
    "compare": "_show_cmds:compare_cmd",
    "delete": "_lifecycle_cmds:delete_cmd",
    "doctor": "_doctor:doctor",
    "experiments": "_read_cmds:experiments_cmd",
    "export": "_sync_cmds:export_cmd",
    "gc": "_lifecycle_cmds:gc_cmd",
    "import": "_sync_cmds:import_cmd",
    "ls": "_read_cmds:ls_cmd",
    "restore": "_lifecycle_cmds:restore_cmd",
    "run": "_run_cmds:run",
    "show": "_show_cmds:show_cmd",
    "sync": "_sync_cmds:sync_cmd",
    "tail": "_show_cmds:tail_cmd",
    "ui": "_ui_cmd:ui_cmd",
}


class _Cli(click.Group):
    """The group: click's own usage errors are one line too, escaped and cut short like ours (`fail`).

    click echoes a bad value whole ("Invalid value for '-n': 'xxx…' is not a valid integer"): a
    100,000-character argument would come back as a 100,000-character line. The message is shortened
    where the error passes through the group (parsing its options, or the command's); click shows it.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        module, name = where.split(":")
        command: click.Command = getattr(importlib.import_module(f".{module}", __package__), name)
        return command

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            raise _one_line(exc) from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--root",
    envvar="MINI_MLFLOW_TRACKING_DIR",
    default="mlruns",
    show_default=True,
    type=SafePath(file_okay=False),
    help="Store root (also MINI_MLFLOW_TRACKING_DIR).",
)
@click.version_option(__version__, prog_name="mini-mlflow")
@click.pass_context
def cli(ctx: click.Context, root: str) -> None:
    """mini-mlflow: list, inspect, compare and sync runs of a mini_mlflow store."""
    ctx.obj = {"root": root}
