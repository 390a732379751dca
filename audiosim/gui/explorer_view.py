"""The scatter of the map explorer: one pyqtgraph item whose coordinates are updated in place (points glide
to new places), lasso/rectangle selection, hover and click by nearest point, and overlays for the selection
and the highlighted (query) points. Knows rows and coordinates only; the window knows what they mean."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

ANIMATION_MS = 450
FRAME_MS = 16
HOVER_RADIUS_PX = 8.0


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of ``points [shape=(n, 2)]`` inside ``polygon [shape=(m, 2)]`` (even-odd rule)."""
    inside = np.zeros(len(points), bool)
    if len(polygon) < 3 or len(points) == 0:
        return inside
    x, y = points[:, 0], points[:, 1]
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    box = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1])
    xs, ys = x[box], y[box]
    result = np.zeros(len(xs), bool)
    x0, y0 = polygon[-1]
    for x1, y1 in polygon:
        crosses = (y1 > ys) != (y0 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (x0 - x1) * (ys - y1) / (y0 - y1) + x1
        result ^= crosses & (xs < at)
        x0, y0 = x1, y1
    inside[box] = result
    return inside


class SelectionViewBox(pg.ViewBox):
    """Left-drag draws a lasso or a rectangle (``mode``) instead of panning; the wheel zooms; the middle
    button (or ``mode == "pan"``) pans."""

    sigSelected = Signal(object, object)  # polygon in view coordinates [shape=(m, 2)], keyboard modifiers
    sigClicked = Signal(object, object)  # QPointF in view coordinates, modifiers

    def __init__(self) -> None:
        super().__init__()
        self.mode = "lasso"
        self._path: list[QPointF] = []
        self._outline = QGraphicsPathItem()
        pen = QPen(QColor(255, 200, 0), 1.5)
        pen.setCosmetic(True)
        pen.setStyle(Qt.PenStyle.DashLine)
        self._outline.setPen(pen)
        self._outline.setZValue(1e6)
        self._outline.hide()
        self.addItem(self._outline, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt naming
        if self.mode == "pan" or ev.button() != Qt.MouseButton.LeftButton:
            if ev.button() == Qt.MouseButton.MiddleButton:
                ev.accept()
                delta = self.mapSceneToView(ev.lastScenePos()) - self.mapSceneToView(ev.scenePos())
                self.translateBy(x=delta.x(), y=delta.y())
                return
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if ev.isStart():
            self._path = [self.mapSceneToView(ev.buttonDownScenePos())]
        self._path.append(self.mapSceneToView(ev.scenePos()))
        polygon = self._polygon()
        path = QPainterPath()
        path.moveTo(*polygon[0])
        for x, y in polygon[1:]:
            path.lineTo(x, y)
        path.closeSubpath()
        self._outline.setPath(path)
        self._outline.show()
        if ev.isFinish():
            self._outline.hide()
            self.sigSelected.emit(polygon, ev.modifiers())

    def _polygon(self) -> np.ndarray:
        pts = np.array([[p.x(), p.y()] for p in self._path], np.float64)
        if self.mode == "rect":
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        return pts

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.sigClicked.emit(self.mapSceneToView(ev.scenePos()), ev.modifiers())
            return
        super().mouseClickEvent(ev)


class MapView(pg.PlotWidget):
    """``pointClicked(row, modifiers)``, ``pointHovered(row)`` (-1 when none), ``areaSelected(rows, modifiers)``,
    ``animationFinished()``."""

    pointClicked = Signal(int, object)
    pointHovered = Signal(int)
    areaSelected = Signal(object, object)
    animationFinished = Signal()

    def __init__(self, parent=None) -> None:
        self.view_box = SelectionViewBox()
        super().__init__(parent=parent, viewBox=self.view_box)
        self.setBackground(None)  # follow the palette (dark or light theme)
        for axis in ("left", "bottom"):  # UMAP axes mean nothing: no ticks pretending otherwise
            self.getPlotItem().hideAxis(axis)
        self.setAspectLocked(True)
        self.view_box.setMenuEnabled(False)
        self.scatter = pg.ScatterPlotItem(pxMode=True, useCache=True, antialias=False)
        self.scatter.setPen(None)
        self.selected_item = pg.ScatterPlotItem(pxMode=True, brush=None, symbol="o",
                                                pen=pg.mkPen(255, 200, 0, width=1.5))
        self.highlight_item = pg.ScatterPlotItem(pxMode=True, brush=None, symbol="o",
                                                 pen=pg.mkPen(230, 40, 90, width=2.0))
        self.hover_item = pg.ScatterPlotItem(pxMode=True, brush=None, symbol="o", pen=pg.mkPen("w", width=2))
        for z, item in enumerate((self.scatter, self.selected_item, self.highlight_item, self.hover_item)):
            item.setZValue(z)
            self.addItem(item)
        self.coords = np.zeros((0, 2), np.float32)
        self.point_size = 6.0
        self._selected = np.zeros(0, np.int64)
        self._highlighted = np.zeros(0, np.int64)
        self._tree = None
        self._from = self._to = self.coords
        self._anim_start = 0.0
        self._timer = QTimer(self, interval=FRAME_MS)
        self._timer.timeout.connect(self._frame)
        self.view_box.sigSelected.connect(self._on_area)
        self.view_box.sigClicked.connect(self._on_click)
        self.scene().sigMouseMoved.connect(self._on_move)
        self._hovered = -1

    # -- data ---------------------------------------------------------------------------------------------
    def set_points(self, coords: np.ndarray, brushes: list | None = None) -> None:
        """A new set of points (the one place the item's arrays are rebuilt)."""
        self._timer.stop()
        self.coords = np.array(coords, np.float32).reshape(-1, 2)
        kwargs = {"brush": brushes} if brushes is not None else {"brush": pg.mkBrush(80, 160, 255, 200)}
        self.scatter.setData(x=self.coords[:, 0], y=self.coords[:, 1], size=self.point_size, **kwargs)
        self._selected = self._highlighted = np.zeros(0, np.int64)
        self._hovered = -1
        self._refresh_overlays()
        self._tree = None

    def set_brushes(self, brushes) -> None:
        self.scatter.setBrush(brushes)

    def set_point_size(self, size: float) -> None:
        self.point_size = float(size)
        self.scatter.setSize(self.point_size)
        self._refresh_overlays()

    def set_selected(self, rows: np.ndarray) -> None:
        self._selected = np.asarray(rows, np.int64)
        self._refresh_overlays()

    def set_highlighted(self, rows: np.ndarray) -> None:
        self._highlighted = np.asarray(rows, np.int64)
        self._refresh_overlays()

    def move_to(self, coords: np.ndarray, *, animate: bool = True) -> None:
        """Glide the points to ``coords`` (same rows), updating the item's coordinates in place."""
        target = np.array(coords, np.float32).reshape(-1, 2)
        if not animate or len(target) != len(self.coords) or len(target) == 0:
            self._timer.stop()
            self._set_coords(target)
            self.animationFinished.emit()
            return
        self._from, self._to = self.coords.copy(), target
        self._anim_start = time.perf_counter()
        self._timer.start()

    @property
    def animating(self) -> bool:
        return self._timer.isActive()

    def _frame(self) -> None:
        t = min(1.0, (time.perf_counter() - self._anim_start) * 1000.0 / ANIMATION_MS)
        eased = 1.0 - (1.0 - t) ** 3
        self._set_coords(self._to if t >= 1.0 else self._from + (self._to - self._from) * eased)
        if t >= 1.0:
            self._timer.stop()
            self.animationFinished.emit()

    def _set_coords(self, coords: np.ndarray) -> None:
        self.coords = coords
        item = self.scatter
        if len(item.data) != len(coords):
            self.scatter.setData(x=coords[:, 0], y=coords[:, 1], size=self.point_size)
        else:
            # Write into the item's own arrays: no new spots, no atlas work, just a repaint.
            item.data["x"] = coords[:, 0]
            item.data["y"] = coords[:, 1]
            item.prepareGeometryChange()
            item.informViewBoundsChanged()
            item.bounds = [None, None]
            item.invalidate()
        self._tree = None
        self._refresh_overlays()

    def _refresh_overlays(self) -> None:
        size = self.point_size + 5
        for item, rows in ((self.selected_item, self._selected), (self.highlight_item, self._highlighted)):
            rows = rows[rows < len(self.coords)]
            item.setData(x=self.coords[rows, 0], y=self.coords[rows, 1], size=size)
        if 0 <= self._hovered < len(self.coords):
            self.hover_item.setData(x=self.coords[[self._hovered], 0], y=self.coords[[self._hovered], 1],
                                    size=self.point_size + 8)
        else:
            self.hover_item.setData(x=[], y=[])

    # -- picking ------------------------------------------------------------------------------------------
    def nearest(self, pos: QPointF, radius_px: float = HOVER_RADIUS_PX) -> int:
        """Row of the point nearest ``pos`` (view coordinates) within ``radius_px`` pixels, else -1."""
        if len(self.coords) == 0:
            return -1
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.coords)
        px = self.view_box.viewPixelSize()
        scale = max(px[0], px[1]) if px[0] and px[1] else 1.0
        dist, row = self._tree.query([pos.x(), pos.y()], k=1)
        return int(row) if dist <= radius_px * scale else -1

    def rows_in(self, polygon: np.ndarray) -> np.ndarray:
        return np.flatnonzero(points_in_polygon(self.coords, polygon))

    def _on_area(self, polygon: np.ndarray, modifiers) -> None:
        self.areaSelected.emit(self.rows_in(polygon), modifiers)

    def _on_click(self, pos: QPointF, modifiers) -> None:
        self.pointClicked.emit(self.nearest(pos), modifiers)

    def _on_move(self, scene_pos) -> None:
        if not self.view_box.sceneBoundingRect().contains(scene_pos):
            row = -1
        else:
            row = self.nearest(self.view_box.mapSceneToView(scene_pos))
        if row != self._hovered:
            self._hovered = row
            self._refresh_overlays()
            self.pointHovered.emit(row)
