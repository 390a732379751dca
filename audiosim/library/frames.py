"""Per-asset frame files: every MFCC frame with its RMS, low-frequency profile and timestamp, one ``.npy``
record array. Files written before analysis version 2 have no ``low`` field.

A record array in a plain ``.npy`` costs one open and one write (an ``.npz`` is a zip: several times
slower per file, which matters when the writer keeps up with hundreds of short files a second). The
file name carries a random token and is written before the DB commit that refers to it, so a crash
leaves at worst an unreferenced file, which ``verify --repair`` removes.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from audiosim.config import AnalysisParams
from audiosim.features.mfcc import N_LOW_BANDS, Frames, frame_times


def frames_dtype(n_mfcc: int) -> np.dtype:
    return np.dtype([("time", "<f4"), ("rms_db", "<f2"), ("mfcc", "<f2", (n_mfcc,)),
                     ("low", "<f2", (N_LOW_BANDS,))])


def frames_path(library_folder: Path, asset_id: int, token: str) -> Path:
    return library_folder / "frames" / f"{asset_id % 256:02x}" / f"{asset_id}-{token}.npy"


_WRITE_FRAMES = 1 << 16  # records built and written this many at a time: a 2 h file's are 19 MB


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
            part = frames[start:start + _WRITE_FRAMES]
            records = np.empty(len(part), dtype)
            records["time"] = times[start:start + _WRITE_FRAMES]
            records["rms_db"] = part.rms_db
            records["mfcc"] = part.mfcc
            records["low"] = part.low
            f.write(records.data)


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
    """(frames, centre times [shape=(n,)] float32). Raises :class:`OldFramesError` for a version-1 file."""
    records = _read_records(path)
    if "low" not in records.dtype.names:
        raise OldFramesError(f"{path} holds version-1 frames (no low-frequency profile)")
    return Frames(records["mfcc"], records["rms_db"], records["low"]), records["time"]


def unreferenced_frame_files(library_folder: Path, referenced: set[str]) -> list[Path]:
    """Files under ``frames/`` that no asset refers to (``referenced`` holds library-relative paths)."""
    frames_dir = library_folder / "frames"
    if not frames_dir.exists():
        return []
    return [p for p in frames_dir.rglob("*")
            if p.is_file() and str(p.relative_to(library_folder)) not in referenced]
