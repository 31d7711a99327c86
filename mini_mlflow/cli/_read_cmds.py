"""``mini-mlflow ls`` and ``experiments``: runs and experiments as tables, JSON or CSV."""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Any

import click

from .._errors import InvalidInputError, NotFoundError
from ..read._records import RunRecord, SearchResult
from ..store._layout import iso_from_ms
from ._common import (
    exits_cleanly,
    experiment_names,
    pointed_usage_error,
    resolve_experiment,
    root_of,
    root_option,
)

DEFAULT_LIMIT = 50


def _default_experiment(root: str) -> list[str]:
    """The experiment named by MINI_MLFLOW_EXPERIMENT_NAME/ID, else the one with the newest run."""
    from ..read import _index

    for var in ("MINI_MLFLOW_EXPERIMENT_ID", "MINI_MLFLOW_EXPERIMENT_NAME"):
        if os.environ.get(var):
            try:
                return [resolve_experiment(root, os.environ[var])]
            except NotFoundError as exc:
                raise NotFoundError(f"{exc} (from {var})") from None
    ids = _index.experiment_ids(root)
    if len(ids) <= 1:
        return ids
    newest: tuple[int, str] | None = None
    for exp_id in ids:
        start = _index.load_experiment(root, exp_id).newest_start()
        if start is not None and (newest is None or start > newest[0]):
            newest = (start, exp_id)
    return [newest[1] if newest else ids[0]]


def _varying(records: list[RunRecord], attr: str) -> tuple[list[str], list[str]]:
    """Keys whose values differ among the runs that have them, and keys only some runs have."""
    seen: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for r in records:
        for key, value in getattr(r, attr).items():
            seen.setdefault(key, set()).add(json.dumps(value, sort_keys=True, default=str))
            counts[key] = counts.get(key, 0) + 1
    if len(records) <= 1:
        return sorted(seen), []
    differ = sorted(k for k, values in seen.items() if len(values) > 1)
    partial = sorted(k for k, values in seen.items() if len(values) == 1 and counts[k] < len(records))
    return differ, partial


@click.command("ls")
@click.option(
    "-e", "--experiment", "experiments", multiple=True, metavar="NAME|ID", help="Experiment(s) to list."
)
@click.option("--all", "all_experiments", is_flag=True, help="List every experiment.")
@click.option(
    "--filter",
    "filter_string",
    default="",
    metavar="FILTER",
    help="e.g. \"metrics.acc > 0.9 AND params.lr = '0.01'\".",
)
@click.option(
    "--order-by",
    "order_by",
    multiple=True,
    metavar="KEY [ASC|DESC]",
    help="e.g. 'metrics.acc DESC' (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 50_000),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Most runs to show.",
)
@click.option("--deleted", is_flag=True, help="List deleted runs instead of active ones.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with every param and metric.")
@root_option
@click.pass_context
@exits_cleanly
def ls_cmd(
    ctx: click.Context,
    experiments: tuple[str, ...],
    all_experiments: bool,
    filter_string: str,
    order_by: tuple[str, ...],
    limit: int,
    deleted: bool,
    as_json: bool,
    as_csv: bool,
) -> None:
    """List runs: id, name, status (crashed runs shown as such), start, duration, and the params and
    metrics that vary across the listed runs. Broken run folders are listed after the table."""
    from ..read._filter import FilterSyntaxError
    from ..read._index import recovering
    from ..read._search import find

    root = root_of(ctx)
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if all_experiments and experiments:
        raise click.UsageError("--all and -e/--experiment exclude each other")
    if not os.path.isdir(root):
        raise click.UsageError(f"no store at {root!r} (use --root or MINI_MLFLOW_TRACKING_DIR)")
    if all_experiments:
        exp_ids = None
    elif experiments:
        exp_ids = [resolve_experiment(root, e) for e in experiments]
    else:
        exp_ids = _default_experiment(root)
    view = "deleted" if deleted else "active"

    def page() -> tuple[int, SearchResult]:  # every match is counted; the page shown is built
        found = find(exp_ids, filter_string, list(order_by) or None, view, root, need=limit)
        return found.total, SearchResult(found.records(0, limit, copy=False), found.broken)

    try:
        total, shown = recovering(root, page)
    except FilterSyntaxError as exc:  # --filter or --order-by: the caret under the bad part, on its own line
        raise pointed_usage_error(exc.summary, exc.source, exc.pos, exc.width) from None
    except InvalidInputError as exc:
        from ._render import clean

        raise click.UsageError(clean(str(exc))) from None
    if as_json:
        doc = {
            "runs": [r.to_dict() for r in shown],
            "total": total,
            "broken": [b.to_dict() for b in shown.broken],
        }
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    if as_csv:
        _write_csv(shown)
        return
    _print_table(root, shown, total, exp_ids, deleted, bool(filter_string))


