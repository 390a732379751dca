"""Unexpected exceptions in the window: shown in a dialog, and the window keeps running.

PySide6 hands an exception raised in a slot (or any Python called from Qt) to ``sys.excepthook``; a Python
thread's goes to ``threading.excepthook``. Both hooks only emit a signal, so the dialog is always built
on the GUI thread. The traceback goes in the dialog's details and, with ``--debug``, to the log.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from audiosim.errors import internal_error_summary

log = logging.getLogger(__name__)


class UnexpectedErrorReporter(QObject):
    """Installs the hooks; ``raised(summary, details)`` arrives on the GUI thread (queued from others)."""

    raised = Signal(str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._previous: tuple[Callable, Callable] | None = None

    def install(self) -> None:
        self._previous = (sys.excepthook, threading.excepthook)
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook, threading.excepthook = self._previous
            self._previous = None

    def _excepthook(self, exc_type, exc, tb) -> None:
        if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):  # not bugs: handled as Python would
            (self._previous[0] if self._previous else sys.__excepthook__)(exc_type, exc, tb)
            return
        self._report(exc, tb)

    def _thread_excepthook(self, args) -> None:
        if args.exc_type is SystemExit:
            return
        self._report(args.exc_value, args.exc_traceback)

    def _report(self, exc: BaseException, tb) -> None:
        details = "".join(traceback.format_exception(type(exc), exc, tb))
        log.debug("unexpected error\n%s", details)
        try:
            self.raised.emit(internal_error_summary(exc), details)
        except RuntimeError:  # the window is gone (closing): nothing to show it in
            pass


def install_error_dialog(window) -> UnexpectedErrorReporter:
    """Show every unexpected exception in ``window`` as a dialog; ``uninstall()`` restores the old hooks."""
    reporter = UnexpectedErrorReporter(window)
    reporter.raised.connect(window.show_internal_error)
    reporter.install()
    window.destroyed.connect(lambda *_: reporter.uninstall())
    return reporter
