"""Frame alignment: where, to a frame (≈ 23 ms), a query's frames lie in a candidate's stored frames, and
how well they fit there. The search's refinement places each candidate alignment with :func:`climb` (and
:func:`climb_through_floor`, through the query's noise floor) before scoring it again.

A frame is compared on its MFCC c1.. (level-free, scaled by the embedding's ``frame_scale``) and, apart,
its level relative to the loudest frame after the gain that fits best; each query frame is weighted by its
power, so the gaps of a noisy excerpt count for next to nothing. :class:`Query` and :class:`Target` hold
what every offset compares, worked out once per query and once per candidate.
"""

from __future__ import annotations

import math

import numpy as np

from audiosim.config import AnalysisParams
from audiosim.features.embedding import transform
from audiosim.features.mfcc import LOW_FLOOR_DB, Frames, dct_matrix
from audiosim.features.noise import NoiseFloor, with_noise_floor
from audiosim.features.noise import gain_db as noise_gain_db

LEVEL_RANGE_DB = 30.0  # alignment compares levels down to this far below the loudest frame
LEVEL_SCALE_DB = 6.0  # a level difference of this much costs as much as one standard unit of timbre
SILENCE_DB = -100.0  # the analysis floor: the level of a frame of digital silence
CLIMB_STEPS = 4  # how many radii an alignment may move from its votes


