"""Analyse one file: decode in blocks → descriptors, MFCC frames, segment and file embeddings.

This is what an indexing worker process runs. It touches neither the database nor the vector store;
its result is a plain picklable object that the single writer commits.

A long file is analysed in parts of ``PART_SECONDS`` (:func:`plan_parts`), so that several workers share
it: each part decodes from ``PREROLL_SECONDS`` before its start (the resampler, the STFT windows and the
K-weighting filter then hold what a single pass would hold there) and produces that stretch's frames and
per-100 ms loudness sums; :func:`assemble` joins them and computes segments and embeddings over the
joined frames. The parts depend on the file's length only, never on the number of workers, so a file
gets the same vectors from any pool or cluster. Their frames equal a single pass's to float16 storage
precision (the resampler's rounding differs in the last bits near where a part's stream began).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from typing import TYPE_CHECKING

import numpy as np

from audiosim.config import AnalysisParams
from audiosim.features.embedding import LONGEST_BLOCK_FRAMES, Blocks, embed_windows, file_embedding, is_silent, \
    raw_descriptors, raw_file_descriptor, transform
from audiosim.features.mfcc import FrameBatch, Frames, MfccStream
from audiosim.features.segments import segment_windows

if TYPE_CHECKING:
    from audiosim.audio.loudness import Loudness

_FINGERPRINT_CHUNK = 1 << 16
_EMBED_TOGETHER_MAX_WINDOWS = 256  # longer files are embedded on their own, in steps (memory stays flat)
_CENTROID_FLOOR_DB = -60.0  # the mean spectral centroid (a filterable descriptor) ignores quieter frames

PART_SECONDS = 60  # a long file is analysed in parts of this length (whole seconds: see plan_parts)
SPLIT_FROM_SECONDS = 2 * PART_SECONDS  # shorter files are one job
PREROLL_SECONDS = 1  # decoded before (and after) a part: far more than the filters remember (< 0.1 s)
_SPLIT_PROBE_BYTES = SPLIT_FROM_SECONDS * 8000  # smaller files are shorter (at 64 kbit/s or more): not opened


@dataclasses.dataclass
class Failure:
    """A file that could not be analysed, and why (committed as a failed asset)."""

    path: str
    error: str
    size: int | None = None
    mtime: float | None = None


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
        self.centroid_sum = 0.0
        self.centroid_count = 0

    def add(self, batch: FrameBatch) -> None:
        if len(batch.rms_db) == 0:
            return
        self._parts.append(Frames.stored(batch))
        measured = batch.centroid[(batch.rms_db >= _CENTROID_FLOOR_DB) & ~np.isnan(batch.centroid)]
        self.centroid_sum += float(measured.sum(dtype=np.float64))
        self.centroid_count += len(measured)

    @property
    def centroid(self) -> float | None:
        return self.centroid_sum / self.centroid_count if self.centroid_count else None

    def frames(self) -> Frames:
        return Frames.concat(self._parts, self.params.n_mfcc)


def features_from_frames(frames: Frames, params: AnalysisParams
                         ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray | None]:
    """Segments and vectors derived from the frames *as stored* (float16), so a query that reads the
    stored frames back gets exactly the indexed vectors."""
    windows = segment_windows(frames.rms_db, params)
    vectors = embed_windows(frames, windows, params)
    if windows == [(0, len(frames))]:
        # A file that is one segment (every one-shot under a second: half of a drum library) is described
        # by the same block of frames as that segment: its vector, not computed twice.
        return windows, vectors, vectors[0].copy()
    return windows, vectors, file_embedding(frames, params)


def embed_analyses(analyses: list[Analysis], params: AnalysisParams) -> None:
    """Give analyses made with ``embed=False`` their segment and file vectors, as
    :func:`features_from_frames` would: the same bits, from one pass of the descriptors over all their
    windows and whole files (:func:`~audiosim.features.embedding.raw_descriptors`: a block's numbers do not
    depend on what shares the pass) and one pass of the learned map (its 2.5 MB of constants are read from
    memory once for the batch instead of once a file; :meth:`~audiosim.features.embedding.Transform.apply`
    computes a row alike whatever shares the pass)."""
    parts: list[Blocks | np.ndarray] = []  # the rows in order: blocks to describe, or rows described apart
    together: list[tuple[Analysis, bool]] = []  # (analysis, whether a file-descriptor row follows its windows)
    for analysis in analyses:
        frames = analysis.frames
        if len(analysis.windows) > _EMBED_TOGETHER_MAX_WINDOWS:  # a long file: its own steps, memory flat
            _, analysis.segment_vectors, analysis.file_vector = features_from_frames(frames, params)
            continue
        parts.append(Blocks.of(frames, analysis.windows))
        # One segment over the whole file: the file's vector is that segment's (see features_from_frames).
        has_file_row = analysis.windows != [(0, len(frames))] and not is_silent(frames, params)
        if has_file_row:
            parts.append(Blocks.of(frames, [(0, len(frames))]) if len(frames) <= LONGEST_BLOCK_FRAMES
                         else raw_file_descriptor(frames, params)[None])
        together.append((analysis, has_file_row))
    if not together:
        return
    described = raw_descriptors(Blocks.join([p for p in parts if isinstance(p, Blocks)]), params)
    raw, at = [], 0
    for part in parts:
        if isinstance(part, Blocks):
            part, at = described[at:at + len(part)], at + len(part)
        raw.append(part)
    vectors = transform().apply(np.concatenate(raw))
    at = 0
    for analysis, has_file_row in together:
        n = len(analysis.windows)
        analysis.segment_vectors, at = vectors[at:at + n], at + n
        if has_file_row:
            analysis.file_vector, at = vectors[at], at + 1
        elif analysis.windows == [(0, len(analysis.frames))]:
            analysis.file_vector = analysis.segment_vectors[0].copy()


def analyze_file(path: str | os.PathLike, params: AnalysisParams, *, embed: bool = True) -> Analysis:
    """Analyse a file in bounded memory. Raises :class:`audiosim.errors.DecodeError` when unreadable.
    With ``embed=False`` its vectors are left to :func:`embed_analyses` (``segment_vectors`` is None)."""
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
            mono = resampler.process(block)
            if len(mono):  # a short file's only block is held back until the flush
                collector.add(mfcc_stream.process(mono))
        collector.add(mfcc_stream.finish(resampler.flush()))
    if n_samples == 0:
        from audiosim.errors import DecodeError

        raise DecodeError("0 audio frames")
    frames = collector.frames()
    if embed:
        windows, segment_vectors, file_vector = features_from_frames(frames, params)
    else:
        windows, segment_vectors, file_vector = segment_windows(frames.rms_db, params), None, None
    loudness = meter.measurement()
    return Analysis(
        path=path, size=st.st_size, mtime=st.st_mtime, fingerprint=fingerprint,
        format=info.format, subtype=info.subtype, sample_rate=info.sample_rate, channels=info.channels,
        duration=n_samples / info.sample_rate,
        avg_loudness=_finite_or_none(loudness.integrated()), peak_db=_finite_or_none(loudness.peak_db),
        centroid=collector.centroid, frames=frames, windows=windows,
        segment_vectors=segment_vectors, file_vector=file_vector,
        seconds=time.perf_counter() - started,
    )


# -- long files, in parts ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FilePart:
    """Part ``index`` of ``count`` of a long file: its samples from ``index * PART_SECONDS`` seconds on, up
    to the next part's start (the last part: to the end). ``identity`` is the file as planned: a part
    finds the file changed if it is not."""

    path: str
    index: int
    count: int
    sample_rate: int
    frames: int
    identity: tuple

    @property
    def start(self) -> int:
        return self.index * PART_SECONDS * self.sample_rate

    @property
    def stop(self) -> int | None:
        return None if self.index == self.count - 1 else self.start + PART_SECONDS * self.sample_rate


@dataclasses.dataclass
class PartAnalysis:
    """What a part contributes: its frames, centroid sums and loudness; part 0 also the file's facts.

    ``window_vectors`` [shape=(k, dim)] are the vectors of the windows on the file's segment grid that lie
    wholly in this part, ``window_starts`` their first frames in the file (windows that can never be
    segments, below ``silence_db``, are left out): computed in the worker, they are the same bits
    :func:`assemble` would compute from the joined frames.
    """

    part: FilePart
    format: str
    subtype: str | None
    channels: int
    frames: Frames
    centroid_sum: float
    centroid_count: int
    loudness: Loudness
    seconds: float
    size: int = 0
    mtime: float = 0.0
    fingerprint: str = ""
    window_starts: np.ndarray | None = None
    window_vectors: np.ndarray | None = None


def plan_parts(path: str) -> list[FilePart] | None:
    """The parts of a file long enough to share between workers and seekable to the sample (WAV, FLAC,
    Ogg…), or ``None``: it is analysed whole. Cheap for short files (a ``stat``)."""
    from audiosim.audio.decode import seekable_info

    try:
        if os.stat(path).st_size < _SPLIT_PROBE_BYTES:
            return None
    except OSError:
        return None  # the job reports it
    found = seekable_info(path)
    if found is None:
        return None
    info, identity = found
    count = info.frames // (PART_SECONDS * info.sample_rate)  # the last part takes the remainder
    if info.frames < SPLIT_FROM_SECONDS * info.sample_rate or count < 2:
        return None
    return [FilePart(path, i, count, info.sample_rate, info.frames, identity) for i in range(count)]


def _span(samples: np.ndarray, at: int, lo: int, hi: int | None) -> np.ndarray:
    """The samples of ``[lo, hi)`` (whole-signal indices) among ``samples``, which start at index ``at``."""
    end = len(samples) if hi is None else max(0, min(len(samples), hi - at))
    return samples[max(0, min(end, lo - at)):end]


def analyze_part(part: FilePart, params: AnalysisParams) -> PartAnalysis:
    """Frames, centroid sums and loudness of one part of a long file (see the module docstring)."""
    from audiosim.audio.decode import CHANGED, DAMAGED, MonoResampler, decode_error, open_audio
    from audiosim.audio.loudness import LoudnessMeter

    started = time.perf_counter()
    rate, out_rate, hop = part.sample_rate, params.sample_rate, params.hop_length
    start, stop = part.start, part.stop
    read_from = max(0, start - PREROLL_SECONDS * rate)  # whole seconds: read_from * out_rate / rate is exact
    read_to = None if stop is None else min(part.frames, stop + PREROLL_SECONDS * rate)
    first_frame = -(-(start * out_rate // rate) // hop)  # the first frame centred at or after the start
    last_frame = None if stop is None else -(-(stop * out_rate // rate) // hop)
    with open_audio(part.path) as stream:
        info = stream.info
        if (stream.identity != part.identity or not stream.seekable or info.frames != part.frames
                or info.sample_rate != rate):
            raise decode_error(part.path, CHANGED)
        resampler = MonoResampler(rate, out_rate, info.channels, hold_first=False)
        meter = LoudnessMeter(rate, info.channels, start=start)
        mfcc = MfccStream(params, start_frame=first_frame)
        # The samples the frames first_frame … last_frame - 1 are made of.
        need_to = None if last_frame is None else (last_frame - 1) * hop + params.n_fft // 2
        collector = _FrameCollector(params)
        at, resampled_at = read_from, read_from * out_rate // rate
        for block in stream.blocks(start=read_from, stop=read_to):
            meter.warm_up(_span(block, at, read_from, start))
            meter.process(_span(block, at, start, stop))
            at += len(block)
            mono = resampler.process(block)
            collector.add(mfcc.process(_span(mono, resampled_at, mfcc.first_sample, need_to)))
            resampled_at += len(mono)
        if stop is None:
            collector.add(mfcc.finish(_span(resampler.flush(), resampled_at, mfcc.first_sample, None)))
        elif mfcc.next_frame != last_frame or at < stop:
            raise decode_error(part.path, DAMAGED, f"part {part.index + 1} of {part.count} ended early")
    frames = collector.frames()
    window_starts, window_vectors = _grid_window_vectors(frames, first_frame, params)
    result = PartAnalysis(part, info.format, info.subtype, info.channels, frames,
                          collector.centroid_sum, collector.centroid_count, meter.measurement(), 0.0,
                          window_starts=window_starts, window_vectors=window_vectors)
    if part.index == 0:
        st = os.stat(part.path)
        result.size, result.mtime = st.st_size, st.st_mtime
        result.fingerprint = fingerprint_file(part.path, st.st_size)
    result.seconds = time.perf_counter() - started
    return result


def _grid_window_vectors(frames: Frames, first_frame: int, params: AnalysisParams
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The windows on the file's segment grid (one segment long, every segment hop from the file's first
    frame) that lie wholly in ``frames``, the file's frames from ``first_frame`` on: their first frames in
    the file and their vectors. Windows whose loudest frame is below ``silence_db`` are never segments."""
    width, hop = params.frames_per_segment, params.frames_per_segment_hop
    starts = np.arange(-(-first_frame // hop) * hop, first_frame + len(frames) - width + 1, hop)
    if len(starts):
        loudest = np.lib.stride_tricks.sliding_window_view(frames.rms_db, width)[starts - first_frame].max(1)
        starts = starts[loudest.astype(np.float32) >= params.silence_db]
    windows = [(s - first_frame, s - first_frame + width) for s in starts.tolist()]
    return starts, embed_windows(frames, windows, params)


def _long_file_features(frames: Frames, parts: list[PartAnalysis], params: AnalysisParams
                        ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray | None]:
    """:func:`features_from_frames` of a long file's joined frames, taking the window vectors its parts
    computed and computing the rest (windows across two parts, the last one aligned to the end)."""
    windows = segment_windows(frames.rms_db, params)
    width = params.frames_per_segment
    computed = {start: (p.window_vectors, row) for p in parts if p.window_starts is not None
                for row, start in enumerate(p.window_starts.tolist())}
    vectors = np.empty((len(windows), transform().dim), np.float32)
    missing = []
    for i, (start, stop) in enumerate(windows):
        if stop - start == width and start in computed:
            block, row = computed[start]
            vectors[i] = block[row]
        else:
            missing.append(i)
    if missing:
        vectors[missing] = embed_windows(frames, [windows[i] for i in missing], params)
    return windows, vectors, file_embedding(frames, params)


def assemble(parts: list[PartAnalysis], params: AnalysisParams) -> Analysis:
    """A long file's analysis from all its parts, in order: joined frames and loudness, then segments and
    embeddings computed over the joined frames (as :func:`analyze_file` computes them). The parts give
    up their frames to the joined ones."""
    from audiosim.audio.loudness import Loudness

    head, part = parts[0], parts[0].part
    if [p.part.index for p in parts] != list(range(part.count)):
        raise ValueError(f"parts {[p.part.index for p in parts]} of {part.count}")
    frames = Frames.concat([p.frames for p in parts], params.n_mfcc)
    for p in parts:  # the joined copy replaces them (a 2 h file's frames are 19 MB)
        p.frames = None
    loudness = Loudness.join([p.loudness for p in parts])
    centroid_count = sum(p.centroid_count for p in parts)
    windows, segment_vectors, file_vector = _long_file_features(frames, parts, params)
    return Analysis(
        path=part.path, size=head.size, mtime=head.mtime, fingerprint=head.fingerprint,
        format=head.format, subtype=head.subtype, sample_rate=part.sample_rate, channels=head.channels,
        duration=loudness.end / part.sample_rate,
        avg_loudness=_finite_or_none(loudness.integrated()), peak_db=_finite_or_none(loudness.peak_db),
        centroid=sum(p.centroid_sum for p in parts) / centroid_count if centroid_count else None,
        frames=frames, windows=windows, segment_vectors=segment_vectors, file_vector=file_vector,
        seconds=sum(p.seconds for p in parts),
    )


def analyze_signal(mono: np.ndarray, params: AnalysisParams) -> Frames:
    """The stored-precision frames of a mono clip already at the analysis rate.

    Non-finite or absurd samples (a broken input device, a float file with NaNs) are zeroed / clipped so
    that they cannot turn a query's features into NaN.
    """
    mono = np.clip(np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0), -1e3, 1e3)
    stream = MfccStream(params)
    return Frames.stored(FrameBatch.concat([stream.process(mono), stream.flush()], params.n_mfcc))
