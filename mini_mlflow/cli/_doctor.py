"""``mini-mlflow doctor``: effective settings (secrets masked), the store's health, and versions."""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from typing import Any

import click

from ._common import root_of, root_option

#: Credentials read from the environment by the sync client: shown as set or not, never their value.
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
PACKAGES = ("pyyaml", "click", "rich", "orjson", "httpx", "mlflow")
SYNC_DIR = ".sync"
#: How many runs each problem list shows in text output (``--json`` has them all).
SHOWN = 20


def _versions() -> dict[str, str]:
    from importlib import metadata

    from .._version import __version__

    found = {
        "mini_mlflow": __version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(terse=True),
    }
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _settings(root_from_command_line: str | None) -> list[dict[str, Any]]:
    from .._config import explain, mask_url

    rows = []
    for row in explain(tracking_dir=root_from_command_line):
        value = mask_url(row.value) if row.field == "sync_url" else row.value
        rows.append(
            {
                "setting": row.field,
                "variable": row.env,
                "value": value,
                "source": row.source,
                "problem": row.problem and _mask_problem(row.problem, row.field),
            }
        )
    return rows


def _mask_problem(problem: str, field: str) -> str:
    # An invalid URL is quoted in the message and may carry a password: say what is wrong, not what it was.
    return "invalid value: must be an http:// or https:// URL" if field == "sync_url" else problem


def _store_health(root: str) -> dict[str, Any]:
    from ..read._reader import Store

    store = Store(root)
    report: dict[str, Any] = {
        "root": root,
        "exists": os.path.isdir(root),
        "experiments": 0,
        "runs": 0,
        "statuses": {},
        "broken_experiments": [],
        "broken_runs": [],
        "crashed_runs": [],
        "not_synced": [],
    }
    statuses: Counter[str] = Counter()
    for experiment in store.list_experiments():
        report["experiments"] += 1
        experiment_id = str(experiment["experiment_id"])
        if "broken" in experiment:
            report["broken_experiments"].append(
                {"experiment_id": experiment_id, "reason": experiment["broken"]}
            )
        for run_dir in sorted(store.run_dirs(experiment_id)):
            report["runs"] += 1
            meta = store.load_meta(run_dir)
            where = f"{experiment_id}/{os.path.basename(run_dir)}"
            if "broken" in meta:
                reason = str(meta["broken"]).replace(os.path.abspath(root) + os.sep, "")
                report["broken_runs"].append({"run": where, "reason": reason})
                continue
            statuses[str(meta.get("status"))] += 1
            if meta.get("crashed"):
                report["crashed_runs"].append(
                    {"run": where, "name": meta.get("run_name"), "start_time": meta.get("start_time")}
                )
            if not os.path.isdir(os.path.join(run_dir, SYNC_DIR)):
                report["not_synced"].append(where)
    report["statuses"] = dict(sorted(statuses.items()))
    return report


def collect(root: str, root_from_command_line: str | None) -> dict[str, Any]:
    """Everything ``doctor`` reports, as plain data (what ``--json`` prints)."""
    from .._config import unknown_variables

    settings = _settings(root_from_command_line)
    health = _store_health(root)
    problems = [f"{row['variable']}: {row['problem']}" for row in settings if row["problem"]]
    problems += [f"broken experiment {e['experiment_id']}" for e in health["broken_experiments"]]
    problems += [f"broken run {r['run']}" for r in health["broken_runs"]]
    return {
        "versions": _versions(),
        "settings": settings,
        "credentials": {name: name in os.environ for name in CREDENTIAL_VARIABLES},
        "unknown_variables": [{"variable": n, "did_you_mean": c} for n, c in unknown_variables()],
        "store": health,
        "problems": problems,
    }


def _echo_list(title: str, items: list[str]) -> None:
    click.echo(f"  {title}: {len(items)}")
    for item in items[:SHOWN]:
        click.echo(f"    {item}")
    if len(items) > SHOWN:
        click.echo(f"    ... and {len(items) - SHOWN} more (see --json)")


def _render(report: dict[str, Any]) -> None:
    click.echo("Versions")
    for name, version in report["versions"].items():
        click.echo(f"  {name:<12} {version}")
    click.echo("\nSettings (argument > MINI_MLFLOW_* variable > default)")
    for row in report["settings"]:
        value = row["value"]
        shown = "unset" if value is None else str(value).lower() if isinstance(value, bool) else value
        line = f"  {row['setting']:<19} {row['variable']:<27} {shown!s:<24} {row['source']}"
        click.echo(line if not row["problem"] else f"{line}  INVALID: {row['problem']}")
    for name, is_set in report["credentials"].items():
        click.echo(f"  {name:<47} {'set (****)' if is_set else 'not set'}")
    for item in report["unknown_variables"]:
        hint = f"; did you mean {item['did_you_mean']}?" if item["did_you_mean"] else ""
        click.echo(f"  unknown variable {item['variable']}{hint}")
    store = report["store"]
    click.echo(f"\nStore {store['root']}")
    if not store["exists"]:
        click.echo("  does not exist yet (no runs logged here)")
    else:
        statuses = ", ".join(f"{k} {v}" for k, v in store["statuses"].items()) or "none"
        click.echo(f"  experiments: {store['experiments']}  runs: {store['runs']} ({statuses})")
        broken = [f"experiment {e['experiment_id']}: {e['reason']}" for e in store["broken_experiments"]]
        _echo_list("broken runs", broken + [f"{r['run']}: {r['reason']}" for r in store["broken_runs"]])
        _echo_list(
            "crashed runs (RUNNING, no live writer)",
            [f"{r['run']} {r['name'] or ''} started {r['start_time']}" for r in store["crashed_runs"]],
        )
        sync_url = next(r["value"] for r in report["settings"] if r["setting"] == "sync_url")
        hint = "" if sync_url else "; sync is not configured (set MINI_MLFLOW_SYNC_URL)"
        readable = store["runs"] - len(store["broken_runs"])
        click.echo(
            f"  runs not yet synced: {len(store['not_synced'])} of {readable} (no {SYNC_DIR}/ folder{hint})"
        )
    problems = report["problems"]
    click.echo(
        "\n" + (f"{len(problems)} problem(s): " + "; ".join(problems) if problems else "No problems found.")
    )


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@root_option
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Show effective settings (secrets masked), the store's health and versions.

    Exits with 1 when a setting is invalid or a run or experiment is broken.
    """
    from click.core import ParameterSource

    parent = ctx.parent
    from_command_line = bool((ctx.obj or {}).get("root_given")) or (
        parent is not None and parent.get_parameter_source("root") == ParameterSource.COMMANDLINE
    )
    root = os.path.abspath(root_of(ctx))
    report = collect(root, root if from_command_line else None)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _render(report)
    if report["problems"]:
        ctx.exit(1)
