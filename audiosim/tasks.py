"""Progress, status and cancellation for long work, shared by the CLI (tqdm) and the GUI (Qt signals).

Long work is a plain function that takes a ``state``; it reports through it and polls ``cancelled``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Protocol


class TaskState(Protocol):
    def set_progress(self, done: int, total: int) -> None: ...
    def set_status(self, text: str) -> None: ...
    def set_partial_result(self, result: Any) -> None: ...
    @property
    def cancelled(self) -> bool: ...


class NullState:
    """Reports nothing; can still be cancelled from another thread."""

    def __init__(self) -> None:
        self._cancel = threading.Event()

    def set_progress(self, done: int, total: int) -> None:
        pass

    def set_status(self, text: str) -> None:
        pass

    def set_partial_result(self, result: Any) -> None:
        pass

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


class TqdmState(NullState):
    """A terminal progress bar on stderr (stdout stays clean for --json); nothing when stderr is not a
    terminal (a log, a pipe), where tqdm would draw nothing either.

    The bar (and tqdm's import) waits for the first report: ``audiosim index`` creates its state before it
    forks its workers, and they should not wait for tqdm."""

    def __init__(self, description: str = "", unit: str = "file") -> None:
        super().__init__()
        self._description, self._unit = description, unit
        self._made = None
        try:
            self._shown = sys.stderr is not None and sys.stderr.isatty()
        except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
            self._shown = False

    @property
    def _bar(self):
        if self._made is None:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: a process with threads cannot fork safely
            self._made = tqdm(desc=self._description, unit=self._unit, file=sys.stderr, dynamic_ncols=True,
                              leave=False)
        return self._made

    def set_progress(self, done: int, total: int) -> None:
        if not self._shown:
            return
        if self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def set_status(self, text: str) -> None:
        if self._shown:
            self._bar.set_postfix_str(text[-60:], refresh=False)

    def close(self) -> None:
        if self._made is not None:
            self._made.close()
