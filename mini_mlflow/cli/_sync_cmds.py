"""``mini-mlflow sync``, ``export`` and ``import``: move runs to and from MLflow."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

import click
from click.core import ParameterSource

from .._errors import MiniMlflowError
from ._common import SafePath, fail, root_option
from ._render import clean

_SELECTION_HELP = "name runs, --experiment NAME|ID (repeatable) or --all"


def _fail(message: str) -> None:
    fail(message)


def _targets(root: str, run_ids: tuple[str, ...], experiments: tuple[str, ...], all_runs: bool) -> list[Any]:
    from ..sync import select_runs

    if not (run_ids or experiments or all_runs):
        raise click.UsageError(f"nothing selected: {_SELECTION_HELP}")
    try:
        return select_runs(root, run_ids, experiments, all_runs)
    except MiniMlflowError as exc:
        _fail(str(exc))
        raise  # unreachable


def _print_summary(summary: Any, as_json: bool, dry_run: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, default=str))
        return
    for report in summary.runs:
        if dry_run:
            p = report.pending
            click.echo(
                f"{report.run_id}  [{report.experiment}]  would send {p.get('params', 0)} params, "
                f"{p.get('tags', 0)} tags, {p.get('metric_bytes', 0):,} bytes of metric lines, "
                f"{p.get('results', 0)} results, {p.get('artifacts', 0)} artifacts"
                + (", the status" if p.get("status") else "")
            )
            continue
        state = "up to date" if report.up_to_date else (report.skipped or "synced")
        click.echo(
            f"{report.run_id} → {report.remote_run_id or '-'}  [{report.experiment}]  {state}: "
            f"{report.points:,} points, {report.params} params, {report.tags} tags, "
            f"{report.results} results, {report.artifacts} artifacts"
            + (f", status {report.status}" if report.status else "")
        )
        for error in report.errors:
            click.echo(f"  error: {error}", err=True)
        for note in report.skipped_results:
            click.echo(f"  skipped: {note}", err=True)
    if not dry_run:
        click.echo(
            f"{len(summary.runs)} runs, {summary.total('points'):,} points, "
            f"{summary.bytes_sent:,} bytes in {summary.requests} requests ({summary.retries} retries), "
            f"{len(summary.errors)} errors → {summary.server}"
        )
    if summary.fatal:
        click.echo(f"error: {summary.fatal}", err=True)


@click.command("sync")
@click.argument("run_ids", nargs=-1)
@click.option("--experiment", "-e", "experiments", multiple=True, help="Experiment name or id (repeatable).")
@click.option("--all", "all_runs", is_flag=True, help="Every run of the store.")
@click.option(
    "--to",
    "url",
    envvar="MINI_MLFLOW_SYNC_URL",
    metavar="URL",
    help="MLflow tracking server (default MINI_MLFLOW_SYNC_URL).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would be sent to the --to server, from what this store recorded sending there; "
    "contact no server.",
)
@click.option("--coalesce", is_flag=True, help="Send only the last value of a metric at each step.")
@click.option("--watch", is_flag=True, help="Keep syncing live runs until interrupted.")
@click.option(
    "--interval",
    type=click.FloatRange(0.01, 86_400),
    default=1.0,
    show_default=True,
    help="Seconds between --watch passes.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.01, 86_400),
    default=30.0,
    show_default=True,
    help="Seconds to wait for each answer (the whole answer; uploads get time for their size too).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=7,
    show_default=True,
    help="Retries of a failed request.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@root_option
@click.pass_obj
def sync_cmd(
    obj: dict[str, Any],
    run_ids: tuple[str, ...],
    experiments: tuple[str, ...],
    all_runs: bool,
    url: str | None,
    dry_run: bool,
    coalesce: bool,
    watch: bool,
    interval: float,
    timeout: float,
    retries: int,
    as_json: bool,
) -> None:
    """Upload runs to an MLflow tracking server, incrementally (a rerun sends only what is new).

    Credentials and TLS come from MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD,
    MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH. Exit status 1 if anything failed.
    """
    from ..sync import MlflowRestClient, SyncError
    from ..sync import watch as watch_loop

    if not url:
        # A dry run too: what is still to send is counted against what this store sent to that server.
        raise click.UsageError(
            "no server: pass --to URL or set MINI_MLFLOW_SYNC_URL"
            + (" (a dry run counts what that server has not been sent yet)" if dry_run else "")
        )
    root = obj["root"]
    targets = _targets(root, run_ids, experiments, all_runs)
    try:
        client = MlflowRestClient(url, timeout=timeout, max_retries=retries, on_retry=_say_retry)
    except SyncError as exc:
        source = click.get_current_context().get_parameter_source("url")
        _fail(str(exc) + (" (from MINI_MLFLOW_SYNC_URL)" if source == ParameterSource.ENVIRONMENT else ""))
    stop = client.stop
    with client:
        if watch:
            summary = _watch(
                client, root, run_ids, experiments, all_runs, interval, coalesce, stop, watch_loop
            )
        else:
            summary = _one_pass(client, root, targets, coalesce, dry_run, as_json)
    _print_summary(summary, as_json, dry_run)
    run_errors = any(report.errors for report in summary.runs)
    sys.exit(1 if run_errors or (summary.fatal and summary.fatal_kind != "interrupted") else 0)


def _say_retry(message: str) -> None:
    """A request is being retried: say so on stderr (a stalled server otherwise looks like a hang)."""
    click.echo(f"{time.strftime('%H:%M:%S')} retrying: {clean(message)}", err=True)


def _one_pass(
    client: Any, root: str, targets: list[Any], coalesce: bool, dry_run: bool, as_json: bool
) -> Any:
    from ..sync import SyncAgent

    agent = SyncAgent(root, client, coalesce=coalesce, dry_run=dry_run)
    if dry_run or as_json or not sys.stderr.isatty():
        return agent.sync(targets)
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    total = agent.pending_bytes(targets)
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress("[progress.description]{task.description}", *columns, transient=True) as progress:
        task = progress.add_task("metrics", total=total or None)
        agent.on_progress = lambda n: progress.advance(task, n)
        return agent.sync(targets)


def _watch(
    client: Any,
    root: str,
    run_ids: tuple[str, ...],
    experiments: tuple[str, ...],
    all_runs: bool,
    interval: float,
    coalesce: bool,
    stop: threading.Event,
    watch_loop: Any,
) -> Any:
    from ..sync import SyncAgent

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()  # the loop ends after the request in flight; a second Ctrl-C aborts at once
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def on_pass(summary: Any) -> None:
        for report in summary.runs:
            sent = (report.points, report.params, report.tags, report.results, report.artifacts)
            if any(sent) or report.status:
                click.echo(
                    f"{time.strftime('%H:%M:%S')} {report.run_id}: +{report.points} points, "
                    f"+{report.params} params, +{report.tags} tags, +{report.results} results, "
                    f"+{report.artifacts} artifacts" + (f", status {report.status}" if report.status else ""),
                )
            for error in report.errors:
                click.echo(f"{time.strftime('%H:%M:%S')} {report.run_id}: error: {error}", err=True)
        if summary.fatal and summary.fatal_kind == "unreachable":
            click.echo(f"{time.strftime('%H:%M:%S')} {summary.fatal} (retrying)", err=True)

    agent = SyncAgent(root, client, coalesce=coalesce)
    click.echo(f"watching → {client.url} every {interval:g}s (Ctrl-C to stop)", err=True)
    return watch_loop(agent, run_ids, experiments, all_runs, interval=interval, stop=stop, on_pass=on_pass)


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(["mlflow"]), required=True, help="Layout to write.")
@click.argument("dest", type=SafePath(file_okay=False))
@click.argument("run_ids", nargs=-1)
@click.option("--experiment", "-e", "experiments", multiple=True, help="Experiment name or id (repeatable).")
@click.option("--all", "all_runs", is_flag=True, help="Every run of the store.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@root_option
@click.pass_obj
def export_cmd(
    obj: dict[str, Any],
    fmt: str,
    dest: str,
    run_ids: tuple[str, ...],
    experiments: tuple[str, ...],
    all_runs: bool,
    as_json: bool,
) -> None:
    """Write runs as an MLflow FileStore in DEST (read it with MLFLOW_ALLOW_FILE_STORE=true)."""
    from ..interop import export_mlflow

    targets = _targets(obj["root"], run_ids, experiments, all_runs)
    try:
        report = export_mlflow(obj["root"], dest, targets)
    except (MiniMlflowError, OSError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(vars(report), indent=2))
    else:
        click.echo(
            f"exported {report.runs} runs of {report.experiments} experiments "
            f"({report.points:,} points, {report.results} results, {report.artifacts} artifacts; "
            f"{report.duplicates} repeated "
            f"identical points written once"
            + (f", {report.superseded} points superseded by a resume left out" if report.superseded else "")
            + f") to {clean(report.dest)}"
        )
        for line in report.skipped:
            click.echo(f"  skipped: {clean(line)}", err=True)


@click.command("import")
@click.option("--format", "fmt", type=click.Choice(["mlflow"]), required=True, help="Layout to read.")
@click.argument("src", type=SafePath(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@root_option
@click.pass_obj
def import_cmd(obj: dict[str, Any], fmt: str, src: str, as_json: bool) -> None:
    """Copy the runs of the MLflow FileStore at SRC into this store (runs already here are kept)."""
    from ..interop import import_mlflow

    try:
        report = import_mlflow(src, obj["root"])
    except (MiniMlflowError, OSError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(vars(report), indent=2))
    else:
        click.echo(
            f"imported {report.runs} runs of {report.experiments} experiments "
            f"({report.points:,} points, {report.artifacts} artifacts; {report.existing} already here, "
            f"{report.skipped_lines} unreadable metric lines skipped) from {clean(report.source)}"
        )
        for line in report.skipped:
            click.echo(f"  skipped: {clean(line)}", err=True)
