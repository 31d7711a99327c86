"""The filter and order grammar of ``search_runs`` (MLflow's), parsed into predicates and sort keys.

Filter: ``<identifier> <comparator> <value> [AND ...]``; identifiers are ``metrics.<key>``,
``params.<key>``, ``tags.<key>`` or ``attributes.<name>`` (singular forms and a bare attribute name work
too); keys with dots, slashes or spaces go in backticks or double quotes: ``metrics.`train/loss```.
A malformed filter raises ``FilterSyntaxError`` (an ``InvalidInputError``) with a caret under the
offending token.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import InvalidInputError
from ._records import as_text

ENTITIES = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
#: Attribute names and their aliases; times are milliseconds since the epoch.
ATTRIBUTES = {
    "run_id": "run_id",
    "run_uuid": "run_id",
    "id": "run_id",
    "run_name": "run_name",
    "name": "run_name",
    "status": "status",
    "start_time": "start_time",
    "created": "start_time",
    "end_time": "end_time",
    "user_id": "user",
    "user": "user",
    "lifecycle_stage": "lifecycle_stage",
    "experiment_id": "experiment_id",
    "parent_run_id": "parent_run_id",
    # experiments' own (search_experiments): a run search refuses them by name
    "creation_time": "creation_time",
    "last_update_time": "last_update_time",
}
EXPERIMENT_ONLY_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})
NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "creation_time", "last_update_time"})
NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
KEYWORDS = frozenset({"AND", "OR", "LIKE", "ILIKE", "IN", "NOT", "ASC", "DESC", "IS", "NULL"})

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<squote>'(?:[^']|'')*')
  | (?P<dquote>"(?:[^"]|"")*")
  | (?P<btick>`[^`]*`)
  | (?P<word>[A-Za-z_][\w\-/:]*(?:\.(?:`[^`]*`|"(?:[^"]|"")*"|[\w\-/:.]+))?)
    """,
    re.VERBOSE,
)


@dataclass
class Token:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Field:
    """A parsed identifier: the entity (metrics/params/tags/attributes) and key."""

    entity: str
    key: str


class FilterSyntaxError(InvalidInputError):
    """A filter or order_by clause that does not parse.

    ``str()`` is three lines: the message, the source, and a caret line under the bad part. The parts
    are kept too, so a printer that must escape or cut the source (the CLI) can still point right.
    """

    def __init__(self, summary: str, source: str, pos: int, width: int) -> None:
        super().__init__(f"{summary}\n  {source}\n  {' ' * pos}{'^' * width}")
        #: The first line: what is wrong and where, e.g. "invalid filter at position 14 (the end): ...".
        self.summary = summary
        #: The whole filter or clause as given.
        self.source = source
        #: Where the bad part starts (a character index into ``source``; ``len(source)`` for its end).
        self.pos = pos
        #: How many characters the bad part has (at least 1).
        self.width = width

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its parts (the default passes one arg)
        return type(self), (self.summary, self.source, self.pos, self.width)


def _error(source: str, what: str, token: Token | None, message: str) -> FilterSyntaxError:
    pos = token.pos if token is not None else len(source)
    width = max(1, len(token.text)) if token is not None else 1
    shown = repr(token.text) if token is not None else "the end"
    return FilterSyntaxError(f"invalid {what} at position {pos} ({shown}): {message}", source, pos, width)


