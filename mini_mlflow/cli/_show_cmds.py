"""``mini-mlflow show``, ``compare`` and ``tail``: one run in detail, runs side by side, live metrics."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from ..read._records import RunRecord
from ..store._layout import METRIC_SUFFIX, iso_from_ms
from ._common import exits_cleanly, fail, root_of, root_option, unknown_metric_error

MAX_ARTIFACTS = 50


def _load(root: str, ref: str) -> tuple[str, str, RunRecord | None, str | None, dict[str, list[Any]]]:
    """``(experiment_id, run_dir, record or None, broken reason, metric aggregates)`` of a run."""
    from ..read import _index
    from ..read._reader import resolve_run
    from ..read._resumes import summarize_without_superseded

    exp_id, rdir = resolve_run(root, ref)
    name = os.path.basename(rdir)
    index = _index.load_experiment(root, exp_id, only=name)
    record = index.records.get(name)
    if record is not None and record.stored_status == "RUNNING":
        record.status = _index.current_status(record)
    detail = index.details.get(name) or {}
    aggs = summarize_without_superseded(rdir, dict(detail.get("x", {})))
    return exp_id, rdir, record, index.broken.get(name), aggs


def _artifacts(rdir: str) -> list[tuple[str, int]]:
    base = os.path.join(rdir, "artifacts")
    out: list[tuple[str, int]] = []
    for current, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(current, d)))
        for name in sorted(files):
            path = os.path.join(current, name)
            if "#tmp" in name or os.path.islink(path):
                continue
            try:
                out.append((os.path.relpath(path, base).replace(os.sep, "/"), os.path.getsize(path)))
            except OSError:
                continue
    return out


def _summary(aggs: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    return {
        k: {"last": a[5], "min": a[6], "max": a[7], "count": a[4], "last_step": a[8]} for k, a in aggs.items()
    }


@click.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON.")
@click.option("--no-chart", is_flag=True, help="Skip the metric charts.")
@click.option(
    "-m", "--metric", "only_metrics", multiple=True, metavar="KEY", help="Chart only these metrics."
)
@root_option
@click.pass_context
@exits_cleanly
def show_cmd(
    ctx: click.Context, run: str, as_json: bool, no_chart: bool, only_metrics: tuple[str, ...]
) -> None:
    """Show a run (id or unique prefix): metadata, params, tags, metrics with charts, artifacts."""
    root = root_of(ctx)
    exp_id, rdir, record, broken, aggs = _load(root, run)
    if record is None:
        if as_json:
            click.echo(json.dumps({"path": rdir, "broken": broken}, indent=2))
        fail(f"run folder {rdir} cannot be read: {broken}")
    missing = [k for k in dict.fromkeys(only_metrics) if k not in aggs]
    if missing:
        raise unknown_metric_error(f"run {record.run_id}", missing, aggs)
    artifacts = _artifacts(rdir)
    if as_json:
        doc = record.to_dict()
        doc["metrics"] = _summary(aggs)
        doc["artifacts"] = [{"path": p, "size": s} for p, s in artifacts]
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    from rich.table import Table
    from rich.text import Text

    from ._chart import braille_chart, sample_points
    from ._common import experiment_names
    from ._render import (
        clean,
        fmt_duration,
        fmt_number,
        fmt_param,
        fmt_time,
        lower_is_better,
        make_console,
        plain,
        status_text,
    )

    console = make_console()
    title = plain(f"Run {record.run_id}", style="bold")
    if record.run_name:
        title.append("  ")
        title.append(plain(record.run_name, style="bold cyan"))
    console.print(title)
    info: list[tuple[str, Any]] = []
    status = status_text(record.status)
    if record.status == "CRASHED":
        status.append(" (RUNNING in meta.yaml, but no writer is alive)", style="dim")
    info.append(("status", status))
    exp_name = experiment_names(root).get(exp_id)
    info.append(("experiment", plain(f"{exp_name or '?'} ({exp_id})")))
    info.append(("start", plain(f"{fmt_time(record.start_time)} UTC" if record.start_time else "")))
    if record.end_time:
        info.append(("end", plain(f"{fmt_time(record.end_time)} UTC")))
    running = record.status == "RUNNING"
    duration = fmt_duration(record.start_time, record.end_time, running=running)
    if duration:  # unknown for a crashed run: it never wrote an end
        info.append(("duration", plain(duration)))
    if record.user:
        info.append(("user", plain(record.user)))
    if record.parent_run_id:
        info.append(("parent", plain(record.parent_run_id)))
    if record.lifecycle_stage != "active":
        info.append(("lifecycle", plain(record.lifecycle_stage, style="yellow")))
    if record.newer_format:
        note = f"version {record.newer_format} (newer than this reader): shown as far as understood"
        info.append(("format", plain(note, style="yellow")))
    info.append(("path", plain(rdir)))
    for label, value in info:
        line = Text(f"{label:<12}", style="dim")
        line.append_text(value)
        console.print(line)
    for title_text, values in (("Params", record.params), ("Tags", record.tags)):
        if not values:
            continue
        console.print(plain(f"\n{title_text}", style="bold"))
        key_width = min(30, max(len(clean(k)) for k in values))
        for key in sorted(values):
            line = plain(f"{clean(key):<{key_width}}", style="blue" if title_text == "Params" else "magenta")
            line.append("  ")
            line.append_text(plain(fmt_param(values[key])))
            console.print(line, overflow="fold")
    if aggs:
        console.print(plain("\nMetrics", style="bold"))
        table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
        for name in ("key", "last", "min", "max", "count", "last step"):
            table.add_column(name, justify="left" if name == "key" else "right", no_wrap=True)
        for key, a in sorted(aggs.items()):
            table.add_row(
                plain(key), fmt_number(a[5]), fmt_number(a[6]), fmt_number(a[7]), str(a[4]), fmt_number(a[8])
            )
        console.print(table)
        charted = [k for k in sorted(aggs) if not only_metrics or k in only_metrics]
        if not no_chart:
            from ..read._resumes import load_resumes

            width = min(console.width, 100)
            resumes = load_resumes(rdir)
            for key in charted[:8]:
                path = os.path.join(rdir, "metrics", key + METRIC_SUFFIX)
                points = sample_points(path, width * 2, resumes, key)
                if len(points) < 2:
                    continue
                hint = "lower is better" if lower_is_better(key) else "higher is better"
                console.print(plain(f"\n{key}  ({aggs[key][4]} points, {hint})", style="bold"))
                for chart_line in braille_chart(points, width, 6):
                    console.print(plain(chart_line, style="green"))
            if len(charted) > 8:
                console.print(
                    plain(f"({len(charted) - 8} more metrics not charted; use -m KEY)", style="dim")
                )
    if artifacts:
        console.print(plain(f"\nArtifacts ({len(artifacts)})", style="bold"))
        for path, size in artifacts[:MAX_ARTIFACTS]:
            console.print(plain(f"  {path}  ({_size(size)})"))
        if len(artifacts) > MAX_ARTIFACTS:
            console.print(plain(f"  ... and {len(artifacts) - MAX_ARTIFACTS} more"), style="dim")
    if record.warnings:
        console.print(plain("\nProblems found while reading", style="bold yellow"))
        for warning in record.warnings:
            console.print(plain(f"  {warning}"))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON.")
@click.option("--min", "minimize", multiple=True, metavar="KEY", help="Best of metric KEY is its minimum.")
@click.option("--max", "maximize", multiple=True, metavar="KEY", help="Best of metric KEY is its maximum.")
@root_option
@click.pass_context
@exits_cleanly
def compare_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    as_json: bool,
    minimize: tuple[str, ...],
    maximize: tuple[str, ...],
) -> None:
    """Compare runs side by side: params (differences highlighted), metrics last and best.

    Which way is best is guessed from the metric's name (loss, error, time, ... are minimised;
    the rest maximised) and shown beside it; --min/--max KEY say it outright.
    """
    if len(runs) < 2:
        raise click.UsageError("compare needs at least two runs")
    both = sorted(set(minimize) & set(maximize))
    if both:
        raise click.UsageError(f"metric {both[0]!r} is given to both --min and --max")
    root = root_of(ctx)
    loaded = []
    for ref in runs:
        _, rdir, record, broken, aggs = _load(root, ref)
        if record is None:
            fail(f"run folder {rdir} cannot be read: {broken}")
        loaded.append((record, aggs))
    from ._render import fmt_number, fmt_param, lower_is_better

    params = sorted({k for r, _ in loaded for k in r.params})
    metrics = sorted({k for _, a in loaded for k in a})
    # A key some runs lack is fine (their cell shows "—"); one that none has is a typo.
    missing = [k for k in dict.fromkeys(minimize + maximize) if k not in metrics]
    if missing:
        raise unknown_metric_error(f"any of the {len(loaded)} runs", missing, metrics)
    low_keys = {k for k in metrics if k in minimize or (k not in maximize and lower_is_better(k))}
    if as_json:
        doc = {
            "runs": [r.run_id for r, _ in loaded],
            "params": {k: [r.params.get(k) for r, _ in loaded] for k in params},
            "metrics": {k: [_summary({k: a[k]})[k] if k in a else None for _, a in loaded] for k in metrics},
            "best_is": {k: "min" if k in low_keys else "max" for k in metrics},
        }
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    from rich.table import Table
    from rich.text import Text

    from ._render import make_console, plain, short_id

    console = make_console()
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    table.add_column("", no_wrap=True)
    for r, _ in loaded:
        table.add_column(plain(f"{short_id(r.run_id)} {r.run_name or ''}".strip()), overflow="fold")
    table.add_row(Text("params", style="bold"), *["" for _ in loaded])
    for key in params:
        values = [fmt_param(r.params[key]) if key in r.params else "—" for r, _ in loaded]
        differs = len(set(values)) > 1
        marker = Text("≠ ", style="bold yellow") if differs else Text("  ")
        table.add_row(
            marker + plain(key), *[plain(v, style="bold yellow" if differs else "") for v in values]
        )
    table.add_row(Text("metrics (last / best)", style="bold"), *["" for _ in loaded])
    for key in metrics:
        low = key in low_keys
        bests = [(a[key][6] if low else a[key][7]) if key in a else None for _, a in loaded]
        finite = [b for b in bests if b is not None and b == b]
        winner = (min(finite) if low else max(finite)) if finite else None
        cells = []
        for (_, aggs), best in zip(loaded, bests, strict=True):
            if key not in aggs:
                cells.append(plain("—"))
                continue
            cell = plain(f"{fmt_number(aggs[key][5])} / {fmt_number(best)}")
            if best is not None and best == winner and len(finite) > 1:
                cell.stylize("bold green")
                cell.append(" ★", style="bold green")
            cells.append(cell)
        table.add_row(plain(f"  {key} ({'min' if low else 'max'})"), *cells)
    console.print(table)


@click.command("tail")
@click.argument("run")
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new points until the run ends (Ctrl-C stops)."
)
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(0, 100_000),
    default=10,
    show_default=True,
    help="Points per metric to show first.",
)
@click.option("-m", "--metric", "only_metrics", multiple=True, metavar="KEY", help="Only these metrics.")
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 60),
    default=0.5,
    show_default=True,
    help="Seconds between polls with -f.",
)
@root_option
@click.pass_context
@exits_cleanly
def tail_cmd(
    ctx: click.Context, run: str, follow: bool, lines: int, only_metrics: tuple[str, ...], interval: float
) -> None:
    """Print the latest metric points of a run; with -f, follow them as they are written."""
    from ..read import _index
    from ..read._reader import heartbeat_state, parse_metric_lines, resolve_run
    from ..store._files import open_binary
    from ..store._layout import walk_keys
    from ..store._meta import read_meta_file
    from ._render import clean, fmt_number

    root = root_of(ctx)
    _, rdir = resolve_run(root, run)
    folder = os.path.join(rdir, "metrics")
    offsets: dict[str, int] = {}
    known = walk_keys(folder, METRIC_SUFFIX)[0]
    missing = [k for k in dict.fromkeys(only_metrics) if k not in known]
    if missing:
        raw, _ = read_meta_file(os.path.join(rdir, "meta.yaml"))
        live = (raw or {}).get("status") == "RUNNING" and heartbeat_state(rdir, raw or {}) != "crashed"
        if not (follow and live):
            raise unknown_metric_error(f"run {os.path.basename(rdir)}", missing, known)
        # A live run may log it later: followed, its points are printed when they come.
        which = ", ".join(repr(clean(k)) for k in missing)
        click.echo(f"-- not logged yet: {which}; following the run until it is", err=True)

    def emit(key: str, data: bytes) -> None:
        history = parse_metric_lines(data)
        for step, value, stamp in zip(history.steps, history.values, history.timestamps, strict=True):
            when = (iso_from_ms(stamp) or "")[11:19]
            click.echo(f"{when}  {clean(key)}  step {step}  {fmt_number(value)}")

    def poll(first: bool) -> None:
        keys, _ = walk_keys(folder, METRIC_SUFFIX)
        for key in keys:
            if only_metrics and key not in only_metrics:
                continue
            path = os.path.join(folder, key + METRIC_SUFFIX)
            try:
                with open_binary(path) as f:
                    f.seek(offsets.get(key, 0))
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n")
            if end < 0:
                continue
            chunk = data[: end + 1]
            offsets[key] = offsets.get(key, 0) + end + 1
            if first:
                chunk = b"\n".join(chunk.split(b"\n")[-lines - 1 :]) if lines else b""
            if chunk.strip():
                emit(key, chunk)
        sys.stdout.flush()

    poll(first=True)
    if not follow:
        return
    try:
        while True:
            time.sleep(interval)
            poll(first=False)
            raw, _ = read_meta_file(os.path.join(rdir, "meta.yaml"))
            status = str((raw or {}).get("status"))
            if status in _index.TERMINAL:
                poll(first=False)
                click.echo(f"-- run ended: {status}", err=True)
                return
            if status == "RUNNING" and heartbeat_state(rdir, raw or {}) == "crashed":
                click.echo("-- run crashed: RUNNING but no writer is alive", err=True)
                sys.exit(1)
    except KeyboardInterrupt:
        return
