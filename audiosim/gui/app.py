"""Start-up: the window appears first; the analysis stack (librosa, numba, faiss) and the audio device
warm up in a background thread afterwards."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

GIL_SWITCH_SECONDS = 0.001
RESOURCES = Path(__file__).resolve().parent.parent.parent / "resources"


def warm_up_now(window) -> None:
    """Import what the first query, the first drop and the first click need, off the GUI thread.

    Some of these imports (scipy.signal, faiss) hold the GIL for up to ~0.2 s while an extension module
    initialises; done now, that cannot stall the window in the middle of an indexing run or a query."""
    try:
        import audiosim.search  # noqa: F401 - numpy, scipy, SQLAlchemy, the feature code
        from audiosim.library.filters import _lark

        _lark()  # build the filter grammar once
        window.audition.warm_up()
        import audiosim.audio.loudness  # noqa: F401
        import audiosim.indexer  # noqa: F401
        import audiosim.library.writer  # noqa: F401
        import audiosim.stores.faiss_store  # noqa: F401
        from audiosim.config import AnalysisParams
        from audiosim.features.mfcc import _filters

        _filters(AnalysisParams())
    except Exception:  # noqa: BLE001 - warming up is an optimisation; failures show up when used
        pass
    finally:
        try:
            window.warmedUp.emit()
        except RuntimeError:  # the window is gone
            pass


def create_app(argv: list[str] | None = None):
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    # Workers run Python too (SQLAlchemy, the writer): hand the GIL round more often than the default
    # 5 ms so the GUI thread waits for it a few milliseconds at most, not tens.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    app.setApplicationName("audiosim")
    app.setOrganizationName("audiosim")
    app.setApplicationDisplayName("audiosim")
    icon = RESOURCES / "icon.png"
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def create_window(library: str | None = None, settings=None, *, warm_up: bool = True):
    """Build and show the main window; the library opens right after the first paint."""
    from PySide6.QtCore import QTimer

    from audiosim.gui.main_window import MainWindow

    window = MainWindow(settings=settings, library=library)
    window.show()
    QTimer.singleShot(0, window.open_library)
    if warm_up:
        _after_first_paint(window, _import_plotting)
        threading.Thread(target=warm_up_now, args=(window,), name="audiosim-warm-up", daemon=True).start()
    return window


def _warm_up_maps() -> None:
    """Compile UMAP's numba kernels (~15 s of one core) once the rest has warmed up, so the first map
    does not wait for them. (Run in the warm-up thread: nothing here may create Qt types.)"""
    from audiosim.projection import start_warm_up

    start_warm_up()


def _import_plotting() -> None:
    """Import pyqtgraph (~0.2 s), whose plots the waveform views build on first use, in the GUI thread:
    it creates Qt types as it loads, and shiboken's lazy type set-up is not thread-safe. Imported in the
    warm-up thread, it crashed the app with SIGSEGV in about one start-up of 700, racing the GUI thread."""
    import pyqtgraph  # noqa: F401


def _after_first_paint(window, callback) -> None:
    """Call ``callback`` in the GUI thread once ``window`` has painted for the first time (a zero timer
    set now would run before that paint, and keep the window from showing for as long as it takes)."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class FirstPaint(QObject):
        def eventFilter(self, watched, event) -> bool:
            if event.type() == QEvent.Type.Paint:
                watched.removeEventFilter(self)
                QTimer.singleShot(0, callback)
                self.deleteLater()
            return False

    window.installEventFilter(FirstPaint(window))


def run(library: str | None = None) -> int:
    from audiosim.gui.error_dialog import install_error_dialog

    started = time.perf_counter()
    app = create_app()
    window = create_window(library)
    install_error_dialog(window)  # a bug shows a dialog instead of a traceback, and the window goes on
    window.warmedUp.connect(_warm_up_maps)
    if os.environ.get("AUDIOSIM_GUI_SMOKE"):  # start-up check: report when shown, then quit
        from PySide6.QtCore import QTimer

        def report() -> None:
            print(f"window shown after {time.perf_counter() - started:.3f} s in launch()", flush=True)
            window.close()

        QTimer.singleShot(0, report)
    return _leave(app.exec(), window)


def _leave(code: int, window) -> int:
    """Wait for the window's worker pools, then exit without finalising the interpreter under threads
    that are still busy.

    A Qt pool thread or a daemon warm-up thread that runs Python while the interpreter finalises is
    stopped by pthread_exit inside C++ frames (Qt, LLVM, Faiss), which aborts the process with
    "terminate called without an active exception" after everything was already saved."""
    from PySide6.QtCore import QThreadPool

    for pool in [QThreadPool.globalInstance(), *window.findChildren(QThreadPool)]:
        pool.waitForDone(10_000)
    if any(t.is_alive() for t in threading.enumerate() if t is not threading.main_thread()):
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    return code
