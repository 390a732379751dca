"""Start-up: what the window's warm-up threads may and may not do."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_modules_that_create_qt_types_load_in_the_gui_thread_only(tmp_path):
    """pyqtgraph and the app's own Qt modules set up Qt types as they load, and shiboken's lazy type set-up
    is not thread-safe: pyqtgraph imported by the start-up warm-up thread crashed the app (SIGSEGV) in 1 of
    680 starts of the playback probe. The warm-up threads (start-up, and UMAP's compile) import only Qt-free modules."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-m", "tests.gui.startup_threads_probe", str(tmp_path / "library"),
                           str(tmp_path / "settings.ini")], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["map_warm_up_done"]
    threads = report["threads"]
    assert threads["pyqtgraph"] == threads["audiosim.gui.main_window"] == "MainThread"
    assert threads["umap"] != "MainThread" and threads["audiosim.search"] != "MainThread"  # warmed up apart
    assert not report["qt_elsewhere"], f"modules using Qt imported outside the GUI thread: {report['qt_elsewhere']}"
