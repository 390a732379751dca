"""The window indexes on the Dask cluster named in Preferences."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QDialog

from tests.gui.helpers import drop_paths

pytest.importorskip("distributed")


def test_preferences_keep_a_valid_cluster_address_and_refuse_a_bad_one(qtbot, settings):
    from audiosim.gui.preferences import PreferencesDialog

    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    dialog.cluster.setText("local:zero")
    dialog.accept()
    assert dialog.result() != QDialog.DialogCode.Accepted  # still open, saying why
    assert "local:N" in dialog.message.text()
    dialog.cluster.setText(" tcp://scheduler.lan:8786 ")
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    dialog.apply()
    assert settings.cluster_address == "tcp://scheduler.lan:8786"
    settings.cluster_address = ""
    assert settings.cluster_address is None  # empty: index with this computer's processes


def test_dropping_a_folder_indexes_it_on_the_cluster_from_preferences(qtbot, window, small_corpus, tmp_path,
                                                                        monkeypatch):
    root = next(iter(small_corpus)).parent.parent
    victim = sorted(p.name for p in small_corpus)[0]
    marker = tmp_path / "ran-on-a-cluster-worker"
    # Only a cluster task runs this hook: the marker proves the files went to Dask workers (and that a
    # worker lost on the way does not lose its file).
    monkeypatch.setenv("AUDIOSIM_TEST_KILL_WORKER_ON", f"{victim}:{marker}")
    window.settings.cluster_address = "local:2"
    with qtbot.waitSignal(window.indexingFinished, timeout=120000) as finished:
        assert drop_paths(window.library_panel.table.viewport(), [root])
    report = finished.args[0]
    assert report is not None and report.indexed == len(small_corpus) and not report.failed
    assert marker.exists()
