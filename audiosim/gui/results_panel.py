"""The results: a ranked table (click = hear exactly that segment), the result's waveform with the segment
highlighted, and the transport (play/stop, loop, volume). Results drag out as trimmed WAVs."""

from __future__ import annotations

import os

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSlider,
    QSplitter,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from audiosim.gui.waveform import WaveformView

HEADERS = ("#", "File", "Start–end", "Distance", "Loudness", "Duration")


class ResultsModel(QAbstractTableModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.hits: list = []

    def set_hits(self, hits: list) -> None:
        self.beginResetModel()
        self.hits = list(hits)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.hits)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        hit = self.hits[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            asset = hit.asset
            if column == 0:
                return str(hit.rank)
            if column == 1:
                return os.path.basename(hit.path)
            if column == 2:
                return f"{hit.start:.2f}–{hit.end:.2f} s"
            if column == 3:
                return f"{hit.distance:.4f}"
            if column == 4:
                loud = None if asset is None else asset.avg_loudness
                return "" if loud is None else f"{loud:.1f} LUFS"
            if column == 5:
                dur = None if asset is None else asset.duration
                return "" if dur is None else f"{dur:.2f} s"
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{hit.path}\n{hit.start:.3f}–{hit.end:.3f} s — drag out as a WAV of this segment"
        if role == Qt.ItemDataRole.TextAlignmentRole and column != 1:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base


class ResultsTable(QTableView):
    """Arrow keys move (and the window plays the new row); Space, L and Enter are handled by the panel."""

    keyAction = Signal(str)

    def __init__(self, panel: ResultsPanel) -> None:
        super().__init__()
        self._panel = panel

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space:
            self.keyAction.emit("toggle")
        elif key == Qt.Key.Key_L and not event.modifiers():
            self.keyAction.emit("loop")
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.keyAction.emit("more")
        else:
            super().keyPressEvent(event)

    def startDrag(self, supported_actions) -> None:
        row = self.currentIndex().row()
        mime = self._panel.segment_mime(row) if row >= 0 else None
        if mime is None:
            return
        drag = QDrag(self)
        drag.setMimeData(mime)
        drag.exec(Qt.DropAction.CopyAction)


class ResultsPanel(QWidget):
    """``hitActivated(row)``: play this result; ``keyAction(name)``; ``waveformClicked(seconds)``;
    ``contextRequested(row, global_pos)``. ``segment_mime`` is set by the window (it owns the clips)."""

    hitActivated = Signal(int)
    waveformClicked = Signal(float)
    contextRequested = Signal(int, object)
    volumeChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("<b>Results</b>")
        self.title.setObjectName("resultsTitle")
        self.model = ResultsModel(self)
        self.table = ResultsTable(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setDragEnabled(True)
        self.table.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for column, width in ((0, 36), (2, 110), (3, 75), (4, 85), (5, 70)):
            self.table.setColumnWidth(column, width)
        self.table.clicked.connect(lambda index: self.hitActivated.emit(index.row()))
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)

        self.waveform = WaveformView(editable=False)
        self.waveform.setMinimumHeight(90)
        self.waveform.show_message("Click a result to hear exactly that segment")
        self.waveform.clicked.connect(self.waveformClicked)

        self.play_button = QToolButton(text="▶ Play")
        self.play_button.setToolTip("Play / stop the selected result (Space)")
        self.loop_button = QToolButton(text="⟳ Loop", checkable=True)
        self.loop_button.setToolTip("Loop the segment (L)")
        self.volume = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=80)
        self.volume.setFixedWidth(110)
        self.volume.setToolTip("Volume")
        self.volume.valueChanged.connect(self.volumeChanged)
        self.position = QLabel("")
        self.position.setObjectName("positionLabel")
        self.position.setMinimumWidth(90)
        transport = QHBoxLayout()
        transport.addWidget(self.play_button)
        transport.addWidget(self.loop_button)
        transport.addWidget(self.position)
        transport.addStretch(1)
        transport.addWidget(QLabel("Volume"))
        transport.addWidget(self.volume)

        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.waveform, 1)
        bottom_layout.addLayout(transport)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(bottom)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.splitter, 1)
        self.segment_mime = lambda row: None

    def set_hits(self, hits: list, title: str = "Results") -> None:
        self.model.set_hits(hits)
        self.title.setText(f"<b>{title}</b> — {len(hits)} found" if hits else f"<b>{title}</b> — nothing found")
        self.waveform.clear("Click a result to hear exactly that segment" if hits else "")

    def current_row(self) -> int:
        index = self.table.currentIndex()
        return index.row() if index.isValid() else -1

    def current_hit(self):
        row = self.current_row()
        return self.model.hits[row] if 0 <= row < len(self.model.hits) else None

    def select_row(self, row: int) -> None:
        if 0 <= row < self.model.rowCount():
            self.table.setCurrentIndex(self.model.index(row, 0))

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        # Keyboard moves play too; a mouse click is reported by `clicked` (which also repeats a row).
        if current.isValid() and previous.isValid() and current.row() != previous.row() \
                and self.table.hasFocus() and not self.table.underMouse():
            self.hitActivated.emit(current.row())

    def _context_menu(self, pos) -> None:
        index = self.table.indexAt(pos)
        if index.isValid():
            self.table.setCurrentIndex(index)
            self.contextRequested.emit(index.row(), self.table.viewport().mapToGlobal(pos))

    def set_playing(self, playing: bool, position: float | None = None) -> None:
        self.play_button.setText("■ Stop" if playing else "▶ Play")
        self.position.setText("" if position is None else f"{position:6.2f} s")
