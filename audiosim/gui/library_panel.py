"""The library panel: a filter box (the CLI's expression language, errors shown inline) over the asset table."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from audiosim.gui.asset_model import AssetRows, AssetTableModel

FILTER_DELAY_MS = 300

_FILTER_HELP = ("Filter assets, as on the command line, e.g.\n"
                "  duration < 2s and loudness > -20 LUFS\n"
                "  name ~ \"kick*\" or folder ~ drums\n"
                "Fields: name, folder, path, duration, loudness, peak, centroid, sample_rate, channels, "
                "format, status, size, …")


class LibraryPanel(QWidget):
    filterChanged = Signal(object)  # a valid expression, or None for no filter
    assetActivated = Signal(int)  # asset id: double-click / Enter → query by it
    assetSelected = Signal(int)  # asset id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter_box = QLineEdit(placeholderText="Filter: duration < 2s and loudness > -20 LUFS   (Ctrl+F)")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.setToolTip(_FILTER_HELP)
        self.filter_error = QLabel()
        self.filter_error.setObjectName("filterError")
        self.filter_error.setWordWrap(True)
        self.filter_error.setStyleSheet("color: #c0392b;")
        self.filter_error.hide()
        self.count_label = QLabel("no assets")
        self.count_label.setToolTip("Assets shown (matching the filter) of all in the library")
        self.count_label.setObjectName("countLabel")

        self.model = AssetTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setDragEnabled(True)
        self.table.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # no per-row sizing
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in enumerate((200, 220, 70, 90, 70, 80, 85, 65, 70)):
            self.table.setColumnWidth(column, width)

        top = QHBoxLayout()
        top.addWidget(self.filter_box, 1)
        top.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.filter_error)
        layout.addWidget(self.table, 1)

        self._timer = QTimer(self, singleShot=True, interval=FILTER_DELAY_MS)
        self._timer.timeout.connect(self._check_filter)
        self.filter_box.textChanged.connect(lambda _t: self._timer.start())
        self.filter_box.returnPressed.connect(self._check_filter)
        self.table.activated.connect(self._activated)  # double-click or Enter
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        self.current_filter: str | None = None
        self.filter_error_reason: str | None = None

    # -- filter -------------------------------------------------------------------------------------------
    def _check_filter(self) -> None:
        self._timer.stop()
        text = self.filter_box.text().strip()
        if not text:
            self._set_error(None)
            self._emit_filter(None)
            return
        from audiosim.errors import FilterSyntaxError
        from audiosim.library.filters import parse_filter

        try:
            parse_filter(text)
        except FilterSyntaxError as exc:
            self._set_error(exc)
            return
        self._set_error(None)
        self._emit_filter(text)

    def _emit_filter(self, expression: str | None) -> None:
        if expression != self.current_filter:
            self.current_filter = expression
            self.filterChanged.emit(expression)

    def _set_error(self, exc) -> None:
        if exc is None:
            self.filter_error_reason = None
            self.filter_error.hide()
            self.filter_box.setStyleSheet("")
            return
        reason = getattr(exc, "reason", str(exc))
        text = self.filter_box.text()
        position = exc.position
        if position is not None and 0 <= position <= len(text):
            marked = (_html(text[:position]) + "<u><b>" + (_html(text[position:position + 1]) or "&nbsp;")
                      + "</b></u>" + _html(text[position + 1:]))
            self.filter_error.setText(f"{_escape(reason)}<br><code>{marked}</code>")
        else:
            self.filter_error.setText(_escape(reason))
        self.filter_error_reason = reason
        self.filter_error.show()
        self.filter_box.setStyleSheet("QLineEdit { border: 1px solid #c0392b; }")

    # -- rows ---------------------------------------------------------------------------------------------
    def set_rows(self, rows: AssetRows, total: int | None = None) -> None:
        selected = self.selected_ids()
        self.model.set_rows(rows)
        noun = "asset" if (total if rows.filter_expression and total is not None else rows.count) == 1 else "assets"
        shown = f"{rows.count:,} {noun}"
        if total is not None and rows.filter_expression:
            shown = f"{rows.count:,} of {total:,} {noun}"
        self.count_label.setText(shown)
        if selected:
            self.select_ids(selected)

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.asset_id(r) for r in rows]

    def select_ids(self, ids: list[int]) -> None:
        selection = self.table.selectionModel()
        selection.clearSelection()
        first = None
        for asset_id in ids:
            row = self.model.row_of(asset_id)
            if row is None:
                continue
            first = row if first is None else first
            selection.select(self.model.index(row, 0), QItemSelectionModel.SelectionFlag.Select
                             | QItemSelectionModel.SelectionFlag.Rows)
        if first is not None:
            self.table.scrollTo(self.model.index(first, 0))

    def _activated(self, index: QModelIndex) -> None:
        if index.isValid():
            self.assetActivated.emit(self.model.asset_id(index.row()))

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.assetSelected.emit(self.model.asset_id(current.row()))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _html(text: str) -> str:
    """Escaped, spaces kept (the expression is shown in a fixed-width line under the box)."""
    return _escape(text).replace(" ", "&nbsp;")