def tokenize(source: str, what: str = "filter") -> list[Token]:
    tokens = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            bad = Token("bad", source[pos], pos)
            raise _error(source, what, bad, "unexpected character")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    return tokens


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def parse_field(token: Token, source: str, what: str) -> Field:
    """``metrics.`a/b``` → ``Field("metrics", "a/b")``; a bare attribute name → attributes."""
    if token.kind != "word" or token.text.upper() in KEYWORDS:
        raise _error(
            source,
            what,
            token,
            "expected an identifier like metrics.acc, params.lr, tags.model or attributes.status",
        )
    head, dot, rest = token.text.partition(".")
    if not dot:
        if head.lower() in ATTRIBUTES:
            return Field("attributes", ATTRIBUTES[head.lower()])
        raise _error(
            source,
            what,
            token,
            "unknown identifier; use metrics.<key>, params.<key>, tags.<key> or attributes.<name>",
        )
    entity = ENTITIES.get(head.lower())
    if entity is None:
        raise _error(
            source, what, token, f"unknown entity {head!r}; expected metrics, params, tags or attributes"
        )
    key = _unquote(rest) if rest[:1] in ("`", '"') else rest
    if not key:
        raise _error(source, what, token, "empty key")
    if entity == "attributes":
        if key.lower() not in ATTRIBUTES:
            allowed = ", ".join(sorted(set(ATTRIBUTES.values())))
            raise _error(source, what, token, f"unknown attribute {key!r}; known: {allowed}")
        key = ATTRIBUTES[key.lower()]
    return Field(entity, key)


def _like_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]


def _predicate(field: Field, op: str, value: Any, getter: Getter) -> Predicate:
    """A predicate on a record; a record without the field never matches (MLflow's rule)."""
    numeric = isinstance(value, float)
    if op in ("IN", "NOT IN"):
        wanted = frozenset(value)
        negate = op == "NOT IN"

        def member(record: Any) -> bool:
            got = getter(record)
            return got is not None and ((as_text(got) in wanted) != negate)

        return member
    if op in ("LIKE", "ILIKE"):
        regex = _like_regex(value, op == "ILIKE")

        def like(record: Any) -> bool:
            got = getter(record)
            return got is not None and regex.fullmatch(as_text(got)) is not None

        return like
    compare = _COMPARE[op]
    if numeric:

        def number(record: Any) -> bool:
            got = getter(record)
            if got.__class__ is not float:  # the common case (a metric) skips the conversion
                got = as_number(got)
                if got is None:
                    return False
            return got == got and bool(compare(got, value))  # NaN never matches

        return number

    def text(record: Any) -> bool:
        got = getter(record)
        return got is not None and bool(compare(got if got.__class__ is str else as_text(got), value))

    return text


@dataclass(frozen=True)
class Clause:
    """One comparison of a filter: ``field op value`` (``value`` a float, a str, or a list for IN)."""

    field: Field
    op: str
    value: Any


def predicate_of(clause: Clause, getter: Getter) -> Predicate:
    """The clause as a predicate on whatever ``getter`` reads a value from (a record, or the value)."""
    return _predicate(clause.field, clause.op, clause.value, getter)


def parse_filter(source: str, getter_for: Callable[[Field], Getter]) -> Predicate | None:
    """Compile a filter string into one predicate (None for an empty filter)."""
    clauses = parse_clauses(source)
    if not clauses:
        return None
    first, *rest = (predicate_of(c, getter_for(c.field)) for c in clauses)
    for more in rest:
        first = _both(first, more)
    return first


def parse_clauses(source: str) -> list[Clause]:
    """The clauses of a filter string, checked (a malformed filter raises ``InvalidInputError``)."""
    what = "filter"
    tokens = tokenize(source, what)
    if not tokens:
        return []
    clauses: list[Clause] = []
    i = 0
    while True:
        if i >= len(tokens):
            raise _error(source, what, None, "expected an identifier after AND")
        field = parse_field(tokens[i], source, what)
        i += 1
        op_token = tokens[i] if i < len(tokens) else None
        op = _read_op(tokens, i)
        if op is None:
            raise _error(
                source,
                what,
                op_token,
                "expected a comparator: =, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN",
            )
        i += 2 if op == "NOT IN" else 1
        value_token = tokens[i] if i < len(tokens) else None
        value, i = _read_value(tokens, i, source, op)
        _check_types(source, field, op, value, op_token, value_token)
        clauses.append(Clause(field, op, value))
        if i == len(tokens):
            break
        joiner = tokens[i]
        if joiner.kind == "word" and joiner.text.upper() == "OR":
            raise _error(
                source, what, joiner, "OR is not supported (MLflow's grammar joins clauses with AND only)"
            )
        if joiner.kind != "word" or joiner.text.upper() != "AND":
            raise _error(source, what, joiner, "expected AND or the end of the filter")
        i += 1
    return clauses


