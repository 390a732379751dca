"""The Library: one object that owns the metadata database, the stored frames and the vector stores.

Layout of a library folder::

    library.db          SQLite metadata (WAL), unless another SQLAlchemy URL is configured
    library.lock        held by the one process allowed to write
    frames.db           MFCC frames (float16) with timestamps of files up to 6 min, a row each (SQLite, WAL)
    frames/xx/ID-TOKEN.npy   the frames of a longer file (and of every file in a library made before
                        frames.db); see :mod:`audiosim.library.frames`
    vectors/            the vector store's files (segments, files)

Readers open without the lock and never block the writer (SQLite WAL).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import bindparam, create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from audiosim.config import AnalysisParams, analysis_key, default_library_dir
from audiosim.crashpoints import crash_point
from audiosim.errors import LibraryError, LibraryIncompleteError, LibraryLockedError
from audiosim.library.location import DB_FILE, DatabaseWriterLock, display_db_url, read_only_sqlite_uri, \
    remember_db_url, resolve_db_url
from audiosim.library.models import ASSET_ROW_COLUMNS, STATUS_FAILED, STATUS_INDEXED, Asset, AssetRow, Meta, Segment
from audiosim.library.schema import MIGRATIONS, SCHEMA_VERSION, prepare_schema, write_meta  # noqa: F401
from audiosim.library.segment_table import SegmentRows, SegmentTable, segment_rows

if TYPE_CHECKING:
    from audiosim.features.mfcc import Frames

LOCK_FILE = "library.lock"
STORES_OUTDATED = "stores_outdated"  # meta key: rebuild the vector stores from the DB on the next write
READER_MMAP_BYTES = 256 * 2**20
READER_CACHE_KB = 64 * 1024
FRAMES_CACHE_BYTES = 64 * 2**20  # recently loaded frames kept in memory (a query refines ~100 assets)


# Built once: building a select costs more than running it on a few rows (the queries run at every search).
_ASSET_ROW_BY_PATH = select(*ASSET_ROW_COLUMNS).where(Asset.path == bindparam("path"))
_ASSET_ROWS_BY_ID = select(*ASSET_ROW_COLUMNS).where(Asset.id.in_(bindparam("ids", expanding=True)))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # persistent: readers find the database already in WAL
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # pysqlite only opens a transaction before INSERT/UPDATE/DELETE, so CREATE and ALTER TABLE would
    # commit on their own; _sqlite_begin issues the BEGIN instead, and DDL commits with the rest.
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def transactional_sqlite(engine: Engine) -> Engine:
    """Make every SQLAlchemy transaction on this SQLite engine a real one, schema changes included
    (SQLAlchemy's documented recipe for pysqlite)."""
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _read_only_connector(db_file: Path) -> Callable[[], sqlite3.Connection]:
    """Opens connections that never write (see :func:`read_only_sqlite_uri`)."""
    uri = read_only_sqlite_uri(db_file)

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        # A query joins a few hundred random rows of a table that may be a GB: map the file and keep
        # more pages than SQLite's default 2 MB (measured at 100k segments: the joins ~10-20 % faster).
        conn.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
        conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KB}")
        return conn

    return connect


def _read_only_engine(db_file: Path) -> Engine:
    return create_engine("sqlite://", creator=_read_only_connector(db_file))


