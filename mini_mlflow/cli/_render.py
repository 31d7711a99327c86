"""Terminal rendering for the read commands: a console that fits the terminal, safe text, formats."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from ._table import clean as clean

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text
from ..read._records import as_text
from ..read._records import lower_is_better as lower_is_better
from ..store._layout import iso_from_ms

STATUS_STYLE = {
    "RUNNING": "cyan",
    "FINISHED": "green",
    "FAILED": "red",
    "KILLED": "yellow",
    "CRASHED": "bold red",
}


def make_console(stderr: bool = False) -> Console:
    """A console that colours only a real terminal without ``NO_COLOR``, and fits its width."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    color = tty and not os.environ.get("NO_COLOR")
    width = None if tty else int(os.environ.get("COLUMNS") or 120)
    return Console(
        file=stream,
        no_color=not color,
        color_system="auto" if color else None,
        force_terminal=tty,
        width=width,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )


def safe(text: Any) -> str:
    """``clean`` plus rich markup escaped, for strings that go through markup rendering."""
    from rich.markup import escape

    return escape(clean(text))


def plain(text: Any, style: str = "") -> Text:
    """A rich ``Text`` that prints ``text`` literally (``[red]`` stays ``[red]``)."""
    from rich.text import Text

    return Text(clean(text), style=style)


def short_id(run_id: str) -> str:
    return run_id[:8]


def fmt_number(value: Any) -> str:
    """Compact numbers: 4 significant digits for floats, NaN/inf spelled out."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value)) if abs(value) >= 1e4 else f"{value:g}"
        return f"{value:.4g}"
    return str(value)


def fmt_param(value: Any) -> str:
    return fmt_number(value) if isinstance(value, float) else as_text(value)


def fmt_time(ms: int | None, now_ms: int | None = None) -> str:
    """``2026-11-23 10:04`` (UTC) for a start time; empty when unknown."""
    if ms is None:
        return ""
    iso = iso_from_ms(ms) or ""
    return iso[:16].replace("T", " ")


def fmt_duration(start: int | None, end: int | None, running: bool = False) -> str:
    if start is None:
        return ""
    if end is None:
        if not running:
            return ""
        end = int(time.time() * 1000)
    seconds = max(0, end - start) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def status_label(status: str) -> tuple[str, str]:
    """How a status reads in a listing (``crashed`` for a dead RUNNING run) and its colour."""
    return clean("crashed" if status == "CRASHED" else status.lower()), STATUS_STYLE.get(status, "")


def status_text(status: str) -> Text:
    from rich.text import Text

    label, style = status_label(status)
    return Text(label, style=style)
