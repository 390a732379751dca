"""Reading audio for the window: an exact segment for audition or drag-out, an envelope for a waveform,
a spectrogram. Runs in workers only (never on the GUI thread); no Qt here.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict

import numpy as np
import soundfile as sf

MAX_AUDITION_SECONDS = 30.0  # clicking a waveform plays at most this much from the click
ENVELOPE_BINS = 3000
SPECTROGRAM_MAX_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class Clip:
    """Samples of a file between two frame positions ``[shape=(n, channels)]`` at the file's own rate."""

    path: str
    start_frame: int
    samples: np.ndarray
    sample_rate: int
    subtype: str | None

    @property
    def start(self) -> float:
        return self.start_frame / self.sample_rate

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def frame_range(start: float, end: float, sample_rate: int) -> tuple[int, int]:
    """The frames ``[first, stop)`` of a segment given in seconds: the one rounding rule everyone uses."""
    first = max(0, int(round(start * sample_rate)))
    return first, max(first, int(round(end * sample_rate)))


def read_clip(path: str, start: float, end: float | None) -> Clip:
    """The exact samples of ``path`` from ``start`` to ``end`` seconds (``None``: the end of the file)."""
    from audiosim.errors import DecodeError

    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            first, stop = frame_range(start, end if end is not None else f.frames / rate, rate)
            stop = min(stop, f.frames)
            first = min(first, stop)
            f.seek(first)
            data = f.read(stop - first, dtype="float32", always_2d=True)
            return Clip(path, first, data, rate, f.subtype)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError):
        pass
    except OSError as exc:
        raise DecodeError(f"cannot read {os.path.basename(path)}: {exc.strerror or exc}") from None
    # Not seekable by libsndfile (m4a, ...): stream from the start through the core's decoder.
    from audiosim.audio.decode import open_audio

    with open_audio(path) as stream:
        rate = stream.info.sample_rate
        first, stop = frame_range(start, end if end is not None else 1e12, rate)
        parts, seen = [], 0
        for block in stream.blocks():
            lo, hi = max(first - seen, 0), min(stop - seen, len(block))
            if hi > lo:
                parts.append(block[lo:hi])
            seen += len(block)
            if seen >= stop:
                break
    channels = stream.info.channels
    data = np.concatenate(parts) if parts else np.zeros((0, channels), np.float32)
    return Clip(path, first, data, rate, None)


@dataclasses.dataclass(frozen=True)
class Envelope:
    """Min/max per bin of the mono mix, for drawing: ``x`` seconds, ``lo``/``hi`` amplitudes."""

    path: str
    duration: float
    x: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def envelope(path: str, bins: int = ENVELOPE_BINS) -> Envelope:
    """Streams the file once (memory stays flat for long files)."""
    from audiosim.audio.decode import open_audio

    with open_audio(path) as stream:
        info = stream.info
        total = info.frames or 0
        if total:
            per_bin = max(1, total // bins)
            lo_parts, hi_parts, carry = [], [], np.zeros(0, np.float32)
            for block in stream.blocks():
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                mono = np.concatenate([carry, mono])
                whole = len(mono) // per_bin * per_bin
                chunk = mono[:whole].reshape(-1, per_bin)
                lo_parts.append(chunk.min(axis=1))
                hi_parts.append(chunk.max(axis=1))
                carry = mono[whole:]
            if len(carry):
                lo_parts.append(carry.min(keepdims=True))
                hi_parts.append(carry.max(keepdims=True))
            lo, hi = np.concatenate(lo_parts), np.concatenate(hi_parts)
            frames = stream.frames_read
        else:  # unknown length (ffmpeg): decode, then bin
            data = np.concatenate([b.mean(axis=1) for b in stream.blocks()])
            per_bin = max(1, len(data) // bins)
            whole = len(data) // per_bin * per_bin
            lo = data[:whole].reshape(-1, per_bin).min(axis=1)
            hi = data[:whole].reshape(-1, per_bin).max(axis=1)
            frames = len(data)
    x = (np.arange(len(lo)) * per_bin + per_bin / 2) / info.sample_rate
    return Envelope(path, frames / info.sample_rate, x, lo, hi)


def spectrogram(path: str, *, n_fft: int = 1024, max_columns: int = 1500) -> tuple[np.ndarray, float, float]:
    """Log-magnitude spectrogram ``[shape=(n_columns, n_fft // 2 + 1)]`` in dB, its duration and top
    frequency; columns are spread evenly over the file (at most ``max_columns``)."""
    from audiosim.audio.decode import decode_mono
    from audiosim.errors import DecodeError

    rate = 22050
    try:
        info = sf.info(path)
        if info.duration > SPECTROGRAM_MAX_SECONDS:
            raise DecodeError(f"too long for a spectrogram (over {SPECTROGRAM_MAX_SECONDS / 60:.0f} min)")
    except (sf.SoundFileError, RuntimeError):
        pass
    mono, _ = decode_mono(path, rate)
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    n_cols = min(max_columns, max(1, (len(mono) - n_fft) // (n_fft // 4) + 1))
    starts = np.linspace(0, len(mono) - n_fft, n_cols).astype(int)
    frames = mono[starts[:, None] + np.arange(n_fft)[None, :]] * np.hanning(n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    db = 10 * np.log10(np.maximum(power, 1e-10))
    return db - db.max(), len(mono) / rate, rate / 2


class ClipCache:
    """A small LRU of clips keyed by (path, start, end), bounded by total samples; thread-safe."""

    def __init__(self, max_samples: int = 60 * 44100 * 2 * 10) -> None:
        self._items: OrderedDict[tuple, Clip] = OrderedDict()
        self._size = 0
        self._max = max_samples
        self._lock = threading.Lock()

    @staticmethod
    def key(path: str, start: float, end: float | None) -> tuple:
        return (path, round(start, 4), None if end is None else round(end, 4))

    def get(self, key: tuple) -> Clip | None:
        with self._lock:
            clip = self._items.get(key)
            if clip is not None:
                self._items.move_to_end(key)
            return clip

    def put(self, key: tuple, clip: Clip) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = clip
            self._size += clip.samples.size
            while self._size > self._max and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._size -= old.samples.size

    def __contains__(self, key: tuple) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0