def _sqlite_file(db_url: str) -> Path | None:
    """The database file of an SQLite URL (None for another database or an in-memory one)."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


class Library:
    """A library folder opened for reading, or for writing (``writable=True`` takes the writer lock).

    Parameters
    ----------
    folder : the library folder; default :func:`audiosim.config.default_library_dir`
    writable : take the single-writer lock; create the library if it does not exist
    db_url : a SQLAlchemy URL for the metadata DB instead of ``folder/library.db`` (remembered in the
        folder's ``library.json``; see :mod:`audiosim.library.location`)
    store : a vector-store spec (:func:`audiosim.stores.parse_store_spec`) for a new library; an existing
        one keeps the spec it recorded, and another spec is an error that says how to move the vectors
    params : analysis parameters for a new library (an existing one keeps its recorded parameters)
    """

    def __init__(self, folder: str | os.PathLike | None = None, *, writable: bool = False,
                 db_url: str | None = None, store: str | None = None,
                 params: AnalysisParams | None = None) -> None:
        self.folder = Path(folder).expanduser().resolve() if folder else default_library_dir().resolve()
        self.writable = writable
        self._lock = None
        self._db_lock = None
        self._stores: dict[str, object] = {}
        self._frames_cache: OrderedDict[str, Frames] = OrderedDict()
        self._frames_cache_bytes = 0
        self._frames_lock = threading.Lock()
        from audiosim.library.frames import FramesDB

        self.frames_db = FramesDB(self.folder, writable=writable)
        self._segment_table: SegmentTable | None = None
        self.notices: list[str] = []  # what opening did to the library (completed, upgraded...), one line each
        custom_url = resolve_db_url(self.folder, db_url)
        self.db_url = custom_url or f"sqlite:///{self.folder / DB_FILE}"
        is_sqlite = self.db_url.startswith("sqlite")
        if writable:
            self._create_folder()
            crash_point("library-folder-created")
            if is_sqlite:  # a server DB is locked in the DB itself (below): it works across machines
                self._acquire_lock()
            crash_point("lock-acquired")
        if not custom_url and not writable and not (self.folder / DB_FILE).exists():
            raise LibraryIncompleteError(f"no library at {self.folder}: index a folder first "
                                         "(`audiosim index PATH`)")
        try:
            if not custom_url and not writable:
                self.engine: Engine = _read_only_engine(self.folder / DB_FILE)
            else:
                self.engine = create_engine(self.db_url)
                if is_sqlite:
                    transactional_sqlite(self.engine)
            self.Session = sessionmaker(self.engine, expire_on_commit=False)
            sqlite_file = _sqlite_file(self.db_url)
            if sqlite_file is not None:
                self._segment_table = SegmentTable(_read_only_connector(sqlite_file))
            if writable and not is_sqlite:
                where = f"{self.folder} ({display_db_url(self.db_url)})"
                self._db_lock = DatabaseWriterLock(self.engine, where)
            crash_point("database-opened")
            self.params = prepare_schema(self, params)
            self._settle_store_spec(store)
            if writable and custom_url:
                remember_db_url(self.folder, custom_url)
            if self._db_lock is not None:
                self._db_lock.record_owner(self.set_meta)
            if writable:
                self.rebuild_outdated_stores()
        except ModuleNotFoundError as exc:  # the PostgreSQL driver
            self.close()
            raise LibraryError(f"the metadata DB {display_db_url(self.db_url)} needs {exc.name}: "
                               "pip install 'audiosim[pgvector]'") from None
        except SQLAlchemyError as exc:
            self.close()
            raise LibraryError(f"cannot open the library database {display_db_url(self.db_url)}: "
                               f"{db_reason(exc)}") from exc
        except Exception:
            self.close()
            raise

    # -- set-up ---------------------------------------------------------------------------------------
    def _create_folder(self) -> None:
        try:
            (self.folder / "frames").mkdir(parents=True, exist_ok=True)
            (self.folder / "vectors").mkdir(exist_ok=True)
        except OSError as exc:
            raise LibraryError(f"cannot create the library folder {self.folder}: {exc.strerror}") from exc

    def _acquire_lock(self) -> None:
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.folder / LOCK_FILE), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            owner = _read_owner(self.folder)
            raise LibraryLockedError(
                f"library {self.folder} is in use by another audiosim process{owner}; "
                "wait for it to finish or close it") from None
        except OSError as exc:
            raise LibraryError(f"cannot lock the library {self.folder}: {exc.strerror}") from exc
        self._lock = lock
        try:
            (self.folder / "writer.json").write_text(json.dumps({"pid": os.getpid(), "since": time.time()}))
        except OSError:
            pass

    # -- meta -----------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.Session() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.update_meta({key: value})

    def update_meta(self, values: Mapping[str, str], *, conn: Connection | None = None) -> None:
        """Set several meta keys at once: all of them are committed, or none.

        With ``conn`` (from :meth:`transaction`) they commit with the rest of that transaction."""
        if conn is not None:
            write_meta(conn, dict(values))
            return
        with self.transaction() as own:
            write_meta(own, dict(values))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on the metadata DB: what is written through it commits together, or not at all.

        This is the place for any multi-step change of what a library *means*, such as the upgrade of a
        library to a new analysis version or a switch of vector-store backend::

            with library.transaction() as conn:
                conn.execute(update(Segment)...)            # the new embeddings / rows
                library.update_meta({"analysis_params": new.to_json()}, conn=conn)
                library.mark_stores_outdated(conn)          # vectors changed under the same ids
            library.params = new
            library.rebuild_outdated_stores()               # or let the next writer that opens it do it

        A kill before the commit leaves the old parameters with the old rows; after it, the new with the
        new. Frame files written for it go under fresh names first (an unfinished upgrade leaves only
        orphans, swept by the next run). The vector stores follow the DB: ``mark_stores_outdated`` makes
        the next writer that opens the library rebuild them from the DB (and say so in :attr:`notices`),
        so even a kill right after the commit cannot leave stale vectors behind.
        """
        with self.engine.begin() as conn:
            yield conn
            crash_point("meta-updated")

    def mark_stores_outdated(self, conn: Connection) -> None:
        """Inside :meth:`transaction`: the vectors in the stores no longer match the DB's embeddings."""
        write_meta(conn, {STORES_OUTDATED: "1"})

    def rebuild_outdated_stores(self) -> None:
        """Writable: if :meth:`mark_stores_outdated` was committed, rebuild both stores from the DB now."""
        if self.get_meta(STORES_OUTDATED) != "1":
            return
        from audiosim.library.writer import LibraryWriter

        for name in ("segments", "files"):
            self.discard_store(name)
        LibraryWriter(self).reconcile()  # saved before the flag is cleared: a kill just repeats this
        with self.transaction() as conn:
            conn.execute(Meta.__table__.delete().where(Meta.__table__.c.key == STORES_OUTDATED))
        self.notices.append("rebuilt the vector stores from the database (their vectors were outdated)")

    # -- vector stores --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        from audiosim.features.embedding import embedding_dim

        return embedding_dim(self.params)

    def _settle_store_spec(self, requested: str | None) -> None:
        """Record the store spec of a new library; refuse another spec for one that has vectors."""
        from audiosim.stores import parse_store_spec

        current = self.store_spec
        if requested is None:
            return
        wanted = parse_store_spec(requested)
        if wanted.text == current.text:
            return
        with self.Session() as s:
            empty = s.scalar(select(func.count()).select_from(Asset)) == 0
        if not (empty and self.writable):
            raise LibraryError(
                f"library {self.folder} keeps its vectors in {current.text}; "
                f"to move them run `audiosim store copy --to {requested}`")
        self.set_store_spec(wanted.text)

    @property
    def store_spec(self):
        """The recorded :class:`audiosim.stores.StoreSpec` (libraries made before specs: their backend)."""
        from audiosim.stores import parse_store_spec

        return parse_store_spec(self.get_meta("store_spec") or self.get_meta("store_backend") or "faiss")

    def set_store_spec(self, text: str) -> None:
        """Point the library at another store (the caller has filled it: see ``store_ops``)."""
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        self.set_meta("store_spec", text)

    def open_store_at(self, spec, name: str, *, create: bool | None = None):
        """Open the store ``name`` of ``spec`` (a StoreSpec) for this library, not cached."""
        from audiosim.stores import REMOTE_BACKENDS, open_store

        options = dict(spec.options)
        if spec.backend in REMOTE_BACKENDS:
            options["create"] = self.writable if create is None else create
        elif spec.backend == "faiss":
            options.update(json.loads(self.get_meta("store_options") or "{}"))
        return open_store(spec.backend, path=self.folder / "vectors", name=name, dim=self.dim, **options)

    def store(self, name: str):
        """The vector store ``"segments"`` (ids = segment ids) or ``"files"`` (ids = asset ids)."""
        if name not in self._stores:
            from audiosim.errors import StoreDimensionError

            self.require_current()
            try:
                self._stores[name] = self._open_store(name)
            except StoreDimensionError:
                if not self.writable:
                    raise
                # Vectors of an older analysis: the DB holds what the store should, so start it afresh
                # (reconcile fills it).
                self.discard_store(name)
                self._stores[name] = self._open_store(name)
        return self._stores[name]

    def _open_store(self, name: str):
        return self.open_store_at(self.store_spec, name)

    def discard_store_if_other_dim(self, name: str) -> None:
        """Open the store afresh so that one of another dimension is set aside now (writers only)."""
        stale = self._stores.pop(name, None)
        if stale is not None:
            stale.close()
        self.store(name)

    def require_current(self) -> None:
        """Raise :class:`LibraryError` when the library was made by an older analysis and not upgraded."""
        from audiosim.library.upgrade import upgraded_params

        if upgraded_params(self.params) != self.params:
            raise LibraryError(f"library {self.folder} was made by an older audiosim (analysis version "
                               f"{self.params.version}, embedding version {self.params.embedding}): "
                               "run `audiosim upgrade` once to bring it up to date")

    def discard_store(self, name: str) -> None:
        """Set a damaged store aside so it is rebuilt from the DB on next use: local files are renamed
        ``*.damaged``; a table or collection on a server is dropped."""
        store = self._stores.pop(name, None)
        if store is not None:
            store.close()
        spec = self.store_spec
        if spec.backend not in ("faiss", "annoy"):
            from audiosim.stores import drop_remote_store

            drop_remote_store(spec, name)
            return
        for path in (self.folder / "vectors").glob(f"{name}.*"):
            if not path.name.endswith(".damaged"):
                os.replace(path, path.with_name(path.name + ".damaged"))

    def vector_ids(self) -> dict[str, np.ndarray]:
        """Ids each vector store should hold according to the DB: ``{"segments": ..., "files": ...}``."""
        with self.Session() as s:
            # Assets still awaiting an upgrade keep their old vectors in the DB, but not in the stores.
            current = analysis_key(self.params)
            segments = np.fromiter(s.scalars(select(Segment.id).join(Asset, Segment.asset_id == Asset.id)
                                             .where(Asset.analysis_key == current)), np.int64)
            files = np.fromiter(s.scalars(select(Asset.id).where(Asset.status == STATUS_INDEXED,
                                                                   Asset.analysis_key == current,
                                                                   Asset.embedding.is_not(None))), np.int64)
        return {"segments": segments, "files": files}

    def save_stores(self) -> None:
        for store in self._stores.values():
            store.save()

    # -- reading --------------------------------------------------------------------------------------
    def session(self) -> Session:
        return self.Session()

    def asset_by_path(self, path: str | os.PathLike) -> AssetRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(_ASSET_ROW_BY_PATH, {"path": str(path)}).first()
        return None if row is None else AssetRow._make(row)

    def indexed_asset_rows(self, ids: Iterable[int]) -> dict[int, AssetRow]:
        """The rows (without file vectors) of those of ``ids`` that are indexed, by id."""
        # By primary key alone, status tested here: with the status in the WHERE clause SQLite walks the
        # status index and then the table for each id, ~30 % slower.
        with self.engine.connect() as conn:
            rows = conn.execute(_ASSET_ROWS_BY_ID, {"ids": list(ids)})
            return {row[0]: AssetRow._make(row) for row in rows if row.status == STATUS_INDEXED}

    def assets(self, filter_expression: str | None = None, *, status: str | None = None) -> list[Asset]:
        stmt = select(Asset).order_by(Asset.path)
        if filter_expression:
            from audiosim.library.filters import compile_filter

            stmt = stmt.where(compile_filter(filter_expression))
        if status:
            stmt = stmt.where(Asset.status == status)
        with self.Session() as s:
            return list(s.scalars(stmt))

    def segment_rows(self, ids: np.ndarray) -> SegmentRows:
        """Asset and start of the segments ``ids`` that exist, and their assets' duration and number of
        segments (what a query needs of its hits), as a table to look them up in with ``find``; it may hold
        more segments than were asked for.

        On SQLite this is the whole table, kept in memory and current (see
        :mod:`audiosim.library.segment_table`); on another database, one query for these ids."""
        if self._segment_table is not None:
            return self._segment_table.current()
        ids = np.unique(np.asarray(ids, np.int64))
        with self.Session() as s:
            rows = s.execute(select(Segment.id, Segment.asset_id, Segment.start,
                                    func.coalesce(Asset.duration, 0.0), func.coalesce(Asset.n_segments, 0))
                             .join(Asset, Asset.id == Segment.asset_id).where(Segment.id.in_(ids.tolist()))).all()
        columns = [np.array(c) for c in zip(*rows)] if rows else [np.empty(0)] * 5
        return segment_rows(*columns)

    def load_frames(self, asset: Asset | AssetRow) -> Frames:
        """The stored frames of an asset (read-only arrays). Frames are never rewritten (a new analysis
        stores them under a new key), so recently loaded ones are kept, up to `FRAMES_CACHE_BYTES`."""
        key = asset.frames_file
        if not key:
            raise LibraryError(f"{asset.path} has no stored frames")
        with self._frames_lock:
            frames = self._frames_cache.get(key)
            if frames is not None:
                self._frames_cache.move_to_end(key)
                return frames
        from audiosim.library.frames import load_stored_frames

        try:
            frames = load_stored_frames(self.folder, key, self.frames_db)[0]
        except (OSError, KeyError, ValueError, sqlite3.Error) as exc:
            raise LibraryError(f"frames of {asset.path} are missing or damaged "
                               "(run `audiosim verify --repair`)") from exc
        size = frames.mfcc.nbytes + frames.rms_db.nbytes + frames.low.nbytes
        with self._frames_lock:
            if key not in self._frames_cache and size <= FRAMES_CACHE_BYTES // 4:
                self._frames_cache[key] = frames
                self._frames_cache_bytes += size
                while self._frames_cache_bytes > FRAMES_CACHE_BYTES:
                    _, old = self._frames_cache.popitem(last=False)
                    self._frames_cache_bytes -= old.mfcc.nbytes + old.rms_db.nbytes + old.low.nbytes
        return frames

    def stats(self) -> dict:
        with self.Session() as s:
            assets = s.scalar(select(func.count()).select_from(Asset).where(Asset.status == STATUS_INDEXED))
            failed = s.scalar(select(func.count()).select_from(Asset).where(Asset.status == STATUS_FAILED))
            segments = s.scalar(select(func.count()).select_from(Segment))
            duration = s.scalar(select(func.coalesce(func.sum(Asset.duration), 0.0))
                                .where(Asset.status == STATUS_INDEXED))
        try:
            store_description = self.store("segments").description
        except LibraryError as exc:  # made by an older audiosim: say so instead of failing
            store_description = str(exc)
        spec = self.store_spec
        return {"assets": assets, "segments": segments, "failed": failed,
                "store": store_description, "store_backend": spec.backend, "store_location": spec.location,
                "db": display_db_url(self.db_url), "dim": self.dim, "library": str(self.folder),
                "hours": round(float(duration) / 3600.0, 3)}

    def close(self) -> None:
        for store in self._stores.values():
            try:
                store.close()
            except Exception:  # noqa: BLE001 - closing must release the lock whatever happens
                pass
        self._stores.clear()
        if getattr(self, "frames_db", None) is not None:
            self.frames_db.close()
        if getattr(self, "_segment_table", None) is not None:
            self._segment_table.close()
        if getattr(self, "_db_lock", None) is not None:
            self._db_lock.release()
            self._db_lock = None
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.dispose()
        if self._lock is not None:
            try:
                (self.folder / "writer.json").unlink(missing_ok=True)
            except OSError:
                pass
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def db_reason(exc: BaseException) -> str:
    """The database driver's own one-line reason, without SQLAlchemy's boilerplate."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]


def _read_owner(folder: Path) -> str:
    try:
        info = json.loads((folder / "writer.json").read_text())
        return f" (pid {int(info['pid'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
