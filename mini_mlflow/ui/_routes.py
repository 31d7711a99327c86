"""UI stage: the JSON routes of the server: query parameters in, answers of ``_answers`` out."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import InvalidInputError, NotFoundError
from . import _answers

if TYPE_CHECKING:
    from ._server import UIServer

Route = Callable[["UIServer", dict[str, list[str]]], Any]


def one_of(query: dict[str, list[str]], name: str, default: str = "") -> str:
    values = query.get(name)
    return values[0] if values else default


def parse_list(query: dict[str, list[str]], name: str) -> list[str]:
    return [part for value in query.get(name, []) for part in value.split(",") if part]


def _number(query: dict[str, list[str]], name: str, default: float | None) -> float | None:
    text = one_of(query, name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"invalid {name} {text!r}: must be a number") from None
    if value - value != 0:
        raise InvalidInputError(f"invalid {name} {text!r}: must be a finite number")
    return value


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    text = one_of(query, name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"invalid {name} {text!r}: must be a whole number") from None


def _runs(server: UIServer, query: dict[str, list[str]]) -> Any:
    ids = parse_list(query, "e")
    return _answers.runs_table(
        server.root,
        None if not ids or ids == ["all"] else ids,
        one_of(query, "filter"),
        one_of(query, "view", "active"),
    )


def _series(server: UIServer, query: dict[str, list[str]]) -> Any:
    """One metric of each run named (``run`` repeated or comma-separated), one chart's worth."""
    refs = parse_list(query, "run")
    if not refs or len(refs) > _answers.MAX_COMPARE:
        raise InvalidInputError(f"series takes 1 to {_answers.MAX_COMPARE} runs, got {len(refs)}")
    cols = _int(query, "cols", 1000)
    lo, hi = _number(query, "lo", None), _number(query, "hi", None)
    weight = _number(query, "smooth", 0.0) or 0.0
    out = []
    for ref in refs:
        try:
            out.append(
                _answers.series(
                    server.cache,
                    server.root,
                    ref,
                    one_of(query, "key"),
                    one_of(query, "x", "step"),
                    cols,
                    lo,
                    hi,
                    weight,
                    server.index_lock,
                )
            )
        except NotFoundError:
            if len(refs) == 1:
                raise
    return {"series": out}


def _aggregate(server: UIServer, query: dict[str, list[str]]) -> Any:
    return _answers.aggregate(
        server.cache,
        server.root,
        parse_list(query, "runs"),
        one_of(query, "key"),
        one_of(query, "x", "step"),
        _int(query, "cols", 1000),
        server.index_lock,
    )


def _experiments(server: UIServer, query: dict[str, list[str]]) -> Any:
    return {
        "experiments": _answers.experiments(server.root),
        "read_only": server.read_only,
        "root": os.path.basename(server.root),
    }


def _compare(server: UIServer, query: dict[str, list[str]]) -> Any:
    return _answers.compare(server.root, parse_list(query, "runs"))


def _resolve(server: UIServer, query: dict[str, list[str]]) -> Any:
    return _answers.resolve(server.root, parse_list(query, "ids"))


#: Answers read from the index: computed under the server's index lock, and shared for a moment by
#: every client asking the same thing (``UIServer.shared_answer``).
INDEX_ROUTES: dict[str, Route] = {
    "/api/experiments": _experiments,
    "/api/runs": _runs,
    "/api/compare": _compare,
    "/api/resolve": _resolve,
}


def _keys(server: UIServer, query: dict[str, list[str]]) -> Any:
    return _answers.metric_keys(server.root, one_of(query, "run"))


#: Answers from metric histories (the index lock is taken only for a run's start time) and folders.
GET_ROUTES: dict[str, Route] = {
    "/api/keys": _keys,
    "/api/series": _series,
    "/api/aggregate": _aggregate,
}
