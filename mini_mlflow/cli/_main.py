"""The ``mini-mlflow`` click group; each command family lives in its own module and is added below."""

from __future__ import annotations

import click

from .._version import __version__
from ._common import SafePath


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
