"""Indexing progress (files done / total, current file, files per second, time left, Cancel) and the list
of files that failed, with their errors, which can be copied."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class FailedList(QWidget):
    """Files that could not be indexed: path and reason; Copy puts them on the clipboard as text."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["File", "Error"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(0, 380)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the failed files and their errors (all, or the selected ones)")
        self.copy_button.clicked.connect(self.copy)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        QShortcut(QKeySequence.StandardKey.Copy, self.table, self.copy,
                  context=Qt.ShortcutContext.WidgetShortcut)
        self.label = QLabel("Failed files")
        buttons = QHBoxLayout()
        buttons.addWidget(self.label, 1)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.table)

    def add(self, path: str, error: str) -> None:
        for row in range(self.table.rowCount()):  # a rescan reports the same file again: update it
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == path:
                self.table.item(row, 1).setText(error)
                return
        row = self.table.rowCount()
        self.table.insertRow(row)
        item = QTableWidgetItem(path)
        item.setData(Qt.ItemDataRole.UserRole, path)
        item.setToolTip(path)
        self.table.setItem(row, 0, item)
        error_item = QTableWidgetItem(error)
        error_item.setToolTip(error)
        self.table.setItem(row, 1, error_item)
        self.label.setText(f"{self.table.rowCount()} failed file(s)")

    def entries(self) -> list[tuple[str, str]]:
        return [(self.table.item(r, 0).text(), self.table.item(r, 1).text()) for r in range(self.table.rowCount())]

    def text(self, selected_only: bool = False) -> str:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}) if selected_only else []
        rows = rows or range(self.table.rowCount())
        return "\n".join(f"{self.table.item(r, 0).text()}\t{self.table.item(r, 1).text()}" for r in rows)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text(selected_only=True))

    def clear(self) -> None:
        self.table.setRowCount(0)
        self.label.setText("Failed files")


class IndexingBar(QWidget):
    """Shown while a run goes on: progress, rate, time left and Cancel."""

    cancelRequested = Signal()
    failedClicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m files")
        self.progress.setTextVisible(True)
        self.progress.setMinimumWidth(220)
        self.detail = QLabel()
        self.detail.setObjectName("indexDetail")
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.failed_button = QPushButton()
        self.failed_button.setFlat(True)
        self.failed_button.setStyleSheet("color: #c0392b;")
        self.failed_button.clicked.connect(self.failedClicked)
        self.failed_button.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancelRequested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        self.title = QLabel("Indexing")
        layout.addWidget(self.title)
        layout.addWidget(self.progress)
        layout.addWidget(self.detail, 1)
        layout.addWidget(self.failed_button)
        layout.addWidget(self.cancel_button)
        self._started = 0.0
        self._first_done: tuple[float, int] | None = None
        self.done = self.total = self.failed = 0
        self.current = ""

    def start(self, roots: list[str], *, title: str = "Indexing", detail: str | None = None) -> None:
        self.title.setText(title)
        self._started = time.monotonic()
        self._first_done = None
        self.done = self.total = self.failed = 0
        self.progress.setRange(0, 0)  # busy until the files are counted
        self.detail.setText(detail or "looking for audio files in " + ", ".join(roots)[:120])
        self.failed_button.hide()
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel")
        self.show()

    def set_progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        self.done, self.total = done, total
        if self._first_done is None:
            self._first_done = (now, done)  # the rate counts from the first analysed file, not the walk
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        t0, d0 = self._first_done
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else 0.0
        parts = [f"{rate:.1f} files/s" if rate else "starting…"]
        if rate and total > done:
            parts.append(f"{format_seconds((total - done) / rate)} left")
        if self.current:
            parts.append(self.current)
        self.detail.setText("  ·  ".join(parts))
        self.rate = rate

    def set_status(self, text: str) -> None:
        self.current = text
        if self.total == 0:
            self.detail.setText(text)

    def add_failure(self) -> None:
        self.failed += 1
        self.failed_button.setText(f"{self.failed} failed")
        self.failed_button.show()

    def cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancelling…")
