"""UI stage: JSON bytes for the answers (orjson where installed, else the json module, same output)."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a core dependency; kept for platforms without a wheel
    orjson = None  # type: ignore[assignment]


def dumps(doc: Any) -> bytes:
    """Compact JSON of ``doc`` (callers spell non-finite floats as strings first: see ``_answers.num``)."""
    if orjson is not None:
        return orjson.dumps(doc)
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
