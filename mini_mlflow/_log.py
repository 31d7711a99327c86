"""mini_mlflow's own log messages: the ``mini_mlflow`` logger, at the level of the log_level setting.

Problems that need the user's attention are also issued as warnings (once per cause); the log adds
the routine story (runs started and ended, writes recovered after a failure, sync passes) for those
who raise ``MINI_MLFLOW_LOG_LEVEL`` to INFO or DEBUG. ``logging`` is imported on first use, never by
``import mini_mlflow``.
"""

from __future__ import annotations

from typing import Any

_configured: str | None = None


def logger() -> Any:
    import logging

    return logging.getLogger("mini_mlflow")


def configure(level: str) -> None:
    """Apply the log_level setting; messages go to stderr unless the program set up logging itself."""
    global _configured
    if level == _configured:
        return
    import logging

    log = logging.getLogger("mini_mlflow")
    log.setLevel(level)
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("mini_mlflow %(levelname)s: %(message)s"))
        log.addHandler(handler)
    _configured = level


def info(message: str, *args: Any) -> None:
    if _configured is not None:
        logger().info(message, *args)


def debug(message: str, *args: Any) -> None:
    if _configured is not None:
        logger().debug(message, *args)
