"""The library table's data: columns held as numpy arrays, sorted with argsort, so 100k rows stay fast.

:func:`load_asset_rows` runs in a worker and returns an immutable :class:`AssetRows` snapshot; the model
only swaps snapshots and keeps a row order, never a widget or an object per row.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QMimeData, QModelIndex, Qt, QUrl
from PySide6.QtGui import QColor

# (header, field, kind, format)
COLUMNS = (
    ("Name", "name", "text", None),
    ("Folder", "folder", "text", None),
    ("Duration", "duration", "number", "{:.2f} s"),
    ("Loudness", "avg_loudness", "number", "{:.1f} LUFS"),
    ("Peak", "peak_db", "number", "{:.1f} dB"),
    ("Centroid", "centroid", "number", "{:.0f} Hz"),
    ("Sample rate", "sample_rate", "number", "{:.0f} Hz"),
    ("Channels", "channels", "number", "{:.0f}"),
    ("Status", "status", "text", None),
)
FIELDS = ("id", "path", "error") + tuple(c[1] for c in COLUMNS)


@dataclasses.dataclass(frozen=True)
class AssetRows:
    """One snapshot of (filtered) assets, column by column; numbers are float arrays with NaN for missing."""

    columns: dict[str, np.ndarray | list]
    count: int
    filter_expression: str | None = None
    root: str = ""  # the folder all assets share; the Folder column is shown relative to it

    @classmethod
    def empty(cls) -> AssetRows:
        return cls({f: [] for f in FIELDS}, 0)


def load_asset_rows(library, filter_expression: str | None = None) -> AssetRows:
    """Read the asset columns (optionally filtered) from a read-only :class:`~audiosim.library.db.Library`."""
    from sqlalchemy import select

    from audiosim.library.models import Asset

    stmt = select(*(getattr(Asset, f) for f in FIELDS)).order_by(Asset.path)
    if filter_expression:
        from audiosim.library.filters import compile_filter

        stmt = stmt.where(compile_filter(filter_expression))
    with library.Session() as s:
        rows = s.execute(stmt).all()
    columns: dict[str, np.ndarray | list] = {}
    for i, field in enumerate(FIELDS):
        values = [r[i] for r in rows]
        kind = next((c[2] for c in COLUMNS if c[1] == field), "text")
        if field == "id":
            columns[field] = np.asarray(values, np.int64)
        elif kind == "number":
            columns[field] = np.asarray([np.nan if v is None else v for v in values], np.float64)
        else:
            columns[field] = ["" if v is None else str(v) for v in values]
    return AssetRows(columns, len(rows), filter_expression, _common_root(columns["folder"]))


def _common_root(folders: list[str]) -> str:
    distinct = set(folders)
    if not distinct:
        return ""
    try:
        root = os.path.commonpath(list(distinct))
    except ValueError:  # different drives
        return ""
    # One folder only: keep its own name visible ("kicks"), relative to its parent.
    return os.path.dirname(root) if len(distinct) == 1 else root


class AssetTableModel(QAbstractTableModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows = AssetRows.empty()
        self._order = np.zeros(0, np.int64)
        self._sort: tuple[int, Qt.SortOrder] | None = None
        self._row_of_id: dict[int, int] | None = None

    # -- data ---------------------------------------------------------------------------------------------
    def set_rows(self, rows: AssetRows) -> None:
        self.beginResetModel()
        self.rows = rows
        self._order = np.arange(rows.count, dtype=np.int64)
        self._row_of_id = None
        if self._sort is not None:
            self._apply_sort(*self._sort)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else self.rows.count

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole \
                and COLUMNS[section][1] == "folder" and self.rows.root:
            return f"Folders relative to {self.rows.root}"
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        i = int(self._order[index.row()])
        header, field, kind, fmt = COLUMNS[index.column()]
        cols = self.rows.columns
        if role == Qt.ItemDataRole.DisplayRole:
            value = cols[field][i]
            if kind == "number":
                return "" if np.isnan(value) else fmt.format(value)
            if field == "folder" and self.rows.root:
                return os.path.relpath(value, self.rows.root)
            return value
        if role == Qt.ItemDataRole.ToolTipRole:
            error = cols["error"][i]
            return f"{cols['path'][i]}\n{error}" if error else cols["path"][i]
        if role == Qt.ItemDataRole.TextAlignmentRole and kind == "number":
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and cols["status"][i] == "failed":
            return QColor("#c0392b")
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    # -- rows ---------------------------------------------------------------------------------------------
    def asset_id(self, row: int) -> int:
        return int(self.rows.columns["id"][self._order[row]])

    def path(self, row: int) -> str:
        return self.rows.columns["path"][self._order[row]]

    def value(self, row: int, field: str):
        return self.rows.columns[field][self._order[row]]

    def row_of(self, asset_id: int) -> int | None:
        if self._row_of_id is None:
            ids = self.rows.columns["id"]
            self._row_of_id = {int(ids[j]): r for r, j in enumerate(self._order)}
        return self._row_of_id.get(int(asset_id))

    # -- sorting ------------------------------------------------------------------------------------------
    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        self._sort = (column, order)
        self._apply_sort(column, order)
        self._row_of_id = None
        self.layoutChanged.emit()

    def _apply_sort(self, column: int, order: Qt.SortOrder) -> None:
        _, field, kind, _ = COLUMNS[column]
        values = self.rows.columns[field]
        descending = order == Qt.SortOrder.DescendingOrder
        if kind == "number":
            keys = np.asarray(values)
            keys = np.where(np.isnan(keys), np.inf if not descending else -np.inf, keys)  # missing last
            order_ = np.argsort(keys, kind="stable")
        else:
            order_ = np.asarray(sorted(range(len(values)), key=lambda j: values[j].casefold()), np.int64)
        if descending:
            order_ = order_[::-1]
        self._order = np.asarray(order_, np.int64)

    # -- drag out (whole files) ---------------------------------------------------------------------------
    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:
        rows = sorted({i.row() for i in indexes})
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(self.path(r)) for r in rows if os.path.exists(self.path(r))])
        return mime
