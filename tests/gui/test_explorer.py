"""The map explorer, driven as a user drives it: a first picture at once, a map after it, sliders that
recompute without freezing the window, lasso selection and what can be done with it, and a screenshot."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyqtgraph")

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from audiosim import projection as P  # noqa: E402
from audiosim.search import Hit, Seed  # noqa: E402
from tests.test_projection import make_vector_library  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MAP_TIMEOUT = 180_000  # ms: the first map of a process may wait for numba's JIT on a busy machine


@pytest.fixture(scope="module")
def vector_library(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("explorer") / "library"
    make_vector_library(folder, 400, segments_per_file=2, clusters=4, seed=2, spread=1.0)
    P.warm_up()  # once per process, as the app does in the background at start
    return folder


@pytest.fixture
def explorer(qtbot, vector_library):
    from audiosim.gui.explorer import ExplorerWindow

    window = ExplorerWindow(vector_library)
    qtbot.addWidget(window)
    window.debounce_ms = 30
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()


def _first_map(qtbot, window, **kwargs) -> P.MapResult:
    with qtbot.waitSignal(window.mapReady, timeout=MAP_TIMEOUT) as ready:
        window.show_result_set(**kwargs)
    return ready.args[0]


def test_first_picture_at_once_then_the_map(qtbot, explorer):
    started = time.perf_counter()
    with qtbot.waitSignal(explorer.placeholderShown, timeout=10_000) as placeholder:
        explorer.show_result_set(filter_expression="duration > 2s")
    first_picture = time.perf_counter() - started
    assert placeholder.args[0].kind == "pca"
    assert first_picture < 0.5, first_picture
    assert len(explorer.view.coords) == len(placeholder.args[0])
    with qtbot.waitSignal(explorer.mapReady, timeout=MAP_TIMEOUT) as ready:
        pass
    result = ready.args[0]
    assert result.kind == "umap" and len(result) == len(placeholder.args[0])
    qtbot.waitUntil(lambda: not explorer.view.animating, timeout=5000)
    np.testing.assert_allclose(explorer.view.coords, result.coords)


def test_slider_change_recomputes_without_blocking(qtbot, explorer):
    first = _first_map(qtbot, explorer)
    item_data = explorer.view.scatter.data
    computed = explorer._cache.computed
    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer(interval=10)
    timer.timeout.connect(tick)
    timer.start()
    with qtbot.waitSignal(explorer.mapReady, timeout=MAP_TIMEOUT) as ready:
        explorer.min_dist_slider.setValue(0.5)
    qtbot.waitUntil(lambda: not explorer.view.animating, timeout=5000)
    timer.stop()
    result = ready.args[0]
    assert result.kind == "warm" and result.params.min_dist == 0.5
    assert explorer._cache.computed == computed  # the neighbour graph was reused
    assert not np.allclose(result.coords, first.coords)
    assert explorer.view.scatter.data is item_data  # coordinates updated in place, not rebuilt
    # The event loop kept running while the map was recomputed (a blocked loop shows one gap as long as
    # the whole computation); 0.5 s leaves room for a machine busy with other work.
    assert len(gaps) > 5 and max(gaps) < 0.5, max(gaps)


def test_superseded_runs_are_dropped(qtbot, explorer):
    _first_map(qtbot, explorer)
    shown = []
    explorer.mapReady.connect(shown.append)
    explorer.n_neighbors_slider.setValue(5)
    explorer.recompute()  # superseded straight away
    explorer.n_neighbors_slider.setValue(30)
    with qtbot.waitSignal(explorer.mapReady, timeout=MAP_TIMEOUT):
        pass
    qtbot.waitUntil(lambda: not explorer.busy, timeout=MAP_TIMEOUT)
    assert [r.params.n_neighbors for r in shown] == [30]


def test_lasso_selection_and_its_actions(qtbot, explorer, tmp_path):
    result = _first_map(qtbot, explorer)
    qtbot.waitUntil(lambda: not explorer.view.animating, timeout=5000)
    coords = result.coords
    # A lasso around the points left of the median x.
    x_mid = float(np.median(coords[:, 0]))
    lo, hi = coords.min(axis=0) - 1, coords.max(axis=0) + 1
    polygon = np.array([[lo[0], lo[1]], [x_mid, lo[1]], [x_mid, hi[1]], [lo[0], hi[1]]])
    with qtbot.waitSignal(explorer.selectionChanged) as changed:
        explorer.view.view_box.sigSelected.emit(polygon, Qt.KeyboardModifier.NoModifier)
    expected = sorted(int(a) for a in result.result_set.asset_ids[coords[:, 0] <= x_mid])
    assert changed.args[0] == expected

    with qtbot.waitSignal(explorer.queryRequested) as query:
        explorer.query_button.click()
    seeds = query.args[0]
    assert 0 < len(seeds) <= 16 and all(isinstance(s, Seed) for s in seeds)
    assert all(s.path.startswith("/synthetic/") for s in seeds)

    out = tmp_path / "selection.csv"
    from audiosim.gui.explorer import write_point_list

    write_point_list(out, explorer.table, explorer.selected_rows())
    assert len(out.read_text().splitlines()) == len(expected) + 1

    with qtbot.waitSignal(explorer.mapReady, timeout=MAP_TIMEOUT) as ready:
        explorer.use_button.click()
    assert sorted(ready.args[0].result_set.asset_ids.tolist()) == expected
    assert explorer.source_combo.currentData() == "selection"


def test_query_results_are_mapped_and_highlighted(qtbot, explorer, vector_library):
    from audiosim.library.db import Library

    with Library(vector_library) as lib:
        assets = lib.assets()[:40]
    hits = [Hit(i + 1, a.id, None, a.path, 0.0, a.duration, 0.1 * i) for i, a in enumerate(assets)]
    result = _first_map(qtbot, explorer, hits=hits)
    assert sorted(result.result_set.asset_ids.tolist()) == sorted(a.id for a in assets)
    explorer.highlight([assets[0].id, assets[1].id])
    assert len(explorer.view.highlight_item.data) == 2
    # At segment level the same hits stand for all their segments.
    with qtbot.waitSignal(explorer.mapReady, timeout=MAP_TIMEOUT) as ready:
        explorer.level_combo.setCurrentIndex(explorer.level_combo.findData("segment"))
    assert len(ready.args[0]) == 2 * len(assets)


def test_screenshot_of_a_real_map(qtbot, indexed_library, tmp_path):
    """The explorer over the generated corpus at segment level, coloured by folder."""
    from audiosim.gui.explorer import ExplorerWindow

    window = ExplorerWindow(indexed_library)
    qtbot.addWidget(window)
    window.resize(1200, 760)
    window.set_parameters(level="segment", n_neighbors=8)
    window.show()
    with qtbot.waitSignal(window.mapReady, timeout=MAP_TIMEOUT) as ready:
        window.show_result_set()
    qtbot.waitUntil(lambda: not window.view.animating, timeout=5000)
    assert ready.args[0].kind == "umap" and len(ready.args[0]) > 20
    window.colour_combo.setCurrentIndex(window.colour_combo.findData("folder"))
    window.size_slider.setValue(10)
    rows = np.argsort(window.view.coords[:, 0])[:6]
    window.set_selection(rows)
    window.highlight([int(a) for a in ready.args[0].result_set.asset_ids[-3:]])
    QApplication.processEvents()  # let the legend's layout settle
    image = window.grab().toImage()
    view = window.view.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    pixels = np.frombuffer(view.constBits(), np.uint32, count=view.width() * view.height())
    background = np.bincount(np.unique(pixels, return_inverse=True)[1]).argmax()
    colours, counts = np.unique(pixels, return_counts=True)
    assert (counts > 30).sum() >= 6  # background plus several folder colours actually drawn
    assert counts.sum() - counts[background] > 500
    target = tmp_path / "explorer.png"
    assert image.save(str(target))
    if os.environ.get("AUDIOSIM_SAVE_SCREENSHOTS"):
        (ROOT / "resources" / "screenshots").mkdir(parents=True, exist_ok=True)
        image.save(str(ROOT / "resources" / "screenshots" / "explorer.png"))
    window.close()
