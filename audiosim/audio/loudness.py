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

import math

import numpy as np
from scipy import signal

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
    second-order sections ``[shape=(2, 6)]`` for ``scipy.signal.sosfilt``."""
    return np.stack([
        _biquad(4.0, 1 / math.sqrt(2), 1500.0, sample_rate, "high_shelf"),
        _biquad(0.0, 0.5, 38.0, sample_rate, "high_pass"),
    ])


class LoudnessMeter:
    """Integrated loudness (LUFS) and sample peak of a signal fed in blocks ``[shape=(n, channels)]``.

    Blocks are float arrays at the native ``sample_rate``; a 1-D block is accepted when mono. Call
    :meth:`integrated` at any time; it does not consume the state.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        if sample_rate < 10 or channels < 1:
            raise ValueError(f"need sample_rate >= 10 and channels >= 1, got {sample_rate}, {channels}")
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.peak = 0.0
        self._sos = k_weighting_sos(self.sample_rate)
        self._zi = np.zeros((len(self._sos), self.channels, 2))
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
        # Filtering contiguous channel rows is ~3x faster than along axis 0 of the interleaved block.
        rows = np.ascontiguousarray(x.T, dtype=np.float64)
        weighted, self._zi = signal.sosfilt(self._sos, rows, axis=1, zi=self._zi)
        squares = np.square(weighted, out=weighted).T
        start, end = self._samples, self._samples + n
        self._samples = end
        # Hops that start inside (start, end]: k from self._hop + 1 up to the last k with start_k <= end.
        last = ((end + 1) * 10 - 1) // self.sample_rate
        if last == self._hop:
            self._partial = self._partial + squares.sum(axis=0)
            return
        offsets = self._hop_start(np.arange(self._hop + 1, last + 1)) - start  # in (0, n]
        ends_exactly = offsets[-1] == n
        inner = offsets[:-1] if ends_exactly else offsets
        sums = np.add.reduceat(squares, np.concatenate(([0], inner)), axis=0)  # one row per segment
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
