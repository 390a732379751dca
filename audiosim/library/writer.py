"""Writes to a library, in the one order that keeps the metadata DB and the vector stores in agreement.

1. frames are stored under a fresh key (``frames.db`` rows, or files for long files; see
   :mod:`audiosim.library.frames`), so an unfinished write is only an orphan;
2. one DB transaction commits assets and segments *with their vectors* — this is the commit point;
3. the vector stores are updated in memory and saved atomically from time to time.

After a crash between 2 and 3, :meth:`LibraryWriter.reconcile` brings the stores back in line with the
database (adds missing vectors from the DB, removes orphans). Segment ids are never reused, so a stale
vector can never stand for a new segment.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from audiosim.analysis import Analysis, Failure
from audiosim.config import AnalysisParams, analysis_key
from audiosim.crashpoints import crash_point
from audiosim.errors import LibraryError
from audiosim.library.db import Library, db_reason
from audiosim.features.mfcc import Frames
from audiosim.library.frames import INLINE_MAX_FRAMES, delete_frames, frames_path, save_frames, \
    unreferenced_frames
from audiosim.library.models import STATUS_FAILED, STATUS_INDEXED, Asset, Segment, display_name


class LibraryWriter:
    """The single writer of a library opened with ``writable=True``."""

    def __init__(self, library: Library) -> None:
        if not library.writable:
            raise ValueError("LibraryWriter needs a library opened with writable=True")
        self.library = library
        self.key = analysis_key(library.params)
        self._dirty = False

    # -- commits --------------------------------------------------------------------------------------
    def commit(self, analyses: list[Analysis] = (), failures: list[Failure] = (),
               removed_asset_ids: list[int] = ()) -> None:
        """Commit a batch of results in one transaction, then update the stores.

        A failed write (disk full, read-only disk, database error) rolls the transaction back, deletes the
        frames stored for it and raises :class:`LibraryError` (frames it could not delete are orphans that
        ``verify --repair`` removes).
        """
        written: list[str] = []
        try:
            self._commit(analyses, failures, removed_asset_ids, written)
        except (OSError, SQLAlchemyError, sqlite3.Error) as exc:
            with contextlib.suppress(OSError, sqlite3.Error):  # rolled back: these belong to nothing
                delete_frames(self.library.folder, self.library.frames_db, written)
            reason = db_reason(exc) if isinstance(exc, SQLAlchemyError) else \
                str(exc) if isinstance(exc, sqlite3.Error) else (exc.strerror or str(exc))
            raise LibraryError(f"cannot write to the library {self.library.folder}: {reason}") from exc
        crash_point("index-batch-committed")

    def _commit(self, analyses, failures, removed_asset_ids, written: list[Path]) -> None:
        # Set-based statements, a handful per batch whatever its size: the writer must keep up with
        # every core analysing short files.
        lib = self.library
        params = lib.params
        now = time.time()
        removed = [int(i) for i in removed_asset_ids]
        paths = [r.path for r in analyses] + [f.path for f in failures]
        with lib.Session.begin() as s:
            known = {path: (asset_id, frames) for asset_id, path, frames in s.execute(
                select(Asset.id, Asset.path, Asset.frames_file).where(Asset.path.in_(paths)))} if paths else {}
            gone = s.execute(select(Asset.id, Asset.frames_file).where(Asset.id.in_(removed))).all() \
                if removed else []
            replaced = [asset_id for asset_id, _ in known.values()] + [asset_id for asset_id, _ in gone]
            old_frame_files = [f for _, f in known.values() if f] + [f for _, f in gone if f]
            old_segment_ids = list(s.scalars(select(Segment.id).where(Segment.asset_id.in_(replaced)))) \
                if replaced else []
            if old_segment_ids:
                s.execute(delete(Segment).where(Segment.asset_id.in_(replaced)))
            # New assets get ids reserved up front and go in with their whole row: one INSERT without
            # RETURNING, which SQLAlchemy runs row by row on SQLite to keep the ids in order.
            new_paths = [p for p in paths if p not in known]
            known.update({p: (asset_id, None) for p, asset_id in zip(new_paths, reserve_ids(s, Asset.__table__,
                                                                                           len(new_paths)))})
            frame_keys = self._store_frames(analyses, [known[r.path][0] for r in analyses], written)
            updates, segment_vectors = [], []
            file_vectors: dict[int, np.ndarray | None] = {}
            for result, frames_key in zip(analyses, frame_keys):
                asset_id = known[result.path][0]
                file_vectors[asset_id] = result.file_vector
                updates.append(_indexed_row(asset_id, result, self.key, now, frames_key))
                segment_vectors.append(result.segment_vectors)
            for failure in failures:
                asset_id = known[failure.path][0]
                file_vectors[asset_id] = None
                updates.append(_failed_row(asset_id, failure, self.key, now))
            fresh = set(new_paths)
            inserts = [dict(row, path=p, name=display_name(os.path.basename(p)), folder=os.path.dirname(p))
                       for p, row in zip(paths, updates) if p in fresh]
            updates = [row for p, row in zip(paths, updates) if p not in fresh]
            if inserts:
                s.execute(insert(Asset.__table__), inserts)
            if updates:
                s.execute(update(Asset), updates)  # bulk UPDATE by primary key
            new_segment_ids = _insert_segments(s, [(known[r.path][0], r) for r in analyses], params)
            if removed:
                s.execute(delete(Asset).where(Asset.id.in_(removed)))
        # The DB has committed: bring the stores in line.
        segments, files = lib.store("segments"), lib.store("files")
        if old_segment_ids:
            segments.remove(np.asarray(old_segment_ids, np.int64))
        if len(new_segment_ids):
            segments.add(new_segment_ids, np.concatenate(segment_vectors))
        touched = list(file_vectors) + removed
        if touched:
            files.remove(np.asarray(touched, np.int64))
            keep = [(a, v) for a, v in file_vectors.items() if v is not None]
            if keep:
                files.add(np.asarray([a for a, _ in keep], np.int64), np.stack([v for _, v in keep]))
        delete_frames(lib.folder, lib.frames_db, old_frame_files)
        self._dirty = True

    def _store_frames(self, analyses: list[Analysis], asset_ids: list[int], written: list[str]) -> list[str]:
        """Store each analysis's frames before the commit that refers to them; their keys, in order.
        Short files' frames go into ``frames.db`` in one transaction, longer ones each into a file."""
        lib = self.library
        keys: list[str | None] = [None] * len(analyses)
        short = [i for i, r in enumerate(analyses) if len(r.frames) <= INLINE_MAX_FRAMES]
        for i, key in zip(short, lib.frames_db.put([analyses[i].frames for i in short], lib.params)):
            keys[i] = key
            written.append(key)
        files = []
        for i, result in enumerate(analyses):
            if keys[i] is None:
                path = frames_path(lib.folder, asset_ids[i], secrets.token_hex(4))
                keys[i] = str(path.relative_to(lib.folder))
                written.append(keys[i])
                files.append((path, result.frames))
        _save_all_frames(files, lib.params)
        return keys

    def sweep_orphan_frames(self) -> int:
        """Delete stored frames no asset refers to (a crash between storing them and committing)."""
        with self.library.Session() as s:
            referenced = set(s.scalars(select(Asset.frames_file).where(Asset.frames_file.is_not(None))))
        orphans = unreferenced_frames(self.library.folder, self.library.frames_db, referenced)
        delete_frames(self.library.folder, self.library.frames_db, orphans)
        return len(orphans)

    def save(self) -> None:
        """Save the stores if anything changed since the last save (atomic per store)."""
        if self._dirty:
            try:
                self.library.save_stores()
            except OSError as exc:
                raise LibraryError(f"cannot save the vector store in {self.library.folder}: "
                                   f"{exc.strerror or exc}") from exc
            self._dirty = False
            crash_point("index-stores-saved")

    # -- agreement between DB and stores ---------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Make both stores hold exactly the vectors the DB says they should; returns what changed."""
        lib = self.library
        changes = {}
        expected = lib.vector_ids()
        for name, column, owner in (("segments", Segment.embedding, Segment.id),
                                    ("files", Asset.embedding, Asset.id)):
            db_ids = expected[name]
            store = lib.store(name)
            store_ids = store.ids()
            orphans = np.setdiff1d(store_ids, db_ids, assume_unique=True)
            missing = np.setdiff1d(db_ids, store_ids, assume_unique=True)
            if len(orphans):
                store.remove(orphans)
            for start in range(0, len(missing), 20000):
                chunk = missing[start:start + 20000]
                with lib.Session() as s:
                    rows = s.execute(select(owner, column).where(owner.in_(chunk.tolist()))).all()
                ids = np.asarray([r[0] for r in rows], np.int64)
                vectors = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
                store.add(ids, vectors)
            changes[f"{name}_orphans_removed"] = int(len(orphans))
            changes[f"{name}_missing_added"] = int(len(missing))
            if len(orphans) or len(missing):
                self._dirty = True
        self.save()
        return changes


