"""Segments (windows over the frames) and their embeddings.

An embedding summarises a block of MFCC frames by timbre and its movement:

* mean of c1..c(n-1): the average spectral envelope (c0, absolute level, is left out so that the same
  sound played louder is still the same sound);
* standard deviation of c0..c(n-1): how much level and envelope change inside the window;
* mean absolute first difference of c0..c(n-1): how fast they change (attacks, tremolo, speech).

Each group is divided by fixed per-coefficient scales so that no coefficient dominates (low MFCCs have
far larger ranges than high ones). The scales are constants, not statistics of the library, so a vector
never changes as the library grows.
"""

from __future__ import annotations

import numpy as np

from audiosim.config import AnalysisParams


def embedding_dim(params: AnalysisParams) -> int:
    n = params.n_mfcc
    return (n - 1) + n + n


def _coefficient_scale(n: int, first: float, rest: float, decay: float) -> np.ndarray:
    """Expected spread of MFCC k: large for c1, shrinking roughly geometrically with k."""
    k = np.arange(n, dtype=np.float32)
    scale = rest + (first - rest) * decay ** np.maximum(k - 1, 0)
    return scale.astype(np.float32)


def _scales(n_mfcc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean_scale = _coefficient_scale(n_mfcc, 40.0, 8.0, 0.7)[1:]
    std_scale = _coefficient_scale(n_mfcc, 15.0, 4.0, 0.8)
    std_scale[0] = 12.0
    diff_scale = _coefficient_scale(n_mfcc, 6.0, 3.0, 0.85)
    diff_scale[0] = 4.0
    return mean_scale, std_scale, diff_scale


# Relative weight of each group in the distance.
_GROUP_WEIGHTS = (1.0, 0.8, 0.6)


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
    mean_scale, std_scale, diff_scale = _scales(n_mfcc)
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


def embed_windows(mfcc: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
    """Embeddings of the given frame windows, [shape=(len(windows), dim)] float32."""
    if not windows:
        return np.zeros((0, (mfcc.shape[1] - 1) + 2 * mfcc.shape[1]), np.float32)
    lengths = {stop - start for start, stop in windows}
    if len(lengths) == 1:
        width = lengths.pop()
        starts = np.array([s for s, _ in windows])
        stacked = np.lib.stride_tricks.sliding_window_view(mfcc, width, axis=0)[starts]  # (n, n_mfcc, width)
        return embed_many(stacked.transpose(0, 2, 1))
    return np.stack([embed(mfcc[s:e]) for s, e in windows])


def file_embedding(mfcc: np.ndarray, rms_db: np.ndarray, params: AnalysisParams) -> np.ndarray | None:
    """One vector for the whole file, from its non-silent frames; None when all of it is silent."""
    loud = rms_db >= params.silence_db
    if not loud.any():
        return None
    first, last = np.flatnonzero(loud)[[0, -1]]
    return embed(mfcc[first:last + 1])
