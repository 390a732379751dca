"""Streaming ITU-R BS.1770-4 integrated loudness and sample peak, fed block by block.

The numbers match ``pyloudnorm.Meter(rate).integrated_loudness(whole_signal)`` (same K-weighting
biquads, designed for any rate with the same formulas; same block grid and gating), but a long file never
needs to be in memory: each block is K-weighted with carried filter state and reduced to per-100 ms
sums of squares. Only those sums are kept (10 numbers per second per channel).

Differences from pyloudnorm, on purpose:

* a signal shorter than one 400 ms gating block (pyloudnorm raises) is measured as a single block whose
  mean square is taken over the whole signal; it still has to pass the −70 LUFS absolute gate;
* more than 5 channels (pyloudnorm raises): every channel is weighted 1.0, since the layout (and which
  channel is the LFE) is unknown. Up to 5 channels use pyloudnorm's weights ``[1, 1, 1, 1.41, 1.41]``
  (L, R, C, Ls, Rs), so mono and stereo are weighted 1.0.

Silence, or anything that never passes the gates, measures ``-inf`` LUFS.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

__all__ = ["LoudnessMeter", "k_weighting_sos"]

BLOCK_SECONDS = 0.400
OVERLAP = 0.75
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
_HOPS_PER_BLOCK = 4  # 400 ms blocks at 75 % overlap = 4 hops of 100 ms
_FIVE_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)


def _biquad(gain_db: float, q: float, fc: float, rate: float, kind: str) -> np.ndarray:
    """One RBJ-cookbook section ``[b0, b1, b2, a0, a1, a2]`` normalised by a0, as pyloudnorm designs it."""
    a = 10 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * (fc / rate)
    cos_w0 = math.cos(w0)
    alpha = math.sin(w0) / (2.0 * q)
    if kind == "high_shelf":
        b = [a * ((a + 1) + (a - 1) * cos_w0 + 2 * math.sqrt(a) * alpha),
             -2 * a * ((a - 1) + (a + 1) * cos_w0),
             a * ((a + 1) + (a - 1) * cos_w0 - 2 * math.sqrt(a) * alpha)]
        den = [(a + 1) - (a - 1) * cos_w0 + 2 * math.sqrt(a) * alpha,
               2 * ((a - 1) - (a + 1) * cos_w0),
               (a + 1) - (a - 1) * cos_w0 - 2 * math.sqrt(a) * alpha]
    elif kind == "high_pass":
        b = [(1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2]
        den = [1 + alpha, -2 * cos_w0, 1 - alpha]
    else:
        raise ValueError(f"unknown filter kind {kind!r}")
    return np.array(b + den, dtype=np.float64) / den[0]


def k_weighting_sos(sample_rate: float) -> np.ndarray:
    """The two K-weighting stages (high shelf +4 dB at 1.5 kHz, then high pass at 38 Hz) as
    second-order sections ``[shape=(2, 6)]`` (``scipy.signal.sosfilt`` layout)."""
    return np.stack([
        _biquad(4.0, 1 / math.sqrt(2), 1500.0, sample_rate, "high_shelf"),
        _biquad(0.0, 0.5, 38.0, sample_rate, "high_pass"),
    ])


IMPULSE_SECONDS = 0.06  # the K-weighting tail beyond 50 ms holds < 1e-11 of its energy (any rate)


@functools.lru_cache(maxsize=8)
def _k_weighting_response(sample_rate: int) -> np.ndarray:
    length = max(64, int(math.ceil(IMPULSE_SECONDS * sample_rate)))
    return _impulse_response(k_weighting_sos(sample_rate), length)


@functools.lru_cache(maxsize=32)
def _k_weighting_spectrum(sample_rate: int, n_fft: int) -> np.ndarray:
    return scipy.fft.rfft(_k_weighting_response(sample_rate), n_fft).astype(np.complex64)


def _impulse_response(sos: np.ndarray, length: int) -> np.ndarray:
    """The cascade's impulse response, from its frequency response on a grid 8x longer (so the
    time-domain aliasing of the infinite tail is far below float precision)."""
    n = 8 * length
    z = np.exp(-2j * np.pi * np.fft.rfftfreq(n))
    response = np.ones_like(z)
    for b0, b1, b2, _a0, a1, a2 in sos:
        response *= (b0 + b1 * z + b2 * z * z) / (1.0 + a1 * z + a2 * z * z)
    return np.fft.irfft(response, n)[:length]


class _KWeighting:
    """Streaming K-weighting by FFT convolution with the filters' impulse response (overlap-add).

    Equivalent to running the two biquads (to ~1e-7 relative, float32 FFTs), without importing
    ``scipy.signal``, which costs more than a second at start-up — longer than analysing a hundred
    short files. Per sample it costs ~2.5x the recursive filter, so long files use :class:`_IirKWeighting`.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.sample_rate = sample_rate
        self.length = len(_k_weighting_response(sample_rate))
        self.block = 4 * self.length
        self._tail = np.zeros((channels, self.length - 1), np.float32)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """K-weighted ``rows`` [shape=(channels, n)], continuing the previous call."""
        out = np.empty(rows.shape, np.float32)
        for start in range(0, rows.shape[1], self.block):
            chunk = rows[:, start:start + self.block]
            n = chunk.shape[1]
            n_fft = scipy.fft.next_fast_len(n + self.length - 1, real=True)
            spectrum = scipy.fft.rfft(chunk, n_fft, axis=1)
            spectrum *= _k_weighting_spectrum(self.sample_rate, n_fft)  # short files: short FFTs
            conv = scipy.fft.irfft(spectrum, n_fft, axis=1)
            conv[:, :self.length - 1] += self._tail
            out[:, start:start + n] = conv[:, :n]
            self._tail = conv[:, n:n + self.length - 1].copy()
        return out


