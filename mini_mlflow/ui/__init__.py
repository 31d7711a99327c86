"""UI stage: ``mini-mlflow ui``, a local web page over a store (server, JSON answers, vendored assets)."""

from __future__ import annotations

from ._server import UIServer, ready_line, serve

__all__ = ["UIServer", "ready_line", "serve"]
