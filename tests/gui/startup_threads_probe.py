"""Run by test_startup.py in a fresh process: start the app's window as ``audiosim`` does, let its warm-up
threads finish, and print (JSON) which thread first imported each module, and which of the modules
imported outside the GUI thread use Qt (hold Qt classes, functions or modules in their namespace).

Usage: python -m tests.gui.startup_threads_probe LIBRARY SETTINGS_INI
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
import threading
import types

QT_PACKAGES = ("PySide6", "shiboken6", "pyqtgraph", "superqt")


class _RecordingFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: notes the thread that asked for each module, then lets the others find it."""

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}

    def find_spec(self, name, path=None, target=None):
        self.threads.setdefault(name, threading.current_thread().name)
        return None


def _uses_qt(name: str) -> bool:
    if name.startswith(QT_PACKAGES):
        return True
    module = sys.modules.get(name)
    for value in vars(module).values() if module is not None else ():
        where = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(where, str) and where.startswith(QT_PACKAGES):
            return True
    return False


def main() -> int:
    library, settings_path = sys.argv[1:3]
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    finder = _RecordingFinder()
    sys.meta_path.insert(0, finder)
    from PySide6.QtCore import QEventLoop

    from audiosim.gui.app import _warm_up_maps, create_app, create_window
    from audiosim.gui.settings import Settings
    from tests.gui.helpers import wait_for_signal

    app = create_app()
    window = create_window(library, Settings(settings_path), warm_up=True)
    window.warmedUp.connect(_warm_up_maps)  # as app.run() does
    wait_for_signal(window.warmedUp)

    def map_warm_up() -> threading.Thread | None:
        return next((t for t in threading.enumerate() if t.name == "audiosim-umap-warm-up"), None)

    while map_warm_up() is None or "pyqtgraph" not in sys.modules:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
    compiling = map_warm_up()
    compiling.join(timeout=300)
    elsewhere = {name: thread for name, thread in finder.threads.items() if thread != "MainThread"}
    print(json.dumps({"threads": finder.threads, "qt_elsewhere": {n: t for n, t in elsewhere.items() if _uses_qt(n)},
                      "map_warm_up_done": not compiling.is_alive()}))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
