"""Create, complete and upgrade a library's database schema, each in one transaction.

A library is *complete* when its tables exist and ``meta`` holds every key in :data:`REQUIRED_META`.
Creating one writes the tables and those keys in one transaction (on SQLite too: the writer's engine
issues its own ``BEGIN``, see :func:`audiosim.library.db.transactional_sqlite`), so a kill at any moment
leaves no library or a complete one. A library left half-made by an older audiosim (tables and
``schema_version`` committed one by one, killed before ``analysis_params``) is completed by the next
writer, which says so in :attr:`Library.notices`; a reader is told, in one line, how to complete it.

Upgrades: new tables and columns are added automatically; data migrations (``MIGRATIONS[n]`` takes a
version-``n`` library to ``n + 1``) run in the same transaction as the new ``schema_version``, after the
database file was copied to ``library.db.backup-vN`` (consistently, through SQLite's backup API).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection

from audiosim.config import AnalysisParams
from audiosim.crashpoints import crash_point
from audiosim.errors import LibraryError, LibraryIncompleteError
from audiosim.library.models import Asset, Base, Meta

if TYPE_CHECKING:
    from audiosim.library.db import Library

SCHEMA_VERSION = 1

# Data migrations from version N to N+1, each given the connection of the upgrading transaction.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}

REQUIRED_META = ("schema_version", "analysis_params", "store_backend")
DEFAULT_STORE_BACKEND = "faiss"


def prepare_schema(library: Library, params: AnalysisParams | None) -> AnalysisParams:
    """Make ``library``'s database complete and current (writable) or check that it is (read-only);
    returns the library's recorded analysis parameters. What was done is appended to ``library.notices``."""
    with library.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        meta = _read_meta(conn) if "meta" in tables else {}
    if any(key not in meta for key in REQUIRED_META):
        if not library.writable:
            if not tables:
                raise LibraryIncompleteError(f"no library at {library.folder}: index a folder first "
                                             "(`audiosim index PATH`)")
            raise LibraryIncompleteError(f"library {library.folder} was left half-created by an interrupted run; "
                               "any writing command (e.g. `audiosim index PATH`) completes it")
        meta = _create_or_complete(library, params, meta, half_made=bool(tables))
    version = _schema_version(library, meta)
    if version > SCHEMA_VERSION:
        raise LibraryError(f"library {library.folder} was written by a newer audiosim "
                           f"(schema {version} > {SCHEMA_VERSION}); upgrade audiosim")
    missing_tables, missing_columns = _missing_schema(library)
    if version < SCHEMA_VERSION or missing_tables or missing_columns:
        if not library.writable:
            raise LibraryError("library needs an upgrade: run any writing command "
                               "(e.g. `audiosim verify --repair`) once")
        _migrate(library, version)
    try:
        return AnalysisParams.from_json(meta["analysis_params"])
    except (ValueError, TypeError) as exc:
        raise LibraryError(f"the analysis parameters recorded in {library.folder} are damaged: {exc}") from exc


def _read_meta(conn: Connection) -> dict[str, str]:
    return {key: value for key, value in conn.execute(select(Meta.key, Meta.value)) if value is not None}


def _schema_version(library: Library, meta: dict[str, str]) -> int:
    try:
        return int(meta["schema_version"])
    except ValueError:
        raise LibraryError(f"library {library.folder} records a damaged schema version "
                           f"{meta['schema_version']!r}") from None


def _create_or_complete(library: Library, params: AnalysisParams | None, meta: dict[str, str], *,
                        half_made: bool) -> dict[str, str]:
    """Tables and the missing meta keys in one transaction: all of them are committed, or none."""
    defaults = {"schema_version": str(SCHEMA_VERSION),
                "analysis_params": (params or AnalysisParams()).to_json(),
                "store_backend": DEFAULT_STORE_BACKEND}
    with library.engine.begin() as conn:
        Base.metadata.create_all(conn)  # only the tables that are missing
        crash_point("schema-tables-created")
        added = {key: value for key, value in defaults.items() if key not in meta}
        write_meta(conn, added)
        had_assets = conn.execute(select(Asset.id).limit(1)).first() is not None
        crash_point("schema-meta-written")
    crash_point("schema-committed")
    if half_made:
        what = "completed" if had_assets else "recreated"
        library.notices.append(f"{what} a library left half-created by an interrupted run "
                               f"(wrote {', '.join(sorted(added))})")
    return {**meta, **added}


def write_meta(conn: Connection, values: dict[str, str]) -> None:
    """Set meta keys inside the caller's transaction (delete + insert: the same on every database)."""
    if not values:
        return
    table = Meta.__table__
    conn.execute(table.delete().where(table.c.key.in_(list(values))))
    conn.execute(table.insert(), [{"key": key, "value": value} for key, value in values.items()])


def _missing_schema(library: Library) -> tuple[list[str], list[tuple[str, object]]]:
    with library.engine.connect() as conn:
        insp = inspect(conn)
        tables = set(insp.get_table_names())
        missing_tables = [t.name for t in Base.metadata.sorted_tables if t.name not in tables]
        missing_columns = []
        for table in Base.metadata.sorted_tables:
            if table.name in tables:
                present = {c["name"] for c in insp.get_columns(table.name)}
                missing_columns += [(table.name, col) for col in table.columns if col.name not in present]
    return missing_tables, missing_columns


def _migrate(library: Library, version: int) -> None:
    """Back up, then new tables, new columns, data migrations and ``schema_version`` in one transaction."""
    from sqlalchemy import text

    backup = _backup(library, version)
    missing_tables, missing_columns = _missing_schema(library)
    with library.engine.begin() as conn:
        Base.metadata.create_all(conn)
        for table, column in missing_columns:
            col_type = column.type.compile(library.engine.dialect)
            conn.execute(text(f'ALTER TABLE "{table}" ADD COLUMN "{column.name}" {col_type}'))
        crash_point("migration-columns-added")
        for step in range(version, SCHEMA_VERSION):
            if step in MIGRATIONS:
                MIGRATIONS[step](conn)
        write_meta(conn, {"schema_version": str(SCHEMA_VERSION)})
    changes = [f"schema {version} → {SCHEMA_VERSION}"] if version < SCHEMA_VERSION else []
    changes += [f"table {name}" for name in missing_tables]
    changes += [f"column {table}.{column.name}" for table, column in missing_columns]
    saved = f" (backup: {backup.name})" if backup else ""
    library.notices.append(f"upgraded the library database: {', '.join(changes)}{saved}")


def _backup(library: Library, version: int) -> Path | None:
    """A consistent copy of the SQLite file (WAL included), written under a temporary name and renamed."""
    db_file = library.folder / "library.db"
    if not library.db_url.startswith("sqlite") or not db_file.exists():
        return None
    for stale in db_file.parent.glob(f"{db_file.name}.backup-v*.tmp-*"):  # left by a kill mid-copy
        stale.unlink(missing_ok=True)
    backup = db_file.with_name(f"{db_file.name}.backup-v{version}")
    partial = backup.with_name(f"{backup.name}.tmp-{os.getpid()}")
    source, target = sqlite3.connect(db_file), sqlite3.connect(partial)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    os.replace(partial, backup)
    crash_point("migration-backup-written")
    return backup
