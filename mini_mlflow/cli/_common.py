"""Shared plumbing of the read commands: store root, run and experiment lookup, error exits."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import click

from .._errors import InvalidInputError, MiniMlflowError, NotFoundError

F = TypeVar("F", bound=Callable[..., Any])


class SafePath(click.Path):
    """``click.Path`` that refuses what no file system accepts (a NUL character) with a usage error,
    before anything deeper turns it into a ``ValueError`` traceback."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "\x00" in value:
            from ._render import clean

            self.fail(f"{clean(value[:200])!r} contains a NUL character, which no path can hold", param, ctx)
        return super().convert(value, param, ctx)


def _set_root(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        root = ctx.find_root()
        if root.obj is None:
            root.obj = {}
        # Changed in place: the command's own context shares this dict (``pass_obj`` sees the root).
        root.obj.update(root=value, root_given=True)


#: ``--root`` after the command name too (``mini-mlflow ls --root mlruns.sample``): every command has it.
root_option = click.option(
    "--root",
    type=SafePath(file_okay=False),
    expose_value=False,
    is_eager=True,
    callback=_set_root,
    help="Store root (same as the option before the command).",
)


def root_of(ctx: click.Context) -> str:
    obj = ctx.find_root().obj or {}
    return str(obj.get("root") or os.environ.get("MINI_MLFLOW_TRACKING_DIR") or "mlruns")


#: Longest error message printed: a hostile 100,000-character argument is not echoed back whole.
MAX_MESSAGE = 1000


def one_line(message: str) -> str:
    """A message as one line: control characters escaped, at most ``MAX_MESSAGE`` characters."""
    from ._render import clean

    text = " ".join(clean(message).split("\n"))
    if len(text) > MAX_MESSAGE:
        text = f"{text[: MAX_MESSAGE - 40]}... ({len(text):,} characters in all)"
    return text


#: Characters of a bad argument shown on each side of the part a caret points at.
POINTER_CONTEXT = 60


class PointedUsageError(click.UsageError):
    """A usage error printed on its lines: the message, the bad argument, a caret line under the bad part.

    The group flattens other errors to one line (`one_line`); this one is built safe line by line
    (`pointed_usage_error`), because a caret on the same line as what it points at points nowhere.
    """


def pointed_usage_error(message: str, source: str, pos: int, width: int) -> PointedUsageError:
    """A usage error showing ``source`` with a caret under ``source[pos:pos + width]``.

    Each line is escaped (control characters, newlines and tabs shown as escapes, so the caret counts
    the cells the terminal shows) and the source is cut to ``POINTER_CONTEXT`` characters around the bad
    part, so a 100,000-character filter still gives three short lines.
    """
    from ._table import width_of

    def shown(text: str) -> str:
        from ._render import clean

        return clean(text).replace("\n", "\\n").replace("\t", "\\t")

    stop = min(pos + max(width, 1), pos + POINTER_CONTEXT, len(source))
    start, end = max(0, pos - POINTER_CONTEXT), min(len(source), stop + POINTER_CONTEXT)
    before = ("…" if start > 0 else "") + shown(source[start:pos])
    bad = shown(source[pos:stop])
    after = shown(source[stop:end]) + ("…" if end < len(source) else "")
    caret = " " * width_of(before) + "^" * max(1, width_of(bad))
    return PointedUsageError(f"{one_line(message)}\n  {before}{bad}{after}\n  {caret}")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: <message>`` on one line (control characters escaped, cut short) and exit."""
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


def exits_cleanly(fn: F) -> F:
    """Turn our errors into a one-line message and exit code 1 (not found, ambiguous, broken)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (NotFoundError, InvalidInputError, MiniMlflowError) as exc:
            fail(str(exc))
        except BrokenPipeError:  # `mini-mlflow ls | head`: the reader left, that is fine
            sys.stderr.close()
            sys.exit(0)

    return wrapper  # type: ignore[return-value]


#: Most keys an error about an unknown metric lists (the rest are counted).
MAX_KNOWN_KEYS = 20


def unknown_metric_error(where: str, missing: list[str], known: Iterable[str]) -> NotFoundError:
    """``no metric 'x' in <where> (known: a, b, ... and N more)``: a metric asked for by name is not there.

    A typo in ``-m``/``--min`` used to be ignored (no chart, no line, no error): it is "not found", exit 1,
    like an unknown experiment.
    """
    names = sorted(set(known))
    listed = ", ".join(names[:MAX_KNOWN_KEYS]) or "none"
    if len(names) > MAX_KNOWN_KEYS:
        listed += f" and {len(names) - MAX_KNOWN_KEYS} more"
    which = ", ".join(repr(k) for k in missing)
    return NotFoundError(f"no metric{'s' if len(missing) > 1 else ''} {which} in {where} (known: {listed})")


def experiment_names(root: str) -> dict[str, str | None]:
    """``{experiment_id: name}`` of every experiment (its meta.yaml only; no run is looked at)."""
    from ..read import _index

    return {e: _index.experiment_info(root, e).get("name") for e in _index.experiment_ids(root)}


def resolve_experiment(root: str, ref: str) -> str:
    """An experiment id from an id or a name; exit 1 with the known names when there is none."""
    names = experiment_names(root)
    if ref in names:
        return ref
    if ref.isdigit() and str(int(ref)) in names:
        return str(int(ref))
    for exp_id, name in names.items():
        if name == ref:
            return exp_id
    known = ", ".join(f"{name} ({exp_id})" for exp_id, name in names.items()) or "none"
    raise NotFoundError(f"no experiment named or numbered {ref!r} in {root} (known: {known})")
