"""Active-run registry: the thread-local run stack, the process's open runs and their last words.

One guarded set of hooks per process ends every open run honestly: at interpreter exit (FINISHED, or
FAILED/KILLED when an uncaught exception, Ctrl-C or ``sys.exit`` with a failure code ended the
program), on SIGTERM (KILLED, then the process dies of the signal as it would have), and after
``fork`` the child forgets the parent's runs.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from ..store import _pending
from ..store._layout import HEARTBEAT_FILE
from ._writer import WRITER

if TYPE_CHECKING:
    from ._run import Run


def _no_active_run(*args: Any, **kwargs: Any) -> None:
    from .._errors import NoActiveRunError

    raise NoActiveRunError("No active run: call start_run() first (or use a Run object)")


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.stack: list[Run] = []
        # The top run's bound logging methods, kept here so the fluent hot path is one attribute
        # load and one call (see _fluent.log_metric).
        self.log_metric: Any = _no_active_run
        self.log_metrics: Any = _no_active_run

    def refresh(self) -> None:
        top = self.stack[-1] if self.stack else None
        self.log_metric = top.log_metric if top is not None else _no_active_run
        self.log_metrics = top.log_metrics if top is not None else _no_active_run


_state = _ThreadState()
_open: dict[int, Run] = {}
_lock = threading.Lock()
_hooks_installed = False
#: Status given at exit to runs still open: changed by an uncaught exception in the main program.
_exit_status = "FINISHED"
_previous_excepthook = sys.excepthook
_previous_sigterm: Any = None
_previous_exit: Any = sys.exit
#: The status last passed to ``sys.exit`` (``_NOT_CALLED`` if it was not called).
_NOT_CALLED = object()
_exit_code: Any = _NOT_CALLED
#: Set by the exit hook: runs ended from then on are not looked at for readers (none will come).
_exiting = False
#: The outermost frame of the main thread when the first run started (the ``__main__`` module, or
#: runpy's for ``python -m``): whether it returned tells a normal end from one by ``sys.exit``.
_outermost: FrameType | None = None


def on_start(run: Run) -> None:
    with _lock:
        _open[id(run)] = run
    _install_hooks()


#: The folder of the run this process ended last (MLflow's ``last_active_run``).
last_ended_dir: str | None = None


def on_end(run: Run) -> None:
    global last_ended_dir
    with _lock:
        _open.pop(id(run), None)
        last_ended_dir = run.run_dir
        shared = any(other.run_dir == run.run_dir for other in _open.values())
    stack = _state.stack
    if run in stack:
        stack.remove(run)
        _state.refresh()
    if not shared:
        _tell_readers(run.run_dir)


def _tell_readers(run_dir: str) -> None:
    """Tell this process's readers the run is final (``store._pending``), unless another process's
    writer may still add to it: its heartbeat file is in the folder (ours was removed at the end).
    The read side's look at the folder goes with it, taken now while its files are hot, so that this
    process's first search does not open the run again (not when the process is exiting: no search
    follows)."""
    try:
        if any(name.startswith(HEARTBEAT_FILE + "-") for name in os.listdir(run_dir)):
            return
        looked = _look(run_dir) if not _exiting and _pending.wants_looks() else None
        mtime_ns = looked.d if looked is not None else os.stat(run_dir).st_mtime_ns
        _pending.note_ended(run_dir, mtime_ns, looked)
    except OSError:
        pass  # the folder is gone or unreadable: readers check the run as anyone's


def _look(run_dir: str) -> Any:
    """The index's listing look at a run folder (a ``read._scan.Scanned``), or None."""
    exp_dir, name = os.path.split(os.path.abspath(run_dir))
    try:
        from ..read._scan import DIR_FLAGS, scan_run

        exp_fd = os.open(exp_dir, DIR_FLAGS)
        try:
            looked = scan_run(exp_fd, exp_dir, name, time.time_ns())
        finally:
            os.close(exp_fd)
    except Exception:  # only a head start for readers: a look that fails is left to them
        return None
    return looked if looked.fields is not None else None


def open_runs() -> list[Run]:
    with _lock:
        return list(_open.values())


def push(run: Run) -> None:
    _state.stack.append(run)
    _state.refresh()


def active() -> Run | None:
    """The innermost run of this thread that has not ended."""
    stack = _state.stack
    if stack and stack[-1].status != "RUNNING":
        while stack and stack[-1].status != "RUNNING":
            stack.pop()  # ended through its Run object or from another thread
        _state.refresh()
    return stack[-1] if stack else None


def end_all(status: str, lock_timeout: float = -1) -> None:
    """End every open run of this process, innermost first; report (never raise) failures."""
    for run in reversed(open_runs()):
        try:
            run.end(status, _lock_timeout=lock_timeout)
        except Exception as exc:  # at exit there is nobody left to raise to
            print(f"mini_mlflow: could not end run {run.run_id}: {exc}", file=sys.stderr)


# -- process hooks -------------------------------------------------------------------------------


def _install_hooks() -> None:
    global _hooks_installed, _previous_excepthook, _previous_sigterm, _previous_exit, _outermost
    if _hooks_installed:
        return
    with _lock:
        if _hooks_installed:
            return
        _hooks_installed = True
        atexit.register(_at_exit)
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook
        # Exit hooks are not told the exit code, so sys.exit reports it on its way.
        _previous_exit = sys.exit
        sys.exit = _exit
        if threading.current_thread() is threading.main_thread():
            frame = sys._getframe()
            while frame.f_back is not None:
                frame = frame.f_back
            _outermost = frame
            try:
                current = signal.getsignal(signal.SIGTERM)
                if current is signal.SIG_DFL or callable(current):
                    _previous_sigterm = current
                    signal.signal(signal.SIGTERM, _on_sigterm)
            except (ValueError, OSError):  # not allowed here (embedded interpreters)
                pass


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    global _exit_status
    _exit_status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
    _previous_excepthook(exc_type, exc, tb)


def _exit(status: Any = None) -> NoReturn:
    global _exit_code
    _exit_code = status
    _previous_exit(status)
    raise SystemExit(status)  # only if a replaced sys.exit returned


def _failed_by_exit_code() -> bool:
    """Whether the program is ending because ``sys.exit`` was called with a failure status.

    A status recorded by ``_exit`` counts only if the main program did not run to its end: a
    ``SystemExit`` that was caught, after which the program went on and ended normally, does not.
    """
    code = _exit_code
    if code is _NOT_CALLED or code is None or code is False or code == 0:
        return False
    frame = _outermost
    if frame is None:  # the first run started in another thread: trust the recorded status
        return True
    from opcode import opname

    return opname[frame.f_code.co_code[frame.f_lasti]] not in ("RETURN_VALUE", "RETURN_CONST")


def ending_status() -> str:
    """At exit: the status the program's end gives the runs still open (FINISHED when it ends
    normally; FAILED after an uncaught error or a failing ``sys.exit``; KILLED on Ctrl-C)."""
    status = _exit_status
    if status == "FINISHED" and _failed_by_exit_code():
        return "FAILED"
    return status


def _at_exit() -> None:
    global _exiting
    _exiting = True
    end_all(ending_status())
    WRITER.stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The handler runs in the main thread, possibly while it is inside mini_mlflow holding a lock:
    # waits are bounded so a dying process cannot deadlock on itself.
    end_all("KILLED", lock_timeout=2.0)
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _after_fork_in_child() -> None:
    global _lock, _exit_code
    _lock = threading.Lock()
    _exit_code = _NOT_CALLED
    _open.clear()
    _pending.forget_ended()
    _state.stack = []
    _state.refresh()
    WRITER.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
