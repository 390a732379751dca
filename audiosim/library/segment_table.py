"""Every segment's asset and start by id, held in memory for a library's queries.

A query looks up the few hundred segment ids the vector store returned. At a million segments an SQL
``IN (...)`` for them costs milliseconds (measured: 11 ms for 216 ids), a binary search in sorted arrays
a tenth of one; the arrays cost 36 bytes a segment. Each row also holds what a query needs of the asset
before it knows which are results: its duration and its number of segments. Neither changes while the
segment exists: every writer that changes an asset's analysis replaces all its segments, under new ids,
in the same transaction (``LibraryWriter.commit``), so an asset's segments are its rows here.

The table follows the database. Before each use it reads SQLite's ``PRAGMA data_version``, a counter that
changes whenever another connection (another process, or this one's writer) has committed; a reader may be
open while a writer commits. After a change it reads what changed, in one read transaction: segment ids
are never reused and a segment row is never updated, so if the table still has as many rows as it had
plus those above the highest id it held, none has gone and the rows above are the new ones; otherwise it
reads the whole table again. A segment whose deletion was committed is therefore never returned, and one
committed before a lookup is always found. The whole table is read from covering indexes (segments by
asset and start, assets by duration), not from the table pages that hold the vectors: ~1 s at a million
segments.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable

import numpy as np

_SEGMENT = np.dtype([("id", np.int64), ("asset_id", np.int64), ("start", np.float64)])
_ASSET = np.dtype([("id", np.int64), ("duration", np.float64)])


@dataclasses.dataclass(frozen=True)
class SegmentRows:
    """Segments sorted by id: ``ids``, ``asset_ids`` (int64), ``starts`` (float64 seconds), and their
    assets' ``asset_durations`` (seconds, 0 if unknown) and ``asset_segments`` (how many it has, int32)."""

    ids: np.ndarray
    asset_ids: np.ndarray
    starts: np.ndarray
    asset_durations: np.ndarray
    asset_segments: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each of ``ids`` is in this table: ``(found, rows)``, both shaped like ``ids``; ``rows`` is
        only meaningful where ``found``."""
        ids = np.asarray(ids, np.int64)
        if len(self.ids) == 0:
            return np.zeros(ids.shape, bool), np.zeros(ids.shape, np.intp)
        # Sorted, distinct keys: numpy's binary search starts each from where the previous one ended, and the
        # hits of a query's windows repeat (measured at 1M segments, 4,600 ids: 3.1 -> 0.4 ms).
        keys, inverse = np.unique(ids, return_inverse=True)
        rows = np.minimum(np.searchsorted(self.ids, keys), len(self.ids) - 1)[inverse.reshape(ids.shape)]
        return self.ids[rows] == ids, rows

    def __add__(self, other: SegmentRows) -> SegmentRows:
        return SegmentRows(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                             for f in dataclasses.fields(self)))


def segment_rows(ids: np.ndarray, asset_ids: np.ndarray, starts: np.ndarray, asset_durations: np.ndarray,
                 asset_segments: np.ndarray | None = None) -> SegmentRows:
    """A table of these segments, sorted by id; ``asset_segments`` counted among them when not given."""
    order = np.argsort(ids, kind="stable")
    asset_ids = np.asarray(asset_ids, np.int64)[order]
    if asset_segments is None:
        _, inverse, counts = np.unique(asset_ids, return_inverse=True, return_counts=True)
        asset_segments = counts[inverse]
    else:
        asset_segments = np.asarray(asset_segments)[order]
    return SegmentRows(np.asarray(ids, np.int64)[order], asset_ids, np.asarray(starts, np.float64)[order],
                       np.asarray(asset_durations, np.float64)[order], asset_segments.astype(np.int32))


EMPTY = segment_rows(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0))


def _read_all(conn: sqlite3.Connection) -> SegmentRows:
    segments = np.fromiter(conn.execute("SELECT id, asset_id, start FROM segments"), _SEGMENT)
    assets = np.fromiter(conn.execute("SELECT id, coalesce(duration, 0.0) FROM assets"), _ASSET)
    assets.sort(order="id")
    at = np.minimum(np.searchsorted(assets["id"], segments["asset_id"]), max(len(assets) - 1, 0))
    durations = assets["duration"][at] if len(assets) else np.zeros(len(segments))
    return segment_rows(segments["id"], segments["asset_id"], segments["start"], durations)


def _read_above(conn: sqlite3.Connection, top: int) -> SegmentRows:
    """The segments with ids above ``top``: whole assets (an asset's segments are committed together)."""
    rows = conn.execute("SELECT s.id, s.asset_id, s.start, coalesce(a.duration, 0.0) FROM segments s "
                        "JOIN assets a ON a.id = s.asset_id WHERE s.id > ? ORDER BY s.id", (top,)).fetchall()
    if not rows:
        return EMPTY
    ids, asset_ids, starts, durations = zip(*rows)
    return segment_rows(np.array(ids), np.array(asset_ids), np.array(starts), np.array(durations))


class SegmentTable:
    """The segments of one SQLite database, kept current (see the module docstring); thread-safe.

    Parameters
    ----------
    connect : opens a new read-only connection to the database (used by this table alone, so that
        ``PRAGMA data_version`` counts every commit of every other connection)
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._version: int | None = None
        self._rows = EMPTY
        self.reloads = 0  # how many times the whole table was read (tests, benchmarks)

    def current(self) -> SegmentRows:
        """The table as of now: every segment committed before this call, none deleted before it."""
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
                self._conn.isolation_level = None  # transactions below are explicit
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                # Read after the counter: a commit between the two makes the next call look again.
                self._rows = self._refresh(self._rows)
                self._version = version
            return self._rows

    def _refresh(self, old: SegmentRows) -> SegmentRows:
        conn = self._conn
        conn.execute("BEGIN")  # one snapshot for the check and the reads
        try:
            if len(old):
                new = _read_above(conn, int(old.ids[-1]))
                total = conn.execute("SELECT count(*) FROM segments").fetchone()[0]
                if total == len(old) + len(new):  # none of the old rows is gone
                    return old + new if len(new) else old
            self.reloads += 1
            return _read_all(conn)
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._version, self._rows = None, EMPTY
