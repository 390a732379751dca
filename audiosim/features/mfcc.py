"""Streaming MFCC frames: blocks of mono audio in, frames with timestamps out.

The maths is librosa's (Hann-windowed STFT centred with zero padding, librosa's Slaney mel filterbank,
log power in dB, orthonormal DCT-II) computed block by block so that a two-hour file never needs the
whole signal in memory. One difference from ``librosa.feature.mfcc``: the dB floor is absolute
(-100 dB) instead of ``top_db`` below the file's maximum, because the maximum of a stream is unknown
until its end and because a frame's features must not depend on the rest of the file.

Each frame also gets a **low-frequency profile**: the power in nine narrow bands between 20 and 320 Hz
(at the FFT's 10.8 Hz resolution), in dB relative to the frame's whole power. The mel filterbank lumps
everything below ~130 Hz into one band, which is where a kick drum and a floor tom differ.
"""

from __future__ import annotations

import dataclasses
import os
from functools import lru_cache

import numpy as np

from audiosim.config import AnalysisParams
from audiosim.features.fft import rfft_rows

_AMIN = 1e-10  # power floor: -100 dB
LOW_BAND_EDGES_HZ = (20.0, 40.0, 55.0, 70.0, 90.0, 115.0, 145.0, 185.0, 240.0, 320.0)
N_LOW_BANDS = len(LOW_BAND_EDGES_HZ) - 1
LOW_FLOOR_DB = -60.0  # a band this far below the frame's power carries nothing


@dataclasses.dataclass
class FrameBatch:
    """Features of consecutive frames.

    mfcc : [shape=(n_frames, n_mfcc)] float32
    rms_db : [shape=(n_frames,)] float32, frame RMS in dBFS
    centroid : [shape=(n_frames,)] float32, spectral centroid in Hz, NaN where not computed
    low : [shape=(n_frames, N_LOW_BANDS)] float32, low-frequency profile in dB relative to the frame
    """

    mfcc: np.ndarray
    rms_db: np.ndarray
    centroid: np.ndarray
    low: np.ndarray

    @classmethod
    def concat(cls, batches: list[FrameBatch], n_mfcc: int) -> FrameBatch:
        if not batches:
            return cls(np.zeros((0, n_mfcc), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                       np.zeros((0, N_LOW_BANDS), np.float32))
        return cls(
            np.concatenate([b.mfcc for b in batches]),
            np.concatenate([b.rms_db for b in batches]),
            np.concatenate([b.centroid for b in batches]),
            np.concatenate([b.low for b in batches]),
        )


@dataclasses.dataclass
class Frames:
    """A file's frames as the library stores them (float16): what every embedding is computed from.

    mfcc : [shape=(n, n_mfcc)]; rms_db : [shape=(n,)]; low : [shape=(n, N_LOW_BANDS)]
    """

    mfcc: np.ndarray
    rms_db: np.ndarray
    low: np.ndarray

    def __len__(self) -> int:
        return len(self.rms_db)

    def __getitem__(self, index: slice) -> Frames:
        return Frames(self.mfcc[index], self.rms_db[index], self.low[index])

    @classmethod
    def stored(cls, batch: FrameBatch) -> Frames:
        """The frames of ``batch`` at their stored precision."""
        return cls(batch.mfcc.astype(np.float16), batch.rms_db.astype(np.float16), batch.low.astype(np.float16))

    @classmethod
    def concat(cls, parts: list[Frames], n_mfcc: int) -> Frames:
        if not parts:
            return cls(np.zeros((0, n_mfcc), np.float16), np.zeros(0, np.float16),
                       np.zeros((0, N_LOW_BANDS), np.float16))
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("mfcc", "rms_db", "low")))