def frame_features(frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    """Frames for alignment: MFCC c1.. on one footing (level-free) and, last, the level in dB; and each
    frame's weight, its power relative to the loudest frame: the gaps of a noisy excerpt, which the clean
    original has as silence, then count for next to nothing."""
    rms = frames.rms_db.astype(np.float32)
    columns = np.column_stack([frames.mfcc[:, 1:].astype(np.float32) * transform().frame_scale, rms])
    weights = np.power(10.0, (rms - rms.max(initial=SILENCE_DB)) / 10.0) if len(rms) else rms
    return columns, weights.astype(np.float32)


def with_silence(frames: Frames, pad: int, params: AnalysisParams) -> Frames:
    """``frames`` with ``pad`` frames of digital silence before and after: what lies outside a file is
    nothing, so an alignment that hangs over its edge pays for the query's sound it leaves unmatched."""
    silent_mfcc = np.full(params.n_mels, SILENCE_DB, np.float32) @ dct_matrix(params).T
    silence = Frames(np.tile(silent_mfcc.astype(np.float16), (pad, 1)), np.full(pad, SILENCE_DB, np.float16),
                     np.full((pad, frames.low.shape[1]), LOW_FLOOR_DB, np.float16))
    return Frames.concat([silence, frames, silence], params.n_mfcc)


class Query:
    """The query's side of an alignment, worked out once per query: its alignment features [shape=(n,
    n_mfcc)] (see :func:`frame_features`), their weights, and what every offset compares."""

    def __init__(self, features: np.ndarray, weights: np.ndarray) -> None:
        self.n = len(features)
        self.weights = weights
        self.timbre = features[:, :-1].astype(np.float64)
        self.timbre_square = np.einsum("ij,ij->i", self.timbre, self.timbre)
        self.level = np.maximum(features[:, -1] - features[:, -1].max(), -LEVEL_RANGE_DB)
        self.mass = np.maximum(weights.sum(), np.float32(1e-30))  # the weight of a fully overlapping offset


class Target:
    """A candidate's alignment features [shape=(n_frames, n_mfcc)] laid out for :func:`best_offset` with a
    query of ``n`` frames: ``n`` frames of "outside" on either side (zero timbre, NaN level, not valid),
    so that every window it compares is a slice."""

    def __init__(self, features: np.ndarray, n: int) -> None:
        self.n_frames, self.margin = len(features), n
        rows = len(features) + 2 * n
        self.valid = np.zeros(rows, bool)
        self.valid[n:n + len(features)] = True
        self.timbre = np.zeros((rows, features.shape[1] - 1), np.float64)
        self.timbre[n:n + len(features)] = features[:, :-1]
        self.timbre_square = np.einsum("ij,ij->i", self.timbre, self.timbre)
        self.level = np.full(rows, np.nan, np.float32)
        self.level[n:n + len(features)] = features[:, -1]


def climb(query: Query, target: Target, guess: int, radius: int, steps: int = CLIMB_STEPS) -> tuple[int, float]:
    """:func:`best_offset`, searched again from the edge while the best lies on it: the votes of a
    sustained sound, whose windows all look alike, can place an alignment further off than one radius."""
    best, cost = best_offset(query, target, guess, radius)
    for _ in range(steps):
        if abs(best - guess) < radius:
            break
        guess, (best, cost) = best, best_offset(query, target, best, radius)
    return best, cost


def climb_through_floor(query: Query, query_rms: np.ndarray, target: Frames, guess: int, radius: int,
                        floor: NoiseFloor, params: AnalysisParams, cache: dict) -> tuple[int, float, Frames, int]:
    """:func:`climb` on the candidate's frames with the query's noise floor added (at the gain between
    them, estimated where the query is loud): a noisy excerpt compared with its original as it would sound
    through the same noise (``query_rms``: the query's frame levels, which set the gain). Returns (offset,
    cost, the noisy span of the target, its first frame).

    The caller keeps whichever of this and the plain alignment fits better: a clean query's "floor" is
    only its quietest frames, and adding those to the candidate would blur it for nothing.

    ``cache`` (one per candidate) keeps the noisy span per (origin, gain): the passes and starts of one
    candidate often meet the same loudest frames, hence the same gain."""
    reach = (CLIMB_STEPS + 1) * radius + query.n
    origin = max(0, guess - reach)
    span = target[origin:guess + reach + query.n]
    offset = guess
    for _ in range(2):  # a second pass with the gain at the better offset, if the first one moved
        gain = noise_gain_db(query_rms, span.rms_db, offset - origin)
        if (origin, gain) not in cache:
            heard = with_noise_floor(span, floor, gain, params)
            cache[origin, gain] = heard, Target(frame_features(heard)[0], query.n)
        heard, heard_features = cache[origin, gain]
        moved, cost = climb(query, heard_features, offset - origin, radius)
        if moved + origin == offset:
            break
        offset = moved + origin
    return offset, cost, heard, origin


def best_offset(query: Query, target: Target, guess: int, radius: int) -> tuple[int, float]:
    """The frame offset of ``query`` in ``target`` near ``guess`` with the least power-weighted mean squared
    difference (offsets where less than half of the query overlaps the target are not considered).

    The last column is the level: compared after removing the gain that fits best at each offset (an
    excerpt may be louder or quieter) and clipped 30 dB below the loudest frame on either side, it tells
    apart the moments of a decaying note whose spectrum barely changes."""
    nq, nt = query.n, target.n_frames
    pad = nq // 2
    lo = max(-pad, guess - radius)
    hi = min(nt - max(1, pad), guess + radius)
    if hi < lo or nt == 0:
        return max(0, min(guess, nt - 1)), math.inf
    # The target's frames lo .. hi + nq, "outside" where they fall beyond it: every offset is one window.
    a, b = lo + target.margin, hi + nq + target.margin
    valid = target.valid[a:b]
    per_frame = square_distances(target.timbre[a:b], target.timbre_square[a:b], query)  # (n_off, nq)
    weights = query.weights
    level_t = _windows(target.level[a:b], nq)  # NaN outside the target
    level_t = np.maximum(level_t - np.fmax.reduce(level_t, axis=1, keepdims=True), -LEVEL_RANGE_DB)
    gap = query.level - level_t
    if valid.all():  # no frame outside: nothing to leave out of the sums (the usual case)
        gain = np.sum(gap * weights, axis=1, keepdims=True) / query.mass
        per_frame += np.square((gap - gain) / LEVEL_SCALE_DB)
        costs = np.sum(per_frame * weights, axis=1) / query.mass
    else:
        overlap = _windows(valid, nq)
        outside = ~overlap  # where the level gap is NaN; zeroed before summing (what nansum does, at half its cost)
        mass = np.maximum((weights * overlap).sum(axis=1), 1e-30)
        weighted_gap = gap * weights
        weighted_gap[outside] = 0.0
        gain = np.sum(weighted_gap, axis=1, keepdims=True) / mass[:, None]
        per_frame += np.square((gap - gain) / LEVEL_SCALE_DB)
        terms = per_frame * weights
        terms[outside] = 0.0
        costs = np.where(overlap.any(axis=1), np.sum(terms, axis=1) / mass, np.inf)
    best = int(np.argmin(costs))
    return lo + best, float(costs[best])


def _windows(a: np.ndarray, n: int) -> np.ndarray:
    """The ``len(a) - n + 1`` windows of ``n`` consecutive elements of the contiguous 1-D ``a``, as rows of a
    view (not to be written to). Made by the ndarray constructor, which checks the bounds: ~10x less
    overhead than ``sliding_window_view``, and a query makes thousands of these."""
    return np.ndarray((len(a) - n + 1, n), a.dtype, a, 0, (a.strides[0], a.strides[0]))


def square_distances(span: np.ndarray, span_square: np.ndarray, query: Query) -> np.ndarray:
    """``|span[o + j] - query[j]|²`` for every offset o of the query's timbre (nq frames) in ``span``
    [shape=(L - nq + 1, nq)] float32, from ``span_square``, the squared norms of its rows, as
    ``|s|² + |q|² - 2 s·q``. The cross terms are those of the frames an offset pairs, one dot product each:
    not a matrix product of every span frame with every query frame, which for a long query is 10x the
    work, and which BLAS spreads over threads that wait for each other on a busy machine (measured: a
    3 s cymbal's query 7 s instead of 0.1 s)."""
    nq, dim = query.n, span.shape[1]
    step, item = span.strides
    pairs = np.ndarray((len(span) - nq + 1, nq, dim), span.dtype, span, 0, (step, step, item))  # [o, j] = s[o + j]
    # Per query frame j, one small matrix-vector product of the span frames it meets with q[j] (a stack
    # that matmul hands to BLAS one by one, each too small for its threads): ~2.5x faster than einsum's loop.
    cross = np.matmul(pairs.transpose(1, 0, 2), query.timbre[:, :, None])[..., 0].T
    out = _windows(span_square, nq) + query.timbre_square - 2.0 * cross
    return np.maximum(out, 0.0).astype(np.float32)
