"""The query area: what is being searched for (an asset, a dropped clip, a recording, a region of it),
its waveform or spectrogram, and the query options."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from audiosim.gui.waveform import WaveformView


class QueryPanel(QWidget):
    """Emits ``clipDropped(path)`` for a file dropped here, ``searchRequested()`` when the user asks to
    search again (button, new region, changed option), ``recordToggled(bool)``."""

    clipDropped = Signal(str)
    searchRequested = Signal()
    recordToggled = Signal(bool)
    spectrogramToggled = Signal(bool)
    negativesCleared = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.title = QLabel("<b>Query</b> — pick an asset, drop a clip here, or record one")
        self.title.setObjectName("queryTitle")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.seeds_label = QLabel()
        self.seeds_label.setObjectName("seedsLabel")
        self.seeds_label.setWordWrap(True)
        self.clear_negatives = QToolButton(text="Clear “less like”")
        self.clear_negatives.hide()
        self.clear_negatives.clicked.connect(self.negativesCleared)

        self.waveform = WaveformView(editable=True)
        self.waveform.setMinimumHeight(110)
        self.waveform.show_message("Drop an audio file here to search by it\n"
                                   "(or select an asset in the library, or record a clip)")
        self.waveform.regionChosen.connect(lambda *_: self.searchRequested.emit())

        self.spectrogram = QToolButton(text="Spectrogram", checkable=True)
        self.spectrogram.setToolTip("Show the query as a spectrogram instead of a waveform")
        self.spectrogram.toggled.connect(self._toggle_spectrogram)
        self.record = QToolButton(text="● Record", checkable=True)
        self.record.setToolTip("Record up to 10 s from the input device chosen in Preferences")
        self.record.toggled.connect(self.recordToggled)
        self.whole = QToolButton(text="Whole file")
        self.whole.setToolTip("Forget the region: search by the whole query")
        self.whole.clicked.connect(self._whole_file)
        self.k = QSpinBox(minimum=1, maximum=1000, value=50, suffix=" results")
        self.k.setToolTip("How many results (k)")
        self.level = QComboBox()
        self.level.addItem("Segments", "segment")
        self.level.addItem("Files", "file")
        self.level.setToolTip("Find similar segments (inside long files) or similar whole files")
        self.exclude_self = QCheckBox("Exclude own file")
        self.use_filter = QCheckBox("Apply filter")
        self.use_filter.setToolTip("Only search the assets that match the library filter")
        self.search = QPushButton("Search")
        self.search.setDefault(True)
        self.search.clicked.connect(self.searchRequested)
        for widget in (self.k, self.level, self.exclude_self, self.use_filter):
            signal = getattr(widget, "valueChanged", None) or getattr(widget, "currentIndexChanged", None) \
                or widget.toggled
            signal.connect(self._option_changed)
        self._option_timer = QTimer(self, singleShot=True, interval=350)
        self._option_timer.timeout.connect(self.searchRequested)

        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.clear_negatives)
        tools = QHBoxLayout()
        for widget in (self.spectrogram, self.whole, self.record):
            tools.addWidget(widget)
        tools.addStretch(1)
        for widget in (self.k, self.level, self.exclude_self, self.use_filter, self.search):
            tools.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.seeds_label)
        layout.addWidget(self.waveform, 1)
        layout.addLayout(tools)
        self.seeds_label.hide()
        self.has_query = False

    # -- state shown --------------------------------------------------------------------------------------
    def set_source(self, path: str, *, in_library: bool) -> None:
        self.has_query = True
        where = "" if in_library else " <i>(not in the library)</i>"
        self.title.setText(f"<b>Query:</b> {_html(os.path.basename(path))}{where}")
        self.title.setToolTip(path)
        self.waveform.clear("loading…")

    def set_seeds(self, positives: list, negatives: list) -> None:
        parts = []
        if len(positives) > 1:
            parts.append("like: " + ", ".join(_seed_text(s) for s in positives))
        if negatives:
            parts.append("<span style='color:#c0392b'>less like: "
                         + ", ".join(_seed_text(s) for s in negatives) + "</span>")
        self.seeds_label.setText(" · ".join(parts))
        self.seeds_label.setVisible(bool(parts))
        self.clear_negatives.setVisible(bool(negatives))

    def region(self) -> tuple[float, float] | None:
        return self.waveform.region_bounds()

    def options(self) -> dict:
        return {"k": self.k.value(), "level": self.level.currentData(),
                "exclude_self": self.exclude_self.isChecked(), "use_filter": self.use_filter.isChecked()}

    def set_options(self, *, k: int, level: str, exclude_self: bool, use_filter: bool) -> None:
        for widget in (self.k, self.level, self.exclude_self, self.use_filter):
            widget.blockSignals(True)
        self.k.setValue(k)
        self.level.setCurrentIndex(max(0, self.level.findData(level)))
        self.exclude_self.setChecked(exclude_self)
        self.use_filter.setChecked(use_filter)
        for widget in (self.k, self.level, self.exclude_self, self.use_filter):
            widget.blockSignals(False)

    def _option_changed(self, *_args) -> None:
        if self.has_query:
            self._option_timer.start()

    def _whole_file(self) -> None:
        self.waveform.set_region(None)
        if self.has_query:
            self.searchRequested.emit()

    def _toggle_spectrogram(self, on: bool) -> None:
        self.waveform.set_mode("spectrogram" if on else "waveform")
        self.spectrogramToggled.emit(on)

    # -- drops --------------------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if _single_file(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()  # folders and several files go to the window: they are indexed

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        path = _single_file(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.clipDropped.emit(path)


def _single_file(mime) -> str | None:
    if not mime.hasUrls():
        return None
    paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
    if len(paths) == 1 and not os.path.isdir(paths[0]):
        return paths[0]
    return None


def _seed_text(seed) -> str:
    name = _html(os.path.basename(seed.path))
    if seed.start is not None and seed.end is not None:
        return f"{name} [{seed.start:.2f}–{seed.end:.2f} s]"
    return name


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
