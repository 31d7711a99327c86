"""The ``mini-mlflow`` click group; each command family lives in its own module and is added below."""

from __future__ import annotations

from typing import Any

import click

from .._version import __version__
from ._common import SafePath, one_line


def _one_line(exc: click.ClickException) -> click.ClickException:
    text = one_line(exc.format_message())
    exc.format_message = lambda: text  # type: ignore[method-assign]
    return exc


class _Cli(click.Group):
    """The group: click's own usage errors are one line too, escaped and cut short like ours (`fail`).

    click echoes a bad value whole ("Invalid value for '-n': 'xxx…' is not a valid integer"): a
    100,000-character argument would come back as a 100,000-character line. The message is shortened
    where the error passes through the group (parsing its options, or the command's); click shows it.
    """

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


# Command families register themselves here (one import and one add_command line each).
from ._sync_cmds import export_cmd, import_cmd, sync_cmd  # noqa: E402

cli.add_command(sync_cmd)
cli.add_command(export_cmd)
cli.add_command(import_cmd)

from ._run_cmds import doctor, run  # noqa: E402

cli.add_command(run)
cli.add_command(doctor)

from ._lifecycle_cmds import delete_cmd, gc_cmd, restore_cmd  # noqa: E402
from ._read_cmds import experiments_cmd, ls_cmd  # noqa: E402
from ._show_cmds import compare_cmd, show_cmd, tail_cmd  # noqa: E402

for _command in (ls_cmd, show_cmd, experiments_cmd, compare_cmd, tail_cmd, delete_cmd, restore_cmd, gc_cmd):
    cli.add_command(_command)

from ._ui_cmd import ui_cmd  # noqa: E402

cli.add_command(ui_cmd)
