"""``mini-mlflow delete``, ``restore`` and ``gc``: the lifecycle stage in meta.yaml, and removal for good."""

from __future__ import annotations

import os
import shutil

import click

from ..store._layout import TMP_MARK, iso_from_ms, now_ms
from ._common import exits_cleanly, root_of, root_option

_GC_MARK = f"{TMP_MARK}.gc."


def _set_stage(root: str, refs: tuple[str, ...], stage: str) -> None:
    from ..read._reader import resolve_run
    from ..store import _operations
    from ..store._meta import read_meta_file
    from ._render import clean

    for ref in refs:
        _, rdir = resolve_run(root, ref)
        # Both are idempotent, but "restored" for a run never deleted misleads, and deleting again would
        # move its deleted_time (when `gc` may remove it): say so and leave meta.yaml alone (exit 0: the
        # run is where the user wanted it).
        raw, _ = read_meta_file(os.path.join(rdir, "meta.yaml"))
        if raw is not None and (raw.get("lifecycle_stage") == "deleted") == (stage == "deleted"):
            name = f" ({clean(raw.get('run_name'))})" if raw.get("run_name") else ""
            already = "already deleted" if stage == "deleted" else "not deleted: nothing to restore"
            click.echo(f"{os.path.basename(rdir)}{name} is {already}")
            continue
        deleted_time = iso_from_ms(now_ms()) if stage == "deleted" else None
        meta = _operations.update_run_meta(rdir, lifecycle_stage=stage, deleted_time=deleted_time)
        name = f" ({clean(meta.get('run_name'))})" if meta.get("run_name") else ""
        run_id = os.path.basename(rdir)
        if stage == "deleted":
            click.echo(
                f"deleted {run_id}{name}; undo with `mini-mlflow restore {run_id[:8]}`, "
                "remove for good with `mini-mlflow gc`"
            )
        else:
            click.echo(f"restored {run_id}{name}")


@click.command("delete")
@click.argument("runs", nargs=-1, required=True)
@root_option
@click.pass_context
@exits_cleanly
def delete_cmd(ctx: click.Context, runs: tuple[str, ...]) -> None:
    """Mark runs as deleted (hidden from ls; files kept until `gc`)."""
    _set_stage(root_of(ctx), runs, "deleted")


@click.command("restore")
@click.argument("runs", nargs=-1, required=True)
@root_option
@click.pass_context
@exits_cleanly
def restore_cmd(ctx: click.Context, runs: tuple[str, ...]) -> None:
    """Bring deleted runs back."""
    _set_stage(root_of(ctx), runs, "active")


def _folder_size(path: str) -> int:
    total = 0
    for current, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(current, name)).st_size
            except OSError:
                pass
    return total


@click.command("gc")
@click.option(
    "-e", "--experiment", "experiments", multiple=True, metavar="NAME|ID", help="Only these experiments."
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@root_option
@click.pass_context
@exits_cleanly
def gc_cmd(ctx: click.Context, experiments: tuple[str, ...], yes: bool, dry_run: bool) -> None:
    """Remove deleted runs from disk for good (asks first unless --yes)."""
    from ..read import _index
    from ..store._meta import read_meta_file
    from ._common import resolve_experiment
    from ._render import clean

    root = root_of(ctx)
    if not os.path.isdir(root):
        raise click.UsageError(f"no store at {root!r} (use --root or MINI_MLFLOW_TRACKING_DIR)")
    exp_ids = (
        [resolve_experiment(root, e) for e in experiments] if experiments else _index.experiment_ids(root)
    )
    doomed: list[tuple[str, str]] = []
    leftovers: list[str] = []
    for exp_id in exp_ids:
        exp_dir = os.path.join(root, exp_id)
        index = _index.load_experiment(root, exp_id)
        for name, record in sorted(index.records.items()):
            if record.lifecycle_stage == "deleted":
                doomed.append((exp_id, name))
        leftovers += [os.path.join(exp_dir, n) for n in os.listdir(exp_dir) if n.startswith(_GC_MARK)]
    if not doomed and not leftovers:
        click.echo("nothing to remove: no deleted runs")
        return
    size = sum(_folder_size(os.path.join(root, e, n)) for e, n in doomed)
    for exp_id, name in doomed:
        click.echo(f"  {exp_id}/{clean(name)}")
    click.echo(f"{len(doomed)} deleted run(s), {size / 1e6:.1f} MB")
    if dry_run:
        return
    if not yes and not click.confirm("Remove them permanently?", default=False):
        click.echo("nothing removed")
        return
    removed = 0
    for exp_id, name in doomed:
        rdir = os.path.join(root, exp_id, name)
        raw, _ = read_meta_file(os.path.join(rdir, "meta.yaml"))
        if raw is None or raw.get("lifecycle_stage") != "deleted" or os.path.islink(rdir):
            click.echo(f"skipped {clean(name)}: no longer marked deleted")
            continue
        # Rename first (atomic, and hidden from readers), then remove: a crash leaves no half run.
        hidden = os.path.join(root, exp_id, f"{_GC_MARK}{name}")
        os.rename(rdir, hidden)
        leftovers.append(hidden)
        removed += 1
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    click.echo(f"removed {removed} run(s)")