class _IirKWeighting:
    """Streaming K-weighting with the two biquads (``scipy.signal.sosfilt`` with carried state).

    In float32: 2.7x faster than float64, and the filtered energy differs by < 1e-7 (< 1e-6 LU).
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        from scipy.signal import sosfilt  # imported once per process, only for long files

        self._sosfilt = sosfilt
        self._sos = k_weighting_sos(sample_rate).astype(np.float32)
        self._zi = np.zeros((len(self._sos), channels, 2), np.float32)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out, self._zi = self._sosfilt(self._sos, rows.astype(np.float32, copy=False), axis=1, zi=self._zi)
        return out


# Files at least this long use the recursive filter: its import cost is repaid within the file.
IIR_FROM_SECONDS = 600.0


class LoudnessMeter:
    """Integrated loudness (LUFS) and sample peak of a signal fed in blocks ``[shape=(n, channels)]``.

    Blocks are float arrays at the native ``sample_rate``; a 1-D block is accepted when mono. Call
    :meth:`integrated` at any time; it does not consume the state. ``expected_frames`` (the file's
    length, if known) picks the faster filter for long files; both give the same result.
    """

    def __init__(self, sample_rate: int, channels: int, *, expected_frames: int | None = None) -> None:
        if sample_rate < 10 or channels < 1:
            raise ValueError(f"need sample_rate >= 10 and channels >= 1, got {sample_rate}, {channels}")
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.peak = 0.0
        long = expected_frames is not None and expected_frames >= IIR_FROM_SECONDS * sample_rate
        self._filter = (_IirKWeighting if long else _KWeighting)(self.sample_rate, self.channels)
        if self.channels <= len(_FIVE_CHANNEL_WEIGHTS):
            self._weights = np.array(_FIVE_CHANNEL_WEIGHTS[: self.channels])
        else:
            self._weights = np.ones(self.channels)
        self._samples = 0  # frames seen
        self._hop = 0  # index of the 100 ms hop the next sample falls in
        self._partial = np.zeros(self.channels)  # sum of squares of that hop so far
        self._hops: list[np.ndarray] = []  # completed hops' sums of squares, [shape=(k, channels)] each

    def _hop_start(self, k: int | np.ndarray) -> int | np.ndarray:
        # pyloudnorm places block j at int(0.4 * j * 0.25 * rate): hop k starts at floor(k * rate / 10).
        return (k * self.sample_rate) // 10

    def process(self, block: np.ndarray) -> None:
        """Add ``block`` (float, ``[shape=(n, channels)]``) to the measurement."""
        x = np.asarray(block)
        if x.ndim == 1 and self.channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"expected a block of shape (n, {self.channels}), got {x.shape}")
        n = len(x)
        if n == 0:
            return
        self.peak = max(self.peak, float(x.max()), -float(x.min()))
        weighted = self._filter(np.ascontiguousarray(x.T, dtype=np.float32))
        squares = np.square(weighted, out=weighted).T  # float32; sums below accumulate in float64
        start, end = self._samples, self._samples + n
        self._samples = end
        # Hops that start inside (start, end]: k from self._hop + 1 up to the last k with start_k <= end.
        last = ((end + 1) * 10 - 1) // self.sample_rate
        if last == self._hop:
            self._partial = self._partial + squares.sum(axis=0, dtype=np.float64)
            return
        offsets = self._hop_start(np.arange(self._hop + 1, last + 1)) - start  # in (0, n]
        ends_exactly = offsets[-1] == n
        inner = offsets[:-1] if ends_exactly else offsets
        # float32 sums over one 100 ms hop are exact to ~1e-6; hops accumulate in float64
        sums = np.add.reduceat(squares, np.concatenate(([0], inner)), axis=0).astype(np.float64)
        sums[0] += self._partial
        if ends_exactly:
            self._hops.append(sums)
            self._partial = np.zeros(self.channels)
        else:
            self._hops.append(sums[:-1])
            self._partial = sums[-1]
        self._hop = int(last)

    @property
    def peak_db(self) -> float:
        """Sample peak in dBFS (``20·log10(peak)``); ``-inf`` for silence."""
        return 20.0 * math.log10(self.peak) if self.peak > 0 else float("-inf")

    def _block_energies(self) -> np.ndarray:
        """Mean square per gating block and channel ``[shape=(blocks, channels)]``, on pyloudnorm's grid."""
        rate, n = self.sample_rate, self._samples
        hops = np.concatenate([*self._hops, self._partial[None, :]]) if self._hops else self._partial[None, :]
        if n < BLOCK_SECONDS * rate:  # shorter than one gating block: the whole signal is one block
            return hops.sum(axis=0, keepdims=True) / n
        step = BLOCK_SECONDS * (1.0 - OVERLAP)
        n_blocks = int(np.round((n / rate - BLOCK_SECONDS) / step)) + 1  # pyloudnorm's count (eq. 3)
        needed = n_blocks + _HOPS_PER_BLOCK - 1
        if len(hops) < needed:  # the last block may run past the end: pyloudnorm sums what is there
            hops = np.concatenate([hops, np.zeros((needed - len(hops), self.channels))])
        cumulative = np.concatenate([np.zeros((1, self.channels)), np.cumsum(hops[:needed], axis=0)])
        sums = cumulative[_HOPS_PER_BLOCK:] - cumulative[:-_HOPS_PER_BLOCK]
        return sums / (BLOCK_SECONDS * rate)

    def integrated(self) -> float:
        """Gated integrated loudness in LUFS; ``-inf`` for silence or nothing measured."""
        if self._samples == 0:
            return float("-inf")
        z = self._block_energies()
        power = z @ self._weights
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10.0 * np.log10(power)
        above_absolute = block_lufs >= ABSOLUTE_GATE_LUFS
        if not above_absolute.any():
            return float("-inf")
        relative_gate = -0.691 + 10.0 * math.log10(float(z[above_absolute].mean(axis=0) @ self._weights))
        relative_gate += RELATIVE_GATE_LU
        gated = (block_lufs > relative_gate) & (block_lufs > ABSOLUTE_GATE_LUFS)
        if not gated.any():
            return float("-inf")
        loudness = float(z[gated].mean(axis=0) @ self._weights)
        return -0.691 + 10.0 * math.log10(loudness) if loudness > 0 else float("-inf")
