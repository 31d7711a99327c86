"""Integrations: failures inside a framework's loop warn once per cause instead of stopping training."""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

_F = TypeVar("_F", bound=Callable[..., Any])

_warned: set[tuple[str, str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(framework: str, what: str, exc: BaseException) -> None:
    """Warn that ``what`` failed in the ``framework`` integration, once per (framework, what, error type)."""
    cause = (framework, what, type(exc).__name__)
    with _warned_lock:
        if cause in _warned:
            return
        _warned.add(cause)
    warnings.warn(
        f"mini_mlflow {framework} integration: {what} failed ({type(exc).__name__}: {exc}); "
        "training goes on without it (this warning is shown once per cause)",
        RuntimeWarning,
        stacklevel=3,
    )


def guarded(
    framework: str,
    what: str,
    default: Any = None,
    on_error: Callable[[Exception], None] | None = None,
) -> Callable[[_F], _F]:
    """Decorate a framework hook so that an exception inside it warns once and returns ``default``
    (after ``on_error(exc)``, for a hook whose failure something later must be able to name).

    Only ``Exception`` is caught: Ctrl-C and ``SystemExit`` still stop the program.
    """

    def decorate(func: _F) -> _F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                if on_error is not None:
                    on_error(exc)
                warn_once(framework, what, exc)
                return default

        return cast(_F, wrapper)

    return decorate
