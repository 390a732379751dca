"""The window brings a library made by an older audiosim up to date by itself, with progress, once."""

from __future__ import annotations

from tests.conftest import run_cli
from tests.test_upgrade import _pretend_older, _samples


def test_opening_an_older_library_upgrades_it_in_the_background(qtbot, tmp_path, settings):
    paths = _samples(tmp_path / "audio", n=5)
    library = tmp_path / "library"
    assert run_cli("index", tmp_path / "audio", library=library).code == 0
    _pretend_older(library, embedding=1)
    assert run_cli("query", paths[0], library=library).code == 1  # asks for the upgrade

    from audiosim.gui.app import create_app, create_window

    create_app()
    window = create_window(str(library), settings, warm_up=False)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.libraryUpgraded, timeout=120000) as upgraded:
        pass
    report = upgraded.args[0]
    assert report.from_frames == len(paths) and report.decoded == 0 and not report.missing
    assert "Library upgraded: 5 from stored frames" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: window.writer_thread is None and window.reader is not None, timeout=30000)
    hits = run_cli("--json", "query", paths[2], "-k", "2", library=library)
    assert hits.code == 0 and hits.json["results"][0]["path"] == str(paths[2])
    window.close()
