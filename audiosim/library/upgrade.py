"""Move a library made by an older audiosim to the current analysis, keeping everything it holds.

A library records the :class:`~audiosim.config.AnalysisParams` it was made with. When this version
analyses differently (``ANALYSIS_VERSION``: what the frames hold; ``EMBEDDING_VERSION``: how vectors are
made from them), :func:`upgrade_library`:

1. records the new parameters in one transaction (so the upgrade has begun, and a rerun resumes it);
2. sets aside vector stores of the old dimension (the DB, not the store, is the commit point);
3. re-derives each asset: **from its stored frames, without decoding**, when they hold everything the new
   embedding needs; otherwise (frames from before version 2 lack the low-frequency profile) by analysing
   the audio again, in worker processes, with progress;
4. commits assets in batches through the single writer, exactly as indexing does: a kill at any moment
   keeps every asset either as it was or upgraded, and running the upgrade again goes on from there.

An asset whose file is no longer on disk keeps its old data (not searchable) and is reported; it is
upgraded once the file is back.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time

from sqlalchemy import select

from audiosim.analysis import Analysis, features_from_frames
from audiosim.config import AnalysisParams, analysis_key
from audiosim.library.db import Library
from audiosim.library.frames import OldFramesError, load_stored_frames
from audiosim.library.models import STATUS_INDEXED, Asset
from audiosim.tasks import NullState, TaskState

# Kept from the old library: the user's choice of analysis, not a property of the code. The frame fields
# among them never change in an upgrade, so stored frames serve whenever their format holds what the new
# embedding needs (load_stored_frames refuses those that do not).
FRAME_FIELDS = ("sample_rate", "n_mfcc", "n_mels", "n_fft", "hop_length", "fmin", "fmax")
KEPT_FIELDS = FRAME_FIELDS + ("segment_seconds", "segment_hop_seconds")
COMMIT_EVERY = 64


@dataclasses.dataclass
class UpgradeReport:
    from_frames: int = 0
    decoded: int = 0
    missing: list[str] = dataclasses.field(default_factory=list)
    failed: list[dict] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False

    def to_json(self) -> dict:
        return {"from_frames": self.from_frames, "decoded": self.decoded, "missing": self.missing,
                "failed": self.failed, "seconds": round(self.seconds, 3)}


def upgraded_params(old: AnalysisParams) -> AnalysisParams:
    """The current analysis with the old library's own choices (rates, sizes, segment length) kept."""
    return dataclasses.replace(AnalysisParams(), **{f: getattr(old, f) for f in KEPT_FIELDS})


def _pending(library: Library):
    """Indexed assets not yet analysed under the library's current parameters (a select)."""
    return select(Asset).where(Asset.status == STATUS_INDEXED, Asset.analysis_key != analysis_key(library.params))


def pending_assets(library: Library) -> list[Asset]:
    with library.Session() as s:
        return list(s.scalars(_pending(library).order_by(Asset.id)))


def needs_upgrade(library: Library) -> bool:
    """Cheap enough for every index run and every window open: one row at most is read."""
    if upgraded_params(library.params) != library.params:
        return True
    with library.Session() as s:
        return s.scalars(_pending(library).limit(1)).first() is not None


def upgrade_library(library: Library, *, workers: int | None = None,
                    state: TaskState | None = None) -> UpgradeReport:
    """Bring a writable library to the current analysis; see the module docstring."""
    from audiosim.indexer import _Pool

    state = state or NullState()
    started = time.perf_counter()
    report = UpgradeReport()
    old = library.params
    new = upgraded_params(old)
    if new != old:
        library.set_meta("analysis_params", new.to_json())  # one row, one transaction: the upgrade has begun
        library.params = new
    pending = pending_assets(library)
    if not pending:
        return report
    # Workers start before the stores are opened: forking after a BLAS pool exists is unsafe.
    pool = _Pool(max(1, workers or os.cpu_count() or 1), new)
    try:
        _upgrade(library, pending, pool, state, report)
    finally:
        pool.close(cancelled=state.cancelled)
    report.cancelled = state.cancelled
    report.seconds = time.perf_counter() - started
    return report


def _upgrade(library: Library, pending: list[Asset], pool, state: TaskState, report: UpgradeReport) -> None:
    from audiosim.indexer import IndexReport, _Job, _run_jobs
    from audiosim.library.writer import LibraryWriter

    for name in ("segments", "files"):
        library.discard_store_if_other_dim(name)
    new = library.params
    state.set_status(f"upgrading {len(pending)} files to analysis version {new.version}")
    writer = LibraryWriter(library)
    writer.reconcile()
    to_decode: list[Asset] = []
    batch: list[Analysis] = []
    for done, asset in enumerate(pending, 1):
        if state.cancelled:
            break
        analysis = _from_frames(library, asset)
        if analysis is not None:
            batch.append(analysis)
            report.from_frames += 1
        elif os.path.isfile(asset.path):
            to_decode.append(asset)
        else:
            report.missing.append(asset.path)
        if len(batch) >= COMMIT_EVERY:
            writer.commit(batch)
            batch = []
        state.set_progress(done, len(pending) + len(to_decode))
    if batch:
        writer.commit(batch)
    if to_decode and not state.cancelled:
        index_report = IndexReport()
        _run_jobs(pool, [_Job(a.path, new) for a in to_decode], writer, index_report, state, new)
        report.decoded = index_report.indexed
        report.failed = index_report.failed
    writer.save()


def _from_frames(library: Library, asset: Asset) -> Analysis | None:
    """The asset re-derived from its stored frames, or None when they cannot serve (old format, gone)."""
    if not asset.frames_file:
        return None
    try:
        frames, _ = load_stored_frames(library.folder, asset.frames_file, library.frames_db)
    except (OldFramesError, OSError, KeyError, ValueError, sqlite3.Error):
        return None
    windows, segment_vectors, file_vector = features_from_frames(frames, library.params)
    return Analysis(
        path=asset.path, size=asset.size, mtime=asset.mtime, fingerprint=asset.fingerprint,
        format=asset.format, subtype=asset.subtype, sample_rate=asset.sample_rate, channels=asset.channels,
        duration=asset.duration, avg_loudness=asset.avg_loudness, peak_db=asset.peak_db,
        centroid=asset.centroid, frames=frames, windows=windows, segment_vectors=segment_vectors,
        file_vector=file_vector)
