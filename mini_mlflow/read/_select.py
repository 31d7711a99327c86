"""Which runs a sync pass covers: named runs, experiments (by name or id) or the whole store."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import NotFoundError
from ..store._experiments import iter_experiments
from ._reader import Store


@dataclass(frozen=True)
class Target:
    """One local run to sync and the name of its experiment (the name is what the server matches)."""

    run_dir: str
    experiment_name: str


def _experiment_names(root: str) -> dict[str, str]:
    return {
        exp_id: str(meta.get("name") or f"experiment_{exp_id}")
        for exp_id, meta in iter_experiments(root)
        if meta is not None
    }


def select_runs(
    root: str,
    run_ids: Sequence[str] = (),
    experiments: Sequence[str] = (),
    all_runs: bool = False,
) -> list[Target]:
    """The runs to sync, parents before their children.

    Raises:
        NotFoundError: a named run or experiment does not exist.
    """
    store = Store(root)
    names = _experiment_names(root)
    dirs: dict[str, str] = {}
    for run_id in run_ids:
        dirs[store.find_run(run_id)] = run_id
    wanted: list[str] = []
    if all_runs:
        wanted = list(names)
    for given in experiments:
        if given in names:
            wanted.append(given)
            continue
        by_name = [exp_id for exp_id, name in names.items() if name == given]
        if not by_name:
            raise NotFoundError(f"no experiment named or numbered {given!r} in {root}")
        wanted.extend(by_name)
    for exp_id in dict.fromkeys(wanted):
        for rdir in store.run_dirs(exp_id):
            meta = store.load_meta(rdir)
            if meta.get("lifecycle_stage", "active") == "deleted" or "broken" in meta:
                continue
            dirs.setdefault(rdir, str(meta.get("run_id")))
    targets = [Target(d, names.get(os.path.basename(os.path.dirname(d)), "Default")) for d in dirs]
    # A parent is synced before its children so that their mlflow.parentRunId can name it.
    parents = {t.run_dir: _parent_of(store, t.run_dir) for t in targets}
    return sorted(targets, key=lambda t: (parents[t.run_dir] is not None, t.run_dir))


def _parent_of(store: Store, run_dir: str) -> str | None:
    parent = store.load_meta(run_dir).get("parent_run_id")
    return str(parent) if parent else None
