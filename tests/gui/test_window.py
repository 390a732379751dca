"""The window as a whole: start-up time, a 100k-row library table, the map action, no Qt in the core."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np

from tests.conftest import ROOT


def test_the_window_appears_quickly_from_the_command_line(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "AUDIOSIM_GUI_SMOKE": "1",
           "AUDIOSIM_SETTINGS": str(tmp_path / "settings.ini")}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "audiosim", "--library", str(tmp_path / "library")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    line = proc.stdout.readline()  # printed once the window is shown
    appeared = time.perf_counter() - started  # from process start: interpreter, imports, window
    out, err = proc.communicate(timeout=120)
    wall = time.perf_counter() - started
    assert proc.returncode == 0, err
    shown = float(re.search(r"window shown after ([\d.]+) s", line).group(1))
    print(f"\nwindow shown {appeared:.2f} s after the process started ({shown:.2f} s inside launch()); "
          f"closed and exited after {wall:.2f} s")
    assert appeared < 1.5
    assert (tmp_path / "library" / "library.db").exists()  # a new library is created on first start


def test_the_library_table_handles_100k_rows(qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QTableView

    from audiosim.gui.asset_model import FIELDS, AssetRows, AssetTableModel

    n = 100_000
    rng = np.random.default_rng(0)
    columns = {}
    for field in FIELDS:
        if field == "id":
            columns[field] = np.arange(n, dtype=np.int64)
        elif field in ("path", "name", "folder", "status", "error"):
            columns[field] = [f"{field}_{i:06d}" for i in rng.permutation(n)]
        else:
            columns[field] = rng.normal(size=n)
    model = AssetTableModel()
    view = QTableView()
    view.setModel(model)
    view.setSortingEnabled(True)
    view.resize(900, 600)
    qtbot.addWidget(view)
    view.show()
    started = time.perf_counter()
    model.set_rows(AssetRows(columns, n))
    loaded = time.perf_counter() - started
    timings = {}
    for column, name in ((0, "name"), (2, "duration")):
        started = time.perf_counter()
        view.sortByColumn(column, Qt.SortOrder.DescendingOrder)
        qtbot.wait(1)
        timings[name] = time.perf_counter() - started
    print(f"\n100k rows: load {loaded * 1000:.0f} ms, sort by name {timings['name'] * 1000:.0f} ms, "
          f"by duration {timings['duration'] * 1000:.0f} ms")
    values = [model.value(r, "duration") for r in range(1000)]
    assert values == sorted(values, reverse=True)
    assert max(timings.values()) < 1.0 and loaded < 1.0
    assert model.row_of(12345) is not None


def test_the_map_action_opens_the_explorer_on_the_results_and_follows_it(qtbot, indexed_library, settings,
                                                                            small_corpus, monkeypatch):
    import importlib.util

    from audiosim.search import Seed
    from tests.gui.conftest import open_window

    window = open_window(qtbot, indexed_library, settings, warm_up=False)
    action = window.map_action
    assert action.shortcut().toString() == "Ctrl+M"
    if importlib.util.find_spec("audiosim.gui.explorer") is None:
        assert not action.isEnabled() and "unavailable" in action.toolTip()
        window.close()
        return
    from audiosim.gui import explorer

    shown = []  # the map's own computation is tested in test_explorer.py: here, only the wiring
    monkeypatch.setattr(explorer.ExplorerWindow, "show_result_set",
                        lambda self, **kw: shown.append(kw))
    first = next(iter(small_corpus))
    with qtbot.waitSignal(window.queryFinished, timeout=60000):
        window.set_query([window._seed(str(first))], in_library=True)
    action.trigger()
    assert window.explorer is not None and window.explorer.isVisible()
    assert shown[-1]["hits"] == window.hits
    # A query asked for on the map runs in the window; a selection there selects library rows.
    other = [p for p in small_corpus if p != first][5]
    with qtbot.waitSignal(window.queryFinished, timeout=60000):
        window.explorer.queryRequested.emit([Seed(str(other)), Seed(str(first), positive=False)])
    assert window.positives[0].path == str(other) and window.negatives[0].path == str(first)
    ids = [window.library_panel.model.asset_id(r) for r in (2, 4)]
    window.explorer.selectionChanged.emit(ids)
    assert sorted(window.library_panel.selected_ids()) == sorted(ids)
    window.explorer.close()
    window.close()


def test_recording_either_works_or_says_why(qtbot, indexed_library, settings):
    from tests.gui.conftest import open_window

    window = open_window(qtbot, indexed_library, settings, warm_up=False)
    errors = []
    window.errorShown.connect(errors.append)
    window.query_panel.record.setChecked(True)
    if errors:  # no input device here: a message, and the button is released
        assert not window.query_panel.record.isChecked()
    else:
        qtbot.waitUntil(lambda: window.recorder is None or window.recorder.seconds > 0.3, timeout=10000)
        window.query_panel.record.setChecked(False)
        # A silent recording cannot be searched with: said clearly; a real one becomes the query.
        qtbot.waitUntil(lambda: bool(errors) or bool(window.positives), timeout=20000)
    window.close()


def test_the_core_does_not_import_qt():
    code = ("import sys, audiosim.cli, audiosim.indexer, audiosim.search, audiosim.playback, audiosim.gui;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt')];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
