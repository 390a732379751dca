"""GUI tests: offscreen Qt, generated audio, a temporary settings file and library per test.

PortAudio reads the ALSA configuration once, when ``sounddevice`` is first imported. Here it is imported
with ``HOME`` pointing at a folder whose ``.asoundrc`` sends the default device to a file (so playback
works and is silent everywhere); tests that check *what* was played run in a subprocess with their own
capture file (see ``playback_probe.py``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"


def asoundrc(folder: Path, capture: Path | str) -> Path:
    """Write ``folder/.asoundrc`` sending ALSA's default PCM to ``capture`` (raw samples)."""
    folder.mkdir(parents=True, exist_ok=True)
    rc = folder / ".asoundrc"
    rc.write_text(f'pcm.!default {{ type file; slave.pcm "null"; file "{capture}"; format "raw" }}\n')
    return rc


def _import_sounddevice_with_a_silent_default() -> None:
    home = Path(tempfile.mkdtemp(prefix="audiosim-alsa-"))
    asoundrc(home, "/dev/null")
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pass
    finally:
        if saved is not None:
            os.environ["HOME"] = saved


_import_sounddevice_with_a_silent_default()


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> dict[Path, str]:
    """Three files per class (≈27 short one-shots), made once per session."""
    from tests.corpus import make_labelled_corpus

    return make_labelled_corpus(tmp_path_factory.mktemp("gui-corpus") / "sounds", per_class=3, seed=3)


@pytest.fixture(scope="session")
def indexed_library(tmp_path_factory, small_corpus) -> Path:
    """The small corpus indexed once by the CLI (tests that only query share it, read-only)."""
    from tests.conftest import run_cli

    library = tmp_path_factory.mktemp("gui-lib") / "library"
    root = next(iter(small_corpus)).parent.parent
    result = run_cli("--json", "index", root, library=library)
    assert result.code == 0, result
    return library


@pytest.fixture
def settings(tmp_path):
    from audiosim.gui.settings import Settings

    return Settings(tmp_path / "settings.ini")


def open_window(qtbot, library: Path, settings, *, warm_up: bool = True):
    """Open the window as ``launch`` does and wait until the library is listed and the start-up warm-up
    (imports, audio device) is over, as a user who drops a folder a few seconds after start would."""
    from audiosim.gui.app import create_app, create_window

    create_app()
    window = create_window(str(library), settings, warm_up=False)
    qtbot.addWidget(window)
    with qtbot.waitSignals([window.assetsLoaded] + ([window.warmedUp] if warm_up else []), timeout=60000):
        if warm_up:
            import threading

            from audiosim.gui.app import warm_up_now as warm

            threading.Thread(target=warm, args=(window,), daemon=True).start()
    return window


@pytest.fixture
def window(qtbot, tmp_path, settings):
    """A window on a new, empty library."""
    w = open_window(qtbot, tmp_path / "library", settings)
    yield w
    w.close()