@lru_cache(maxsize=4)
def _filters(params: AnalysisParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    window = np.hanning(params.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann, as librosa
    dct_basis = dct_matrix(params)  # (n_mfcc, n_mels)
    freqs = np.fft.rfftfreq(params.n_fft, 1.0 / params.sample_rate).astype(np.float32)
    # Low bands as a 0/1 matrix over the first bins: one small matmul per block of frames.
    n_low_bins = int(np.searchsorted(freqs, LOW_BAND_EDGES_HZ[-1]))
    low_sum = np.zeros((n_low_bins, N_LOW_BANDS), np.float32)
    for band, (lo, hi) in enumerate(zip(LOW_BAND_EDGES_HZ[:-1], LOW_BAND_EDGES_HZ[1:])):
        low_sum[(freqs[:n_low_bins] >= lo) & (freqs[:n_low_bins] < hi), band] = 1.0
    first_bin = int(np.searchsorted(freqs, LOW_BAND_EDGES_HZ[0]))
    return window, mel_basis(params).T.copy(), dct_basis.T.copy(), freqs, low_sum, first_bin


@lru_cache(maxsize=4)
def dct_matrix(params: AnalysisParams) -> np.ndarray:
    """The orthonormal DCT-II rows that turn log-mel bands into MFCCs [shape=(n_mfcc, n_mels)] float32.

    Orthonormal, so ``mfcc @ dct_matrix(params)`` is the cepstrally smoothed log-mel spectrum. Written out
    (``scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)``, to float32) rather than importing
    scipy.fft for one matrix: see :mod:`audiosim.features.fft`."""
    n = params.n_mels
    k = np.arange(params.n_mfcc, dtype=np.float64)[:, None]
    dct = np.cos(np.pi * k * (2 * np.arange(n, dtype=np.float64) + 1) / (2 * n)) * np.sqrt(2.0 / n)
    dct[0] /= np.sqrt(2.0)
    return dct.astype(np.float32)


def mel_basis(params: AnalysisParams) -> np.ndarray:
    """librosa's Slaney mel filterbank [shape=(n_mels, 1 + n_fft // 2)].

    Importing librosa costs seconds (it pulls in scipy.signal and numba), more than analysing hundreds of
    short files, so the matrix is computed once per parameter set and kept in the user's cache folder.
    """
    import hashlib

    from platformdirs import user_cache_path

    fmax = min(params.fmax, params.sample_rate / 2)
    key = f"{params.sample_rate}-{params.n_fft}-{params.n_mels}-{params.fmin}-{fmax}"
    cache = user_cache_path("audiosim", appauthor=False) / f"mel-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"
    try:
        basis = np.load(cache)
        if basis.shape == (params.n_mels, 1 + params.n_fft // 2):
            return basis
    except (OSError, ValueError):
        pass
    import librosa.filters

    basis = librosa.filters.mel(sr=params.sample_rate, n_fft=params.n_fft, n_mels=params.n_mels,
                                fmin=params.fmin, fmax=fmax).astype(np.float32)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}.npy")
        np.save(tmp, basis)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs the import next time
    return basis


def frames_from_signal(frames: np.ndarray, params: AnalysisParams, *, first: int = 0) -> FrameBatch:
    """Features of already-framed audio, [shape=(n_frames, n_fft)]; ``first`` is the index of the first frame
    in its file (the centroid is measured on every 4th frame of the file, whatever the batches)."""
    window, mel_t, dct_t, freqs, low_sum, first_bin = _filters(params)
    if len(frames) == 0:
        return FrameBatch.concat([], params.n_mfcc)
    spectrum = rfft_rows(frames * window)
    magnitude = np.abs(spectrum)
    # The centroid only feeds a per-file mean: every 4th frame is plenty and saves a quarter of the work.
    centroid = np.full(len(frames), np.nan, np.float32)
    phase = -first % 4
    sample = magnitude[phase::4]
    total = sample.sum(axis=1)
    centroid[phase::4] = np.where(total > 1e-8, (sample @ freqs) / np.maximum(total, 1e-8), 0.0)
    power = np.multiply(magnitude, magnitude, out=magnitude)
    # Parseval: the windowed frame's mean square, corrected for the Hann window's mean square (3/8).
    edges = power[:, 0] + power[:, -1]
    mean_square = (2.0 * power.sum(axis=1) - edges) / (params.n_fft * params.n_fft * 0.375)
    rms_db = 10.0 * np.log10(np.maximum(mean_square, 1e-10))
    audible = np.maximum(power[:, first_bin:].sum(axis=1, keepdims=True), _AMIN)
    low = 10.0 * np.log10(np.maximum(power[:, :len(low_sum)] @ low_sum / audible, 10 ** (LOW_FLOOR_DB / 10)))
    log_mel = 10.0 * np.log10(np.maximum(power @ mel_t, _AMIN))
    mfcc = log_mel @ dct_t
    return FrameBatch(mfcc.astype(np.float32, copy=False), rms_db.astype(np.float32, copy=False), centroid,
                      low.astype(np.float32, copy=False))


class MfccStream:
    """Feed mono blocks at the analysis rate; get frames whose n-th is centred at ``n * hop / sr``.

    Produces exactly ``1 + n_samples // hop`` frames in total, like ``librosa.stft(center=True)``.

    A stream may start at frame ``start_frame`` of a longer signal (a part of a long file analysed apart): it is
    then fed from sample :attr:`first_sample` on, the first sample that frame's window covers. Samples
    before the signal's start are the centring pad (zeros).
    """

    def __init__(self, params: AnalysisParams, *, start_frame: int = 0) -> None:
        self.params = params
        first = start_frame * params.hop_length - params.n_fft // 2
        self.first_sample = max(0, first)
        self._pending = np.zeros(max(0, -first), dtype=np.float32)  # the centring pad
        self._samples = self.first_sample  # index of the next sample in the whole signal
        self._frames_out = start_frame

    @property
    def next_frame(self) -> int:
        """Index of the next frame to be produced."""
        return self._frames_out

    def process(self, mono: np.ndarray) -> FrameBatch:
        self._samples += len(mono)
        self._pending = np.concatenate([self._pending, mono.astype(np.float32, copy=False)])
        return self._emit(final=False)

    def flush(self) -> FrameBatch:
        return self.finish(np.zeros(0, np.float32))

    def finish(self, mono: np.ndarray) -> FrameBatch:
        """:meth:`process` of the last samples and :meth:`flush` in one batch (a short file: one FFT call)."""
        self._samples += len(mono)
        pad = np.zeros(self.params.n_fft // 2, np.float32)
        self._pending = np.concatenate([self._pending, mono.astype(np.float32, copy=False), pad])
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> FrameBatch:
        n_fft, hop = self.params.n_fft, self.params.hop_length
        available = (len(self._pending) - n_fft) // hop + 1 if len(self._pending) >= n_fft else 0
        if final:
            # Never more than librosa would give (the zero tail may allow one extra frame).
            available = min(available, 1 + self._samples // hop - self._frames_out)
        if available <= 0:
            return FrameBatch.concat([], self.params.n_mfcc)
        framed = np.lib.stride_tricks.sliding_window_view(self._pending, n_fft)[::hop][:available]
        batch = frames_from_signal(framed, self.params, first=self._frames_out)
        self._pending = self._pending[available * hop:].copy()
        self._frames_out += available
        return batch


def frame_times(n_frames: int, params: AnalysisParams) -> np.ndarray:
    """Centre time of each frame in seconds, [shape=(n_frames,)] float32."""
    return (np.arange(n_frames, dtype=np.float64) * params.frame_seconds).astype(np.float32)