SEGMENT_ROWS_AT_ONCE = 4096  # a 2 h file has 14,000 segments: their rows are built and inserted in steps


def _insert_segments(s, results: list[tuple[int, Analysis]], params) -> np.ndarray:
    """Insert the segment rows (each with its vector) of ``(asset id, analysis)`` pairs in order, under
    ids reserved for them (:func:`reserve_ids`); those ids, in the same order. Core inserts: the ORM's bulk
    path cost twice as much per row."""
    table = Segment.__table__
    count = sum(len(result.windows) for _, result in results)
    ids = np.asarray(reserve_ids(s, table, count), np.int64)
    rows = ({"asset_id": asset_id, "start": t0, "end": t1, "embedding": v.tobytes()}
            for asset_id, result in results
            for (t0, t1), v in zip(result.segment_times(params), result.segment_vectors))
    statement = insert(table)
    at = 0
    while chunk := list(itertools.islice(rows, SEGMENT_ROWS_AT_ONCE)):
        for row, segment_id in zip(chunk, ids[at:at + len(chunk)].tolist()):
            row["id"] = segment_id
        s.execute(statement, chunk)
        at += len(chunk)
    return ids


def reserve_ids(s, table, count: int) -> list[int]:
    """``count`` new ids of ``table`` (an ``AUTOINCREMENT`` / serial key), never used before, for rows the
    caller inserts with them in this transaction. The library's single writer only (its lock makes the
    reservation safe on SQLite; PostgreSQL's sequence is safe anyway)."""
    if count == 0:
        return []
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        # AUTOINCREMENT's counter, or the largest id if the counter has no row yet; rows inserted with
        # larger ids move the counter on, so a deleted id is still never handed out again.
        last = s.execute(text(
            f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = :name), 0), "
            f"coalesce((SELECT max(id) FROM {table.name}), 0))"), {"name": table.name}).scalar_one()
        return list(range(last + 1, last + 1 + count))
    if dialect == "postgresql":
        return list(s.scalars(text(
            "SELECT nextval(pg_get_serial_sequence(:name, 'id')) FROM generate_series(1, :count)"),
            {"name": table.name, "count": count}))
    raise LibraryError(f"writing to a {dialect} database is not supported (SQLite or PostgreSQL)")


