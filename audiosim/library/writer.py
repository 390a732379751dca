"""Writes to a library, in the one order that keeps the metadata DB and the vector stores in agreement.

1. frame files are written under a fresh name (temp + rename), so an unfinished write is only an orphan;
2. one DB transaction commits assets and segments *with their vectors* — this is the commit point;
3. the vector stores are updated in memory and saved atomically from time to time.

After a crash between 2 and 3, :meth:`LibraryWriter.reconcile` brings the stores back in line with the
database (adds missing vectors from the DB, removes orphans). Segment ids are never reused, so a stale
vector can never stand for a new segment.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from audiosim.analysis import Analysis, frames_path_for
from audiosim.config import analysis_key
from audiosim.features.mfcc import frame_times
from audiosim.errors import LibraryError
from audiosim.library.db import Library, db_reason
from audiosim.library.models import STATUS_FAILED, STATUS_INDEXED, Asset, Segment


@dataclasses.dataclass
class Failure:
    path: str
    error: str
    size: int | None = None
    mtime: float | None = None


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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

        A failed write (disk full, read-only disk, database error) rolls the transaction back and raises
        :class:`LibraryError`; frame files written for it are orphans that ``verify --repair`` removes.
        """
        written: list[Path] = []
        try:
            self._commit(analyses, failures, removed_asset_ids, written)
        except (OSError, SQLAlchemyError) as exc:
            for path in written:  # the transaction was rolled back: these belong to nothing
                path.unlink(missing_ok=True)
            reason = db_reason(exc) if isinstance(exc, SQLAlchemyError) else (exc.strerror or str(exc))
            raise LibraryError(f"cannot write to the library {self.library.folder}: {reason}") from exc

    def _commit(self, analyses, failures, removed_asset_ids, written: list[Path]) -> None:
        lib = self.library
        params = lib.params
        old_segment_ids: list[int] = []
        old_frame_files: list[str] = []
        new_segments: list[tuple[np.ndarray, np.ndarray]] = []
        file_vectors: dict[int, np.ndarray | None] = {}
        touched_assets: list[int] = []
        with lib.Session.begin() as s:
            for result in analyses:
                asset = s.scalars(select(Asset).where(Asset.path == result.path)).first()
                if asset is None:
                    asset = Asset(path=result.path, status=STATUS_INDEXED,
                                  name=os.path.basename(result.path), folder=os.path.dirname(result.path))
                    s.add(asset)
                    s.flush()
                else:
                    old_segment_ids += self._drop_segments(s, asset.id)
                    if asset.frames_file:
                        old_frame_files.append(asset.frames_file)
                frames_file = frames_path_for(lib.folder, asset.id, secrets.token_hex(4))
                written.append(frames_file)
                _atomic_savez(frames_file, mfcc=result.mfcc, rms_db=result.rms_db,
                              times=frame_times(len(result.mfcc), params))
                _fill_asset(asset, result, self.key)
                asset.frames_file = str(frames_file.relative_to(lib.folder))
                asset.n_segments = len(result.windows)
                asset.embedding = None if result.file_vector is None else result.file_vector.tobytes()
                file_vectors[asset.id] = result.file_vector
                touched_assets.append(asset.id)
                rows = [{"asset_id": asset.id, "start": t0, "end": t1, "embedding": v.tobytes()}
                        for (t0, t1), v in zip(result.segment_times(params), result.segment_vectors)]
                if rows:
                    ids = s.scalars(insert(Segment).returning(Segment.id, sort_by_parameter_order=True),
                                    rows).all()
                    new_segments.append((np.asarray(ids, np.int64), result.segment_vectors))
            for failure in failures:
                asset = s.scalars(select(Asset).where(Asset.path == failure.path)).first()
                if asset is None:
                    asset = Asset(path=failure.path, name=os.path.basename(failure.path),
                                  folder=os.path.dirname(failure.path), status=STATUS_FAILED)
                    s.add(asset)
                    s.flush()
                else:
                    old_segment_ids += self._drop_segments(s, asset.id)
                    if asset.frames_file:
                        old_frame_files.append(asset.frames_file)
                    file_vectors[asset.id] = None
                    touched_assets.append(asset.id)
                for field in ("duration", "avg_loudness", "peak_db", "centroid", "embedding", "frames_file",
                              "fingerprint", "format", "subtype", "sample_rate", "channels"):
                    setattr(asset, field, None)
                asset.status, asset.error = STATUS_FAILED, failure.error
                asset.size, asset.mtime, asset.n_segments = failure.size, failure.mtime, 0
                asset.analysis_key, asset.indexed_at = self.key, time.time()
            for asset_id in removed_asset_ids:
                asset = s.get(Asset, asset_id)
                if asset is None:
                    continue
                old_segment_ids += self._drop_segments(s, asset_id)
                if asset.frames_file:
                    old_frame_files.append(asset.frames_file)
                s.delete(asset)
                touched_assets.append(asset_id)
                file_vectors[asset_id] = None
        # The DB has committed: bring the stores in line.
        segments, files = lib.store("segments"), lib.store("files")
        if old_segment_ids:
            segments.remove(np.asarray(old_segment_ids, np.int64))
        for ids, vectors in new_segments:
            segments.add(ids, vectors)
        if touched_assets:
            files.remove(np.asarray(touched_assets, np.int64))
            keep = [(a, v) for a, v in file_vectors.items() if v is not None]
            if keep:
                files.add(np.asarray([a for a, _ in keep], np.int64), np.stack([v for _, v in keep]))
        for rel in old_frame_files:
            (lib.folder / rel).unlink(missing_ok=True)
        self._dirty = True

    @staticmethod
    def _drop_segments(s, asset_id: int) -> list[int]:
        ids = list(s.scalars(select(Segment.id).where(Segment.asset_id == asset_id)))
        if ids:
            s.execute(delete(Segment).where(Segment.asset_id == asset_id))
        return ids

    def save(self) -> None:
        """Save the stores if anything changed since the last save (atomic per store)."""
        if self._dirty:
            try:
                self.library.save_stores()
            except OSError as exc:
                raise LibraryError(f"cannot save the vector store in {self.library.folder}: "
                                   f"{exc.strerror or exc}") from exc
            self._dirty = False

    # -- agreement between DB and stores ---------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Make both stores hold exactly the vectors the DB says they should; returns what changed."""
        lib = self.library
        changes = {}
        with lib.Session() as s:
            seg_ids = np.fromiter(s.scalars(select(Segment.id)), np.int64)
            file_ids = np.fromiter(s.scalars(select(Asset.id).where(Asset.status == STATUS_INDEXED,
                                                                      Asset.embedding.is_not(None))), np.int64)
        for name, db_ids, column, owner in (("segments", seg_ids, Segment.embedding, Segment.id),
                                            ("files", file_ids, Asset.embedding, Asset.id)):
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


def _fill_asset(asset: Asset, result: Analysis, key: str) -> None:
    asset.status, asset.error = STATUS_INDEXED, None
    for field in ("size", "mtime", "fingerprint", "format", "subtype", "sample_rate", "channels", "duration",
                  "avg_loudness", "peak_db", "centroid"):
        setattr(asset, field, getattr(result, field))
    asset.analysis_key = key
    asset.indexed_at = time.time()
