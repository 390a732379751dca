"""Driving the window as a user would: real drop events, clicks, an event-loop stall meter."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget


def drop_paths(target: QWidget, paths: list[Path | str], pos: QPoint | None = None) -> bool:
    """Deliver drag-enter, drag-move and drop events with ``paths`` as file URLs, as a file manager would;
    Qt passes them up to the first widget that accepts drops. Returns whether the drop was accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = pos or target.rect().center()
    point = QPointF(pos)
    actions = Qt.DropAction.CopyAction | Qt.DropAction.MoveAction | Qt.DropAction.LinkAction
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(pos, actions, mime, buttons, mods)
    QApplication.sendEvent(target, enter)
    move = QDragMoveEvent(pos, actions, mime, buttons, mods)
    QApplication.sendEvent(target, move)
    drop = QDropEvent(point, actions, mime, buttons, mods)
    QApplication.sendEvent(target, drop)
    return drop.isAccepted()


class StallMeter:
    """A 10 ms timer on the GUI thread; the longest gap between its ticks is the worst stall of the loop."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.interval = interval_ms / 1000
        self.timer = QTimer(interval=interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last: float | None = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    @property
    def max_stall(self) -> float:
        """Longest gap beyond the timer's own interval, seconds."""
        return max(self.gaps, default=0.0) - self.interval


def wait_for_signal(signal, timeout_ms: int = 60_000) -> tuple:
    """Run the event loop until ``signal`` is emitted and return its arguments; exit the process with a
    message after ``timeout_ms`` (for the probe scripts that drive a window outside pytest-qt)."""
    loop = QEventLoop()
    got = []
    signal.connect(lambda *args: (got.append(args), loop.quit()))
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    if not got:
        raise SystemExit(f"timed out waiting for {signal}")
    return got[0]
