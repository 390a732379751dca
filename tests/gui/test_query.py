"""Querying from the window: by an asset, by a dropped clip, by a region; results, audition, drag-out,
export; the filter box; settings remembered."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import Qt

from tests.gui.conftest import open_window
from tests.gui.helpers import drop_paths


@pytest.fixture
def qwindow(qtbot, indexed_library, settings):
    w = open_window(qtbot, indexed_library, settings)
    yield w
    w.close()


def _row_of(window, path) -> int:
    model = window.library_panel.model
    return next(r for r in range(model.rowCount()) if model.path(r) == str(path))


def _double_click_asset(qtbot, window, path) -> None:
    table = window.library_panel.table
    index = window.library_panel.model.index(_row_of(window, path), 0)
    table.scrollTo(index)
    rect = table.visualRect(index)
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_query_by_an_asset_finds_itself_first_then_its_class(qtbot, qwindow, small_corpus):
    query = next(p for p, c in small_corpus.items() if c == "tone")
    qwindow.query_panel.exclude_self.setChecked(False)
    with qtbot.waitSignal(qwindow.queryFinished, timeout=60000) as done:
        _double_click_asset(qtbot, qwindow, query)
    hits = done.args[0]
    assert hits[0].path == str(query) and hits[0].distance < 1e-3
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    model = qwindow.results.model
    assert model.data(model.index(0, 1)) == query.name
    assert model.data(model.index(0, 2)).endswith(" s")
    # The loudness and length columns show the file's own, as the library measured and stored them.
    stored = {a.path: a for a in qwindow.reader.assets()}[str(query)]
    assert stored.avg_loudness is not None
    assert model.data(model.index(0, 4)) == f"{stored.avg_loudness:.1f} LUFS"
    assert model.data(model.index(0, 5)) == f"{sf.info(query).duration:.2f} s"

    with qtbot.waitSignal(qwindow.queryFinished, timeout=60000) as done:
        qwindow.query_panel.exclude_self.setChecked(True)  # an option change searches again
    hits = done.args[0]
    assert str(query) not in [h.path for h in hits]
    assert small_corpus[next(p for p in small_corpus if str(p) == hits[0].path)] == "tone"


def test_a_clip_dropped_on_the_query_area_finds_the_original(qtbot, qwindow, small_corpus, tmp_path):
    original = next(p for p, c in small_corpus.items() if c == "bell")
    clip = tmp_path / "outside the library.wav"
    shutil.copy(original, clip)
    with qtbot.waitSignal(qwindow.queryFinished, timeout=60000) as done:
        assert drop_paths(qwindow.query_panel.waveform, [clip])
    assert done.args[0][0].path == str(original)
    assert "not in the library" in qwindow.query_panel.title.text()
    # The query's waveform is shown; a region drawn on it searches by that region.
    qtbot.waitUntil(lambda: qwindow.query_panel.waveform.plot is not None
                    and qwindow.query_panel.waveform.duration > 0, timeout=20000)
    with qtbot.waitSignal(qwindow.queryFinished, timeout=60000):
        qwindow.query_panel.waveform.set_region(0.1, 0.9)
        qwindow.query_panel.waveform._region_finished()
    seed = qwindow.query_seeds()[0]
    assert (seed.start, seed.end) == pytest.approx((0.1, 0.9))


def test_an_unreadable_clip_shows_a_message(qtbot, qwindow, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio")
    with qtbot.waitSignal(qwindow.errorShown, timeout=10000):
        drop_paths(qwindow.query_panel, [bad])
    assert "not an audio file" in qwindow.last_error


def _query(qtbot, window, path, **options):
    window.query_panel.exclude_self.setChecked(options.get("exclude_self", False))
    with qtbot.waitSignal(window.queryFinished, timeout=60000) as done:
        window.set_query([window._seed(str(path))], in_library=True)
    return done.args[0]


def test_click_plays_the_segment_keys_move_and_loop(qtbot, qwindow, small_corpus):
    hits = _query(qtbot, qwindow, next(iter(small_corpus)))
    table = qwindow.results.table
    table.setFocus()
    with qtbot.waitSignal(qwindow.audition.started, timeout=20000) as started:
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                         pos=table.visualRect(qwindow.results.model.index(1, 1)).center())
    assert started.args[0][0] == hits[1].path
    clip = qwindow.audition.current
    data, rate = sf.read(hits[1].path, dtype="float32", always_2d=True)
    first = int(round(hits[1].start * rate))
    assert np.array_equal(clip.samples, data[first:first + len(clip.samples)])
    assert abs(len(clip.samples) / rate - (hits[1].end - hits[1].start)) < 1.5 / rate
    # Down arrow: next result, played at once.
    with qtbot.waitSignal(qwindow.audition.started, timeout=20000) as started:
        qtbot.keyClick(table, Qt.Key.Key_Down)
    assert started.args[0][0] == hits[2].path and qwindow.results.current_row() == 2
    qtbot.keyClick(table, Qt.Key.Key_L)
    assert qwindow.results.loop_button.isChecked() and qwindow.audition.player.loop
    qtbot.keyClick(table, Qt.Key.Key_L)
    assert not qwindow.audition.player.loop
    # Enter: more like this (queries by the selected result's segment).
    with qtbot.waitSignal(qwindow.queryFinished, timeout=60000):
        qtbot.keyClick(table, Qt.Key.Key_Return)
    assert qwindow.positives[0].path == hits[2].path


def test_less_like_this_adds_a_negative_seed(qtbot, qwindow, small_corpus):
    hits = _query(qtbot, qwindow, next(iter(small_corpus)))
    with qtbot.waitSignal(qwindow.queryFinished, timeout=60000):
        qwindow.less_like(1)
    assert [s.path for s in qwindow.negatives] == [hits[1].path] and not qwindow.negatives[0].positive
    assert "less like" in qwindow.query_panel.seeds_label.text()


def test_drag_out_gives_a_wav_of_exactly_the_segment(qtbot, qwindow, small_corpus):
    hits = _query(qtbot, qwindow, next(p for p, c in small_corpus.items() if c == "pad"))
    for row in (0, 3):
        mime = qwindow.segment_mime(row)
        (url,) = mime.urls()
        written, rate = sf.read(url.toLocalFile(), dtype="float32", always_2d=True)
        data, source_rate = sf.read(hits[row].path, dtype="float32", always_2d=True)
        first, stop = int(round(hits[row].start * rate)), int(round(hits[row].end * rate))
        assert rate == source_rate and np.array_equal(written, data[first:stop])
        assert sf.info(url.toLocalFile()).subtype == sf.info(hits[row].path).subtype


def test_results_export_as_csv_json_and_m3u(qtbot, qwindow, small_corpus, tmp_path):
    from audiosim.gui.export import export_results

    hits = _query(qtbot, qwindow, next(iter(small_corpus)))
    export_results(qwindow.hits, tmp_path / "r.csv")
    rows = list(csv.DictReader(open(tmp_path / "r.csv", encoding="utf-8")))
    assert [r["path"] for r in rows] == [h.path for h in hits] and rows[0]["rank"] == "1"
    stored = {a.path: a for a in qwindow.reader.assets()}
    for row in rows:  # each file's loudness and length as the library stored them
        assert float(row["loudness"]) == round(stored[row["path"]].avg_loudness, 2)
        assert float(row["duration"]) == round(sf.info(row["path"]).duration, 3)
    export_results(qwindow.hits, tmp_path / "r.json", query="q")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["results"][0]["start"] == round(hits[0].start, 3)
    export_results(qwindow.hits, tmp_path / "r.m3u")
    lines = (tmp_path / "r.m3u").read_text().splitlines()
    assert lines[0] == "#EXTM3U" and hits[0].path in lines


def test_filter_box_filters_and_shows_parse_errors_inline(qtbot, qwindow, small_corpus):
    panel = qwindow.library_panel
    with qtbot.waitSignal(qwindow.assetsLoaded, timeout=20000) as loaded:
        panel.filter_box.setText('name ~ "kick*"')
    assert loaded.args[0] == 3
    assert {panel.model.value(r, "name") for r in range(3)} == {f"kick_0{i}.wav" for i in range(3)}
    assert "3 of" in panel.count_label.text()
    panel.filter_box.setText("duration < ")
    qtbot.waitUntil(panel.filter_error.isVisible, timeout=5000)
    assert "end of filter" in panel.filter_error_reason
    panel.filter_box.setText("loudnes > -20")
    qtbot.waitUntil(lambda: "loudnes" in (panel.filter_error_reason or ""), timeout=5000)
    assert panel.model.rowCount() == 3  # the last valid filter still applies
    with qtbot.waitSignal(qwindow.assetsLoaded, timeout=20000) as loaded:
        panel.filter_box.setText("")
    assert loaded.args[0] == len(small_corpus) and not panel.filter_error.isVisible()


def test_a_missing_output_device_gives_a_message_not_a_crash(qtbot, qwindow, small_corpus):
    _query(qtbot, qwindow, next(iter(small_corpus)))
    qwindow.audition.set_device("Unplugged USB Interface")
    qwindow.audition.player = None
    with qtbot.waitSignal(qwindow.errorShown, timeout=20000):
        qwindow.play_result(0)
    assert "not available" in qwindow.last_error
    qwindow.audition.set_device(None)
    with qtbot.waitSignal(qwindow.audition.started, timeout=20000):
        qwindow.play_result(0)


def test_settings_are_remembered(qtbot, indexed_library, settings):
    window = open_window(qtbot, indexed_library, settings, warm_up=False)
    window.query_panel.k.setValue(17)
    window.query_panel.level.setCurrentIndex(1)
    window.results.volume.setValue(35)
    window.resize(1000, 700)
    size = window.size()
    window.close()
    again = open_window(qtbot, indexed_library, settings, warm_up=False)
    assert again.query_panel.k.value() == 17 and again.query_panel.options()["level"] == "file"
    assert again.results.volume.value() == 35
    assert settings.library == str(indexed_library.resolve())
    assert settings.layout("geometry") is not None
    assert again.size().height() == size.height()  # (the offscreen screen is narrower than the window)
    again.close()
