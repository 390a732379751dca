"""Stored frames: every MFCC frame of an asset with its RMS, low-frequency profile and timestamp, as one
record array (:func:`frames_dtype`). Files written before analysis version 2 have no ``low`` field.

Where an asset's frames are is its ``frames_file`` key:

* ``frames.db:<id>`` — a row of ``frames.db``, one SQLite file in the library folder holding the frames of
  every file up to :data:`INLINE_MAX_FRAMES` frames (6 min): a drum library is thousands of tiny records,
  and creating a file costs far more than writing its 2 KB (1,776 one-shots: 1.5 CPU-s of the writer's
  time in file creation, ~0.2 s in rows);
* ``frames/<xx>/<asset id>-<token>.npy`` — a ``.npy`` of its own for a longer file (written in steps, so
  memory stays flat for a 2 h file's 19 MB), and for every asset of a library made before ``frames.db``.

Both are written before the DB commit that refers to them, under a key never used before (row ids are not
reused; file names carry a random token), so a crash leaves at worst unreferenced frames, which
``verify --repair`` removes. Frames are never rewritten in place: a new analysis gets a new key.
"""

from __future__ import annotations

import contextlib
import io
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from audiosim.config import AnalysisParams
from audiosim.features.mfcc import N_LOW_BANDS, Frames, frame_times
from audiosim.library.location import read_only_sqlite_uri


def frames_dtype(n_mfcc: int) -> np.dtype:
    return np.dtype([("time", "<f4"), ("rms_db", "<f2"), ("mfcc", "<f2", (n_mfcc,)),
                     ("low", "<f2", (N_LOW_BANDS,))])


def frames_path(library_folder: Path, asset_id: int, token: str) -> Path:
    return library_folder / "frames" / f"{asset_id % 256:02x}" / f"{asset_id}-{token}.npy"


_WRITE_FRAMES = 1 << 16  # records built and written this many at a time: a 2 h file's are 19 MB
INLINE_MAX_FRAMES = 1 << 14  # frames of files up to 6 min 20 s (≤ 1 MB) go into frames.db
FRAMES_DB = "frames.db"
INLINE_PREFIX = f"{FRAMES_DB}:"


def is_inline(key: str) -> bool:
    """Whether a ``frames_file`` key names a row of ``frames.db`` (else a file under the library folder)."""
    return key.startswith(INLINE_PREFIX)


def _records(frames: Frames, times: np.ndarray) -> np.ndarray:
    records = np.empty(len(frames), frames_dtype(frames.mfcc.shape[1]))
    records["time"] = times
    records["rms_db"] = frames.rms_db
    records["mfcc"] = frames.mfcc
    records["low"] = frames.low
    return records


def save_frames(path: Path, frames: Frames, params: AnalysisParams) -> None:
    """Write stored-precision frames with their centre times (the bytes ``np.save`` writes)."""
    dtype = frames_dtype(frames.mfcc.shape[1])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": (len(frames),)})
    times = frame_times(len(frames), params)
    # Plain writes: a full disk then raises ENOSPC ("No space left on device"), where numpy's own file
    # writer only says how many bytes it could not write.
    with open(path, "wb") as f:
        f.write(header.getbuffer())
        for start in range(0, len(frames), _WRITE_FRAMES):
            stop = start + _WRITE_FRAMES
            f.write(_records(frames[start:stop], times[start:stop]).data)


class FramesDB:
    """``frames.db``: the frames of short files, one row each (``id``, ``n_mfcc``, records as a blob).

    Opened on first use; one connection shared by the threads of a process (calls are serialised here).
    WAL, as ``library.db``: readers never block the single writer. A reader on a read-only file system
    opens it as immutable."""

    def __init__(self, folder: Path, *, writable: bool) -> None:
        self.path = Path(folder) / FRAMES_DB
        self.writable = writable
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection | None:
        """The connection, or None when a reader finds no frames.db (a library made before it)."""
        if self._conn is None:
            if self.writable:
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("CREATE TABLE IF NOT EXISTS frames (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "n_mfcc INTEGER NOT NULL, data BLOB NOT NULL)")
            else:
                if not self.path.exists():
                    return None
                conn = sqlite3.connect(read_only_sqlite_uri(self.path), uri=True, check_same_thread=False,
                                       timeout=30)
            conn.execute("PRAGMA busy_timeout=30000")
            self._conn = conn
        return self._conn

    def put(self, batch: list[Frames], params: AnalysisParams) -> list[str]:
        """Store each block of frames in one transaction; their keys, in order."""
        if not batch:
            return []
        rows = [(f.mfcc.shape[1], _records(f, frame_times(len(f), params)).tobytes()) for f in batch]
        with self._transaction() as conn:
            ids = [conn.execute("INSERT INTO frames (n_mfcc, data) VALUES (?, ?)", row).lastrowid for row in rows]
        return [f"{INLINE_PREFIX}{i}" for i in ids]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                    conn.execute("ROLLBACK")
                raise

    def records(self, key: str) -> np.ndarray:
        """The record array under ``key`` (read-only). Raises KeyError when there is none."""
        with self._lock:
            conn = self._connection()
            row = None if conn is None else conn.execute(
                "SELECT n_mfcc, data FROM frames WHERE id = ?", (_row_id(key),)).fetchone()
        if row is None:
            raise KeyError(key)
        return np.frombuffer(row[1], frames_dtype(row[0]))

    def delete(self, keys: list[str]) -> None:
        ids = [(_row_id(k),) for k in keys]
        if not ids:
            return
        with self._transaction() as conn:
            conn.executemany("DELETE FROM frames WHERE id = ?", ids)

    def keys(self) -> set[str]:
        """Every key stored."""
        with self._lock:
            conn = self._connection()
            ids = [] if conn is None else conn.execute("SELECT id FROM frames").fetchall()
        return {f"{INLINE_PREFIX}{i}" for (i,) in ids}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _row_id(key: str) -> int:
    try:
        return int(key[len(INLINE_PREFIX):])
    except ValueError:
        raise KeyError(key) from None


