"""A bug in a slot or a thread shows a dialog; the window keeps running (no traceback on the console)."""

from __future__ import annotations

import threading

import pytest

from tests.gui.conftest import open_window


def _broken_slot() -> None:
    raise RuntimeError("a bug in a slot")


def _broken_thread() -> None:
    {}["missing key"]


@pytest.mark.qt_no_exception_capture  # the window's own hooks are under test, not pytest-qt's
def test_unexpected_exceptions_show_a_dialog_and_the_window_goes_on(qtbot, tmp_path, settings, capsys):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QMessageBox

    from audiosim.gui.error_dialog import install_error_dialog

    window = open_window(qtbot, tmp_path / "library", settings, warm_up=False)
    reporter = install_error_dialog(window)
    try:
        with qtbot.waitSignal(window.errorShown, timeout=10000) as shown:
            QTimer.singleShot(0, _broken_slot)
        assert shown.args == ["RuntimeError: a bug in a slot"]
        dialog = window.findChild(QMessageBox, "internalErrorDialog")
        assert dialog is not None and dialog.isVisible()
        assert "RuntimeError: a bug in a slot" in dialog.text()
        assert "_broken_slot" in dialog.detailedText()  # the traceback, for a bug report
        dialog.close()

        with qtbot.waitSignal(window.errorShown, timeout=10000) as shown:  # queued from a worker thread
            threading.Thread(target=_broken_thread).start()
        assert shown.args == ["KeyError: 'missing key'"]

        with qtbot.waitSignal(window.assetsLoaded, timeout=10000):  # the window still does its work
            window.reload_assets()
        assert window.isVisible()
        assert "Traceback" not in capsys.readouterr().err
    finally:
        reporter.uninstall()
        window.close()
