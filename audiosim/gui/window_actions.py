"""Menus, toolbar and the commands behind them (a mixin of :class:`~audiosim.gui.main_window.MainWindow`):
files, libraries, export, preferences, recording and the map."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QToolBar,
    QVBoxLayout,
)

from audiosim.gui.workers import Task, WriterThread


class WindowActions:
    # -- building -----------------------------------------------------------------------------------------
    def build_actions(self) -> None:
        def action(text, slot, shortcut=None, tip=None):
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            if tip:
                a.setToolTip(tip)
                a.setStatusTip(tip)
            a.triggered.connect(slot)
            return a

        self.add_folder_action = action("Add folder…", self.choose_folder, "Ctrl+O",
                                        "Index a folder (or drop folders and files on the window)")
        self.open_clip_action = action("Search by file…", self.choose_clip, "Ctrl+Shift+O",
                                       "Search with an audio file that need not be in the library")
        self.export_action = action("Export results…", self.export_results, "Ctrl+E",
                                    "Save the result list as CSV, JSON or an M3U playlist")
        self.export_segment_action = action("Export segment as WAV…",
                                            lambda: self.export_segment(self.results.current_row()),
                                            "Ctrl+Shift+E")
        self.preferences_action = action("Preferences…", self.show_preferences, QKeySequence.StandardKey.Preferences)
        self.quit_action = action("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.new_library_action = action("New library…", self.new_library)
        self.open_library_action = action("Open library…", self.choose_library)
        self.stats_action = action("Statistics", self.show_stats)
        self.storage_action = action("Storage…", self.show_storage,
                                     tip="Choose where the library keeps its vectors (Faiss, Annoy, Milvus, pgvector)")
        self.rescan_action = action("Rescan", self.rescan, "F5", "Index the library's folders again "
                                    "(only new and changed files are analysed)")
        self.remove_action = action("Remove folders…", self.remove_folders_dialog)
        self.filter_action = action("Filter", self.focus_filter, QKeySequence.StandardKey.Find)
        self.map_action = action("Map…", self.open_map, "Ctrl+M",
                                 "Open the map of the current filter or results")
        self.play_action = action("Play / stop", self.toggle_playback, "Space", "Play or stop the result (Space)")
        self.loop_action = action("Loop", lambda: self.results.loop_button.toggle(), "L", "Loop (L)")
        self.more_action = action("More like this", lambda: self._on_row(self.more_like))
        self.less_action = action("Less like this", lambda: self._on_row(self.less_like))
        self.search_action = action("Search", self.run_query, "Ctrl+Return")
        if importlib.util.find_spec("audiosim.gui.explorer") is None:
            self._disable_map("the map is not available in this build (audiosim.gui.explorer is missing)")

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for a in (self.add_folder_action, self.open_clip_action, None, self.export_action,
                  self.export_segment_action, None, self.preferences_action, None, self.quit_action):
            file_menu.addSeparator() if a is None else file_menu.addAction(a)
        library_menu = bar.addMenu("&Library")
        library_menu.addAction(self.new_library_action)
        library_menu.addAction(self.open_library_action)
        self.recent_menu = library_menu.addMenu("Switch to")
        library_menu.addSeparator()
        for a in (self.stats_action, self.storage_action, self.rescan_action, self.remove_action):
            library_menu.addAction(a)
        query_menu = bar.addMenu("&Query")
        for a in (self.search_action, self.filter_action, None, self.more_action, self.less_action, None,
                  self.play_action, self.loop_action):
            query_menu.addSeparator() if a is None else query_menu.addAction(a)
        view_menu = bar.addMenu("&View")
        view_menu.addAction(self.map_action)
        view_menu.addAction(self.failed_dock.toggleViewAction())

        toolbar = QToolBar("Main", objectName="mainToolbar")
        toolbar.setIconSize(QSize(16, 16))
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for a in (self.add_folder_action, self.open_clip_action, self.search_action, None, self.map_action,
                  None, self.export_action):
            toolbar.addSeparator() if a is None else toolbar.addAction(a)
        self.addToolBar(toolbar)
        self.update_recent_menu()

    def update_recent_menu(self) -> None:
        menu = getattr(self, "recent_menu", None)
        if menu is None:
            return
        menu.clear()
        for folder in self.settings.recent_libraries:
            a = menu.addAction(folder, lambda f=folder: self.open_library(f))
            a.setCheckable(True)
            a.setChecked(folder == self.library_folder)
        menu.setEnabled(bool(menu.actions()))

    def _on_row(self, fn) -> None:
        row = self.results.current_row()
        if row >= 0:
            fn(row)

    def focus_filter(self) -> None:
        self.library_panel.filter_box.setFocus()
        self.library_panel.filter_box.selectAll()

    def _copy(self, text: str) -> None:
        QGuiApplication.clipboard().setText(text)

    # -- files --------------------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Index a folder", self.settings.last_folder("index"))
        if folder:
            self.index_paths([folder])

    def choose_clip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Search by an audio file", self.settings.last_folder("clip"),
                                              "Audio files (*.wav *.flac *.ogg *.mp3 *.aif *.aiff *.opus *.m4a);;"
                                              "All files (*)")
        if path:
            self.query_clip(path)

    def export_results(self) -> None:
        from audiosim.gui.export import EXPORT_FORMATS, export_results

        if not self.hits:
            self.show_error("Export", "there are no results to export yet")
            return
        start = os.path.join(self.settings.last_folder("export"), "results.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export results", start, ";;".join(EXPORT_FORMATS.values()))
        if not path:
            return
        try:
            export_results(self.hits, path, query=self.positives[0].path if self.positives else None)
        except (OSError, ValueError) as exc:
            self.show_error("Export", str(exc))
            return
        self.settings.set_last_folder("export", os.path.dirname(path))
        self.statusBar().showMessage(f"Exported {len(self.hits)} results to {path}", 8000)

    def export_segment(self, row: int) -> None:
        from audiosim.gui.export import segment_file_name

        hits = self.results.model.hits
        if not 0 <= row < len(hits):
            return
        hit = hits[row]
        start = os.path.join(self.settings.last_folder("export"), segment_file_name(hit.path, hit.start, hit.end))
        path, _ = QFileDialog.getSaveFileName(self, "Export segment", start, "WAV (*.wav)")
        if path and self.write_segment(row, path) is not None:
            self.settings.set_last_folder("export", os.path.dirname(path))
            self.statusBar().showMessage(f"Saved {path}", 8000)

    # -- preferences --------------------------------------------------------------------------------------
    def show_preferences(self) -> None:
        from audiosim.gui.preferences import PreferencesDialog

        dialog = PreferencesDialog(self.settings, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            dialog.apply()
            self.audition.set_device(self.settings.output_device)
            self.query_panel.k.setValue(self.settings.k)

    # -- libraries ----------------------------------------------------------------------------------------
    def new_library(self) -> None:
        from audiosim.gui import library_ops

        folder = QFileDialog.getExistingDirectory(self, "New library: choose an empty folder",
                                                  self.settings.last_folder("library"))
        if not folder:
            return
        if any(Path(folder).iterdir()) and not library_ops.library_exists(folder):
            folder = os.path.join(folder, "audiosim library")
        self.settings.set_last_folder("library", os.path.dirname(folder))
        self.open_library(folder)

    def choose_library(self) -> None:
        from audiosim.gui import library_ops

        folder = QFileDialog.getExistingDirectory(self, "Open a library folder", self.settings.last_folder("library"))
        if not folder:
            return
        if not library_ops.library_exists(folder):
            self.show_error("Open library", f"{folder} is not an audiosim library (no library.db); "
                                            "use Library ▸ New library… to create one")
            return
        self.settings.set_last_folder("library", os.path.dirname(folder))
        self.open_library(folder)

    def show_stats(self) -> None:
        if self.reader is None:
            return

        def done(stats):
            text = "\n".join(f"{k}: {v}" for k, v in stats.items())
            box = QMessageBox(QMessageBox.Icon.Information, "Library statistics", text,
                              QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.show()

        self.tasks.start(Task(self.reader.stats), done, lambda e: self.show_error("Statistics", str(e)))

    def show_storage(self) -> None:
        """Library ▸ Storage…: show where the vectors are; a new choice is copied in the writer thread."""
        from audiosim.gui import library_ops
        from audiosim.gui.library_settings import StorageDialog

        if self.reader is None:
            return

        def done(info):
            dialog = StorageDialog(info, self)
            self.storage_dialog = dialog  # for tests and for the one that is open
            dialog.accepted.connect(lambda: self.switch_store(dialog.chosen_spec()))
            dialog.open()

        self.tasks.start(Task(library_ops.storage_info, self.reader), done,
                         lambda e: self.show_error("Storage", str(e)))

    def switch_store(self, spec: str | None) -> bool:
        """Copy the vectors to the store ``spec`` and switch the library to it, in the writer thread."""
        from audiosim.library.store_ops import copy_store

        if not spec:
            return False
        if self.writer_thread is not None:
            self.show_error("Storage", "wait for indexing to finish first")
            return False
        thread = WriterThread(self.library_folder, lambda lib, state: copy_store(lib, spec, state=state),
                              kind="store", roots=[], parent=self)
        thread.signals.progress.connect(self.indexing_bar.set_progress)
        thread.signals.finished.connect(self._store_switched)
        thread.signals.failed.connect(self._index_failed)
        self.writer_thread = thread
        self.indexing_bar.start([spec])
        thread.start()
        return True

    def _store_switched(self, doc: dict) -> None:
        self._writer_done()
        self.statusBar().showMessage(f"The library now keeps its vectors in {doc['to']}", 8000)
        self.open_library()
        self.storeSwitched.emit(doc["to"])

    def rescan(self) -> None:
        from audiosim.gui import library_ops

        if self.reader is None:
            return
        roots = library_ops.library_roots(self.reader)
        if not roots:
            self.show_error("Rescan", "the library is empty: add a folder first")
            return
        self.index_paths(roots)

    def remove_folders_dialog(self) -> None:
        from audiosim.gui import library_ops

        if self.reader is None:
            return
        roots = library_ops.library_roots(self.reader)
        if not roots:
            self.show_error("Remove folders", "the library has no folders yet")
            return
        dialog = QDialog(self)
        dialog.setWindowTitle("Remove folders from the library")
        items = QListWidget()
        for root in roots:
            item = QListWidgetItem(root)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            items.addItem(item)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(items)
        layout.addWidget(buttons)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        chosen = [items.item(i).text() for i in range(items.count())
                  if items.item(i).checkState() == Qt.CheckState.Checked]
        if chosen:
            self.remove_folders(chosen)

    def remove_folders(self, roots: list[str]) -> bool:
        """Remove the assets under ``roots`` (files on disk untouched), in the writer thread."""
        from audiosim.gui import library_ops

        if self.writer_thread is not None:
            self.show_error("Remove folders", "wait for indexing to finish first")
            return False
        thread = WriterThread(self.library_folder, lambda lib, state: library_ops.remove_folders(lib, roots,
                                                                                                 state=state),
                              kind="remove", roots=roots, parent=self)
        thread.signals.progress.connect(self.indexing_bar.set_progress)
        thread.signals.finished.connect(self._removed)
        thread.signals.failed.connect(self._index_failed)
        self.writer_thread = thread
        self.indexing_bar.start(roots)
        thread.start()
        return True

    def _removed(self, count: int) -> None:
        self._writer_done()
        self.statusBar().showMessage(f"Removed {count} assets from the library", 8000)
        self.open_library()
        self.indexingFinished.emit(None)

    # -- recording ----------------------------------------------------------------------------------------
    def toggle_recording(self, on: bool) -> None:
        from audiosim.playback import AudioDeviceError, Recorder

        button = self.query_panel.record
        if on:
            self.recorder = Recorder(self.settings.input_device)
            try:
                self.recorder.start()
            except AudioDeviceError as exc:
                self.recorder = None
                button.setChecked(False)
                self.show_error("Recording", str(exc))
                return
            self._record_timer = QTimer(self, interval=100)
            self._record_timer.timeout.connect(self._record_tick)
            self._record_timer.start()
            return
        recorder, self.recorder = getattr(self, "recorder", None), None
        if recorder is None:
            return
        self._record_timer.stop()
        button.setText("● Record")
        samples = recorder.stop()
        if len(samples) < recorder.sample_rate * 0.1:
            self.show_error("Recording", "the recording is too short to search with")
            return
        import soundfile as sf

        folder = Path(tempfile.gettempdir()) / "audiosim-recordings"
        folder.mkdir(exist_ok=True)
        path = folder / time.strftime("recording %Y-%m-%d %H.%M.%S.wav")
        sf.write(path, samples, recorder.sample_rate, subtype="FLOAT")
        self.set_query([self._seed(str(path))], in_library=False)

    def _record_tick(self) -> None:
        recorder = getattr(self, "recorder", None)
        if recorder is None:
            return
        self.query_panel.record.setText(f"■ {recorder.seconds:4.1f} s")
        if recorder.full:
            self.query_panel.record.setChecked(False)

    # -- the map ------------------------------------------------------------------------------------------
    def _disable_map(self, reason: str) -> None:
        self.map_action.setEnabled(False)
        self.map_action.setToolTip(f"Map unavailable: {reason}")
        self.map_action.setStatusTip(f"Map unavailable: {reason}")

    def open_map(self) -> None:
        try:
            from audiosim.gui.explorer import ExplorerWindow
        except Exception as exc:  # noqa: BLE001 - ImportError or a broken optional dependency
            self._disable_map(f"{type(exc).__name__}: {exc}")
            self.show_error("Map", f"the map cannot be opened: {exc}")
            return
        if self.explorer is None:
            self.explorer = ExplorerWindow(Path(self.library_folder), parent=None)
            self.explorer.queryRequested.connect(self._map_query)
            self.explorer.selectionChanged.connect(self.library_panel.select_ids)
        self._update_explorer()
        self.explorer.show()
        self.explorer.raise_()

    def _update_explorer(self) -> None:
        if self.hits:
            self.explorer.show_result_set(hits=list(self.hits))
        else:
            self.explorer.show_result_set(filter_expression=self.library_panel.current_filter)

    def _map_query(self, seeds: list) -> None:
        if seeds:
            self.set_query(list(seeds), in_library=None)
