"""Query the library: by a file, a region of a file, a clip that is not in the library, or several seeds
(positive and negative). Returns the top-k segments (or files), best first, joined with their metadata.

A query longer than one segment is matched as a *sequence*: every query window searches the store, the
hits vote for an alignment (asset, start time), alignments are scored over all windows, and the best
are refined on the stored MFCC frames to a frame (≈ 23 ms) before being scored again.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import defaultdict

import numpy as np
from sqlalchemy import select

from audiosim.config import AnalysisParams
from audiosim.errors import QueryError
from audiosim.features.embedding import embed_windows, file_embedding, transform
from audiosim.features.mfcc import LOW_FLOOR_DB, Frames, dct_matrix
from audiosim.features.noise import NoiseFloor, noise_floor, with_noise_floor, without_noise_floor
from audiosim.features.noise import gain_db as noise_gain_db
from audiosim.features.segments import segment_windows
from audiosim.library.db import Library
from audiosim.library.models import STATUS_INDEXED, Asset, Segment

MAX_QUERY_WINDOWS = 40  # a longer query is subsampled evenly: the alignment needs only a few
CANDIDATES_PER_WINDOW = 64
VOTE_STEPS = 4  # query windows per stored hop, when voting for alignments
REFINE_MAX_FRAMES = 430  # ≈ 10 s of frames are plenty to place an excerpt to a frame
NEGATIVE_WEIGHT = 2.0
LEVEL_RANGE_DB = 30.0  # alignment compares levels down to this far below the loudest frame
FIT_WEIGHT = 2.0  # a refined alignment's score: window distance + this × the RMS frame misfit
SILENCE_DB = -100.0  # the analysis floor: the level of a frame of digital silence
CLIMB_STEPS = 4  # how many radii an alignment may move from its votes
LEVEL_SCALE_DB = 6.0  # a level difference of this much costs as much as one standard unit of timbre


@dataclasses.dataclass(frozen=True)
class Seed:
    """A query example: a file (in the library or not), optionally a region of it, positive or negative."""

    path: str
    start: float | None = None
    end: float | None = None
    positive: bool = True


@dataclasses.dataclass
class Hit:
    rank: int
    asset_id: int
    segment_id: int | None
    path: str
    start: float
    end: float
    distance: float
    asset: Asset | None = None

    def to_json(self) -> dict:
        return {"rank": self.rank, "asset_id": self.asset_id, "segment_id": self.segment_id,
                "path": self.path, "start": round(self.start, 3), "end": round(self.end, 3),
                "distance": round(float(self.distance), 5)}


@dataclasses.dataclass
class _SeedFeatures:
    seed: Seed
    asset_id: int | None
    frames: Frames  # the region's frames at stored precision
    windows: list[tuple[int, int]]
    vectors: np.ndarray  # window embeddings
    window_weights: np.ndarray  # how much each window counts in an alignment's score (see _window_weights)
    file_vector: np.ndarray | None
    duration: float


@dataclasses.dataclass
class _Candidate:
    asset_id: int
    start: float  # aligned start of the query in the asset, seconds
    distance: float
    segment_id: int | None
    end: float | None = None
    asset: Asset | None = None  # its row, when already read (saves reading it again for the hits)


def search(library: Library, seeds: list[Seed], *, k: int = 50, level: str = "segment",
           filter_expression: str | None = None, exclude_self: bool = False) -> list[Hit]:
    """Top-k most similar segments (``level="segment"``) or files (``level="file"``), best first."""
    if level not in ("segment", "file"):
        raise QueryError(f"unknown level {level!r}: use 'segment' or 'file'")
    if not any(s.positive for s in seeds):
        raise QueryError("a query needs at least one positive example")
    if k < 1:
        raise QueryError("k must be at least 1")
    features = [_seed_features(library, s) for s in seeds]
    positives = [f for f in features if f.seed.positive]
    negatives = [f for f in features if not f.seed.positive]
    excluded = {f.asset_id for f in positives if f.asset_id is not None} if exclude_self else set()
    allowed_assets = _filtered_asset_ids(library, filter_expression) if filter_expression else None
    if allowed_assets is not None:
        allowed_assets -= excluded
        if not allowed_assets:
            return []
    if level == "file":
        candidates = _file_candidates(library, positives, negatives, k, allowed_assets, excluded)
    elif len(positives) == 1 and not negatives:
        candidates = _sequence_candidates(library, positives[0], k, allowed_assets, excluded)
    else:
        candidates = _multi_seed_candidates(library, positives, negatives, k, allowed_assets, excluded)
    return _to_hits(library, candidates, k)


# -- seeds ------------------------------------------------------------------------------------------------
def _seed_features(library: Library, seed: Seed) -> _SeedFeatures:
    params = library.params
    path = os.path.abspath(seed.path)
    asset = library.asset_by_path(path)
    if seed.start is not None and seed.end is not None and seed.end <= seed.start:
        raise QueryError(f"empty region: --end ({seed.end}) must be after --start ({seed.start})")
    if asset is not None and asset.status == STATUS_INDEXED and _unchanged(asset, path):
        stored = library.load_frames(asset)
        duration = float(asset.duration or 0.0)
        i0, i1 = _frame_range(len(stored), seed, params, duration)
        frames = stored[i0:i1]
        asset_id = asset.id
    else:
        if not os.path.exists(path):
            raise QueryError(f"not found: {seed.path}")
        from audiosim.analysis import analyze_signal
        from audiosim.audio.decode import decode_mono

        mono, info = decode_mono(path, params.sample_rate)
        duration = len(mono) / params.sample_rate
        s0 = int(round((seed.start or 0.0) * params.sample_rate))
        s1 = len(mono) if seed.end is None else int(round(seed.end * params.sample_rate))
        if s0 >= len(mono):
            raise QueryError(f"--start {seed.start} is past the end of {seed.path} ({duration:.2f} s)")
        frames = analyze_signal(mono[s0:s1], params)
        asset_id = asset.id if asset is not None and asset.status == STATUS_INDEXED else None
    region_duration = len(frames) * params.frame_seconds
    if seed.start is None and seed.end is None:
        region_duration = duration
    windows = segment_windows(frames.rms_db, params)
    if not windows:
        raise QueryError(f"nothing to search with: {seed.path} is silent in that region")
    return _SeedFeatures(seed, asset_id, frames, windows, embed_windows(frames, windows, params),
                         _window_weights(frames, windows), file_embedding(frames, params), region_duration)


def _window_weights(frames: Frames, windows: list[tuple[int, int]]) -> np.ndarray:
    """Each window's loudest frame relative to the query's, as an amplitude ratio (10 dB down: 0.32).

    A noisy excerpt's gaps are windows of noise where the indexed original has silence, and nothing
    matches them well; weighted by loudness they cannot outvote the sounds around them."""
    rms = frames.rms_db.astype(np.float32)
    loudest = np.array([rms[s:e].max() for s, e in windows], np.float32)
    return np.power(10.0, (loudest - loudest.max()) / 20.0)


def _unchanged(asset: Asset, path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return True  # gone from disk: the stored frames still describe it
    return st.st_size == asset.size and st.st_mtime == asset.mtime


def _frame_range(n_frames: int, seed: Seed, params: AnalysisParams, duration: float) -> tuple[int, int]:
    fs = params.frame_seconds
    start = seed.start or 0.0
    end = seed.end if seed.end is not None else math.inf
    if start >= duration and duration > 0:
        raise QueryError(f"--start {start} is past the end of {seed.path} ({duration:.2f} s)")
    i0 = min(n_frames, max(0, math.ceil(start / fs - 1e-9)))
    i1 = n_frames if end == math.inf else min(n_frames, max(i0 + 1, math.ceil(end / fs - 1e-9)))
    return i0, i1


def _filtered_asset_ids(library: Library, expression: str) -> set[int]:
    from audiosim.library.filters import compile_filter

    with library.Session() as s:
        return set(s.scalars(select(Asset.id).where(compile_filter(expression),
                                                    Asset.status == STATUS_INDEXED)))


def _allowed_segment_ids(library: Library, assets: set[int] | None) -> np.ndarray | None:
    if assets is None:
        return None
    with library.Session() as s:
        ids = s.scalars(select(Segment.id).where(Segment.asset_id.in_(list(assets)))).all()
    return np.asarray(ids, np.int64)


# -- single seed: sequence matching ------------------------------------------------------------------------
def _sequence_candidates(library: Library, seed: _SeedFeatures, k: int, allowed: set[int] | None,
                         excluded: set[int]) -> list[_Candidate]:
    params = library.params
    fs = params.frame_seconds
    windows = _vote_windows(seed.frames, params)
    pick = np.unique(np.linspace(0, len(windows) - 1, min(len(windows), MAX_QUERY_WINDOWS)).round().astype(int))
    windows = [windows[i] for i in pick]
    vectors = embed_windows(seed.frames, windows, params)
    weights = _window_weights(seed.frames, windows)
    shares = weights / weights.sum()  # each window's share of an alignment's score
    store = library.store("segments")
    n_per_window = max(CANDIDATES_PER_WINDOW, 4 * k) if len(windows) > 1 else 4 * k + 16
    n_windows = len(windows)
    floor = noise_floor(seed.frames, params)
    # A query from outside also searches as if it had no noise: its quiet parts are then like the
    # original's. A seed from the library is a stored recording, whose copy in the store has the very same
    # floor: that second search finds nothing new for it (measured: segment-level precision unchanged) at
    # twice the votes.
    if floor is not None and seed.asset_id is None:
        vectors = np.concatenate([vectors, embed_windows(without_noise_floor(seed.frames, floor, params),
                                                         windows, params)])
    distances, ids = store.search(vectors, n_per_window, allow_ids=_allowed_segment_ids(library, allowed))
    segs = _segment_rows(library, np.unique(ids[ids >= 0]))
    votes: dict[int, list[tuple[float, int, float, int]]] = defaultdict(list)  # asset -> (T, window, d, seg)
    for row in range(len(vectors)):
        w = row % n_windows
        offset = windows[w][0] * fs
        for d, sid in zip(distances[row], ids[row]):
            if sid < 0 or sid not in segs:
                continue
            asset_id, t0, _t1 = segs[sid]
            if asset_id in excluded:
                continue
            votes[asset_id].append((t0 - offset, w, float(d), int(sid)))
    # A window with no vote for an alignment counts as its worst retrieved distance.
    miss = np.array([row[np.isfinite(row)].max() if np.isfinite(row).any() else 1e3 for row in distances])
    miss = miss.reshape(-1, n_windows).max(axis=0)
    tolerance = params.segment_hop_seconds * 0.75
    candidates = []
    for asset_id, asset_votes in votes.items():
        candidates += _alignments(asset_id, asset_votes, miss, shares, tolerance, seed.duration)
    candidates.sort(key=lambda c: c.distance)
    candidates = candidates[: 3 * k + 10]
    return _refine(library, seed, candidates, floor)


def _vote_windows(frames: Frames, params: AnalysisParams) -> list[tuple[int, int]]:
    """The query's windows for voting, VOTE_STEPS times denser than the stored grid: the stored windows
    start wherever the grid put them, and one of these then starts within an eighth of a hop of each."""
    dense = dataclasses.replace(params, segment_hop_seconds=params.segment_hop_seconds / VOTE_STEPS)
    return segment_windows(frames.rms_db, dense) or segment_windows(frames.rms_db, params)


def _alignments(asset_id: int, votes: list, miss: np.ndarray, shares: np.ndarray, tolerance: float,
                span: float) -> list[_Candidate]:
    """Group one asset's votes into alignments; score each over all query windows (``shares``: each
    window's weight, summing to 1)."""
    votes.sort()
    times = np.array([v[0] for v in votes])
    window = np.array([v[1] for v in votes])
    dist = np.array([v[2] for v in votes])
    segment = np.array([v[3] for v in votes])
    found: list[_Candidate] = []
    anchors = np.unique(times)
    starts = np.searchsorted(times, anchors - tolerance)
    stops = np.searchsorted(times, anchors + tolerance + 1e-9)
    medians = (times[(starts + stops - 1) // 2] + times[(starts + stops) // 2]) / 2.0  # times are sorted
    for lo, hi, median in zip(starts.tolist(), stops.tolist(), medians.tolist()):
        best = miss.copy()
        np.minimum.at(best, window[lo:hi], dist[lo:hi])
        nearest = lo + int(np.argmin(dist[lo:hi]))
        found.append(_Candidate(asset_id, median, float(best @ shares), int(segment[nearest])))
    found.sort(key=lambda c: c.distance)
    kept: list[_Candidate] = []
    for c in found:  # distinct alignments only
        if all(abs(c.start - o.start) > max(tolerance, span / 2) for o in kept):
            kept.append(c)
    return kept


def _refine(library: Library, seed: _SeedFeatures, candidates: list[_Candidate],
            floor: NoiseFloor | None) -> list[_Candidate]:
    """Place each alignment to a frame on the stored frames, then score it on the aligned windows and, for a
    passage from outside the library, on how well the frames themselves line up (``FIT_WEIGHT``)."""
    params = library.params
    fs = params.frame_seconds
    radius = params.frames_per_segment_hop + 2
    query, weights = _alignment_features(seed.frames[:REFINE_MAX_FRAMES])
    # A passage (several windows) from outside the library is first of all looked for: which recording, and
    # when, is it a copy of? How its frames line up with a candidate's tells a copy (through noise, at
    # another gain) from a lookalike, and then counts beside the window distance. A query from the library
    # is itself the copy; for it, as for a single window, the question is what sounds alike, and frames of
    # different recordings never line up, so the misfit would only add noise to that ranking (measured on
    # real held-out sounds: segment-level precision 0.71 -> 0.61 for instrument notes with it).
    looked_for = len(seed.windows) > 1 and seed.asset_id is None
    pad = len(query) // 2  # silence around each asset: an alignment may hang over its start or end by this
    targets: dict[int, tuple[Frames, np.ndarray]] = {}  # asset -> (padded frames, alignment features)
    assets = _assets(library, {c.asset_id for c in candidates})
    index = {w: i for i, w in enumerate(seed.windows)}
    refined = []
    for c in candidates:
        asset = assets.get(c.asset_id)
        if asset is None:
            continue
        c.asset = asset
        duration = float(asset.duration or 0.0)
        if c.asset_id not in targets:
            padded = _with_silence(library.load_frames(asset), pad, params)
            targets[c.asset_id] = padded, _alignment_features(padded)[0]
        target, target_features = targets[c.asset_id]
        whole = asset.n_segments <= 1 and duration <= seed.duration + params.segment_hop_seconds
        guess = pad + (0 if whole else int(round(c.start / fs)))
        offset, cost = _climb(query, weights, target_features, guess, radius)
        heard, origin = target, 0
        if floor is not None:
            heard_cache: dict = {}
            for start in {guess, offset}:  # the gain at the plain alignment may be the better guess
                noisy = _climb_through_floor(seed, query, weights, target, start, radius, floor, params,
                                             heard_cache)
                if noisy[1] < cost:
                    offset, cost, heard, origin = noisy
        if whole:  # the match is the asset itself
            c.start, c.end = 0.0, duration
        else:
            begin = offset - pad  # the query's first frame, in the asset's frames
            # The seed's windows that fall on the asset and on what was heard of it (a noisy span is cut
            # around the alignment; a window past its end was once an IndexError).
            first, last = max(pad, origin), min(len(target) - pad, origin + len(heard))
            own = [w for w in seed.windows if w[0] + offset >= first and w[1] + offset <= last]
            if own:
                shifted = [(s + offset - origin, e + offset - origin) for s, e in own]
                vectors = embed_windows(heard, shifted, params)
                rows = [index[w] for w in own]
                c.distance = float(np.average(np.linalg.norm(vectors - seed.vectors[rows], axis=1),
                                              weights=seed.window_weights[rows]))
            c.start = max(0.0, begin * fs)
            c.end = min(duration, c.start + len(seed.frames) * fs)
        if looked_for:
            c.distance += FIT_WEIGHT * math.sqrt(cost)
        refined.append(c)
    return refined


def _with_silence(frames: Frames, pad: int, params: AnalysisParams) -> Frames:
    """``frames`` with ``pad`` frames of digital silence before and after: what lies outside a file is
    nothing, so an alignment that hangs over its edge pays for the query's sound it leaves unmatched."""
    silent_mfcc = np.full(params.n_mels, SILENCE_DB, np.float32) @ dct_matrix(params).T
    silence = Frames(np.tile(silent_mfcc.astype(np.float16), (pad, 1)), np.full(pad, SILENCE_DB, np.float16),
                     np.full((pad, frames.low.shape[1]), LOW_FLOOR_DB, np.float16))
    return Frames.concat([silence, frames, silence], params.n_mfcc)


def _climb_through_floor(seed: _SeedFeatures, query: np.ndarray, weights: np.ndarray, target: Frames,
                         guess: int, radius: int, floor: NoiseFloor, params: AnalysisParams,
                         cache: dict) -> tuple[int, float, Frames, int]:
    """:func:`_climb` on the candidate's frames with the query's noise floor added (at the gain between
    them, estimated where the query is loud): a noisy excerpt compared with its original as it would sound
    through the same noise. Returns (offset, cost, the noisy span of the target, its first frame).

    The caller keeps whichever of this and the plain alignment fits better: a clean query's "floor" is
    only its quietest frames, and adding those to the candidate would blur it for nothing.

    ``cache`` (one per candidate) keeps the noisy span per (origin, gain): the passes and starts of one
    candidate often meet the same loudest frames, hence the same gain."""
    reach = (CLIMB_STEPS + 1) * radius + len(query)
    origin = max(0, guess - reach)
    span = target[origin:guess + reach + len(query)]
    rms_q = seed.frames.rms_db[:REFINE_MAX_FRAMES]
    offset = guess
    for _ in range(2):  # a second pass with the gain at the better offset, if the first one moved
        gain = noise_gain_db(rms_q, span.rms_db, offset - origin)
        if (origin, gain) not in cache:
            heard = with_noise_floor(span, floor, gain, params)
            cache[origin, gain] = heard, _alignment_features(heard)[0]
        heard, heard_features = cache[origin, gain]
        moved, cost = _climb(query, weights, heard_features, offset - origin, radius)
        if moved + origin == offset:
            break
        offset = moved + origin
    return offset, cost, heard, origin


def _alignment_features(frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    """Frames for alignment: MFCC c1.. on one footing (level-free) and, last, the level in dB; and each
    frame's weight, its power relative to the loudest frame: the gaps of a noisy excerpt, which the clean
    original has as silence, then count for next to nothing."""
    rms = frames.rms_db.astype(np.float32)
    features = np.column_stack([frames.mfcc[:, 1:].astype(np.float32) * transform().frame_scale, rms])
    weights = np.power(10.0, (rms - rms.max(initial=-100.0)) / 10.0) if len(rms) else rms
    return features, weights.astype(np.float32)


def _climb(query: np.ndarray, weights: np.ndarray, target: np.ndarray, guess: int, radius: int,
           steps: int = CLIMB_STEPS) -> tuple[int, float]:
    """:func:`_best_offset`, searched again from the edge while the best lies on it: the votes of a
    sustained sound, whose windows all look alike, can place an alignment further off than one radius."""
    best, cost = _best_offset(query, weights, target, guess, radius)
    for _ in range(steps):
        if abs(best - guess) < radius:
            break
        guess, (best, cost) = best, _best_offset(query, weights, target, best, radius)
    return best, cost


def _best_offset(query: np.ndarray, weights: np.ndarray, target: np.ndarray, guess: int,
                 radius: int) -> tuple[int, float]:
    """The frame offset of ``query`` in ``target`` near ``guess`` with the least power-weighted mean squared
    difference (offsets where less than half of the query overlaps the target are not considered).

    The last column is the level: compared after removing the gain that fits best at each offset (an
    excerpt may be louder or quieter) and clipped 30 dB below the loudest frame on either side, it tells
    apart the moments of a decaying note whose spectrum barely changes."""
    nq, nt = len(query), len(target)
    pad = nq // 2
    lo = max(-pad, guess - radius)
    hi = min(nt - max(1, pad), guess + radius)
    if hi < lo or nt == 0:
        return max(0, min(guess, nt - 1)), math.inf
    # The target's frames lo .. hi + nq, NaN where they fall outside it, so that every candidate offset is
    # one sliding window; NaN marks "no overlap".
    span = np.full((hi - lo + nq, target.shape[1]), np.nan, np.float32)
    first, last = max(lo, 0), min(hi + nq, nt)
    if last > first:
        span[first - lo:last - lo] = target[first:last]
    per_frame = _sliding_square_distances(span[:, :-1], query[:, :-1])  # (n_off, nq), NaN: no overlap
    overlap = ~np.isnan(per_frame)
    mass = np.maximum((weights * overlap).sum(axis=1), 1e-30)
    level_q = np.maximum(query[:, -1] - query[:, -1].max(), -LEVEL_RANGE_DB)
    level_t = np.lib.stride_tricks.sliding_window_view(span[:, -1], nq)  # (n_off, nq)
    level_t = np.maximum(level_t - np.nanmax(level_t, axis=1, keepdims=True), -LEVEL_RANGE_DB)
    gap = level_q - level_t
    gain = np.nansum(gap * weights, axis=1, keepdims=True) / mass[:, None]
    per_frame += np.square((gap - gain) / LEVEL_SCALE_DB)
    costs = np.where(overlap.any(axis=1), np.nansum(per_frame * weights, axis=1) / mass, np.inf)
    best = int(np.argmin(costs))
    return lo + best, float(costs[best])


def _sliding_square_distances(span: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``|span[o + j] - query[j]|²`` for every offset o of ``query`` (nq frames) in ``span`` [shape=(L - nq + 1,
    nq)]; NaN where the span's frame is NaN (outside the target). As ``|s|² + |q|² - 2 s·q``: the cross terms
    of all pairs are one matrix product, and those of an offset are one of its diagonals."""
    nq = len(query)
    valid = ~np.isnan(span[:, 0])
    s = np.where(valid[:, None], span, 0.0).astype(np.float64)
    q = query.astype(np.float64)
    cross = s @ q.T  # (L, nq): cross[i, j] = s[i]·q[j]
    n_off = len(s) - nq + 1
    step0, step1 = cross.strides
    diagonals = np.lib.stride_tricks.as_strided(cross, (n_off, nq), (step0, step0 + step1))  # [o, j] = cross[o+j, j]
    square_s = np.lib.stride_tricks.sliding_window_view(np.einsum("ij,ij->i", s, s), nq)
    out = square_s + np.einsum("ij,ij->i", q, q) - 2.0 * diagonals
    out = np.maximum(out, 0.0)
    out[~np.lib.stride_tricks.sliding_window_view(valid, nq)] = np.nan
    return out.astype(np.float32)


# -- several seeds ----------------------------------------------------------------------------------------
def _seed_distance(vectors: np.ndarray, seeds: list[_SeedFeatures], *, use_file: bool) -> np.ndarray:
    """Mean over seeds of the distance to the nearest window of that seed (or its file vector)."""
    per_seed = []
    for f in seeds:
        refs = f.file_vector[np.newaxis] if use_file and f.file_vector is not None else f.vectors
        d = np.linalg.norm(vectors[:, np.newaxis, :] - refs[np.newaxis, :, :], axis=2).min(axis=1)
        per_seed.append(d)
    return np.mean(per_seed, axis=0)


def _combined_score(vectors: np.ndarray, positives, negatives, *, use_file: bool) -> np.ndarray:
    """Distance to the positives, pushed down when a result is nearer the negatives than the positives."""
    d_pos = _seed_distance(vectors, positives, use_file=use_file)
    if not negatives:
        return d_pos
    d_neg = _seed_distance(vectors, negatives, use_file=use_file)
    return d_pos + NEGATIVE_WEIGHT * np.maximum(0.0, d_pos - d_neg)


def _multi_seed_candidates(library: Library, positives, negatives, k: int, allowed: set[int] | None,
                           excluded: set[int]) -> list[_Candidate]:
    store = library.store("segments")
    queries = np.concatenate([f.vectors[:MAX_QUERY_WINDOWS] for f in positives])
    _, ids = store.search(queries, 4 * k + 16, allow_ids=_allowed_segment_ids(library, allowed))
    unique = np.unique(ids[ids >= 0])
    if len(unique) == 0:
        return []
    segs = _segment_rows(library, unique)
    unique = np.asarray([i for i in unique if i in segs and segs[i][0] not in excluded], np.int64)
    if len(unique) == 0:
        return []
    scores = _combined_score(store.get(unique), positives, negatives, use_file=False)
    return [_Candidate(segs[sid][0], segs[sid][1], float(d), int(sid), segs[sid][2])
            for sid, d in zip(unique, scores)]


def _file_candidates(library: Library, positives, negatives, k: int, allowed: set[int] | None,
                     excluded: set[int]) -> list[_Candidate]:
    store = library.store("files")
    queries = np.stack([f.file_vector for f in positives if f.file_vector is not None])
    allow = None if allowed is None else np.asarray(sorted(allowed), np.int64)
    _, ids = store.search(queries, k + len(excluded) + 16, allow_ids=allow)
    unique = np.asarray([i for i in np.unique(ids[ids >= 0]) if int(i) not in excluded], np.int64)
    if len(unique) == 0:
        return []
    scores = _combined_score(store.get(unique), positives, negatives, use_file=True)
    return [_Candidate(int(a), 0.0, float(d), None) for a, d in zip(unique, scores)]


# -- results ----------------------------------------------------------------------------------------------
def _segment_rows(library: Library, ids: np.ndarray) -> dict[int, tuple[int, float, float]]:
    with library.Session() as s:
        rows = s.execute(select(Segment.id, Segment.asset_id, Segment.start, Segment.end)
                         .where(Segment.id.in_([int(i) for i in ids]))).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _assets(library: Library, ids: set[int]) -> dict[int, Asset]:
    with library.Session() as s:
        return {a.id: a for a in s.scalars(select(Asset).where(Asset.id.in_(list(ids)),
                                                                Asset.status == STATUS_INDEXED))}


def _to_hits(library: Library, candidates: list[_Candidate], k: int) -> list[Hit]:
    """Best first; overlapping hits in one asset collapse to the best of them."""
    candidates = sorted(candidates, key=lambda c: c.distance)
    assets = {c.asset_id: c.asset for c in candidates if c.asset is not None}
    missing = {c.asset_id for c in candidates} - assets.keys()
    if missing:
        assets.update(_assets(library, missing))
    kept: list[Hit] = []
    by_asset: dict[int, list[Hit]] = defaultdict(list)
    for c in candidates:
        asset = assets.get(c.asset_id)
        if asset is None:  # a vector whose asset is gone (store not yet reconciled): not a result
            continue
        if c.segment_id is None and c.end is None:
            start, end = 0.0, float(asset.duration or 0.0)
        else:
            start = c.start
            end = c.end if c.end is not None else start + library.params.segment_seconds
        if any(min(end, h.end) - max(start, h.start) > 0.05 for h in by_asset[c.asset_id]):
            continue
        hit = Hit(len(kept) + 1, c.asset_id, c.segment_id, asset.path, start, end, c.distance, asset)
        kept.append(hit)
        by_asset[c.asset_id].append(hit)
        if len(kept) == k:
            break
    return kept
