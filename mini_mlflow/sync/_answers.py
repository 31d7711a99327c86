"""What each MLflow REST endpoint's answer must hold before the agent uses it (a server is not trusted)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ._errors import ServerError, one_line

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


#: What each endpoint's answer must hold for the agent (dotted paths; ``[]`` marks a list of objects).
_REQUIRED: dict[str, tuple[tuple[str, str], ...]] = {
    "experiments/get-by-name": (("experiment.experiment_id", "id"),),
    "experiments/create": (("experiment_id", "id"),),
    "runs/create": (("run.info.run_id", "id"),),
    "runs/search": (("runs[].info.run_id", "id?"),),
    "runs/get": (
        ("run.info", "object"),
        ("run.info.artifact_uri", "str?"),
        ("run.data", "object?"),
        ("run.data.params[].key", "str?"),
    ),
}


def check_answer(endpoint: str, answer: dict[str, Any], url: str = "") -> dict[str, Any]:
    """``answer`` if it holds what ``endpoint`` promises; else ``ServerError`` (``BAD_RESPONSE``).

    Ids must look like ids (they end up in URLs, filters and the cursor): 1 to 128 letters, digits,
    ``_``, ``.`` or ``-``.
    """
    for path, kind in _REQUIRED.get(endpoint, ()):
        optional = kind.endswith("?")
        for value in _values_at(answer, path.split("."), optional):
            if _fits(value, kind.rstrip("?")):
                continue
            raise ServerError(
                200,
                "BAD_RESPONSE",
                f"the answer's {path} is {one_line(repr(value), 80)}, not a valid {kind.rstrip('?')} "
                f"(is {url or 'the server'} an MLflow tracking server?)",
                endpoint,
            )
    return answer


class _Missing:
    def __repr__(self) -> str:
        return "missing"


_MISSING = _Missing()


def _values_at(node: Any, parts: list[str], optional: bool) -> Iterator[Any]:
    if not parts:
        yield node
        return
    head, is_list = parts[0].removesuffix("[]"), parts[0].endswith("[]")
    child = node.get(head, _MISSING) if isinstance(node, dict) else _MISSING
    if child is _MISSING:
        if not optional:
            yield _MISSING
        return
    if is_list:
        if not isinstance(child, list):
            yield child  # not a list: reported as it is
            return
        for item in child:
            yield from _values_at(item, parts[1:], optional=False)
        return
    yield from _values_at(child, parts[1:], optional)


def _fits(value: Any, kind: str) -> bool:
    if kind == "id":
        return (isinstance(value, str) or value.__class__ is int) and bool(_ID_RE.fullmatch(str(value)))
    if kind == "object":
        return isinstance(value, dict)
    return isinstance(value, str)
