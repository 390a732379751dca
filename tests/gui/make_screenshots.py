"""Screenshots of the main window in its key states, for the README: ``python -m tests.gui.make_screenshots OUT``.

Builds a small library from generated audio (one-shots, a long file, a few bad files), then grabs the
window offscreen: indexing in progress, a region query with results, a parse error in the filter box.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(out: str) -> int:
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from audiosim.crashpoints import HOLD_WORKER_ENV
    from audiosim.gui.app import create_app, create_window
    from audiosim.gui.settings import Settings
    import soundfile as sf

    from tests.corpus import make_labelled_corpus, make_long_file

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="audiosim-shots-"))
    sounds = work / "Samples"
    make_labelled_corpus(sounds / "Drums & Synths", per_class=16, seed=11)
    make_long_file(sounds / "Field recordings" / "street ambience take 3.wav", 45.0, seed=2, channels=2)
    bad = sounds / "Downloads"
    bad.mkdir(parents=True)
    (bad / "empty.wav").write_bytes(b"")
    (bad / "readme.mp3").write_text("not audio\n" * 20)
    # One file's analysis waits until released, so the first shot catches the indexing under way.
    release = work / "release"
    os.environ[HOLD_WORKER_ENV] = f"kick_07.:{release}"
    app = create_app()
    window = create_window(str(work / "library"), Settings(work / "settings.ini"))
    window.resize(1400, 860)

    def wait_until(predicate, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                bar = window.indexing_bar
                raise SystemExit(f"timed out at line {sys._getframe(1).f_lineno} (indexing {bar.done}/{bar.total}, "
                                 f"{bar.failed} failed, {window.library_panel.model.rowCount()} rows)")
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    def settle(seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    def shot(name: str, settle_seconds: float = 0.3) -> None:
        settle(settle_seconds)
        path = out_dir / f"{name}.png"
        window.grab().save(str(path))
        print(path)

    wait_until(lambda: window.reader is not None)
    done = []
    window.indexingFinished.connect(done.append)
    window.index_paths([str(sounds)])
    bar = window.indexing_bar
    window.show_failed()
    wait_until(lambda: bar.failed > 0 and window.library_panel.model.rowCount() > 20
               and 0 < bar.done < bar.total and bar.rate > 0)
    shot("indexing", settle_seconds=0.02)
    release.touch()
    wait_until(lambda: bool(done))
    wait_until(lambda: window.library_panel.model.rowCount() >= 140)
    window.failed_dock.hide()

    # Search with a recording that is not in the library: an excerpt of the long take, 12.3–15.1 s.
    long_file = str(sounds / "Field recordings" / "street ambience take 3.wav")
    data, rate = sf.read(long_file)
    clip = work / "phone memo.wav"
    sf.write(clip, data[int(12.3 * rate):int(15.1 * rate)], rate)
    results = []
    window.queryFinished.connect(results.append)
    window.query_clip(str(clip))
    wait_until(lambda: bool(results))
    window.results.table.setFocus()
    window.results.select_row(0)
    window.play_result(0)
    hit = window.results.current_hit()
    wait_until(lambda: window.query_panel.waveform.duration > 0 and window.results.waveform.duration > 10)
    settle()
    window.results.waveform.set_playhead(hit.start + 0.4 * (hit.end - hit.start))
    window.results.set_playing(True, hit.start + 0.4 * (hit.end - hit.start))
    shot("query-results")
    window.results.set_playing(False)

    window.query_clip(long_file)
    window.query_panel.waveform.set_region(20.2, 22.0)
    window.run_query()
    wait_until(lambda: len(results) >= 2 and window.query_panel.waveform.duration > 10)
    window.results.select_row(2)
    window.play_result(2)
    wait_until(lambda: window.results.waveform.duration > 0)

    window.query_panel.spectrogram.setChecked(True)
    wait_until(lambda: window.query_panel.waveform.has_spectrogram)
    window.library_panel.filter_box.setText("duration < 2s and loudness > -20 LUF")
    wait_until(lambda: window.library_panel.filter_error.isVisible(), 10)
    shot("filter-error-spectrogram")
    window.close()
    QApplication.processEvents()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "resources/screenshots"))
