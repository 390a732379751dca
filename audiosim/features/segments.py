"""Segments (windows over the frames) and their embeddings.

An embedding summarises a block of MFCC frames by timbre and its movement:

* mean of c1..c(n-1): the average spectral envelope (c0, absolute level, is left out so that the same
  sound played louder is still the same sound);
* standard deviation of c0..c(n-1): how much level and envelope change inside the window;
* mean absolute first difference of c0..c(n-1): how fast they change (attacks, tremolo, speech).

Each statistic is divided by its spread on a reference corpus so that no coefficient dominates (low MFCCs
have far larger ranges than high ones). The spreads are constants, not statistics of the user's library,
so a vector never changes as the library grows.
"""

from __future__ import annotations

import numpy as np

from audiosim.config import AnalysisParams


def embedding_dim(params: AnalysisParams) -> int:
    n = params.n_mfcc
    return (n - 1) + n + n


# Spread (standard deviation across sounds) of each statistic per coefficient, measured once on a mixed
# reference corpus (drums, tones, bells, pads, noise, speech: bench/tune_embedding.py) and frozen here.
# Dividing by them puts every coefficient on the same footing.
_MEAN_SPREAD = (63.3, 36.5, 18.9, 14.5, 14.2, 11.6, 10.9, 10.5, 6.9, 8.8, 10.2, 9.4, 9.1, 9.5, 9.7, 8.9, 9.5,
                14.4, 11.0)  # c1..c19
_STD_SPREAD = (22.7, 11.7, 7.2, 7.7, 6.8, 6.0, 5.0, 4.5, 4.2, 3.5, 3.6, 3.1, 2.1, 2.4, 2.3, 2.4, 2.3, 2.5, 2.8,
               2.1)  # c0..c19
_DIFF_SPREAD = (8.7, 5.4, 2.8, 2.9, 2.4, 2.3, 1.9, 1.9, 1.9, 1.6, 1.5, 1.3, 1.0, 1.1, 1.0, 0.8, 0.8, 0.9, 0.8,
                0.8)  # c0..c19


def _spread(table: tuple[float, ...], n: int) -> np.ndarray:
    """The first ``n`` spreads; coefficients past the table share its last value."""
    return np.array([table[min(i, len(table) - 1)] for i in range(n)], np.float32)


def coefficient_spreads(n_mfcc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _spread(_MEAN_SPREAD, n_mfcc - 1), _spread(_STD_SPREAD, n_mfcc), _spread(_DIFF_SPREAD, n_mfcc)


# Relative weight of each group in the distance (tuned for precision@10 on the reference corpus).
_GROUP_WEIGHTS = (1.0, 1.0, 0.7)


def embed(mfcc: np.ndarray) -> np.ndarray:
    """Embedding of one block of frames.

    Parameters
    ----------
    mfcc : [shape=(n_frames, n_mfcc)] any float dtype, n_frames >= 1

    Returns
    -------
    [shape=(embedding_dim,)] float32
    """
    return embed_many(mfcc[np.newaxis])[0] if mfcc.ndim == 2 else embed_many(mfcc)


def embed_many(blocks: np.ndarray) -> np.ndarray:
    """Embeddings of equally long blocks, [shape=(n_blocks, n_frames, n_mfcc)] → (n_blocks, dim)."""
    blocks = blocks.astype(np.float32, copy=False)
    n_mfcc = blocks.shape[2]
    mean_scale, std_scale, diff_scale = coefficient_spreads(n_mfcc)
    mean = blocks[:, :, 1:].mean(axis=1) / mean_scale
    std = blocks.std(axis=1) / std_scale
    if blocks.shape[1] > 1:
        diff = np.abs(np.diff(blocks, axis=1)).mean(axis=1) / diff_scale
    else:
        diff = np.zeros((blocks.shape[0], n_mfcc), np.float32)
    w_mean, w_std, w_diff = _GROUP_WEIGHTS
    return np.concatenate([w_mean * mean, w_std * std, w_diff * diff], axis=1).astype(np.float32)


def segment_windows(rms_db: np.ndarray, params: AnalysisParams) -> list[tuple[int, int]]:
    """Frame ranges ``[start, stop)`` of the non-silent windows of a file.

    Windows of ``segment_seconds`` every ``segment_hop_seconds``; the last window is aligned to the end
    so the tail is covered; a file shorter than one window is one segment; a window whose loudest frame
    is below ``silence_db`` is skipped.
    """
    n = len(rms_db)
    if n == 0:
        return []
    width, hop = params.frames_per_segment, params.frames_per_segment_hop
    if n <= width:
        starts = [0]
    else:
        starts = list(range(0, n - width + 1, hop))
        if starts[-1] + width < n:
            starts.append(n - width)
    windows = []
    for s in starts:
        stop = min(s + width, n)
        if float(rms_db[s:stop].max()) >= params.silence_db:
            windows.append((s, stop))
    return windows


def embed_windows(mfcc: np.ndarray, windows: list[tuple[int, int]], *, batch: int = 256) -> np.ndarray:
    """Embeddings of the given frame windows, [shape=(len(windows), dim)] float32.

    Windows are embedded ``batch`` at a time so that memory stays flat however long the file is.
    """
    dim = (mfcc.shape[1] - 1) + 2 * mfcc.shape[1]
    if not windows:
        return np.zeros((0, dim), np.float32)
    lengths = {stop - start for start, stop in windows}
    if len(lengths) > 1:
        return np.stack([embed(mfcc[s:e]) for s, e in windows])
    width = lengths.pop()
    view = np.lib.stride_tricks.sliding_window_view(mfcc, width, axis=0)  # (n, n_mfcc, width), no copy
    starts = np.array([s for s, _ in windows])
    out = np.empty((len(windows), dim), np.float32)
    for i in range(0, len(starts), batch):
        out[i:i + batch] = embed_many(view[starts[i:i + batch]].transpose(0, 2, 1))
    return out


def file_embedding(mfcc: np.ndarray, rms_db: np.ndarray, params: AnalysisParams, *,
                   chunk: int = 8192) -> np.ndarray | None:
    """One vector for the whole file, from its first to its last non-silent frame; None when all of it
    is silent. The same statistics as :func:`embed`, accumulated ``chunk`` frames at a time in float64
    so that memory does not grow with the file's length."""
    loud = rms_db >= params.silence_db
    if not loud.any():
        return None
    first, last = np.flatnonzero(loud)[[0, -1]]
    frames = mfcc[first:last + 1]
    n, n_mfcc = frames.shape
    total = np.zeros(n_mfcc)
    squares = np.zeros(n_mfcc)
    change = np.zeros(n_mfcc)
    previous = None
    for start in range(0, n, chunk):
        block = frames[start:start + chunk].astype(np.float64)
        total += block.sum(axis=0)
        squares += np.square(block).sum(axis=0)
        with_previous = block if previous is None else np.vstack([previous, block])
        change += np.abs(np.diff(with_previous, axis=0)).sum(axis=0)
        previous = block[-1:]
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    diff = change / (n - 1) if n > 1 else np.zeros(n_mfcc)
    mean_scale, std_scale, diff_scale = coefficient_spreads(n_mfcc)
    w_mean, w_std, w_diff = _GROUP_WEIGHTS
    return np.concatenate([w_mean * mean[1:] / mean_scale, w_std * std / std_scale,
                           w_diff * diff / diff_scale]).astype(np.float32)
