"""Run by test_playback.py in a subprocess whose HOME holds an ``.asoundrc`` that captures ALSA's default
device to a file: open the window, search by a region of a long file, click the top result, wait until
it has played, and print what was clicked and how long the sound took to start (JSON on stdout).

Usage: python -m tests.gui.playback_probe LIBRARY FILE START END SETTINGS_INI
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time


def main() -> int:
    # A crash of this process (once, in CI: SIGSEGV with nothing on stderr) then says in which threads, at which lines.
    faulthandler.enable(all_threads=True)
    library, path, start, end, settings_path = sys.argv[1:6]
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, Qt
    from PySide6.QtTest import QTest

    from audiosim.gui.app import create_app, create_window
    from audiosim.gui.settings import Settings
    from tests.gui.helpers import wait_for_signal

    app = create_app()
    window = create_window(library, Settings(settings_path), warm_up=True)

    def wait_for(signal, timeout_ms: int = 60_000):
        return wait_for_signal(signal, timeout_ms)

    def wait_until(predicate, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    wait_for(window.warmedUp)
    wait_until(lambda: window.reader is not None)
    window.query_panel.exclude_self.setChecked(False)
    window.results.volume.setValue(100)  # unity gain: the samples must arrive unchanged
    window.set_query([window._seed(path, float(start), float(end))], in_library=True, run=False)
    window.run_query()
    (hits,) = wait_for(window.queryFinished)
    # Let the read-ahead fill the clip cache, as it does while a user looks at the list.
    wait_until(lambda: window.audition.clip(hits[0].path, hits[0].start, hits[0].end) is not None)
    table = window.results.table
    rect = table.visualRect(window.results.model.index(0, 1))
    clicked = time.perf_counter()
    QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    player = window.audition.player
    wait_until(lambda: player is not None and player.first_block_at is not None
               and player.first_block_at > clicked)
    latency = player.first_block_at - clicked
    wait_until(lambda: not window.audition.playing)
    hit = hits[0]
    print(json.dumps({"path": hit.path, "start": hit.start, "end": hit.end, "latency": latency,
                      "rate": player.sample_rate}))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
