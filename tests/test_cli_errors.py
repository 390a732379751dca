"""An unexpected exception in the CLI is one line and exit 1; ``--debug`` shows the traceback."""

from __future__ import annotations

import sqlite3

import numpy as np
import soundfile as sf

from tests.conftest import run_cli


def test_an_internal_error_is_one_line_unless_debug(tmp_path):
    folder = tmp_path / "sounds"
    folder.mkdir()
    sf.write(folder / "a.wav", 0.3 * np.sin(np.arange(22050) * 0.05), 22050)
    lib = tmp_path / "lib"
    assert run_cli("--json", "index", folder, library=lib).code == 0
    with sqlite3.connect(lib / "library.db") as conn:  # a damaged value no code path expects
        conn.execute("UPDATE assets SET duration = 'abc'")
    result = run_cli("assets", library=lib)
    assert result.code == 1, result
    assert result.stderr.splitlines() == [
        "audiosim: internal error: ValueError: Unknown format code 'f' for object of type 'str' "
        "(run with --debug for details)"]
    debug = run_cli("--debug", "assets", library=lib)
    assert debug.code == 1 and "Traceback (most recent call last)" in debug.stderr


def test_a_known_error_stays_a_plain_error_line(tmp_path):
    result = run_cli("stats", library=tmp_path / "nowhere")
    assert result.code == 1
    assert result.stderr.splitlines() == [
        f"audiosim: error: no library at {tmp_path / 'nowhere'}: index a folder first (`audiosim index PATH`)"]
