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
from audiosim.features.embedding import embed_windows, file_embedding
from audiosim.features.mfcc import FrameBatch, Frames, MfccStream
from audiosim.features.segments import segment_windows

_FINGERPRINT_CHUNK = 1 << 16
_CENTROID_FLOOR_DB = -60.0  # the mean spectral centroid (a filterable descriptor) ignores quieter frames


@dataclasses.dataclass
class Analysis:
    """Everything the library stores about one file.

    frames : the stored frames (float16), frame n centred at ``n * hop / sr`` seconds
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
    frames: Frames
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


class _FrameCollector:
    """Keeps frames at their stored precision (float16) as they stream in, and a running centroid mean,
    so a long file's frames cost 60 bytes each and nothing else grows with its length."""

    def __init__(self, params: AnalysisParams) -> None:
        self.params = params
        self._parts: list[Frames] = []
        self._centroid_sum = 0.0
        self._centroid_count = 0

    def add(self, batch: FrameBatch) -> None:
        self._parts.append(Frames.stored(batch))
        measured = batch.centroid[(batch.rms_db >= _CENTROID_FLOOR_DB) & ~np.isnan(batch.centroid)]
        self._centroid_sum += float(measured.sum(dtype=np.float64))
        self._centroid_count += len(measured)

    @property
    def centroid(self) -> float | None:
        return self._centroid_sum / self._centroid_count if self._centroid_count else None

    def frames(self) -> Frames:
        return Frames.concat(self._parts, self.params.n_mfcc)


def features_from_frames(frames: Frames, params: AnalysisParams
                         ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray | None]:
    """Segments and vectors derived from the frames *as stored* (float16), so a query that reads the
    stored frames back gets exactly the indexed vectors."""
    windows = segment_windows(frames.rms_db, params)
    return windows, embed_windows(frames, windows, params), file_embedding(frames, params)


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
        collector = _FrameCollector(params)
        n_samples = 0
        for block in stream.blocks():
            n_samples += len(block)
            meter.process(block)
            collector.add(mfcc_stream.process(resampler.process(block)))
        collector.add(mfcc_stream.process(resampler.flush()))
        collector.add(mfcc_stream.flush())
    if n_samples == 0:
        from audiosim.errors import DecodeError

        raise DecodeError("0 audio frames")
    frames = collector.frames()
    windows, segment_vectors, file_vector = features_from_frames(frames, params)
    return Analysis(
        path=path, size=st.st_size, mtime=st.st_mtime, fingerprint=fingerprint,
        format=info.format, subtype=info.subtype, sample_rate=info.sample_rate, channels=info.channels,
        duration=n_samples / info.sample_rate,
        avg_loudness=_finite_or_none(meter.integrated()), peak_db=_finite_or_none(meter.peak_db),
        centroid=collector.centroid, frames=frames, windows=windows,
        segment_vectors=segment_vectors, file_vector=file_vector,
        seconds=time.perf_counter() - started,
    )


def analyze_signal(mono: np.ndarray, params: AnalysisParams) -> Frames:
    """The stored-precision frames of a mono clip already at the analysis rate.

    Non-finite or absurd samples (a broken input device, a float file with NaNs) are zeroed / clipped so
    that they cannot turn a query's features into NaN.
    """
    mono = np.clip(np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0), -1e3, 1e3)
    stream = MfccStream(params)
    return Frames.stored(FrameBatch.concat([stream.process(mono), stream.flush()], params.n_mfcc))