def _write_csv(records: SearchResult) -> None:
    from ._render import clean, fmt_param

    params = sorted({k for r in records for k in r.params})
    metrics = sorted({k for r in records for k in r.metrics})
    # To a pipe or a file the CSV carries the exact data; on a terminal, store text is shown escaped as
    # in the table (an ESC in a run name would otherwise drive the terminal, e.g. retitle or recolour it).
    cell = clean if sys.stdout.isatty() else str
    out = csv.writer(sys.stdout, lineterminator="\n")
    header = (
        ["run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "duration_s"]
        + [f"params.{k}" for k in params]
        + [f"metrics.{k}" for k in metrics]
    )
    out.writerow([cell(c) for c in header])
    for r in records:
        duration = "" if r.duration_ms is None else f"{r.duration_ms / 1000:.3f}"
        row = (
            [
                r.run_id,
                r.run_name or "",
                r.experiment_id,
                r.status,
                iso_from_ms(r.start_time) or "",
                iso_from_ms(r.end_time) or "",
                duration,
            ]
            + [fmt_param(r.params[k]) if k in r.params else "" for k in params]
            + [repr(r.metrics[k]) if k in r.metrics else "" for k in metrics]
        )
        out.writerow([cell(c) for c in row])


def _print_table(
    root: str, records: SearchResult, total: int, exp_ids: list[str] | None, deleted: bool, filtered: bool
) -> None:
    from ._render import fmt_duration, fmt_number, fmt_param, fmt_time, short_id, status_label
    from ._table import Column, clean, render, term_width, use_color, width_of

    color = use_color()
    width = term_width()
    out: list[str] = []
    names = experiment_names(root)
    many = exp_ids is None or len(exp_ids) > 1
    if exp_ids:  # none: a store with no experiment yet
        label = ", ".join(f"{clean(names.get(e) or '?')} ({e})" for e in exp_ids)
        out.append(f"Experiment: {label}" + ("  [deleted runs]" if deleted else ""))
    rows = list(records)
    params, partial_params = _varying(rows, "params")
    metrics, partial_metrics = _varying(rows, "metrics")
    run_names = [clean(r.run_name or "") for r in rows]
    exp_names = [clean(names.get(r.experiment_id) or r.experiment_id) for r in rows]
    name_width = min(24, max([4, *map(width_of, run_names)]))
    exp_width = min(14, max([3, *map(width_of, exp_names)]))
    columns = [
        Column("id", 8, style="dim"),
        Column("name", 24),
        Column("status", 8),
        Column("start (UTC)", 16),
    ]
    columns.append(Column("duration", 8, right=True))
    if many:
        columns.append(Column("exp", 14))
    # Every column is followed by two spaces; the varying keys share what is left of the width.
    budget = width - (10 + name_width + 2 + 10 + 18 + 10 + (exp_width + 2 if many else 0))
    param_budget = budget * 3 // 5 if metrics else budget
    candidates = [("params", k) for k in params] + [("metrics", k) for k in metrics]
    candidates += [("params", k) for k in partial_params] + [("metrics", k) for k in partial_metrics]
    keys: list[tuple[str, str]] = []
    hidden = 0
    for kind, key in candidates:
        values = [getattr(r, kind).get(key) for r in rows]
        shown = [fmt_number(v) if kind == "metrics" else fmt_param(v) for v in values if v is not None]
        col_width = min(18, max([width_of(clean(key)), *(width_of(clean(v)) for v in shown)])) + 2
        if (kind == "params" and key in params and col_width > param_budget) or col_width > budget:
            hidden += 1
            continue
        param_budget -= col_width if kind == "params" else 0
        budget -= col_width
        keys.append((kind, key))
        columns.append(
            Column(clean(key), 18, right=kind == "metrics", style="" if kind == "metrics" else "blue")
        )
    table: list[list[tuple[str, str]]] = []
    for r, run_name, exp_name in zip(rows, run_names, exp_names, strict=True):
        label, style = status_label(r.status)
        cells = [
            (short_id(r.run_id), ""),
            (run_name, ""),
            (label + (" !" if r.newer_format else ""), style),
            (fmt_time(r.start_time), ""),
            (fmt_duration(r.start_time, r.end_time, running=r.status == "RUNNING"), ""),
        ]
        if many:
            cells.append((exp_name, ""))
        for kind, key in keys:
            value = getattr(r, kind).get(key)
            text = "" if value is None else fmt_number(value) if kind == "metrics" else fmt_param(value)
            cells.append((clean(text), ""))
        table.append(cells)
    if rows:
        out += render(columns, table, color)
    else:
        out.append(
            "no runs match the filter"
            if filtered
            else "no runs yet"
            if exp_ids != []
            else f"no experiments in {clean(root)} yet: runs logged there appear here"
        )
    notes = []
    if total > len(rows):
        notes.append(f"showing {len(rows)} of {total} runs (--limit to see more)")
    if hidden:
        notes.append(f"{hidden} more varying column(s) do not fit; see `show`, `compare` or --json")
    if not (params or metrics or partial_params or partial_metrics) and len(rows) > 1:
        notes.append("params and metrics are the same in every listed run")
    if any(r.newer_format for r in rows):
        notes.append("! written by a newer format version: shown as far as this version understands it")
    out += [paint_dim(n, color) for n in notes]
    if records.broken:
        out.append(
            paint_dim(f"{len(records.broken)} broken run folder(s), not listed above:", color, "bold red")
        )
        out += [f"  {clean(b.reason)}" for b in records.broken]
    click.echo("\n".join(out))


def paint_dim(text: str, color: bool, style: str = "dim") -> str:
    from ._table import paint

    return paint(text, style, color)


@click.command("experiments")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON.")
@root_option
@click.pass_context
@exits_cleanly
def experiments_cmd(ctx: click.Context, as_json: bool) -> None:
    """List experiments with their run counts."""
    from ..read import _index

    root = root_of(ctx)
    if not os.path.isdir(root):
        raise click.UsageError(f"no store at {root!r} (use --root or MINI_MLFLOW_TRACKING_DIR)")
    rows: list[dict[str, Any]] = []
    for exp_id in _index.experiment_ids(root):
        index = _index.load_experiment(root, exp_id)
        names = index.column("run_id")
        stages = index.column("lifecycle_stage")
        statuses = index.column("status")
        active = [i for i, stage in enumerate(stages) if stage != "deleted"]
        live = [names[i] for i in active if statuses[i] == "RUNNING"]  # crashed ones are not running
        start = index.newest_start()
        rows.append(
            {
                "experiment_id": exp_id,
                "name": index.info.get("name"),
                "lifecycle_stage": index.info.get("lifecycle_stage"),
                "runs": len(active),
                "deleted_runs": len(stages) - len(active),
                "running": sum(1 for n in live if _index.current_status(index.records[n]) == "RUNNING"),
                "broken_runs": len(index.broken),
                "last_start": iso_from_ms(start) if start is not None else None,
                "broken": index.info.get("broken"),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    from ._render import make_console, plain

    console = make_console()
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for name, justify in (
        ("id", "right"),
        ("name", "left"),
        ("runs", "right"),
        ("running", "right"),
        ("deleted", "right"),
        ("broken", "right"),
        ("last start (UTC)", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=name != "name")  # type: ignore[arg-type]
    for row in rows:
        name = row["name"] if row["name"] is not None else "(unreadable meta.yaml)"
        if row["lifecycle_stage"] == "deleted":
            name += " (deleted)"
        table.add_row(
            row["experiment_id"],
            plain(name),
            str(row["runs"]),
            str(row["running"] or ""),
            str(row["deleted_runs"] or ""),
            str(row["broken_runs"] or ""),
            (row["last_start"] or "")[:16].replace("T", " "),
        )
    if rows:
        console.print(table)
    else:
        console.print(plain(f"no experiments in {root}"))
