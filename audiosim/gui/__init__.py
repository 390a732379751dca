"""The desktop window. The only package that imports Qt (PySide6), pyqtgraph and superqt; importing it is
cheap: Qt loads when :func:`launch` is called."""

from __future__ import annotations


def launch(library: str | None = None) -> int:
    """Open the window on ``library`` (default: the last one used, else the default library); returns the
    exit code once the window is closed."""
    from audiosim.gui.app import run

    return run(library=library)
