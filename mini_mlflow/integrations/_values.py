"""Integrations: framework values made storable (flattened params, safe keys, plain floats, long values)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import InvalidInputError, ParamConflictError
from ..store._layout import MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH
from ._safety import warn_once

if TYPE_CHECKING:
    from ..write._run import Run

_BAD_KEY_CHARS = re.compile(r"[^\w.\- :/]")
#: Folder of the artifacts that hold param values too long for a param (the param keeps a pointer).
LONG_PARAMS_DIR = "params"


def safe_key(key: str) -> str:
    """A metric/param key the store accepts, made from a framework's name for something.

    Characters outside MLflow's set become ``_``; empty, ``.`` and ``..`` path components and
    folder names ending in ``.json``/``.jsonl`` are mended; the result is cut to 250 characters.
    """
    text = _BAD_KEY_CHARS.sub("_", str(key))
    parts = []
    for part in text.split("/"):
        if part in ("", ".", ".."):
            part = "_" * max(1, len(part))
        parts.append(part)
    for i in range(len(parts) - 1):
        if parts[i].endswith((".json", ".jsonl")):
            parts[i] += "_"
    return "/".join(parts)[:MAX_KEY_LENGTH].rstrip("/") or "_"


def flatten(values: Mapping[str, Any], sep: str = "/", prefix: str = "") -> dict[str, Any]:
    """Nested mappings become one level: ``{"opt": {"lr": 0.1}}`` → ``{"opt/lr": 0.1}``.

    Lists, tuples and other values are kept whole (a param may be any JSON value). A key that itself
    holds ``sep`` can name the same thing as a nested one (``{"a/b": 1, "a": {"b": 2}}``): the first
    value is kept and a warning names the key (the later one used to replace it silently).
    """
    out: dict[str, Any] = {}
    _flatten_into(out, values, sep, prefix)
    return out


def _flatten_into(out: dict[str, Any], values: Mapping[str, Any], sep: str, prefix: str) -> None:
    for key, value in values.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            _flatten_into(out, value, sep, name)
        elif name in out:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            warnings.warn(
                f"mini_mlflow: two values are named {name!r} once nested keys are joined with {sep!r}; "
                f"the first is kept, {shown} is not logged",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            out[name] = value


def as_number(value: Any) -> float | None:
    """A plain float for a Python, NumPy or framework (0-d tensor) number; None for anything else.

    Bools are numbers here (a framework's flag logged as 0/1); strings and containers are not.
    """
    cls = value.__class__
    if cls is float:
        return value  # type: ignore[no-any-return]
    if cls is int:  # Lightning's "epoch" at every step: skips the ABC check and the failed getattr
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, (str, bytes, Mapping)) or value is None:
        return None
    item = getattr(value, "item", None)  # numpy scalars and 0-d arrays, torch/jax tensors
    if item is not None:
        try:
            value = item()
        except (ValueError, RuntimeError, TypeError):  # more than one element
            return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _jsonable(value: Any) -> Any:
    """A JSON-storable form of a framework's param value (enums, paths, numpy values, objects → text)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    number = as_number(value) if hasattr(value, "item") else None
    if number is not None:
        if float(number).is_integer() and "int" in type(value).__name__.lower():
            return int(number)
        return number if math.isfinite(number) else str(number)
    return str(value)


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def log_params(run: Run, params: Mapping[str, Any], framework: str) -> dict[str, Any]:
    """Log params whatever their values: flattened keys made safe, values made JSON.

    A value longer than MLflow's 6,000 characters is stored cut, ending with its SHA-256 and length,
    and the whole value goes to the artifact ``params/<key>.txt``: never silently dropped. A param
    that already holds another value (a resumed run whose config changed) is kept and warned about.

    Returns:
        The params as stored (key → value).
    """
    stored: dict[str, Any] = {}
    for key, value in params.items():
        name = safe_key(key)
        value = _jsonable(value)
        text = _text_of(value)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            note = f"... [cut: {len(text)} characters, sha256 {digest}; whole: artifacts/params/{name}.txt]"
            run.log_text(text, f"{LONG_PARAMS_DIR}/{name}.txt")
            value = text[: MAX_PARAM_VALUE_LENGTH - len(note)] + note
        stored[name] = value
    try:
        run.log_params(stored)
    except InvalidInputError:
        # One bad or conflicting value must not cost the others: store them one by one.
        for name, value in stored.items():
            try:
                run.log_param(name, value)
            except ParamConflictError as exc:
                warn_once(framework, f"param {name!r}", exc)
            except InvalidInputError as exc:
                warn_once(framework, "a param", exc)
    return stored