def _both(a: Predicate, b: Predicate) -> Predicate:
    return lambda record: a(record) and b(record)


def _read_op(tokens: list[Token], i: int) -> str | None:
    if i >= len(tokens):
        return None
    token = tokens[i]
    if token.kind == "op":
        return {"==": "=", "<>": "!="}.get(token.text, token.text)
    word = token.text.upper() if token.kind == "word" else ""
    if word in ("LIKE", "ILIKE", "IN"):
        return word
    if word == "NOT" and i + 1 < len(tokens) and tokens[i + 1].text.upper() == "IN":
        return "NOT IN"
    return None


def _literal(token: Token) -> Any:
    if token.kind == "number":
        return float(token.text)
    if token.kind in ("squote", "dquote"):
        return _unquote(token.text)
    return None


def _read_value(tokens: list[Token], i: int, source: str, op: str) -> tuple[Any, int]:
    what = "filter"
    token = tokens[i] if i < len(tokens) else None
    if op in ("IN", "NOT IN"):
        if token is None or token.text != "(":
            raise _error(source, what, token, f"{op} needs a parenthesised list like ('a', 'b')")
        values: list[str] = []
        i += 1
        while True:
            item = tokens[i] if i < len(tokens) else None
            if item is None or _literal(item) is None:
                raise _error(source, what, item, "expected a quoted string or a number in the list")
            values.append(item.text if item.kind == "number" else _unquote(item.text))
            i += 1
            sep = tokens[i] if i < len(tokens) else None
            if sep is not None and sep.text == ")":
                return values, i + 1
            if sep is None or sep.text != ",":
                raise _error(source, what, sep, "expected ',' or ')' in the list")
            i += 1
    if token is None or _literal(token) is None:
        raise _error(source, what, token, "expected a value: a number or a 'quoted string'")
    return _literal(token), i + 1


def _check_types(
    source: str, field: Field, op: str, value: Any, at: Token | None, value_at: Token | None
) -> None:
    what = "filter"
    numeric_field = field.entity == "metrics" or (
        field.key in NUMERIC_ATTRIBUTES and field.entity == "attributes"
    )
    if numeric_field:
        if op not in NUMERIC_OPS:
            raise _error(
                source, what, at, f"{field.entity}.{field.key} is numeric: use =, !=, <, <=, > or >="
            )
        if not isinstance(value, float):
            raise _error(
                source, what, value_at, f"{field.entity}.{field.key} compares with a number, not {value!r}"
            )
        return
    if op in ("LIKE", "ILIKE") and not isinstance(value, str):
        raise _error(source, what, value_at, f"{op} needs a 'quoted pattern' (% any text, _ one character)")
    if op in ("<", "<=", ">", ">=") and not isinstance(value, float):
        raise _error(
            source,
            what,
            value_at,
            f"{op} on {field.entity}.{field.key} needs a number (text has no useful order)",
        )


@dataclass(frozen=True)
class OrderKey:
    field: Field
    descending: bool


def parse_order_by(clauses: list[str] | None) -> list[OrderKey]:
    """``["metrics.acc DESC", "start_time"]`` → order keys (ascending unless DESC)."""
    keys = []
    for clause in clauses or []:
        what = "order_by clause"
        if not isinstance(clause, str):
            raise InvalidInputError(f"order_by entries must be strings, got {clause!r}")
        tokens = tokenize(clause, what)
        if not tokens:
            raise InvalidInputError("empty order_by clause; expected e.g. 'metrics.acc DESC'")
        field = parse_field(tokens[0], clause, what)
        descending = False
        if len(tokens) > 1:
            word = tokens[1].text.upper()
            if tokens[1].kind != "word" or word not in ("ASC", "DESC"):
                raise _error(clause, what, tokens[1], "expected ASC or DESC")
            descending = word == "DESC"
        if len(tokens) > 2:
            raise _error(clause, what, tokens[2], "unexpected text after ASC/DESC")
        keys.append(OrderKey(field, descending))
    return keys
