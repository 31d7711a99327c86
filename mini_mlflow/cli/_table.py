"""A lean table printer for ``ls``: fixed columns fitted to the terminal, ANSI colour only on a TTY.

``ls`` must start and finish in well under half a second on 10,000 runs; importing and laying out a
rich table costs a third of that, so listings are drawn here with plain string work.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import IO

# C0/C1 control characters and DEL: never sent to a terminal from store content (escape sequences);
# bidirectional overrides (text that reads differently than it is) and lone surrogates (bytes of a
# name that were not UTF-8, which would make printing fail) are shown as escapes too.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SGR = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}


def clean(text: object) -> str:
    """Store content made printable: control characters shown as ``\\xNN``, never interpreted."""
    return _CONTROL.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def use_color(stream: IO[str] | None = None) -> bool:
    """Colour only on a real terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    stream = stream or sys.stdout
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


def term_width(stream: IO[str] | None = None) -> int:
    """The terminal's width (``COLUMNS`` wins); 120 when writing to a pipe or a file."""
    stream = stream or sys.stdout
    if os.environ.get("COLUMNS", "").isdigit():
        return max(20, int(os.environ["COLUMNS"]))
    if stream.isatty():
        try:
            return max(20, os.get_terminal_size(stream.fileno()).columns)
        except OSError:
            pass
    return 120


def width_of(text: str) -> int:
    """Cells a string takes on a terminal (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
    return sum(
        2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text
    )


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells with an ellipsis."""
    if width_of(text) <= width:
        return text
    out, used = [], 0
    for char in text:
        w = width_of(char)
        if used + w > width - 1:
            break
        out.append(char)
        used += w
    return "".join(out) + "…"


def paint(text: str, style: str, color: bool) -> str:
    codes = [_SGR[s] for s in style.split() if s in _SGR]
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m" if color and codes and text else text


@dataclass
class Column:
    header: str
    max_width: int = 40
    right: bool = False
    style: str = ""


def render(columns: list[Column], rows: list[list[tuple[str, str]]], color: bool) -> list[str]:
    """Lines of a table; each cell is ``(text, style)``; two spaces between columns, none trailing."""
    widths = [
        min(c.max_width, max([width_of(c.header), *(width_of(row[i][0]) for row in rows)]))
        for i, c in enumerate(columns)
    ]
    lines = []
    header = [(c.header, "bold") for c in columns]
    for row in [header, *rows]:
        cells = []
        for i, (col, (text, style)) in enumerate(zip(columns, row, strict=True)):
            shown = fit(text, widths[i])
            pad = " " * (widths[i] - width_of(shown))
            shown = paint(shown, style or (col.style if row is not header else "bold"), color)
            cells.append(pad + shown if col.right else shown + (pad if i < len(columns) - 1 else ""))
        lines.append("  ".join(cells).rstrip())
    return lines