class OldFramesError(ValueError):
    """A frame file from before analysis version 2 (no low-frequency profile): the audio must be re-read."""


_NPY_V1 = b"\x93NUMPY\x01\x00"
_SHAPE = re.compile(rb"'shape': \((\d+),\)")
_HEADERS: dict[bytes, np.dtype | None] = {}  # header without its shape -> dtype (None: use np.load)


def _read_records(path: Path) -> np.ndarray:
    """A frame file's record array (read-only). ``np.load`` parses each header with ``ast.literal_eval``,
    which costs more than reading a one-shot's frames; every frame file of a library has the same header
    but for its length, so the header is parsed once per layout and the records are read in one call."""
    with open(path, "rb") as f:
        data = f.read()
    match = _SHAPE.search(data, 10, 10 + 256) if data[:8] == _NPY_V1 else None
    if match is not None:
        end = 10 + int.from_bytes(data[8:10], "little")
        key = data[10:match.start()] + data[match.end():end]
        if key not in _HEADERS:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(io.BytesIO(data[8:]))
            _HEADERS[key] = dtype if not fortran and not dtype.hasobject and len(shape) == 1 else None
        dtype = _HEADERS[key]
        if dtype is not None:
            count = int(match.group(1))
            if len(data) - end >= count * dtype.itemsize:
                return np.frombuffer(data, dtype, count=count, offset=end)
    return np.load(io.BytesIO(data), allow_pickle=False)


def load_frames(path: Path) -> tuple[Frames, np.ndarray]:
    """(frames, centre times [shape=(n,)] float32) of a frame file. Raises :class:`OldFramesError` for a
    version-1 file."""
    return _frames_of(_read_records(path), path)


def load_stored_frames(folder: Path, key: str, frames_db: FramesDB) -> tuple[Frames, np.ndarray]:
    """The frames under an asset's ``frames_file`` key, wherever they are (see the module docstring).
    Raises KeyError or OSError when they are gone, :class:`OldFramesError` for version-1 frames."""
    if is_inline(key):
        return _frames_of(frames_db.records(key), key)
    return load_frames(folder / key)


def _frames_of(records: np.ndarray, where) -> tuple[Frames, np.ndarray]:
    if "low" not in records.dtype.names:
        raise OldFramesError(f"{where} holds version-1 frames (no low-frequency profile)")
    return Frames(records["mfcc"], records["rms_db"], records["low"]), records["time"]


def unreferenced_frame_files(library_folder: Path, referenced: set[str]) -> list[Path]:
    """Files under ``frames/`` that no asset refers to (``referenced`` holds library-relative paths)."""
    frames_dir = library_folder / "frames"
    if not frames_dir.exists():
        return []
    return [p for p in frames_dir.rglob("*")
            if p.is_file() and str(p.relative_to(library_folder)) not in referenced]


def unreferenced_frames(library_folder: Path, frames_db: FramesDB, referenced: set[str]) -> list[str]:
    """Keys of stored frames no asset refers to: rows of ``frames.db`` and files (library-relative)."""
    rows = sorted(frames_db.keys() - referenced, key=_row_id)
    files = [str(p.relative_to(library_folder)) for p in unreferenced_frame_files(library_folder, referenced)]
    return rows + files


def delete_frames(library_folder: Path, frames_db: FramesDB, keys: list[str]) -> None:
    """Delete stored frames by key (rows in one transaction; files one by one, gone ones ignored)."""
    frames_db.delete([k for k in keys if is_inline(k)])
    for key in keys:
        if not is_inline(key):
            (library_folder / key).unlink(missing_ok=True)
