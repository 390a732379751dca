"""Where a library's metadata DB and vectors live, and who may write to a shared one.

A library folder always holds the stored frames (``frames.db`` and frame files). Its metadata DB is
``library.db`` in the folder unless a URL was given (``--db`` / ``AUDIOSIM_DB_URL``); then
``library.json`` in the folder records that URL, so the folder alone reopens the library. The
vector-store spec is recorded in the DB (meta ``store_spec``), so every machine that opens a shared DB
uses the same store.

On PostgreSQL the single-writer rule is a session-level advisory lock held on a connection of its own
for as long as the library is open for writing: it works across machines (a local lock file cannot) and
is released by PostgreSQL when the process dies.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from audiosim.errors import LibraryError, LibraryLockedError
from audiosim.stores.base import redact_url

DB_FILE = "library.db"  # the SQLite metadata database in a library folder


def read_only_sqlite_uri(db_file: Path) -> str:
    """The URI a reader opens an SQLite file of a library with: read-only, and immutable on a read-only file
    system (no WAL index can be made there, and no one can write either)."""
    from urllib.parse import quote

    read_only_fs = bool(os.statvfs(db_file.parent).f_flag & os.ST_RDONLY)
    return f"file:{quote(str(db_file))}?mode=ro" + ("&immutable=1" if read_only_fs else "")
POINTER_FILE = "library.json"
# pg_try_advisory_lock key: "audiosim" in ASCII; one library per database, so one key per database
WRITER_LOCK_KEY = 0x617564696F73696D
WRITER_META = "writer"


def normalise_db_url(url: str) -> str:
    """A SQLAlchemy URL; ``postgresql://`` means psycopg 3 (the driver the pgvector extra installs)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def resolve_db_url(folder: Path, db_url: str | None) -> str | None:
    """The custom metadata DB URL of a library: given, else ``AUDIOSIM_DB_URL``, else the folder's
    ``library.json``; None means ``library.db`` in the folder."""
    url = db_url or os.environ.get("AUDIOSIM_DB_URL")
    if url:
        return normalise_db_url(url)
    try:
        recorded = json.loads((folder / POINTER_FILE).read_text()).get("db_url")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        raise LibraryError(f"cannot read {folder / POINTER_FILE}: {exc}") from exc
    return normalise_db_url(recorded) if recorded else None


def remember_db_url(folder: Path, db_url: str) -> None:
    """Record the DB URL in the folder (readable by the owner only: the URL may hold a password)."""
    path = folder / POINTER_FILE
    try:
        if path.exists() and json.loads(path.read_text()).get("db_url") == db_url:
            return
        tmp = path.with_name(f"{POINTER_FILE}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"db_url": db_url}, indent=2) + "\n")
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        raise LibraryError(f"cannot record the database URL in {path}: {exc}") from exc


def display_db_url(url: str) -> str:
    return redact_url(url.replace("+psycopg", "", 1))


class DatabaseWriterLock:
    """The PostgreSQL advisory lock that makes one process the writer of a shared library."""

    def __init__(self, engine, where: str) -> None:
        from sqlalchemy import text

        self._conn = engine.connect()
        try:
            got = self._conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                     {"key": WRITER_LOCK_KEY}).scalar()
            self._conn.commit()
            if not got:
                owner = _owner(self._conn)
                raise LibraryLockedError(f"library {where} is in use by another audiosim process{owner}; "
                                         "wait for it to finish or close it")
        except BaseException:
            self._conn.close()
            raise

    def record_owner(self, set_meta) -> None:
        """Say who holds the lock, for the message another writer gets."""
        set_meta(WRITER_META, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))

    def release(self) -> None:
        self._conn.close()  # a session-level advisory lock ends with its session


def _owner(conn) -> str:
    from sqlalchemy import text

    try:
        value = conn.execute(text("SELECT value FROM meta WHERE key = :k"), {"k": WRITER_META}).scalar()
        info = json.loads(value)
        return f" (pid {int(info['pid'])} on {info['host']})"
    except Exception:  # noqa: BLE001 - the owner is a courtesy; the lock is what matters
        return ""
