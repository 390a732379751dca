"""The main window: library on the left, query and results on the right, indexing at the bottom.

It owns one read-only :class:`~audiosim.library.db.Library` (SQLite WAL: never blocked by a writer) and
starts workers for everything slow: indexing (writable library for the run only), queries, asset lists,
waveforms and audition clips. Results come back through queued signals.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QThreadPool, QTimer, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from audiosim.gui.audition import Audition
from audiosim.gui.indexing_panel import FailedList, IndexingBar
from audiosim.gui.library_panel import LibraryPanel
from audiosim.gui.query_panel import QueryPanel
from audiosim.gui.results_panel import ResultsPanel
from audiosim.gui.settings import Settings
from audiosim.gui.query_actions import QueryActions
from audiosim.gui.window_actions import WindowActions
from audiosim.gui.workers import Task, TaskRunner, WriterThread, index_job, upgrade_job

REFRESH_DURING_INDEXING_MS = 2000


class MainWindow(QMainWindow, QueryActions, WindowActions):
    """Signals for tests and the explorer: ``indexingFinished(report)``, ``queryFinished(hits)``,
    ``assetsLoaded(count)``, ``errorShown(text)``, ``libraryOpened(folder)``, ``warmedUp()`` (the
    analysis stack and the audio device are ready)."""

    indexingFinished = Signal(object)
    queryFinished = Signal(object)
    assetsLoaded = Signal(int)
    errorShown = Signal(str)
    libraryOpened = Signal(str)
    libraryUpgraded = Signal(object)  # an UpgradeReport
    storeSwitched = Signal(str)  # the library now keeps its vectors in this store (spec)
    warmedUp = Signal()

    def __init__(self, settings: Settings | None = None, library: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        from audiosim.config import default_library_dir

        self.library_folder = str(Path(library or self.settings.library or default_library_dir()).expanduser()
                                  .resolve())
        self.reader = None  # the read-only Library
        self.writer_thread: WriterThread | None = None
        self._upgrade_tried: set[str] = set()  # once per library and session: files not on disk stay old
        self.hits: list = []
        self.positives: list = []
        self.negatives: list = []
        self._query_generation = 0
        self._assets_generation = 0
        self._total_assets = 0
        self._envelope_for: str | None = None
        self._spectrogram_for: str | None = None
        self.explorer = None
        self.last_error: str | None = None

        self.setWindowTitle("audiosim")
        self.setAcceptDrops(True)
        self.resize(1320, 820)
        query_pool = QThreadPool(self)
        query_pool.setMaxThreadCount(2)
        self.queries = TaskRunner(query_pool, self)
        self.tasks = TaskRunner(QThreadPool.globalInstance(), self)
        self.audition = Audition(self, device=self.settings.output_device)
        self.audition.error.connect(lambda text: self.show_error("Playback", text))
        self.audition.position.connect(self._playhead)
        self.audition.started.connect(lambda _key: self.results.set_playing(True))

        self._build_widgets()
        self.build_actions()
        self._connect()
        self._restore_settings()
        self._refresh_timer = QTimer(self, interval=REFRESH_DURING_INDEXING_MS)
        self._refresh_timer.timeout.connect(self.reload_assets)

    # -- layout -------------------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.library_panel = LibraryPanel()
        self.query_panel = QueryPanel()
        self.results = ResultsPanel()
        self.results.segment_mime = self.segment_mime
        self.banner = QFrame(objectName="resumeBanner")
        self.banner.setStyleSheet("#resumeBanner { background: palette(alternate-base); "
                                  "border: 1px solid palette(mid); border-radius: 4px; }")
        self.banner_label = QLabel()
        self.banner_label.setWordWrap(True)
        self.resume_button = QPushButton("Resume")
        self.dismiss_button = QPushButton("Dismiss")
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.addWidget(self.banner_label, 1)
        banner_layout.addWidget(self.resume_button)
        banner_layout.addWidget(self.dismiss_button)
        self.banner.hide()

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.query_panel)
        right.addWidget(self.results)
        right.setStretchFactor(0, 2)
        right.setStretchFactor(1, 5)
        self.main_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.main_splitter.addWidget(self.library_panel)
        self.main_splitter.addWidget(right)
        self.main_splitter.setStretchFactor(0, 5)
        self.main_splitter.setStretchFactor(1, 6)
        self.main_splitter.setSizes([560, 760])
        right.setSizes([220, 560])
        self.right_splitter = right
        self.indexing_bar = IndexingBar()
        self.indexing_bar.hide()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.banner)
        layout.addWidget(self.main_splitter, 1)
        layout.addWidget(self.indexing_bar)
        self.setCentralWidget(central)

        self.failed_list = FailedList()
        self.failed_dock = QDockWidget("Failed files", self, objectName="failedDock")
        self.failed_dock.setWidget(self.failed_list)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.failed_dock)
        self.failed_dock.hide()
        self.drop_hint = QLabel("Drop folders or files anywhere to index them")
        self.statusBar().addPermanentWidget(self.drop_hint)

    def _connect(self) -> None:
        lp, qp, rp = self.library_panel, self.query_panel, self.results
        lp.filterChanged.connect(lambda _f: self.reload_assets())
        lp.assetActivated.connect(self.query_asset)
        qp.clipDropped.connect(self.query_clip)
        qp.waveform.clicked.connect(self.play_query_from)
        qp.searchRequested.connect(self.run_query)
        qp.recordToggled.connect(self.toggle_recording)
        qp.spectrogramToggled.connect(self._spectrogram_toggled)
        qp.negativesCleared.connect(self._clear_negatives)
        rp.hitActivated.connect(self.play_result)
        rp.table.keyAction.connect(self._result_key)
        rp.waveformClicked.connect(self.play_from)
        rp.contextRequested.connect(self._result_menu)
        rp.play_button.clicked.connect(self.toggle_playback)
        rp.loop_button.toggled.connect(self.audition.set_loop)
        rp.volume.valueChanged.connect(self._volume_changed)
        self.indexing_bar.cancelRequested.connect(self.cancel_indexing)
        self.indexing_bar.failedClicked.connect(self.show_failed)
        self.resume_button.clicked.connect(self._resume)
        self.dismiss_button.clicked.connect(self._dismiss_resume)

    # -- errors -------------------------------------------------------------------------------------------
    def show_error(self, title: str, text: str) -> None:
        """A clear message, non-blocking (the window keeps working behind it)."""
        self.last_error = text
        self.statusBar().showMessage(f"{title}: {text}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()
        self.errorShown.emit(text)

    def show_internal_error(self, summary: str, details: str) -> None:
        """An unexpected exception (a bug): one line, the traceback under "Show Details…"; the window goes on."""
        self.last_error = summary
        self.statusBar().showMessage(f"Internal error: {summary}", 15000)
        box = QMessageBox(QMessageBox.Icon.Critical, "Internal error",
                          f"Something went wrong inside audiosim:\n{summary}\n\nThe window keeps working; "
                          "the details below help a bug report.", QMessageBox.StandardButton.Ok, self)
        box.setDetailedText(details)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setObjectName("internalErrorDialog")
        box.show()
        self.errorShown.emit(summary)

    # -- library ------------------------------------------------------------------------------------------
    def open_library(self, folder: str | os.PathLike | None = None) -> bool:
        """Open (creating it if needed) a library for reading, in a worker; ``libraryOpened`` follows."""
        if folder is not None:
            if self.writer_thread is not None:
                self.show_error("Library", "wait for indexing to finish (or cancel it) before switching")
                return False
            self.library_folder = str(Path(folder).expanduser().resolve())
        self.settings.library = self.library_folder
        self.setWindowTitle(f"audiosim — {self.library_folder}")
        self.update_recent_menu()
        self.tasks.start(Task(_open_reader, self.library_folder, self.settings.pending_scan(self.library_folder)),
                         self._reader_ready, self._reader_failed)
        return True

    def _reader_ready(self, result) -> None:
        folder, reader, resume_roots, outdated = result
        if folder != self.library_folder:  # switched again meanwhile
            reader.close()
            return
        old, self.reader = self.reader, reader
        if old is not None:
            QTimer.singleShot(5000, old.close)  # a running query may still hold it
        if reader.notices:  # what opening did (e.g. completed a half-created library)
            self.statusBar().showMessage("; ".join(reader.notices), 15000)
        self.audition.cache.clear()
        self.hits = []
        self.results.set_hits([])
        self.reload_assets()
        self._offer_resume(resume_roots)
        self.libraryOpened.emit(self.library_folder)
        if outdated and folder not in self._upgrade_tried and self.writer_thread is None:
            self._upgrade_tried.add(folder)
            self.start_upgrade()

    def start_upgrade(self) -> None:
        """A library made by an older audiosim: re-derive it in the writer thread, with progress."""
        thread = WriterThread(self.library_folder, upgrade_job, kind="upgrade", parent=self)
        thread.signals.progress.connect(self.indexing_bar.set_progress)
        thread.signals.status.connect(self.indexing_bar.set_status)
        thread.signals.finished.connect(self._upgrade_finished)
        thread.signals.failed.connect(self._index_failed)
        self.writer_thread = thread
        self.indexing_bar.start([], title="Upgrading",
                                detail="this library was made by an older audiosim: re-deriving its files")
        self.statusBar().showMessage("Upgrading the library to this version's analysis…")
        thread.start()

    def _upgrade_finished(self, report) -> None:
        self._writer_done()
        for failure in report.failed:
            self.failed_list.add(failure["path"], failure["error"])
        for path in report.missing:
            self.failed_list.add(path, "not on disk: kept as it was (not searchable) until it is back")
        if report.failed or report.missing:
            self.show_failed()
        self.statusBar().showMessage(
            f"Library upgraded: {report.from_frames} from stored frames, {report.decoded} from audio"
            + (f", {len(report.missing)} not on disk" if report.missing else "")
            + (f", {len(report.failed)} failed" if report.failed else "") + f" in {report.seconds:.1f} s")
        self.open_library()
        self.libraryUpgraded.emit(report)

    def _reader_failed(self, exc: BaseException) -> None:
        from audiosim.errors import LibraryLockedError

        if isinstance(exc, LibraryLockedError):
            self.show_error("Library in use", f"{exc}\nThe library is being created by another process; "
                                              "open it again when that is done.")
        else:
            self.show_error("Cannot open library", f"{self.library_folder}: {exc}")

    def reload_assets(self) -> None:
        if self.reader is None:
            return
        self._assets_generation += 1
        generation = self._assets_generation
        expression = self.library_panel.current_filter
        reader = self.reader

        def load():
            from audiosim.gui import library_ops
            from audiosim.gui.asset_model import load_asset_rows

            return load_asset_rows(reader, expression), library_ops.asset_counts(reader)

        def done(result):
            if generation == self._assets_generation:
                rows, total = result
                self._total_assets = total
                self.library_panel.set_rows(rows, total)
                self.assetsLoaded.emit(rows.count)

        self.tasks.start(Task(load), done, lambda e: self.show_error("Library", str(e)))

    def _offer_resume(self, roots: list[str]) -> None:
        self._resume_roots = roots
        if roots:
            shown = ", ".join(roots[:3]) + (f" and {len(roots) - 3} more" if len(roots) > 3 else "")
            self.banner_label.setText(f"An indexing run was interrupted before it finished ({shown}). "
                                      "Resume it? Files already indexed are skipped.")
            self.banner.show()
        else:
            self.banner.hide()

    def _resume(self) -> None:
        self.banner.hide()
        self.index_paths(self._resume_roots)

    def _dismiss_resume(self) -> None:
        self.banner.hide()
        self.settings.set_pending_scan(self.library_folder, [])

    # -- indexing -----------------------------------------------------------------------------------------
    def index_paths(self, paths: list[str]) -> bool:
        paths = [os.path.abspath(p) for p in paths]
        missing = [p for p in paths if not os.path.lexists(p)]
        if missing:
            self.show_error("Cannot index", "not found: " + ", ".join(missing))
            paths = [p for p in paths if p not in missing]
        if not paths:
            return False
        if self.writer_thread is not None:
            self.show_error("Indexing", "an indexing run is in progress; drop again when it is finished")
            return False
        self.settings.set_last_folder("index", os.path.dirname(paths[0]))
        self.settings.set_pending_scan(self.library_folder, paths)
        self.banner.hide()
        job = index_job(paths, cluster=self.settings.cluster_address)
        thread = WriterThread(self.library_folder, job, kind="index", roots=paths, parent=self)
        thread.signals.progress.connect(self.indexing_bar.set_progress)
        thread.signals.status.connect(self.indexing_bar.set_status)
        thread.signals.partial.connect(self._index_partial)
        thread.signals.finished.connect(self._index_finished)
        thread.signals.failed.connect(self._index_failed)
        self.writer_thread = thread
        self.indexing_bar.start(paths)
        self.statusBar().showMessage("Indexing " + ", ".join(paths))
        thread.start()
        self._refresh_timer.start()
        return True

    def cancel_indexing(self) -> None:
        if self.writer_thread is not None:
            self.writer_thread.state.cancel()
            self.indexing_bar.cancelling()

    def _index_partial(self, item) -> None:
        if isinstance(item, tuple) and item and item[0] == "failed":
            self.failed_list.add(item[1], item[2])
            self.indexing_bar.add_failure()

    def _writer_done(self) -> WriterThread | None:
        thread, self.writer_thread = self.writer_thread, None
        self._refresh_timer.stop()
        if thread is not None:
            thread.wait(5000)
            thread.deleteLater()
        self.indexing_bar.hide()
        return thread

    def _index_finished(self, report) -> None:
        thread = self._writer_done()
        if thread is not None and thread.kind == "index" and not report.cancelled:
            self.settings.set_pending_scan(self.library_folder, [])
        parts = [f"indexed {report.indexed}", f"unchanged {report.skipped}"]
        if report.removed:
            parts.append(f"removed {report.removed}")
        if report.failed:
            parts.append(f"failed {len(report.failed)}")
            self.show_failed()
        rate = report.indexed / report.seconds if report.seconds else 0
        self.statusBar().showMessage(("Indexing cancelled: " if report.cancelled else "Indexing done: ")
                                     + ", ".join(parts) + f" in {report.seconds:.1f} s ({rate:.1f} files/s)")
        self.open_library()  # a fresh reader sees the new vectors
        self.indexingFinished.emit(report)

    def _index_failed(self, exc: BaseException) -> None:
        self._writer_done()
        from audiosim.errors import LibraryLockedError

        if isinstance(exc, LibraryLockedError):
            self.show_error("Library in use", f"{exc}\nYour files were not indexed; drop them again later.")
        else:
            self.show_error("Indexing failed", f"{type(exc).__name__}: {exc}")
        self.settings.set_pending_scan(self.library_folder, [])
        self.indexingFinished.emit(None)

    def show_failed(self) -> None:
        if not self.failed_dock.isVisible():
            self.failed_dock.show()
            self.resizeDocks([self.failed_dock], [170], Qt.Orientation.Vertical)

    # -- drops --------------------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.index_paths(paths)

    # -- settings -----------------------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        geometry, state = s.layout("geometry"), s.layout("state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        for name, splitter in (("main", self.main_splitter), ("right", self.right_splitter),
                               ("results", self.results.splitter)):
            saved = s.layout(f"splitter_{name}")
            if saved is not None:
                splitter.restoreState(saved)
        self.query_panel.set_options(k=s.k, level=s.level, exclude_self=s.flag("exclude_self", True),
                                     use_filter=s.flag("use_filter", False))
        self.results.volume.setValue(s.volume)
        self.audition.set_volume(s.volume)

    def save_settings(self) -> None:
        s = self.settings
        s.set_layout("geometry", self.saveGeometry())
        s.set_layout("state", self.saveState())
        for name, splitter in (("main", self.main_splitter), ("right", self.right_splitter),
                               ("results", self.results.splitter)):
            s.set_layout(f"splitter_{name}", splitter.saveState())
        options = self.query_panel.options()
        s.k, s.level = options["k"], options["level"]
        s.set_flag("exclude_self", options["exclude_self"])
        s.set_flag("use_filter", options["use_filter"])
        s.library = self.library_folder
        s.sync()

    def closeEvent(self, event) -> None:
        self.save_settings()
        if self.writer_thread is not None:
            # Stop cleanly (what is done stays committed); the next start offers to resume.
            self.settings.set_pending_scan(self.library_folder, self.writer_thread.roots)
            self.writer_thread.state.cancel()
            self.writer_thread.wait(15000)
            self.settings.sync()
        self.audition.close()
        self.queries.cancel_all()
        self.queries.wait(5000)
        if self.explorer is not None:
            self.explorer.close()
        super().closeEvent(event)


def _open_reader(folder: str, pending: list[str]):
    """Worker: create the library if needed, open it read-only, find a run to resume."""
    from audiosim.gui import library_ops
    from audiosim.indexer import unfinished_scan
    from audiosim.library.db import Library

    from audiosim.library.upgrade import needs_upgrade

    notices = library_ops.ensure_library(folder)
    reader = Library(folder)
    reader.notices[:0] = notices
    try:
        roots = pending or unfinished_scan(reader) or []
    except Exception:  # noqa: BLE001 - an old or odd library: nothing to resume
        roots = pending
    return folder, reader, roots, needs_upgrade(reader)


__all__ = ["MainWindow"]
