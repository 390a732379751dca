"""Querying and auditioning (a mixin of :class:`~audiosim.gui.main_window.MainWindow`): the query's
seeds and view, searches in a worker (a newer one supersedes the older), results, audition, drag-out."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import QPoint, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMenu

from audiosim.gui.workers import Task


class QueryActions:
    # -- query --------------------------------------------------------------------------------------------
    def query_asset(self, asset_id: int) -> None:
        from audiosim.gui import library_ops

        asset = library_ops.asset_by_id(self.reader, asset_id) if self.reader is not None else None
        if asset is None:
            return
        if asset.status != "indexed":
            self.show_error("Cannot search", f"{asset.name} was not indexed: {asset.error or asset.status}")
            return
        self.set_query([self._seed(asset.path)], in_library=True)

    def query_clip(self, path: str) -> None:
        from audiosim.audio.decode import sniff_audio

        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            self.show_error("Cannot search", f"cannot read {path}")
            return
        if not sniff_audio(path) and os.path.splitext(path)[1].lower() not in _audio_extensions():
            self.show_error("Cannot search", f"{os.path.basename(path)} is not an audio file")
            return
        self.settings.set_last_folder("clip", os.path.dirname(path))
        self.set_query([self._seed(path)], in_library=None)

    @staticmethod
    def _seed(path: str, start: float | None = None, end: float | None = None, positive: bool = True):
        from audiosim.search import Seed

        return Seed(path, start, end, positive)

    def set_query(self, seeds: list, *, in_library: bool | None, run: bool = True) -> None:
        """Make ``seeds`` the query (positives and negatives), show the first, and search."""
        self.positives = [s for s in seeds if s.positive]
        self.negatives = [s for s in seeds if not s.positive]
        if not self.positives:
            return
        first = self.positives[0]
        if in_library is None:
            in_library = self.reader is not None and self.reader.asset_by_path(os.path.abspath(first.path)) \
                is not None
        self.query_panel.set_source(first.path, in_library=in_library)
        self.query_panel.set_seeds(self.positives, self.negatives)
        self.load_query_view(first.path)
        self.query_panel.waveform.set_region(first.start, first.end)
        if run:
            self.run_query()

    def load_query_view(self, path: str) -> None:
        from audiosim.gui.audio_io import envelope

        self._envelope_for = path
        self._spectrogram_for = None

        def done(env):
            if self._envelope_for == path:
                region = self.query_panel.waveform.region_bounds()
                self.query_panel.waveform.set_envelope(env)
                if region:
                    self.query_panel.waveform.set_region(*region)
                if self.query_panel.spectrogram.isChecked():
                    self._spectrogram_toggled(True)

        self.tasks.start(Task(envelope, path), done,
                         lambda e: self.query_panel.waveform.show_message(f"cannot show {path}:\n{e}"))

    def _spectrogram_toggled(self, on: bool) -> None:
        path = self._envelope_for
        if not on or path is None or self._spectrogram_for == path:
            return
        self._spectrogram_for = path
        from audiosim.gui.audio_io import spectrogram

        def done(result):
            if self._envelope_for == path:
                self.query_panel.waveform.set_spectrogram(*result)

        self.tasks.start(Task(spectrogram, path), done, lambda e: self.show_error("Spectrogram", str(e)))

    def query_seeds(self) -> list:
        """The seeds a search uses now: the query panel's region applies to the first positive."""
        if not self.positives:
            return []
        first = self.positives[0]
        region = self.query_panel.region()
        options = self.query_panel.options()
        if region is not None and options["level"] == "segment":
            first = self._seed(first.path, region[0], region[1])
        else:
            first = self._seed(first.path)
        return [first, *self.positives[1:], *self.negatives]

    def run_query(self) -> None:
        if self.reader is None or not self.positives:
            return
        from audiosim.search import search

        seeds = self.query_seeds()
        options = self.query_panel.options()
        expression = self.library_panel.current_filter if options["use_filter"] else None
        self._query_generation += 1
        generation = self._query_generation
        self.queries.cancel_all()
        self.results.title.setText("<b>Results</b> — searching…")
        started = time.perf_counter()
        task = Task(search, self.reader, seeds, k=options["k"], level=options["level"],
                    filter_expression=expression, exclude_self=options["exclude_self"])

        def done(hits):
            if generation != self._query_generation:
                return  # superseded by a newer query
            self.hits = hits
            self.results.set_hits(hits)
            self.statusBar().showMessage(f"{len(hits)} results in {time.perf_counter() - started:.2f} s")
            self.audition.prefetch([(h.path, h.start, h.end) for h in hits])
            if self.explorer is not None:
                self._update_explorer()
            self.queryFinished.emit(hits)

        def failed(exc):
            if generation == self._query_generation:
                self.results.set_hits([])
                self.show_error("Search failed", str(exc))
                self.queryFinished.emit(None)

        self.queries.start(task, done, failed)

    def more_like(self, row: int) -> None:
        hit = self.results.model.hits[row]
        self.set_query([self._seed(hit.path, hit.start, hit.end)], in_library=True)

    def less_like(self, row: int) -> None:
        hit = self.results.model.hits[row]
        self.negatives.append(self._seed(hit.path, hit.start, hit.end, positive=False))
        self.query_panel.set_seeds(self.positives, self.negatives)
        self.run_query()

    def _clear_negatives(self) -> None:
        self.negatives = []
        self.query_panel.set_seeds(self.positives, self.negatives)
        self.run_query()

    # -- results and audition -----------------------------------------------------------------------------
    def play_result(self, row: int) -> None:
        hits = self.results.model.hits
        if not 0 <= row < len(hits):
            return
        hit = hits[row]
        self.audition.play(hit.path, hit.start, hit.end)
        self._show_result_waveform(hit)

    def _show_result_waveform(self, hit) -> None:
        from audiosim.gui.audio_io import envelope

        view = self.results.waveform
        if getattr(self, "_result_envelope_path", None) != hit.path:
            self._result_envelope_path = hit.path
            view.clear("loading…")

            def done(env):
                if self._result_envelope_path == hit.path:
                    view.set_envelope(env)
                    current = self.results.current_hit()
                    if current is not None and current.path == hit.path:
                        view.set_region(current.start, current.end)

            self.tasks.start(Task(envelope, hit.path), done, lambda e: view.show_message(str(e)))
        else:
            view.set_region(hit.start, hit.end)
        view.set_region(hit.start, hit.end)

    def play_from(self, seconds: float) -> None:
        hit = self.results.current_hit()
        if hit is None:
            return
        from audiosim.gui.audio_io import MAX_AUDITION_SECONDS

        duration = hit.asset.duration if hit.asset is not None and hit.asset.duration else None
        start = max(0.0, seconds)
        end = start + MAX_AUDITION_SECONDS if duration is None else min(duration, start + MAX_AUDITION_SECONDS)
        if end > start:
            self.audition.play(hit.path, start, end)

    def play_query_from(self, seconds: float) -> None:
        """A click on the query's waveform plays the query from there (to its region's end, if inside it)."""
        from audiosim.gui.audio_io import MAX_AUDITION_SECONDS

        if not self.positives:
            return
        view = self.query_panel.waveform
        start = max(0.0, seconds)
        end = min(view.duration or start + MAX_AUDITION_SECONDS, start + MAX_AUDITION_SECONDS)
        region = view.region_bounds()
        if region is not None and region[0] <= start < region[1]:
            end = region[1]
        if end > start:
            self.audition.play(self.positives[0].path, start, end)

    def toggle_playback(self) -> None:
        if self.audition.playing:
            self.audition.stop()
        elif self.audition.current is None and self.results.current_row() >= 0:
            self.play_result(self.results.current_row())
        else:
            self.audition.toggle()
        self.results.set_playing(self.audition.playing)

    def _playhead(self, seconds) -> None:
        hit = self.results.current_hit()
        current = self.audition.current
        if seconds is None or hit is None or current is None or current.path != hit.path:
            self.results.waveform.set_playhead(None)
            self.results.set_playing(self.audition.playing if seconds is not None else False)
            return
        self.results.waveform.set_playhead(seconds)
        self.results.set_playing(True, seconds)

    def _volume_changed(self, value: int) -> None:
        self.audition.set_volume(value)
        self.settings.volume = value

    def _result_key(self, name: str) -> None:
        row = self.results.current_row()
        if name == "toggle":
            self.toggle_playback()
        elif name == "loop":
            self.results.loop_button.toggle()
        elif name == "more" and row >= 0:
            self.more_like(row)

    def _result_menu(self, row: int, pos: QPoint) -> None:
        hit = self.results.model.hits[row]
        menu = QMenu(self)
        menu.addAction("More like this", lambda: self.more_like(row))
        menu.addAction("Less like this", lambda: self.less_like(row))
        menu.addSeparator()
        menu.addAction("Export segment as WAV…", lambda: self.export_segment(row))
        menu.addAction("Show in folder", lambda: QDesktopServices.openUrl(
            QUrl.fromLocalFile(os.path.dirname(hit.path))))
        menu.addAction("Copy path", lambda: self._copy(hit.path))
        menu.popup(pos)

    def segment_mime(self, row: int):
        """Drag-out data: a WAV of exactly the result's segment (from the clip cache when it is there)."""
        from PySide6.QtCore import QMimeData

        path = self.write_segment(row)
        if path is None:
            return None
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        return mime

    def write_segment(self, row: int, dest: str | os.PathLike | None = None) -> Path | None:
        from audiosim.gui.audio_io import read_clip
        from audiosim.gui.export import drag_folder, segment_file_name, write_clip_wav

        hits = self.results.model.hits
        if not 0 <= row < len(hits):
            return None
        hit = hits[row]
        clip = self.audition.clip(hit.path, hit.start, hit.end)
        try:
            if clip is None:  # not yet read ahead: read just this segment (a seek, not a decode of the file)
                clip = read_clip(hit.path, hit.start, hit.end)
            dest = Path(dest) if dest else drag_folder() / segment_file_name(hit.path, hit.start, hit.end)
            return write_clip_wav(clip, dest)
        except Exception as exc:  # noqa: BLE001 - a vanished file or a full disk: say so
            self.show_error("Export", f"cannot write the segment of {os.path.basename(hit.path)}: {exc}")
            return None


def _audio_extensions() -> frozenset:
    from audiosim.config import AUDIO_EXTENSIONS

    return AUDIO_EXTENSIONS
