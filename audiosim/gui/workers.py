"""Run plain core functions off the GUI thread and bring their results back through queued signals.

A worker gets a snapshot of its inputs (plain values, a library folder) and never touches a widget. Its
:class:`QtTaskState` implements :class:`audiosim.tasks.TaskState` by emitting signals, so the indexer
reports to the window exactly as it reports to the CLI's progress bar.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Qt, Signal

from audiosim.tasks import NullState

QUEUED = Qt.ConnectionType.QueuedConnection

PROGRESS_INTERVAL = 0.05  # seconds between progress signals: the event loop is never flooded


class TaskSignals(QObject):
    progress = Signal(int, int)
    status = Signal(str)
    partial = Signal(object)
    finished = Signal(object)
    failed = Signal(object)  # the exception


class QtTaskState(NullState):
    """A :class:`~audiosim.tasks.TaskState` that emits (throttled) signals; cancellable from any thread."""

    def __init__(self, signals: TaskSignals) -> None:
        super().__init__()
        self.signals = signals
        self._last = 0.0
        self._pending_status: str | None = None

    def set_progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            if self._pending_status is not None:
                self.signals.status.emit(self._pending_status)
                self._pending_status = None
            self.signals.progress.emit(done, total)

    def set_status(self, text: str) -> None:
        self._pending_status = text  # sent with the next progress signal

    def set_partial_result(self, result: Any) -> None:
        self.signals.partial.emit(result)


class Task(QRunnable):
    """``fn(*args, state=..., **kwargs)`` (or without ``state``) on the thread pool."""

    def __init__(self, fn: Callable, *args, with_state: bool = False, **kwargs) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the Python object keeps the signals alive until we drop it
        self.signals = TaskSignals()
        self.state = QtTaskState(self.signals)
        self._fn, self._args, self._kwargs, self._with_state = fn, args, kwargs, with_state

    def run(self) -> None:
        try:
            if self._with_state:
                result = self._fn(*self._args, state=self.state, **self._kwargs)
            else:
                result = self._fn(*self._args, **self._kwargs)
        except BaseException as exc:  # noqa: BLE001 - report every failure to the window, never crash
            exc.traceback_text = traceback.format_exc()  # type: ignore[attr-defined]
            _emit(self.signals.failed, exc)
        else:
            _emit(self.signals.finished, result)


def _emit(signal, value) -> None:
    try:
        signal.emit(value)
    except RuntimeError:  # the window went away while we worked (closing): nobody is listening
        pass


class TaskRunner(QObject):
    """Starts tasks on a pool and keeps them alive until they report; ``latest`` supersedes older ones."""

    def __init__(self, pool: QThreadPool | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool or QThreadPool.globalInstance()
        self._live: set[Task] = set()

    def start(self, task: Task, on_done: Callable[[Any], Any] | None = None,
              on_error: Callable[[BaseException], Any] | None = None) -> Task:
        self._live.add(task)
        task.signals.setParent(self)  # dies with the window: late results then go nowhere
        # Queued explicitly: the slots run on the GUI thread (where the signals object lives), whatever they are.
        if on_done is not None:
            task.signals.finished.connect(on_done, QUEUED)
        if on_error is not None:
            task.signals.failed.connect(on_error, QUEUED)
        task.signals.finished.connect(lambda _r, t=task: self._live.discard(t), QUEUED)
        task.signals.failed.connect(lambda _e, t=task: self._live.discard(t), QUEUED)
        self.pool.start(task)
        return task

    def cancel_all(self) -> None:
        for task in list(self._live):
            task.state.cancel()

    def wait(self, msecs: int = 5000) -> bool:
        return self.pool.waitForDone(msecs)

    @property
    def busy(self) -> bool:
        return bool(self._live)


class WriterThread(QThread):
    """One writing job (an indexing run, removing folders): opens the library writable for the job only,
    then closes it, so the CLI can write whenever the window is idle. ``job(library, state)``."""

    def __init__(self, library_folder: str, job: Callable, *, kind: str, roots: list[str] = (),
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library_folder = library_folder
        self.job = job
        self.kind = kind
        self.roots = list(roots)
        self.signals = TaskSignals(self)
        self.state = QtTaskState(self.signals)
        self.result = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from audiosim.library.db import Library

        try:
            with Library(self.library_folder, writable=True) as library:
                if library.notices:  # what opening did (completed, upgraded, rebuilt): shown as a status
                    _emit(self.signals.status, "; ".join(library.notices))
                self.result = self.job(library, self.state)
        except BaseException as exc:  # noqa: BLE001 - shown to the user, the window goes on
            exc.traceback_text = traceback.format_exc()  # type: ignore[attr-defined]
            self.error = exc
            _emit(self.signals.failed, exc)
        else:
            _emit(self.signals.finished, self.result)


def upgrade_job(library, state):
    """Bring a library made by an older audiosim up to date (see :mod:`audiosim.library.upgrade`)."""
    from audiosim.library.upgrade import upgrade_library

    return upgrade_library(library, workers=None, state=state)


def index_job(paths: list[str], cluster: str | None = None) -> Callable:
    def job(library, state):
        from audiosim.indexer import index_paths

        return index_paths(library, paths, workers=None, state=state, cluster=cluster)

    return job
