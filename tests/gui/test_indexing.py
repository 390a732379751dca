"""Dropping folders and files onto the window: background indexing, progress, failures, rescans, resume."""

from __future__ import annotations

import os
import shutil

import numpy as np
import soundfile as sf
from PySide6.QtWidgets import QApplication

from tests.gui.conftest import open_window
from tests.gui.helpers import StallMeter, drop_paths


def test_dropping_a_folder_indexes_it_without_stalling_the_window(qtbot, window, small_corpus):
    root = next(iter(small_corpus)).parent.parent
    meter = StallMeter()
    meter.start()
    progress = []
    window.indexing_bar.progress.valueChanged.connect(progress.append)
    with qtbot.waitSignal(window.indexingFinished, timeout=120000) as finished:
        assert drop_paths(window.library_panel.table.viewport(), [root])
        assert window.indexing_bar.isVisible()
    meter.stop()
    report = finished.args[0]
    assert report is not None and report.indexed == len(small_corpus) and not report.failed
    print(f"\nindexing {len(small_corpus)} files: {report.seconds:.1f} s; "
          f"event loop max stall {meter.max_stall * 1000:.0f} ms over {len(meter.gaps)} ticks")
    assert meter.max_stall < 0.1, f"event loop stalled {meter.max_stall * 1000:.0f} ms"
    assert progress and max(progress) == len(small_corpus)
    assert not window.indexing_bar.isVisible()

    # The library table lists every file with its metadata.
    qtbot.waitUntil(lambda: window.library_panel.model.rowCount() == len(small_corpus), timeout=10000)
    model = window.library_panel.model
    rows = {model.path(r): r for r in range(model.rowCount())}
    assert set(rows) == {str(p) for p in small_corpus}
    some = next(iter(small_corpus))
    row = rows[str(some)]
    info = sf.info(str(some))
    assert model.data(model.index(row, 0)) == some.name
    assert model.data(model.index(row, 2)) == f"{info.duration:.2f} s"
    assert model.data(model.index(row, 6)) == f"{info.samplerate} Hz"
    assert model.data(model.index(row, 8)) == "indexed"
    assert "LUFS" in model.data(model.index(row, 3))

    # Sorting by duration (descending) puts the longest first.
    window.library_panel.table.sortByColumn(2, __import__("PySide6.QtCore").QtCore.Qt.SortOrder.DescendingOrder)
    durations = [model.value(r, "duration") for r in range(model.rowCount())]
    assert durations == sorted(durations, reverse=True)

    # Dropping the same folder again is an incremental rescan: nothing re-analysed.
    with qtbot.waitSignal(window.indexingFinished, timeout=60000) as again:
        drop_paths(window.library_panel.table.viewport(), [root])
    assert again.args[0].indexed == 0 and again.args[0].skipped == len(small_corpus)


def test_bad_files_are_listed_with_their_errors_and_can_be_copied(qtbot, window, tmp_path, small_corpus):
    folder = tmp_path / "messy"
    folder.mkdir()
    good = next(iter(small_corpus))
    shutil.copy(good, folder / "good.wav")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.mp3").write_text("not audio at all\n" * 10)
    (folder / "noise.flac").write_bytes(np.random.default_rng(1).bytes(20000))
    with qtbot.waitSignal(window.indexingFinished, timeout=120000) as finished:
        drop_paths(window.centralWidget(), [folder])
    report = finished.args[0]
    assert report.indexed == 1 and len(report.failed) == 3
    entries = dict(window.failed_list.entries())
    assert set(entries) == {str(folder / n) for n in ("empty.wav", "notes.mp3", "noise.flac")}
    assert all(e and "Traceback" not in e for e in entries.values())
    assert window.failed_dock.isVisible()
    window.failed_list.copy()
    copied = QApplication.clipboard().text()
    assert str(folder / "empty.wav") in copied and entries[str(folder / "empty.wav")] in copied
    # Failed assets also show in the library table, marked failed.
    qtbot.waitUntil(lambda: window.library_panel.model.rowCount() == 4, timeout=10000)


def test_a_locked_library_gives_a_clear_message(qtbot, window, small_corpus):
    from audiosim.library.db import Library

    root = next(iter(small_corpus)).parent
    with Library(window.library_folder, writable=True):  # another process (the CLI) is writing
        with qtbot.waitSignals([window.errorShown, window.indexingFinished], timeout=30000):
            drop_paths(window.centralWidget(), [root])
    assert "in use" in window.last_error
    assert window.writer_thread is None  # ready for the next drop


def test_an_interrupted_run_is_offered_for_resumption(qtbot, tmp_path, settings, small_corpus):
    from audiosim.indexer import _begin_scan
    from audiosim.library.db import Library

    library = tmp_path / "library"
    root = str(next(iter(small_corpus)).parent)
    with Library(library, writable=True) as lib:
        _begin_scan(lib, [root])  # a run that never finished (the process died)
    window = open_window(qtbot, library, settings)
    qtbot.waitUntil(window.banner.isVisible, timeout=10000)
    assert root in window.banner_label.text()
    with qtbot.waitSignal(window.indexingFinished, timeout=120000) as finished:
        window.resume_button.click()
    assert finished.args[0].indexed == 3
    window.close()


def test_closing_during_indexing_offers_to_resume_next_time(qtbot, tmp_path, settings, small_corpus):
    library = tmp_path / "library"
    root = str(next(iter(small_corpus)).parent.parent)
    window = open_window(qtbot, library, settings)
    window.index_paths([root])
    qtbot.waitUntil(lambda: window.indexing_bar.done > 0 or window.writer_thread is None, timeout=60000)
    window.close()
    assert window.writer_thread is None or window.writer_thread.isFinished()
    assert settings.pending_scan(str(library.resolve())) in ([root], [])
    again = open_window(qtbot, library, settings)
    if settings.pending_scan(str(library.resolve())):
        qtbot.waitUntil(again.banner.isVisible, timeout=10000)
    again.close()
    assert os.path.exists(library / "library.db")
