"""A waveform (min/max envelope) or spectrogram of one file, with a highlighted or draggable region,
a play head, and click-to-play. Drawn with pyqtgraph; the data comes from workers (see audio_io).

pyqtgraph takes ~0.5 s to import, so the plot is built on first use (the start-up thread has usually
imported it by then): the window appears without waiting for it."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

REGION_BRUSH = (255, 170, 0, 70)
WAVE_PEN = (52, 152, 219)
MIN_DRAG_SECONDS = 0.05


def _region_viewbox(view: WaveformView):
    """A ViewBox where left-drag draws a region, a click reports its time, and the wheel zooms time only."""
    import pyqtgraph as pg

    class RegionViewBox(pg.ViewBox):
        def __init__(self) -> None:
            super().__init__(enableMenu=False)
            self.setMouseEnabled(x=True, y=False)

        def mouseClickEvent(self, ev) -> None:
            if ev.button() == Qt.MouseButton.LeftButton:
                ev.accept()
                view.clicked.emit(float(self.mapSceneToView(ev.scenePos()).x()))
            elif ev.button() == Qt.MouseButton.RightButton:
                ev.accept()
                self.autoRange()
            else:
                super().mouseClickEvent(ev)

        def mouseDragEvent(self, ev, axis=None) -> None:
            if ev.button() != Qt.MouseButton.LeftButton or not view.editable:
                super().mouseDragEvent(ev, axis)
                return
            ev.accept()
            x0 = float(self.mapSceneToView(ev.buttonDownScenePos()).x())
            x1 = float(self.mapSceneToView(ev.scenePos()).x())
            view.set_region(min(x0, x1), max(x0, x1))
            if ev.isFinish():
                view._region_finished()

    return RegionViewBox()


class WaveformView(QWidget):
    """``clicked(seconds)``: a click on the view; ``regionChosen(start, end)``: the user drew or moved the
    region (``editable`` views only)."""

    clicked = Signal(float)
    regionChosen = Signal(float, float)

    def __init__(self, parent: QWidget | None = None, *, editable: bool = False) -> None:
        super().__init__(parent)
        self.editable = editable
        self.duration = 0.0
        self.plot = None
        self.placeholder = QLabel("", alignment=Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet("color: palette(mid); font-size: 13px;")
        self._stack = QStackedLayout(self)
        self._stack.addWidget(self.placeholder)
        self._spectrogram: tuple | None = None
        self._region: tuple[float, float] | None = None
        self.mode = "waveform"
        self.show_message("")

    def ensure_plot(self) -> None:
        if self.plot is not None:
            return
        import pyqtgraph as pg

        self._viewbox = _region_viewbox(self)
        self.plot = pg.PlotWidget(viewBox=self._viewbox, background=None)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=False, alpha=0.15)
        self.plot.getAxis("left").setWidth(32)
        self.plot.setLabel("bottom", units="s")
        self._lo = pg.PlotDataItem(pen=pg.mkPen(WAVE_PEN, width=1))
        self._hi = pg.PlotDataItem(pen=pg.mkPen(WAVE_PEN, width=1))
        self._fill = pg.FillBetweenItem(self._lo, self._hi, brush=pg.mkBrush(*WAVE_PEN, 150))
        for item in (self._lo, self._hi, self._fill):
            self.plot.addItem(item)
        self._image = pg.ImageItem(axisOrder="col-major")
        self._image.setColorMap(pg.colormap.get("inferno"))
        self._image.hide()
        self.plot.addItem(self._image)
        self.region = pg.LinearRegionItem(brush=pg.mkBrush(*REGION_BRUSH), movable=self.editable)
        self.region.setZValue(10)
        self.region.hide()
        self.region.sigRegionChangeFinished.connect(self._region_finished)
        self.plot.addItem(self.region)
        self.playhead = pg.InfiniteLine(angle=90, pen=pg.mkPen((231, 76, 60), width=2))
        self.playhead.setZValue(20)
        self.playhead.hide()
        self.plot.addItem(self.playhead)

        self._stack.addWidget(self.plot)

    # -- content ------------------------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        self.placeholder.setText(text)
        self._stack.setCurrentWidget(self.placeholder)

    def clear(self, message: str = "") -> None:
        self.duration = 0.0
        self._spectrogram = None
        self._region = None
        if self.plot is not None:
            self._lo.setData([], [])
            self._hi.setData([], [])
            self.region.hide()
            self.playhead.hide()
        self.show_message(message)

    def set_envelope(self, envelope) -> None:
        self.ensure_plot()
        self.duration = float(envelope.duration)
        self._spectrogram = None
        self._lo.setData(envelope.x, envelope.lo)
        self._hi.setData(envelope.x, envelope.hi)
        peak = float(max(np.max(np.abs(envelope.lo), initial=0), np.max(np.abs(envelope.hi), initial=0)))
        self._y_wave = max(peak, 1e-3) * 1.05
        self._stack.setCurrentWidget(self.plot)
        self._apply_mode()
        self.plot.setXRange(0, max(self.duration, 1e-3), padding=0.01)
        if self._region is not None:
            self.set_region(*self._region)

    def set_spectrogram(self, db: np.ndarray, duration: float, fmax: float) -> None:
        self.ensure_plot()
        self._spectrogram = (db, duration, fmax)
        self._image.setImage(np.clip(db, -80, 0), levels=(-80, 0))
        self._image.setRect(0, 0, duration, fmax)
        self._apply_mode()

    @property
    def has_spectrogram(self) -> bool:
        return self._spectrogram is not None

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self._apply_mode()

    def _apply_mode(self) -> None:
        if self.plot is None:
            return
        spectro = self.mode == "spectrogram" and self._spectrogram is not None
        for item in (self._lo, self._hi, self._fill):
            item.setVisible(not spectro)
        self._image.setVisible(spectro)
        if spectro:
            self.plot.setYRange(0, self._spectrogram[2], padding=0)
            self.plot.setLabel("left", units="Hz")
        else:
            y = getattr(self, "_y_wave", 1.0)
            self.plot.setYRange(-y, y, padding=0)
            self.plot.setLabel("left", "")

    # -- region and play head -------------------------------------------------------------------------------
    def set_region(self, start: float | None, end: float | None = None) -> None:
        self._region = None if start is None or end is None else (float(start), float(end))
        if self.plot is None:
            return
        if self._region is None:
            self.region.hide()
            return
        self.region.blockSignals(True)
        self.region.setRegion((start, end))
        self.region.blockSignals(False)
        self.region.show()

    def region_bounds(self) -> tuple[float, float] | None:
        if self.plot is None or not self.region.isVisible():
            return self._region
        start, end = self.region.getRegion()
        return max(0.0, float(start)), min(float(end), self.duration) if self.duration else float(end)

    def _region_finished(self, *_args) -> None:
        bounds = self.region_bounds()
        if bounds is not None and bounds[1] - bounds[0] >= MIN_DRAG_SECONDS:
            self.regionChosen.emit(*bounds)

    def set_playhead(self, seconds: float | None) -> None:
        if self.plot is None:
            return
        if seconds is None:
            self.playhead.hide()
        else:
            self.playhead.setValue(seconds)
            self.playhead.show()
