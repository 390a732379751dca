"""Analyse one file: decode in blocks → descriptors, MFCC frames, segment and file embeddings.

This is what an indexing worker process runs. It touches neither the database nor the vector store;
its result is a plain picklable object that the single writer commits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time

import numpy as np

from audiosim.config import AnalysisParams
from audiosim.features.mfcc import FrameBatch, MfccStream
from audiosim.features.segments import embed_windows, file_embedding, segment_windows

_FINGERPRINT_CHUNK = 1 << 16


@dataclasses.dataclass
class Analysis:
    """Everything the library stores about one file.

    mfcc : [shape=(n_frames, n_mfcc)] float16, frame n centred at ``n * hop / sr`` seconds
    rms_db : [shape=(n_frames,)] float16
    windows : frame ranges ``[start, stop)`` of the segments
    segment_vectors : [shape=(n_segments, dim)] float32
    """

    path: str
    size: int
    mtime: float
    fingerprint: str
    format: str
    subtype: str | None
    sample_rate: int
    channels: int
    duration: float
    avg_loudness: float | None
    peak_db: float | None
    centroid: float | None
    mfcc: np.ndarray
    rms_db: np.ndarray
    windows: list[tuple[int, int]]
    segment_vectors: np.ndarray
    file_vector: np.ndarray | None
    seconds: float = 0.0

    def segment_times(self, params: AnalysisParams) -> list[tuple[float, float]]:
        return window_times(self.windows, self.duration, params)


def window_times(windows: list[tuple[int, int]], duration: float,
                 params: AnalysisParams) -> list[tuple[float, float]]:
    fs = params.frame_seconds
    return [(round(s * fs, 4), round(min(e * fs, duration), 4)) for s, e in windows]


def fingerprint_file(path: str | os.PathLike, size: int) -> str:
    """A cheap content fingerprint: size + head, middle and tail bytes (change detection, not security)."""
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        digest.update(f.read(_FINGERPRINT_CHUNK))
        if size > 3 * _FINGERPRINT_CHUNK:
            f.seek(size // 2)
            digest.update(f.read(_FINGERPRINT_CHUNK))
        if size > _FINGERPRINT_CHUNK:
            f.seek(max(size - _FINGERPRINT_CHUNK, 0))
            digest.update(f.read(_FINGERPRINT_CHUNK))
    return digest.hexdigest()


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def features_from_frames(frames: FrameBatch, params: AnalysisParams
                         ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], np.ndarray, np.ndarray | None]:
    """Round the frames to their stored precision, then derive segments and vectors from what is stored,
    so a query that reads the stored frames back gets exactly the indexed vectors."""
    mfcc = frames.mfcc.astype(np.float16)
    rms_db = frames.rms_db.astype(np.float16)
    stored = mfcc.astype(np.float32)
    windows = segment_windows(rms_db, params)
    return mfcc, rms_db, windows, embed_windows(stored, windows), file_embedding(stored, rms_db, params)


def analyze_file(path: str | os.PathLike, params: AnalysisParams) -> Analysis:
    """Analyse a file in bounded memory. Raises :class:`audiosim.errors.DecodeError` when unreadable."""
    from audiosim.audio.decode import MonoResampler, open_audio
    from audiosim.audio.loudness import LoudnessMeter

    started = time.perf_counter()
    path = str(path)
    with open_audio(path) as stream:
        info = stream.info
        st = os.stat(path)
        fingerprint = fingerprint_file(path, st.st_size)
        resampler = MonoResampler(info.sample_rate, params.sample_rate, info.channels)
        meter = LoudnessMeter(info.sample_rate, info.channels)
        mfcc_stream = MfccStream(params)
        batches: list[FrameBatch] = []
        n_samples = 0
        for block in stream.blocks():
            n_samples += len(block)
            meter.process(block)
            batches.append(mfcc_stream.process(resampler.process(block)))
        batches.append(mfcc_stream.process(resampler.flush()))
        batches.append(mfcc_stream.flush())
    if n_samples == 0:
        from audiosim.errors import DecodeError

        raise DecodeError("0 audio frames")
    frames = FrameBatch.concat(batches, params.n_mfcc)
    mfcc, rms_db, windows, segment_vectors, file_vector = features_from_frames(frames, params)
    loud = frames.rms_db >= params.silence_db
    measured = frames.centroid[loud & ~np.isnan(frames.centroid)]
    centroid = float(measured.mean()) if len(measured) else None
    return Analysis(
        path=path, size=st.st_size, mtime=st.st_mtime, fingerprint=fingerprint,
        format=info.format, subtype=info.subtype, sample_rate=info.sample_rate, channels=info.channels,
        duration=n_samples / info.sample_rate,
        avg_loudness=_finite_or_none(meter.integrated()), peak_db=_finite_or_none(meter.peak_db),
        centroid=centroid, mfcc=mfcc, rms_db=rms_db, windows=windows,
        segment_vectors=segment_vectors, file_vector=file_vector,
        seconds=time.perf_counter() - started,
    )


def analyze_signal(mono: np.ndarray, params: AnalysisParams) -> tuple[np.ndarray, np.ndarray]:
    """MFCC frames (float16) and RMS (float16) of a mono clip already at the analysis rate."""
    stream = MfccStream(params)
    frames = FrameBatch.concat([stream.process(mono), stream.flush()], params.n_mfcc)
    return frames.mfcc.astype(np.float16), frames.rms_db.astype(np.float16)
