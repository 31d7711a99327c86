"""Ctrl-C held back while the main thread holds one of our locks.

Python raises ``KeyboardInterrupt`` in the main thread between two bytecodes, and CPython looks for
signals as a call returns: right after ``lock.acquire()`` returned, before the ``try`` that releases the
lock. A drain or an ``end`` interrupted there keeps its lock forever, and the next ``flush()``,
``end_run()`` or the writer thread waits on it (seen: a loop stopped with Ctrl-C hung at exit). A drain
interrupted half-way would also lose the points it had taken from the queue. So, on the main thread,
:class:`HeldInterrupts` swaps the SIGINT handler for one that only notes the signal, and hands a noted
signal to the real handler once the block is left. Other threads never receive ``KeyboardInterrupt``.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

_MAIN = threading.main_thread()


class HeldInterrupts:
    """``with HeldInterrupts():`` delays Ctrl-C until the block is left (main thread only)."""

    __slots__ = ("frame", "noted", "previous")

    def __enter__(self) -> HeldInterrupts:
        self.previous: Any = None
        self.noted = False
        if threading.current_thread() is not _MAIN:
            return self
        previous = signal.getsignal(signal.SIGINT)
        if previous is None or previous is signal.SIG_IGN:
            return self  # a handler set outside Python (cannot be put back), or Ctrl-C ignored
        try:
            signal.signal(signal.SIGINT, self._note)
        except ValueError:  # not the main interpreter: signals are not ours to handle
            return self
        self.previous = previous
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.noted, self.frame = True, frame

    def __exit__(self, *exc: object) -> None:
        previous = self.previous
        if previous is None:
            return
        signal.signal(signal.SIGINT, previous)
        if self.noted:
            if callable(previous):
                previous(signal.SIGINT, self.frame)  # usually raises KeyboardInterrupt, here
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)
