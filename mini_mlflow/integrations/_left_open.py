"""Integrations: a run a training left open ends at exit by that training's outcome, not the program's.

Frameworks call no "end" hook when a training raises (Keras, XGBoost, LightGBM, Transformers), and
LightGBM none when it stops early. A callback's own run is then still open at exit, and the runs' own
exit hook would end it by the program's status: FINISHED for a training that raised but whose error
the program caught, FAILED for an early-stopped one when the program failed later. This hook runs
first (registered after the runs' own; atexit runs last in, first out) and ends each such run by its
training: stopped early → FINISHED; raised → FAILED. When the program is failing itself, a training
that raised is left to the runs' own hook (FAILED, or KILLED on Ctrl-C).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable

from ..write import _registry
from ..write._run import Run
from ._safety import warn_once


def never() -> bool:
    """The default "did it stop early?": a training that leaves its run open raised."""
    return False


_lock = threading.Lock()
#: id(run) → (run, framework, stopped_early), for the callbacks' own runs a training has open.
_watched: dict[int, tuple[Run, str, Callable[[], bool]]] = {}
_hook_registered = False


def watch(run: Run, framework: str, stopped_early: Callable[[], bool] = never) -> None:
    """End ``run`` at exit by its training's outcome if nothing ends it before (call once it is open)."""
    global _hook_registered
    with _lock:
        _watched[id(run)] = (run, framework, stopped_early)
        if not _hook_registered:
            # The run is open, so the runs' own exit hook is registered: this one comes after it.
            atexit.register(_end_at_exit)
            _hook_registered = True


def unwatch(run: Run) -> None:
    """Stop watching ``run`` (its callback ended it)."""
    with _lock:
        _watched.pop(id(run), None)


def _end_at_exit() -> None:
    with _lock:
        watched = list(_watched.values())
        _watched.clear()
    program = _registry.ending_status()
    for run, framework, stopped_early in watched:
        try:
            if run.status != "RUNNING":
                continue
            if stopped_early():
                run.end("FINISHED")
            elif program == "FINISHED":
                run.end("FAILED")
        except Exception as exc:  # nothing may stop the program's exit
            warn_once(framework, "ending the run at exit", exc)


def _forget_after_fork() -> None:
    # A forked child's exit must not end its parent's runs.
    global _lock
    _lock = threading.Lock()
    _watched.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
