"""Library ▸ Storage…: the window shows where the vectors are and switches the library to another store."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.gui.conftest import open_window
from tests.test_cli_stores import write_sounds


def test_the_storage_dialog_switches_the_store(qtbot, tmp_path, settings):
    from audiosim.library.db import Library

    sounds = write_sounds(tmp_path / "sounds", 4)
    library = tmp_path / "library"
    assert run_cli("index", sounds, "--workers", "1", library=library).code == 0
    before = run_cli("query", sounds / "tone002.wav", "-k", "4", "--json", library=library).json["results"]
    window = open_window(qtbot, library, settings, warm_up=False)
    window.storage_action.trigger()
    qtbot.waitUntil(lambda: getattr(window, "storage_dialog", None) is not None, timeout=30000)
    dialog = window.storage_dialog
    assert "faiss" in dialog.info["store"]
    assert not dialog.location.isEnabled()  # Faiss needs no location
    dialog.kind.setCurrentIndex(dialog.kind.findData("milvus-lite"))
    assert dialog.location.isEnabled()
    dialog.location.setText(str(tmp_path / "vectors.db"))
    with qtbot.waitSignal(window.storeSwitched, timeout=60000):
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: window.writer_thread is None, timeout=30000)
    window.close()
    with Library(library) as lib:
        assert lib.store_spec.backend == "milvus"
    after = run_cli("query", sounds / "tone002.wav", "-k", "4", "--json", library=library).json["results"]
    assert [r["segment_id"] for r in after] == [r["segment_id"] for r in before]


@pytest.mark.parametrize(("kind", "location", "message"), [
    ("pgvector", "", "give the location"),
    ("milvus", "postgresql://x/y", "is not a location"),
])
def test_a_location_that_does_not_fit_is_explained_in_the_dialog(qtbot, kind, location, message):
    from audiosim.gui.library_settings import StorageDialog

    dialog = StorageDialog({"store": "faiss flat (0 vectors)", "store_spec": "faiss", "db": "sqlite:///x"})
    qtbot.addWidget(dialog)
    dialog.kind.setCurrentIndex(dialog.kind.findData(kind))
    dialog.location.setText(location)
    dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    assert message in dialog.message.text()
    assert dialog.result() != dialog.DialogCode.Accepted
