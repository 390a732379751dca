"""The map explorer: a result set laid out by UMAP, recomputed in a worker as the user turns the knobs.

Contract with the main window: ``ExplorerWindow(library_folder, parent=None)``,
``show_result_set(filter_expression=..., hits=...)``, ``highlight(asset_ids)``, and the signals
``queryRequested(list[Seed])`` and ``selectionChanged(list[int])`` (asset ids). Also used on its own by
``audiosim map --gui``.

How a change flows: a control changes → a short debounce → the running job is cancelled (it stops at its
next epoch) → a new job on a one-thread pool builds the result set and calls
:func:`audiosim.projection.compute_map` with the map on screen as warm start. The old map stays until the
new one is ready (a new result set shows a PCA placeholder at once), then points glide to their places.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QThreadPool, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from audiosim.gui.explorer_view import MapView
from audiosim.gui.workers import QUEUED, Task, TaskRunner
from audiosim.projection import (
    DEFAULT_MAX_POINTS,
    METRICS,
    NUMERIC_FIELDS,
    KnnCache,
    MapCancelled,
    MapParams,
    MapResult,
    build_result_set,
    compute_map,
    describe_points,
    start_warm_up,
)

DEBOUNCE_MS = 250
MAX_QUERY_SEEDS = 16  # a multi-seed query with hundreds of seeds is slow and no more precise
PLACEHOLDER_WAIT = 0.3  # seconds a worker waits for its placeholder to be on screen
MAX_FILE_AUDITION = 30.0  # seconds of a whole file played on click
SOURCES = (("filter", "Library filter"), ("query", "Query results"), ("selection", "Selection"),
           ("library", "Whole library"))
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf")
GRADIENT_STEPS = 64

@dataclasses.dataclass(frozen=True)
class Source:
    """Where the result set comes from (a snapshot handed to the worker)."""

    kind: str = "library"  # filter | query | selection | library
    filter_expression: str | None = None
    hits: tuple = ()
    asset_ids: tuple[int, ...] | None = None
    segment_ids: tuple[int, ...] | None = None


class _TableState:
    """Forwards a worker's state, attaching the point table to partial results.

    After sending the placeholder it waits (briefly) until the window has shown it: what follows (numba's
    JIT, the layout's epochs) can hold the GIL long enough to delay the first picture otherwise.
    """

    def __init__(self, state, table) -> None:
        self._state, self._table = state, table
        self.shown = threading.Event()

    def set_progress(self, done: int, total: int) -> None:
        self._state.set_progress(done, total)

    def set_status(self, text: str) -> None:
        self._state.set_status(text)

    def set_partial_result(self, result) -> None:
        self._state.set_partial_result((result, self._table, self.shown))
        self.shown.wait(PLACEHOLDER_WAIT)

    @property
    def cancelled(self) -> bool:
        return self._state.cancelled


def map_job(library, source: Source, params: MapParams, previous: MapResult | None, cache: KnnCache,
            known_table: tuple[str, dict] | None, *, state):
    """Worker body (no Qt): result set → point table → map. Returns ``(MapResult, table)``."""
    hits = list(source.hits) if source.kind == "query" else None
    result_set = build_result_set(
        library, level=params.level, hits=hits,
        filter_expression=source.filter_expression if source.kind in ("filter", "query") else None,
        asset_ids=source.asset_ids if source.kind == "selection" else None,
        segment_ids=source.segment_ids if source.kind == "selection" else None,
        max_points=DEFAULT_MAX_POINTS)
    if known_table is not None and known_table[0] == result_set.key:
        table = known_table[1]
    else:
        table = describe_points(library, result_set)
    result = compute_map(library, result_set, params, previous=previous, cache=cache,
                         state=_TableState(state, table))
    return result, table


def write_point_list(path: str | os.PathLike, table: dict, rows: np.ndarray) -> None:
    """Export the paths (and times at segment level) of ``rows``: ``.m3u`` playlist or CSV. Coordinates are
    deliberately not exported: a map is a view, not data."""
    path = Path(path)
    if path.suffix.lower() in (".m3u", ".m3u8"):
        lines = ["#EXTM3U"] + [str(table["path"][r]) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "start", "end"])
        for r in rows:
            start, end = table["start"][r], table["end"][r]
            writer.writerow([table["path"][r], "" if np.isnan(start) else round(float(start), 3),
                             "" if np.isnan(end) else round(float(end), 3)])


class ExplorerWindow(QMainWindow):
    """See the module docstring. Extra signals for tests and embedding: ``placeholderShown(MapResult)``,
    ``mapReady(MapResult)`` (a finished map is on screen), ``mapFailed(str)``."""

    queryRequested = Signal(list)
    selectionChanged = Signal(list)
    placeholderShown = Signal(object)
    mapReady = Signal(object)
    mapFailed = Signal(str)

    def __init__(self, library_folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("audiosim — map")
        self.resize(1100, 720)
        self.library_folder = Path(library_folder)
        self.library = None
        self.debounce_ms = DEBOUNCE_MS
        self.source = Source()
        self._hits: tuple = ()
        self._selection_source: Source | None = None
        self._cache = KnnCache()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one layout at a time: a superseded one stops, the next waits
        self._runner = TaskRunner(self._pool, self)
        self._task: Task | None = None
        self._generation = 0
        self.shown: MapResult | None = None  # on screen (may be the placeholder)
        self.current: MapResult | None = None  # the last finished map: the next warm start
        self.table: dict | None = None
        self._selected_ids = np.zeros(0, np.int64)
        self._highlight_assets: set[int] = set()
        self._audition = None
        self._hover_timer = QTimer(self, singleShot=True, interval=150)
        self._hover_timer.timeout.connect(self._play_hovered)
        self._hover_row = -1
        self._debounce = QTimer(self, singleShot=True)
        self._debounce.timeout.connect(self.recompute)
        self._build()
        self._open_library()
        start_warm_up()

    # -- widgets ------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.view = MapView()
        self.view.pointClicked.connect(self._on_point_clicked)
        self.view.pointHovered.connect(self._on_hover)
        self.view.areaSelected.connect(self._on_area)
        self.view.animationFinished.connect(self._fit_view)
        self._fit_after_move = False

        self.source_combo = QComboBox()
        for key, label in SOURCES:
            self.source_combo.addItem(label, key)
        self.source_combo.setToolTip("Which sounds to map")
        self.filter_box = QLineEdit(placeholderText="filter, e.g. avg_loudness > -18 dB")
        self.filter_box.setClearButtonEnabled(True)
        self.level_combo = QComboBox()
        self.level_combo.addItem("Files", "file")
        self.level_combo.addItem("Segments", "segment")
        self.n_neighbors_slider = QLabeledSlider(Qt.Orientation.Horizontal)
        self.n_neighbors_slider.setRange(2, 100)
        self.n_neighbors_slider.setValue(15)
        self.n_neighbors_slider.setToolTip("Neighbourhood size: small shows local detail, large global shape")
        self.min_dist_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.min_dist_slider.setRange(0.0, 1.0)
        self.min_dist_slider.setDecimals(2)
        self.min_dist_slider.setValue(0.1)
        self.min_dist_slider.setToolTip("How tightly points may pack: small makes dense clusters")
        self.metric_combo = QComboBox()
        self.metric_combo.addItems(list(METRICS))
        self.colour_combo = QComboBox()
        self.size_slider = QLabeledSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(2, 20)
        self.size_slider.setValue(6)
        self.hover_play = QCheckBox("Play on hover")
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setObjectName("mapNotice")
        self.notice.setStyleSheet("color: #b9770e;")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        self.progress.hide()

        mode_row = QHBoxLayout()
        self.mode_group = QButtonGroup(self)
        for mode, label, tip in (("lasso", "Lasso", "Drag to draw around points"),
                                 ("rect", "Rectangle", "Drag a rectangle around points"),
                                 ("pan", "Pan", "Drag to move the map")):
            button = QPushButton(label, checkable=True, toolTip=tip)
            button.setProperty("mode", mode)
            button.setChecked(mode == "lasso")
            self.mode_group.addButton(button)
            mode_row.addWidget(button)
        self.mode_group.buttonClicked.connect(lambda b: setattr(self.view.view_box, "mode", b.property("mode")))

        self.use_button = QPushButton("Use as result set")
        self.query_button = QPushButton("Query with selection")
        self.library_button = QPushButton("Show in library")
        self.export_button = QPushButton("Export list…")
        self.selection_label = QLabel("Nothing selected — drag around points")
        actions = QVBoxLayout()
        for b in (self.use_button, self.query_button, self.library_button, self.export_button):
            actions.addWidget(b)
        self.use_button.clicked.connect(self.use_selection)
        self.query_button.clicked.connect(self.query_selection)
        self.library_button.clicked.connect(self.show_selection_in_library)
        self.export_button.clicked.connect(self._export_dialog)

        form = QFormLayout()
        form.addRow("Map", self.source_combo)
        form.addRow("Filter", self.filter_box)
        form.addRow("Level", self.level_combo)
        form.addRow("Neighbours", self.n_neighbors_slider)
        form.addRow("Min. distance", self.min_dist_slider)
        form.addRow("Metric", self.metric_combo)
        form.addRow("Colour by", self.colour_combo)
        form.addRow("Point size", self.size_slider)
        form.addRow("", self.hover_play)
        side = QVBoxLayout()
        side.addLayout(form)
        side.addWidget(self.legend)
        side.addWidget(self.notice)
        side.addLayout(mode_row)
        side.addWidget(self.selection_label)
        side.addLayout(actions)
        side.addStretch(1)
        side.addWidget(self.status)
        side.addWidget(self.progress)
        panel = QWidget()
        panel.setLayout(side)
        panel.setFixedWidth(300)
        root = QHBoxLayout()
        root.setContentsMargins(4, 4, 4, 4)
        root.addWidget(self.view, 1)
        root.addWidget(panel)
        central = QWidget()
        central.setLayout(root)
        self.setCentralWidget(central)
        self._update_selection_widgets()

        for signal in (self.level_combo.currentIndexChanged, self.metric_combo.currentIndexChanged,
                       self.n_neighbors_slider.valueChanged, self.min_dist_slider.valueChanged,
                       self.source_combo.currentIndexChanged):
            signal.connect(self.schedule)
        self.filter_box.returnPressed.connect(self._filter_entered)
        self.colour_combo.currentIndexChanged.connect(self._apply_colours)
        self.size_slider.valueChanged.connect(lambda v: self.view.set_point_size(v))
        clear = QAction("Clear selection", self, shortcut=QKeySequence(Qt.Key.Key_Escape))
        clear.triggered.connect(lambda: self.set_selection(np.zeros(0, np.int64)))
        self.addAction(clear)

    def _open_library(self) -> None:
        from audiosim.errors import AudiosimError
        from audiosim.library.db import Library

        try:
            self.library = Library(self.library_folder)
        except AudiosimError as exc:
            self.notice.setText(str(exc))
            for w in (self.source_combo, self.level_combo, self.metric_combo):
                w.setEnabled(False)

    # -- contract with the main window -------------------------------------------------------------------
    def show_result_set(self, *, filter_expression: str | None = None, hits: list | None = None) -> None:
        """Map the query results ``hits`` (if any; intersected with the filter), else the assets matching
        ``filter_expression``, else the whole library."""
        if hits:
            self._hits = tuple(hits)
            source = Source("query", filter_expression or None, self._hits)
            self._highlight_assets = {int(h.asset_id) for h in hits}
        elif filter_expression:
            source = Source("filter", filter_expression)
        else:
            source = Source("library")
        self._set_source(source)
        self.recompute()

    def highlight(self, asset_ids: list[int]) -> None:
        self._highlight_assets = {int(a) for a in asset_ids}
        self._apply_highlight()

    def set_parameters(self, *, level: str | None = None, n_neighbors: int | None = None,
                       min_dist: float | None = None, metric: str | None = None) -> None:
        for widget, value in ((self.n_neighbors_slider, n_neighbors), (self.min_dist_slider, min_dist)):
            if value is not None:
                widget.blockSignals(True)
                widget.setValue(value)
                widget.blockSignals(False)
        for combo, value in ((self.level_combo, level), (self.metric_combo, metric)):
            if value is not None:
                combo.blockSignals(True)
                combo.setCurrentIndex(max(0, combo.findData(value) if combo is self.level_combo
                                          else combo.findText(value)))
                combo.blockSignals(False)

    # -- recomputing --------------------------------------------------------------------------------------
    def params(self) -> MapParams:
        return MapParams(level=self.level_combo.currentData(), n_neighbors=int(self.n_neighbors_slider.value()),
                         min_dist=round(float(self.min_dist_slider.value()), 3),
                         metric=self.metric_combo.currentText())

    def schedule(self, *_args) -> None:
        """Recompute after a short pause (slider drags produce many changes)."""
        self._debounce.start(self.debounce_ms)

    def _set_source(self, source: Source) -> None:
        self.source = source
        self.source_combo.blockSignals(True)
        self.source_combo.setCurrentIndex(self.source_combo.findData(source.kind))
        self.source_combo.blockSignals(False)
        if source.kind == "filter":
            self.filter_box.setText(source.filter_expression or "")

    def _filter_entered(self) -> None:
        text = self.filter_box.text().strip()
        self._set_source(Source("filter", text) if text else Source("library"))
        self.recompute()

    def _source_from_combo(self) -> Source:
        kind = self.source_combo.currentData()
        if kind == self.source.kind:
            return self.source
        if kind == "query":
            return Source("query", None, self._hits)
        if kind == "selection" and self._selection_source is not None:
            return self._selection_source
        if kind == "filter":
            return Source("filter", self.filter_box.text().strip() or None)
        return Source("library")

    def recompute(self) -> None:
        """Start a map of the current source and parameters now; a running one is cancelled."""
        self._debounce.stop()
        if self.library is None:
            return
        self.source = self._source_from_combo()
        if self._task is not None:
            self._task.state.cancel()
        self._generation += 1
        generation = self._generation
        previous = self.current
        known = (self.shown.result_set.key, self.table) if self.shown is not None and self.table else None
        task = Task(map_job, self.library, self.source, self.params(), previous, self._cache, known,
                    with_state=True)
        task.signals.partial.connect(lambda payload: self._on_partial(generation, payload), QUEUED)
        task.signals.progress.connect(lambda d, t: self._on_progress(generation, d, t), QUEUED)
        task.signals.status.connect(lambda text: self._on_status(generation, text), QUEUED)
        self._task = task
        self.status.setText("mapping…")
        self.progress.setRange(0, 0)
        self.progress.show()
        self._runner.start(task, lambda payload: self._on_finished(generation, payload),
                           lambda exc: self._on_failed(generation, exc))

    @property
    def busy(self) -> bool:
        return self._debounce.isActive() or (self._task is not None and self._runner.busy)

    def _on_progress(self, generation: int, done: int, total: int) -> None:
        if generation == self._generation:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _on_status(self, generation: int, text: str) -> None:
        if generation == self._generation:
            self.status.setText(text)

    def _on_partial(self, generation: int, payload) -> None:
        result, table, shown = payload
        if generation != self._generation:
            shown.set()
            return
        # The old map stays while its result set is the one asked for; a new set shows its placeholder.
        if self.shown is None or self.shown.result_set.key != result.result_set.key:
            self._display(result, table, animate=False)
            self.view.repaint()
            self.placeholderShown.emit(result)
        shown.set()

    def _on_finished(self, generation: int, payload) -> None:
        if generation != self._generation:
            return
        result, table = payload
        self._task = None
        self.progress.hide()
        self.current = result
        self._display(result, table, animate=True)
        seconds = result.timings.get("total")
        n = len(result)
        what = f"{n:,} {'segments' if result.params.level == 'segment' else 'files'}"
        how = {"umap": "", "warm": " (warm start)", "transform": " (added points placed)",
               "pca": " (PCA)", "empty": ""}.get(result.kind, "")
        self.status.setText(f"map of {what}{how}" + (f" in {seconds:.1f} s" if seconds else ""))
        self.mapReady.emit(result)

    def _on_failed(self, generation: int, exc: BaseException) -> None:
        if generation != self._generation or isinstance(exc, MapCancelled):
            return
        self._task = None
        self.progress.hide()
        self.status.setText("")
        self.notice.setText(f"cannot map: {exc}")
        self.mapFailed.emit(str(exc))

    # -- display ------------------------------------------------------------------------------------------
    def _display(self, result: MapResult, table: dict, *, animate: bool) -> None:
        old = self.shown
        self.shown, self.table = result, table
        same_set = old is not None and old.result_set.key == result.result_set.key
        if same_set and len(self.view.coords) == len(result):
            self.view.move_to(result.coords, animate=animate)
        else:
            start = result.coords.copy()
            if old is not None and old.result_set.level == result.result_set.level and len(old):
                common, old_rows, new_rows = np.intersect1d(old.result_set.ids, result.result_set.ids,
                                                            assume_unique=True, return_indices=True)
                start[new_rows] = self.view.coords[old_rows] if len(self.view.coords) == len(old) else \
                    old.coords[old_rows]
            self._update_colour_choices(table, result.result_set.level)
            self.view.set_points(start, self._brushes())
            self.view.move_to(result.coords, animate=animate and len(result) > 0)
            self.view.view_box.autoRange(padding=0.06)
            self._apply_highlight()
            self.set_selection(result.result_set.rows_of(self._selected_ids), emit=False)
        self.notice.setText("\n".join([*result.result_set.notices, *result.notices]))
        # A placeholder or a cold layout has its own extent: fit the view once the points have arrived.
        # A warm layout is aligned to the old one, so the user's zoom is kept.
        self._fit_after_move = not same_set or old.kind == "pca" or result.kind == "umap"
        if not self.view.animating:
            self._fit_view()

    def _fit_view(self) -> None:
        if self._fit_after_move and len(self.view.coords):
            self.view.view_box.autoRange(padding=0.06)
        self._fit_after_move = False

    def _update_colour_choices(self, table: dict, level: str) -> None:
        current = self.colour_combo.currentData() if self.colour_combo.count() else "folder"
        self.colour_combo.blockSignals(True)
        self.colour_combo.clear()
        self.colour_combo.addItem("(one colour)", None)
        self.colour_combo.addItem("folder", "folder")
        fields = [*NUMERIC_FIELDS, *(("start",) if level == "segment" else ())]
        for field in fields:
            values = table.get(field)
            if values is not None and len(values) and np.isfinite(values).any():
                self.colour_combo.addItem(field.replace("_", " "), field)
        index = self.colour_combo.findData(current)
        self.colour_combo.setCurrentIndex(index if index >= 0 else 1)
        self.colour_combo.blockSignals(False)

    def _brushes(self) -> list:
        field = self.colour_combo.currentData()
        table, n = self.table, len(self.shown) if self.shown is not None else 0
        if field is None or table is None or n == 0:
            self.legend.setText("")
            return [pg.mkBrush(80, 160, 255, 200)] * n
        if field == "folder":
            folders = table["folder"]
            names, codes, counts = np.unique(folders.astype(str), return_inverse=True, return_counts=True)
            palette = [pg.mkBrush(QColor(c)) for c in PALETTE]
            order = np.argsort(-counts)
            rank = np.empty(len(names), int)
            rank[order] = np.arange(len(names))
            brushes = [palette[rank[c] % len(palette)] for c in codes]
            shown = order[: len(PALETTE)]
            items = [f'<span style="color:{PALETTE[i]}">■</span> {_tail(names[j])} ({counts[j]})'
                     for i, j in enumerate(shown)]
            more = f"<br>… {len(names) - len(shown)} more folders (colours repeat)" if len(names) > len(
                shown) else ""
            self.legend.setText("<b>folder</b><br>" + "<br>".join(items) + more)
            return brushes
        values = np.asarray(table[field], np.float64)
        finite = np.isfinite(values)
        lo, hi = (np.nanpercentile(values[finite], [2, 98]) if finite.any() else (0.0, 1.0))
        cmap = pg.colormap.get("viridis")
        lut = cmap.getLookupTable(nPts=GRADIENT_STEPS, alpha=False)
        palette = [pg.mkBrush(int(r), int(g), int(b), 220) for r, g, b in lut]
        grey = pg.mkBrush(150, 150, 150, 120)
        steps = np.clip(((values - lo) / (hi - lo if hi > lo else 1.0) * (GRADIENT_STEPS - 1)), 0,
                        GRADIENT_STEPS - 1)
        brushes = [palette[int(s)] if ok else grey for s, ok in zip(steps, finite)]
        stops = "".join(f'<span style="color:rgb({r},{g},{b})">█</span>' for r, g, b in lut[::8])
        self.legend.setText(f"<b>{field.replace('_', ' ')}</b><br>{_fmt(lo)} {stops} {_fmt(hi)}"
                            + ("" if finite.all() else "<br>grey: unknown"))
        return brushes

    def _apply_colours(self) -> None:
        if self.shown is not None and len(self.shown):
            self.view.set_brushes(self._brushes())

    def _apply_highlight(self) -> None:
        if self.shown is None:
            return
        self.view.set_highlighted(self.shown.result_set.rows_of_assets(self._highlight_assets))

    # -- selection ----------------------------------------------------------------------------------------
    def set_selection(self, rows: np.ndarray, *, emit: bool = True) -> None:
        rows = np.unique(np.asarray(rows, np.int64))
        self.view.set_selected(rows)
        ids = self.shown.result_set.ids[rows] if self.shown is not None else np.zeros(0, np.int64)
        changed = not np.array_equal(ids, self._selected_ids)
        self._selected_ids = ids
        self._update_selection_widgets()
        if emit and changed:
            self.selectionChanged.emit(self.selected_asset_ids())

    def selected_rows(self) -> np.ndarray:
        if self.shown is None:
            return np.zeros(0, np.int64)
        return self.shown.result_set.rows_of(self._selected_ids)

    def selected_asset_ids(self) -> list[int]:
        rows = self.selected_rows()
        return sorted({int(a) for a in self.shown.result_set.asset_ids[rows]}) if len(rows) else []

    def _update_selection_widgets(self) -> None:
        n = len(self._selected_ids)
        for b in (self.use_button, self.query_button, self.library_button, self.export_button):
            b.setEnabled(n > 0)
        self.selection_label.setText(f"{n:,} selected" if n else "Nothing selected — drag around points")

    def _on_area(self, rows: np.ndarray, modifiers) -> None:
        if modifiers & Qt.KeyboardModifier.ShiftModifier:
            rows = np.union1d(self.selected_rows(), rows)
        elif modifiers & Qt.KeyboardModifier.ControlModifier:
            rows = np.setdiff1d(self.selected_rows(), rows)
        self.set_selection(rows)

    def use_selection(self) -> None:
        """Map only the selected points (a new result set)."""
        if self.shown is None or not len(self._selected_ids):
            return
        rs = self.shown.result_set
        rows = self.selected_rows()
        if rs.level == "segment":
            source = Source("selection", segment_ids=tuple(int(i) for i in rs.ids[rows]))
        else:
            source = Source("selection", asset_ids=tuple(int(i) for i in rs.ids[rows]))
        self._selection_source = source
        self._set_source(source)
        self.recompute()

    def selection_seeds(self) -> list:
        from audiosim.search import Seed

        rows = self.selected_rows()
        if len(rows) > MAX_QUERY_SEEDS:
            rows = rows[np.linspace(0, len(rows) - 1, MAX_QUERY_SEEDS).round().astype(int)]
        seeds = []
        for r in rows:
            start, end = self.table["start"][r], self.table["end"][r]
            seeds.append(Seed(str(self.table["path"][r]), None if np.isnan(start) else float(start),
                              None if np.isnan(end) else float(end)))
        return seeds

    def query_selection(self) -> None:
        seeds = self.selection_seeds()
        if seeds:
            self.queryRequested.emit(seeds)

    def show_selection_in_library(self) -> None:
        self.selectionChanged.emit(self.selected_asset_ids())
        parent = self.parentWidget()
        if parent is not None:
            parent.window().raise_()
            parent.window().activateWindow()

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the selected sounds", "selection.csv",
                                              "CSV (*.csv);;Playlist (*.m3u)")
        if path:
            try:
                write_point_list(path, self.table, self.selected_rows())
            except OSError as exc:
                self.notice.setText(f"cannot export: {exc.strerror or exc}")

    # -- hover and audition -------------------------------------------------------------------------------
    def describe(self, row: int) -> str:
        t = self.table
        name = str(t["name"][row])
        folder = _tail(str(t["folder"][row]))
        when = "" if np.isnan(t["start"][row]) else f"  {t['start'][row]:.2f}–{t['end'][row]:.2f} s"
        return f"{name}{when}\n{folder}"

    def _on_hover(self, row: int) -> None:
        self._hover_row = row
        if row < 0 or self.table is None or self.shown is None or row >= len(self.shown):
            QToolTip.hideText()
            return
        text = self.describe(row)
        QToolTip.showText(self.cursor().pos(), text, self.view)
        self.view.setToolTip("")
        if self.hover_play.isChecked():
            self._hover_timer.start()

    def _play_hovered(self) -> None:
        if self._hover_row >= 0:
            self.play(self._hover_row)

    def _on_point_clicked(self, row: int, modifiers) -> None:
        if row < 0:
            if not modifiers & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier):
                self.set_selection(np.zeros(0, np.int64))
            return
        if modifiers & Qt.KeyboardModifier.ShiftModifier:
            self.set_selection(np.union1d(self.selected_rows(), [row]))
        else:
            self.set_selection(np.array([row]))
        self.play(row)

    def play(self, row: int) -> None:
        """Audition a point: its segment, or the start of its file (decoded off the GUI thread)."""
        if self.table is None or not 0 <= row < len(self.table["path"]):
            return
        audition = self._ensure_audition()
        if audition is None:
            return
        path = str(self.table["path"][row])
        start, end = self.table["start"][row], self.table["end"][row]
        if np.isnan(start):
            duration = self.table["duration"][row]
            start, end = 0.0, min(MAX_FILE_AUDITION, duration) if np.isfinite(duration) else MAX_FILE_AUDITION
        audition.play(path, float(start), float(end))

    def _ensure_audition(self):
        if self._audition is None:
            try:
                from audiosim.gui.audition import Audition
            except ImportError:
                self.notice.setText("audio playback is not available in this build")
                return None
            self._audition = Audition(self)
            self._audition.error.connect(lambda text: self.status.setText(f"audio: {text}"))
        return self._audition

    # -- closing ------------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        self._debounce.stop()
        self._generation += 1
        self._runner.cancel_all()
        self._pool.waitForDone(5000)
        if self._audition is not None:
            self._audition.stop()
        # The library stays open: the main window shows this window again with a new result set.
        super().closeEvent(event)


def _tail(folder: str, parts: int = 2) -> str:
    pieces = [p for p in folder.replace("\\", "/").split("/") if p]
    return "/".join(pieces[-parts:]) if pieces else folder


def _fmt(value: float) -> str:
    return f"{value:.3g}"
