"""The exception tree: every error mini_mlflow raises on purpose.

::

    MiniMlflowError
    ├── InvalidInputError (ValueError)        a bad key, value, name, id, status or setting
    │   ├── InvalidValueError (+TypeError)    a metric value that is not a real number
    │   └── ParamConflictError                a param re-logged with a different value
    ├── NoActiveRunError (RuntimeError)       logging with no active run ("No active run")
    ├── ActiveRunExistsError (RuntimeError)   start_run while one is active ("already an active run")
    ├── RunEndedError (ValueError)            logging to/ending an ended run ("Cannot log", "already ended")
    ├── NotFoundError (LookupError)           no such run, experiment or metric
    └── StorageError (OSError)                background I/O failed; raised at flush()/end_run()

Each class also derives from the closest builtin, so ``except ValueError`` written against the original
Mini MLflow keeps working.
"""

from __future__ import annotations


class MiniMlflowError(Exception):
    """Base of every error raised by mini_mlflow (``mini_mlflow.exceptions.MlflowException`` too)."""

    #: MLflow's error code for this kind of error, as code written for ``MlflowException`` reads it.
    error_code = "INTERNAL_ERROR"

    @property
    def message(self) -> str:
        """The error's text (``MlflowException.message``), unless a subclass sets its own."""
        own: str | None = self.__dict__.get("_message")
        return str(self) if own is None else own

    @message.setter
    def message(self, value: str) -> None:
        self._message = value


class InvalidInputError(MiniMlflowError, ValueError):
    """A caller passed something the store cannot accept; the message names it and the rule."""

    error_code = "INVALID_PARAMETER_VALUE"


class InvalidValueError(InvalidInputError, TypeError):
    """A metric value that is not a real number (bools, strings and None are refused)."""


class ParamConflictError(InvalidInputError):
    """A param was logged again with a different value (params are write-once)."""


class NoActiveRunError(MiniMlflowError, RuntimeError):
    """A fluent call needed an active run in this thread and there was none."""

    error_code = "INVALID_STATE"


class ActiveRunExistsError(MiniMlflowError, RuntimeError):
    """``start_run`` was called while a run is active, without ``nested=True``."""

    error_code = "INVALID_STATE"


class RunEndedError(MiniMlflowError, ValueError):
    """The run has ended: it cannot be logged to or ended again."""

    error_code = "INVALID_STATE"


class NotFoundError(MiniMlflowError, LookupError):
    """No run, experiment or metric with that id or name exists in the store."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


class StorageError(MiniMlflowError, OSError):
    """Writing to the store failed; the data is still held in memory where that was possible."""
