"""YAML in the store: the safe loader and dumper, and a fast reader of the plain subset meta.yaml uses.

Listing 10,000 runs would spend most of its time in a YAML parser. The files we write are flat
``key: value`` lines (plus one nested mapping) with null, integers, single-quoted strings and plain
words, so those are read here; anything outside that subset (comments, flow collections, block scalars,
double quotes, numbers with dots, dates, YAML 1.1 booleans ...) makes :func:`load_meta_bytes` hand the
whole file to :func:`load_yaml`, so the result is always exactly what the safe loader would give.
"""

from __future__ import annotations

import re
from typing import Any

_LINE = re.compile(r"^( {0,2})([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?$")
_INT = re.compile(r"^-?(?:0|[1-9][0-9]*)$")
# A plain word that YAML 1.1 reads as a string: starts with a letter, no characters with a meaning.
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-./]*$")
# Starts with a digit: only letters and digits, so it can be neither a number, a date nor a time...
_HEX_WORD = re.compile(r"^[0-9][0-9A-Za-z]*[A-Za-z][0-9A-Za-z]*$")
# ... unless it may be an integer in another base: "0x..." and "0o..." go to the loader, and "0b..." when
# only binary digits follow. A run id or a git commit that merely starts with "0b" (1 in 256) is a word.
_BASED_INT = re.compile(r"^0(?:[xXoO].*|[bB][01]+)$")
_SPECIAL_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_MISS = object()


def _scalar(text: str) -> Any:
    if text in ("null", "~"):
        return None
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'") or "'" in text[1:-1].replace("''", ""):
            return _MISS
        return text[1:-1].replace("''", "'")
    if _INT.match(text):
        return int(text)
    if _WORD.match(text) and text.lower() not in _SPECIAL_WORDS:
        return text
    if _HEX_WORD.match(text) and not _BASED_INT.match(text):
        return text
    return _MISS


#: Parsed lines, shared by every meta.yaml read: most lines (status, user, source, lifecycle, ...) are
#: the same across thousands of runs, so a listing parses each of them once. Cleared when full.
_LINES: dict[str, Any] = {}
_NEST = object()  # "key:" with nothing after it: a nested mapping starts


def _line(line: str) -> Any:
    """``(indent, key, value)`` of one line (value ``_NEST`` opens a mapping), None outside the subset."""
    got = _LINES.get(line, _MISS)
    if got is not _MISS:
        return got
    match = _LINE.match(line)
    if match is None:
        got = None
    else:
        indent, key, raw = match.groups()
        value = _NEST if raw is None or raw == "" else _scalar(raw)
        got = None if value is _MISS else (indent, key, value)
    if len(_LINES) >= 8192:
        _LINES.clear()
    _LINES[line] = got
    return got


def parse_subset(data: bytes) -> dict[str, Any] | None:
    """Parse ``data`` if it is entirely in the subset; None means "use the full YAML loader"."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    out: dict[str, Any] = {}
    parent: dict[str, Any] | None = None
    for line in text.split("\n"):
        if not line:
            continue
        parsed = _line(line)
        if parsed is None:
            return None
        indent, key, value = parsed
        if indent == "  ":
            if parent is None or key in parent:
                return None
            target = parent
        elif indent:
            return None
        else:
            target, parent = out, None
            if key in out:
                return None
        if value is _NEST:
            if indent:
                return None
            parent = out[key] = {}
            continue
        target[key] = value
    if not out or any(v == {} for v in out.values()):
        return None  # "key:" with nothing under it is null in YAML: leave that to the loader
    return out


def load_meta_bytes(data: bytes) -> Any:
    """The content of a meta.yaml, exactly as the safe YAML loader reads it (the subset is just faster)."""
    fast = parse_subset(data)
    if fast is not None:
        return fast
    return load_yaml(data)


# PyYAML is imported where used: the logging hot path never needs it.


def dump_yaml(data: dict[str, Any]) -> bytes:
    """``data`` as YAML with the safe dumper, keys in the given order."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text: str = yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text.encode("utf-8")


def load_yaml(data: bytes) -> Any:
    """Parse YAML with a safe loader only: nothing in a store can construct Python objects."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(data, Loader=loader)  # noqa: S506 - a safe loader, chosen above