FRAME_WRITERS = 8


def _save_all_frames(files: list[tuple[Path, Frames]], params: AnalysisParams) -> None:
    """Write a batch's frame files (long files'), several at a time: creating a file can wait on the file
    system's journal far longer than it needs the CPU. Raises the first failure once all are done."""
    if len(files) <= 1:
        for path, frames in files:
            _save_frames(path, frames, params)
        return
    with ThreadPoolExecutor(max_workers=min(FRAME_WRITERS, len(files)), thread_name_prefix="frames") as pool:
        for future in [pool.submit(_save_frames, path, frames, params) for path, frames in files]:
            future.result()


def _save_frames(path: Path, frames: Frames, params: AnalysisParams) -> None:
    try:
        save_frames(path, frames, params)
    except FileNotFoundError:  # the first file of its folder
        path.parent.mkdir(parents=True, exist_ok=True)
        save_frames(path, frames, params)


_DESCRIPTORS = ("size", "mtime", "fingerprint", "format", "subtype", "sample_rate", "channels", "duration",
                "avg_loudness", "peak_db", "centroid")


def _indexed_row(asset_id: int, result: Analysis, key: str, now: float, frames_file: str) -> dict:
    row = {field: getattr(result, field) for field in _DESCRIPTORS}
    row.update(id=asset_id, status=STATUS_INDEXED, error=None, analysis_key=key, indexed_at=now,
               frames_file=frames_file, n_segments=len(result.windows),
               embedding=None if result.file_vector is None else result.file_vector.tobytes())
    return row


def _failed_row(asset_id: int, failure: Failure, key: str, now: float) -> dict:
    row = dict.fromkeys(_DESCRIPTORS)
    row.update(id=asset_id, status=STATUS_FAILED, error=failure.error, analysis_key=key, indexed_at=now,
               frames_file=None, n_segments=0, embedding=None, size=failure.size, mtime=failure.mtime)
    return row
