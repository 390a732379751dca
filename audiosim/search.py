"""Query the library: by a file, a region of a file, a clip that is not in the library, or several seeds
(positive and negative). Returns the top-k segments (or files), best first, joined with their metadata.

A query longer than one segment is matched as a *sequence*: every query window searches the store, the
hits vote for an alignment (asset, start time), alignments are scored over all windows, and the best
are refined on the stored MFCC frames to a frame (≈ 23 ms) before being scored again.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections import defaultdict

import numpy as np
from sqlalchemy import bindparam, select

from audiosim import alignment
from audiosim.config import AnalysisParams
from audiosim.errors import QueryError
from audiosim.features.embedding import embed_windows, file_embedding
from audiosim.features.mfcc import Frames
from audiosim.features.noise import NoiseFloor, noise_floor, without_noise_floor
from audiosim.features.segments import segment_windows
from audiosim.library.db import Library
from audiosim.library.models import STATUS_INDEXED, Asset, AssetRow, Segment
from audiosim.library.segment_table import SegmentRows

MAX_QUERY_WINDOWS = 40  # a longer query is subsampled evenly: the alignment needs only a few
CANDIDATES_PER_WINDOW = 64
VOTE_STEPS = 4  # query windows per stored hop, when voting for alignments
REFINE_MAX_FRAMES = 430  # ≈ 10 s of frames are plenty to place an excerpt to a frame
NEGATIVE_WEIGHT = 2.0
FIT_WEIGHT = 2.0  # a refined alignment's score: window distance + this × the RMS frame misfit


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
    asset: AssetRow | None = None

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
    duration: float
    params: AnalysisParams

    @functools.cached_property
    def file_vector(self) -> np.ndarray | None:
        """The region's file-level embedding (only a query at file level needs it)."""
        return file_embedding(self.frames, self.params)


@dataclasses.dataclass
class _Candidate:
    asset_id: int
    start: float  # aligned start of the query in the asset, seconds
    distance: float
    segment_id: int | None
    end: float | None = None
    asset: AssetRow | None = None  # its row, when already read (saves reading it again for the hits)
    asset_duration: float = 0.0  # what the refinement needs of its asset (from the segment table)
    asset_segments: int = 0


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
    whole_asset = None
    if asset is not None and asset.status == STATUS_INDEXED and _unchanged(asset, path):
        stored = library.load_frames(asset)
        duration = float(asset.duration or 0.0)
        i0, i1 = _frame_range(len(stored), seed, params, duration)
        frames = stored[i0:i1]
        asset_id = asset.id
        if i0 == 0 and i1 == len(stored):
            whole_asset = asset
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
    vectors = _stored_vectors(library, whole_asset, windows) if whole_asset is not None else None
    if vectors is None:
        vectors = embed_windows(frames, windows, params)
    return _SeedFeatures(seed, asset_id, frames, windows, vectors, _window_weights(frames, windows),
                         region_duration, params)


def _stored_vectors(library: Library, asset: AssetRow, windows: list[tuple[int, int]]) -> np.ndarray | None:
    """The segment vectors stored for ``asset`` if they are those of ``windows`` (its whole stored frames'
    windows), else None. The indexer embeds the frames as stored (``analysis.features_from_frames``), so
    they are the very vectors that embedding its stored frames again would give, without the work."""
    from audiosim.analysis import window_times

    with library.engine.connect() as conn:
        rows = conn.execute(_STORED_SEGMENTS, {"asset": asset.id}).all()
    times = window_times(windows, float(asset.duration or 0.0), library.params)
    if [(r.start, r.end) for r in rows] != times:
        return None
    vectors = np.frombuffer(b"".join(r.embedding for r in rows), np.float32)
    if len(vectors) != len(rows) * library.dim:
        return None
    return vectors.reshape(len(rows), library.dim).copy()


_STORED_SEGMENTS = select(Segment.start, Segment.end, Segment.embedding).where(
    Segment.asset_id == bindparam("asset")).order_by(Segment.start)


def _window_weights(frames: Frames, windows: list[tuple[int, int]]) -> np.ndarray:
    """Each window's loudest frame relative to the query's, as an amplitude ratio (10 dB down: 0.32).

    A noisy excerpt's gaps are windows of noise where the indexed original has silence, and nothing
    matches them well; weighted by loudness they cannot outvote the sounds around them."""
    rms = frames.rms_db.astype(np.float32)
    loudest = np.array([rms[s:e].max() for s, e in windows], np.float32)
    return np.power(10.0, (loudest - loudest.max()) / 20.0)


def _unchanged(asset: AssetRow, path: str) -> bool:
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
    windows = _vote_windows(seed.frames, params)
    pick = np.unique(np.linspace(0, len(windows) - 1, min(len(windows), MAX_QUERY_WINDOWS)).round().astype(int))
    windows = [windows[i] for i in pick]
    if windows == seed.windows:  # a one-shot is one window: its vectors are at hand
        vectors, weights = seed.vectors, seed.window_weights
    else:
        vectors, weights = embed_windows(seed.frames, windows, params), _window_weights(seed.frames, windows)
    shares = weights / weights.sum()  # each window's share of an alignment's score
    store = library.store("segments")
    n_per_window = max(CANDIDATES_PER_WINDOW, 4 * k) if len(windows) > 1 else 4 * k + 16
    floor = noise_floor(seed.frames, params)
    # A query from outside also searches as if it had no noise: its quiet parts are then like the
    # original's. A seed from the library is a stored recording, whose copy in the store has the very same
    # floor: that second search finds nothing new for it (measured: segment-level precision unchanged) at
    # twice the votes.
    if floor is not None and seed.asset_id is None:
        vectors = np.concatenate([vectors, embed_windows(without_noise_floor(seed.frames, floor, params),
                                                         windows, params)])
    distances, ids = store.search(vectors, n_per_window, allow_ids=_allowed_segment_ids(library, allowed))
    offsets = np.array([w[0] * params.frame_seconds for w in windows])
    candidates = _alignments(library, distances, ids, offsets, shares, excluded, seed.duration, 3 * k + 10)
    return _refine(library, seed, candidates, floor)


def _not_excluded(rows: SegmentRows, where: np.ndarray, excluded: set[int]) -> np.ndarray:
    """Which of the table's rows ``where`` belong to none of the ``excluded`` assets (a boolean mask)."""
    if not excluded:
        return np.ones(len(where), bool)
    return ~np.isin(rows.asset_ids[where], np.fromiter(excluded, np.int64, len(excluded)))


def _vote_windows(frames: Frames, params: AnalysisParams) -> list[tuple[int, int]]:
    """The query's windows for voting, VOTE_STEPS times denser than the stored grid: the stored windows
    start wherever the grid put them, and one of these then starts within an eighth of a hop of each."""
    dense = dataclasses.replace(params, segment_hop_seconds=params.segment_hop_seconds / VOTE_STEPS)
    return segment_windows(frames.rms_db, dense) or segment_windows(frames.rms_db, params)


def _alignments(library: Library, distances: np.ndarray, ids: np.ndarray, offsets: np.ndarray,
                shares: np.ndarray, excluded: set[int], span: float, limit: int) -> list[_Candidate]:
    """The store's hits for each query window (row ``r`` is window ``r % len(offsets)``, which starts
    ``offsets`` seconds into the query) vote for alignments (asset, start of the query in it); every
    distinct alignment is scored over all windows (``shares``: each window's weight, summing to 1), a
    window without a vote for it counting as its worst retrieved distance. The best ``limit``, best first.

    One asset's votes within ``tolerance`` of each other are one alignment, placed at their median time;
    of the alignments of one asset, those nearer than ``max(tolerance, span / 2)`` to a better one are
    dropped. Ties keep the order of the hits (by window, then by distance), so the result does not depend
    on how the work is split: it is done for all assets at once, in arrays."""
    params = library.params
    n_windows = len(offsets)
    tolerance = params.segment_hop_seconds * 0.75
    # A window with no vote for an alignment counts as its worst retrieved distance.
    finite = np.isfinite(distances)
    worst = np.where(finite, distances, -np.inf).max(axis=1, initial=-np.inf)
    miss = np.where(finite.any(axis=1), worst, 1e3).astype(distances.dtype if finite.any(axis=1).all()
                                                          else np.float64)
    miss = miss.reshape(-1, n_windows).max(axis=0)

    flat_ids = ids.reshape(-1)
    rows = library.segment_rows(flat_ids[flat_ids >= 0])
    found, where = rows.find(flat_ids)
    order = np.flatnonzero(found & (flat_ids >= 0))  # hits in the store's order: row by row, nearest first
    order = order[_not_excluded(rows, where[order], excluded)]
    if len(order) == 0:
        return []
    window = (order // ids.shape[1]) % n_windows
    row = where[order]
    asset = rows.asset_ids[row]
    time = rows.starts[row] - offsets[window]
    dist = distances.reshape(-1)[order].astype(np.float64)
    segment = flat_ids[order]
    # Assets are numbered in the order of their first hit; each asset's votes sorted by (time, window,
    # distance, segment).
    assets, first, asset_rank = np.unique(asset, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank_of = np.empty(len(assets), np.int64)
    rank_of[by_first] = np.arange(len(assets))
    group, asset_of_group = rank_of[asset_rank], assets[by_first]
    by = np.lexsort((segment, dist, window, time, group))
    group, time, window, dist, segment, row = group[by], time[by], window[by], dist[by], segment[by], row[by]

    # Alignments: each asset's distinct vote times. The votes within tolerance of one are found by binary
    # search on (asset, rank of the time among all distinct times): exact integers, so "time >= t" is
    # decided on the very floats it would be decided on asset by asset.
    values = np.unique(time)
    stride = len(values) + 1
    key = group * stride + np.searchsorted(values, time)
    anchor = np.flatnonzero(np.concatenate(([True], (np.diff(group) != 0) | (np.diff(time) != 0))))
    anchor_group, anchor_time, anchor_row = group[anchor], time[anchor], row[anchor]
    lo = np.searchsorted(key, anchor_group * stride + np.searchsorted(values, anchor_time - tolerance))
    hi = np.searchsorted(key, anchor_group * stride + np.searchsorted(values, anchor_time + tolerance + 1e-9))
    median = (time[(lo + hi - 1) // 2] + time[(lo + hi) // 2]) / 2.0
    # Each alignment's best distance per window (the miss where it has none), and its nearest vote.
    counts = hi - lo
    which = np.repeat(np.arange(len(anchor)), counts)
    vote = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
    best = np.tile(miss, (len(anchor), 1))
    # 1-D and one dtype: numpy's fast path (a float64 operand into float32 cells takes the slow one, ~50x).
    # Rounding to float32 is monotonic, so the minimum stored is the same either way.
    np.minimum.at(best.reshape(-1), which * n_windows + window[vote], dist[vote].astype(best.dtype))
    # Summed in float64 by numpy's own (pairwise) order, not a BLAS product: its order depends on the
    # kernel and the matrix's shape, which would break near-ties differently from one call to the next.
    score = (best.astype(np.float64) * shares.astype(np.float64)).sum(axis=1)
    starts = np.cumsum(counts) - counts
    least = np.minimum.reduceat(dist[vote], starts)
    at_least = np.flatnonzero(dist[vote] == least[which])
    nearest = segment[vote[at_least[np.searchsorted(at_least, starts)]]]

    # Best first (ties: by asset, then by time); of one asset's alignments only the distinct ones. An
    # alignment is only compared with better ones of its asset, so the first `limit` are final.
    ranked = np.lexsort((np.arange(len(anchor)), anchor_group, score))
    gap = max(tolerance, span / 2)
    # Each asset's best alignment is kept and those within `gap` of it are not (most of a long query's
    # alignments: its windows vote for one asset at many times); only the rest are compared one by one.
    ranked_group = anchor_group[ranked]
    _, group_best = np.unique(ranked_group, return_index=True)
    best_median = np.empty(int(ranked_group.max()) + 1)
    best_median[ranked_group[group_best]] = median[ranked[group_best]]
    open_question = np.abs(median[ranked] - best_median[ranked_group]) > gap
    open_question[group_best] = True
    kept: dict[int, list[float]] = defaultdict(list)
    chosen: list[int] = []
    groups, medians = anchor_group.tolist(), median.tolist()
    for i in ranked[open_question].tolist():
        others = kept[groups[i]]
        if all(abs(medians[i] - o) > gap for o in others):
            others.append(medians[i])
            chosen.append(i)
            if len(chosen) == limit:
                break
    chosen_rows = anchor_row[chosen]
    return [_Candidate(a, t, d, s, asset_duration=duration, asset_segments=n) for a, t, d, s, duration, n in
            zip(asset_of_group[anchor_group[chosen]].tolist(), median[chosen].tolist(), score[chosen].tolist(),
                nearest[chosen].tolist(), rows.asset_durations[chosen_rows].tolist(),
                rows.asset_segments[chosen_rows].tolist())]


def _refine(library: Library, seed: _SeedFeatures, candidates: list[_Candidate],
            floor: NoiseFloor | None) -> list[_Candidate]:
    """Place each alignment to a frame on the stored frames, then score it on the aligned windows and, for a
    passage from outside the library, on how well the frames themselves line up (``FIT_WEIGHT``)."""
    params = library.params
    fs = params.frame_seconds
    radius = params.frames_per_segment_hop + 2
    query = alignment.Query(*alignment.frame_features(seed.frames[:REFINE_MAX_FRAMES]))
    query_rms = seed.frames.rms_db[:REFINE_MAX_FRAMES]
    # A passage (several windows) from outside the library is first of all looked for: which recording, and
    # when, is it a copy of? How its frames line up with a candidate's tells a copy (through noise, at
    # another gain) from a lookalike, and then counts beside the window distance. A query from the library
    # is itself the copy; for it, as for a single window, the question is what sounds alike, and frames of
    # different recordings never line up, so the misfit would only add noise to that ranking (measured on
    # real held-out sounds: segment-level precision 0.71 -> 0.61 for instrument notes with it).
    looked_for = len(seed.windows) > 1 and seed.asset_id is None
    pad = query.n // 2  # silence around each asset: an alignment may hang over its start or end by this

    def is_whole(c: _Candidate) -> bool:  # an asset no longer than the query: the match is the asset itself
        return c.asset_segments <= 1 and c.asset_duration <= seed.duration + params.segment_hop_seconds

    # Without the misfit, a whole asset's score is its vote: aligning it would change nothing (the usual
    # case of a one-shot among one-shots), and it needs neither its row nor its frames.
    aligning = {c.asset_id for c in candidates if looked_for or not is_whole(c)}
    assets = library.indexed_asset_rows(aligning) if aligning else {}
    targets: dict[int, tuple[Frames, alignment.Target]] = {}  # asset -> (padded frames, laid out for alignment)
    index = {w: i for i, w in enumerate(seed.windows)}
    refined, aligned = [], []
    for c in candidates:
        duration, whole = c.asset_duration, is_whole(c)
        if whole and not looked_for:
            c.start, c.end = 0.0, duration
            refined.append(c)
            continue
        asset = assets.get(c.asset_id)
        if asset is None:
            continue
        c.asset = asset
        if c.asset_id not in targets:
            padded = alignment.with_silence(library.load_frames(asset), pad, params)
            targets[c.asset_id] = padded, alignment.Target(alignment.frame_features(padded)[0], query.n)
        target, target_features = targets[c.asset_id]
        guess = pad + (0 if whole else int(round(c.start / fs)))
        offset, cost = alignment.climb(query, target_features, guess, radius)
        heard, origin = target, 0
        if floor is not None:
            heard_cache: dict = {}
            for start in {guess, offset}:  # the gain at the plain alignment may be the better guess
                noisy = alignment.climb_through_floor(query, query_rms, target, start, radius, floor, params,
                                                      heard_cache)
                if noisy[1] < cost:
                    offset, cost, heard, origin = noisy
        fit = FIT_WEIGHT * math.sqrt(cost) if looked_for else 0.0
        if whole:  # the match is the asset itself
            c.start, c.end = 0.0, duration
        else:
            begin = offset - pad  # the query's first frame, in the asset's frames
            # The seed's windows that fall on the asset and on what was heard of it (a noisy span is cut
            # around the alignment; a window past its end was once an IndexError).
            first, last = max(pad, origin), min(len(target) - pad, origin + len(heard))
            own = [w for w in seed.windows if w[0] + offset >= first and w[1] + offset <= last]
            c.start = max(0.0, begin * fs)
            c.end = min(duration, c.start + len(seed.frames) * fs)
            if own:  # scored on the aligned windows, below
                aligned.append((c, [heard[s + offset - origin:e + offset - origin] for s, e in own],
                                [index[w] for w in own], fit))
                refined.append(c)
                continue
        c.distance += fit
        refined.append(c)
    _score_aligned(aligned, seed, params)
    return refined


def _score_aligned(aligned: list[tuple[_Candidate, list[Frames], list[int], float]], seed: _SeedFeatures,
                   params: AnalysisParams) -> None:
    """Score each refined alignment ``(candidate, its frames under the seed's windows, which windows, misfit
    to add)`` by the weighted mean distance of those windows to the seed's; all windows embedded in one
    batch (one at a time, the embedding's fixed cost was most of it).

    Windows of identical frames are embedded once: two alignments that the refinement moved to the same
    place then get the very same score and keep their order (in a batch, a row's last bits can depend on
    its place in it)."""
    if not aligned:
        return
    distinct: dict[tuple, int] = {}
    parts, slot = [], []
    for _, windows, _, _ in aligned:
        for part in windows:
            key = (len(part), part.mfcc.dtype.str, *(a.tobytes() for a in (part.mfcc, part.rms_db, part.low)))
            if key not in distinct:
                distinct[key] = len(parts)
                parts.append(part)
            slot.append(distinct[key])
    lengths = np.array([len(part) for part in parts])
    ends = np.cumsum(lengths)
    vectors = embed_windows(Frames.concat(parts, params.n_mfcc), list(zip((ends - lengths).tolist(), ends.tolist())),
                            params)[slot]
    at = 0
    for c, _, rows, fit in aligned:
        mine = vectors[at:at + len(rows)]
        at += len(rows)
        c.distance = float(np.average(np.linalg.norm(mine - seed.vectors[rows], axis=1),
                                      weights=seed.window_weights[rows])) + fit


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
    rows = library.segment_rows(unique)
    found, where = rows.find(unique)
    unique, where = unique[found], where[found]
    kept = _not_excluded(rows, where, excluded)
    unique, where = unique[kept], where[kept]
    if len(unique) == 0:
        return []
    scores = _combined_score(store.get(unique), positives, negatives, use_file=False)
    with library.Session() as s:  # a hit is the segment itself: its end too
        ends = dict(s.execute(select(Segment.id, Segment.end).where(Segment.id.in_(unique.tolist()))).all())
    return [_Candidate(int(a), float(t0), float(d), int(sid), ends[sid]) for sid, a, t0, d in
            zip(unique.tolist(), rows.asset_ids[where], rows.starts[where], scores) if sid in ends]


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
def _to_hits(library: Library, candidates: list[_Candidate], k: int) -> list[Hit]:
    """Best first; overlapping hits in one asset collapse to the best of them. The asset rows of the hits
    are read in one query (a whole file's hit, which needs its duration first, reads them all first)."""
    candidates = sorted(candidates, key=lambda c: c.distance)
    assets = {c.asset_id: c.asset for c in candidates if c.asset is not None}
    gone: set[int] = set()  # assets not (or no longer) indexed: their vectors are no results
    if any(c.segment_id is None and c.end is None for c in candidates):
        wanted = {c.asset_id for c in candidates} - assets.keys()
        assets.update(library.indexed_asset_rows(wanted))
        gone = wanted - assets.keys()
    while True:
        kept = _collapse(candidates, k, assets, gone, library.params.segment_seconds)
        unknown = {c.asset_id for c, _, _ in kept} - assets.keys()
        if not unknown:
            break
        assets.update(library.indexed_asset_rows(unknown))
        gone |= unknown - assets.keys()  # then the next ones in line take their places
    return [Hit(rank, c.asset_id, c.segment_id, assets[c.asset_id].path, start, end, c.distance, assets[c.asset_id])
            for rank, (c, start, end) in enumerate(kept, 1)]


def _collapse(candidates: list[_Candidate], k: int, assets: dict[int, AssetRow], gone: set[int],
              segment_seconds: float) -> list[tuple[_Candidate, float, float]]:
    """The first ``k`` of ``candidates`` (sorted) that do not overlap a better one of their asset, with their
    times; those of ``gone`` assets are left out."""
    kept: list[tuple[_Candidate, float, float]] = []
    by_asset: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for c in candidates:
        if c.asset_id in gone:
            continue
        if c.segment_id is None and c.end is None:
            start, end = 0.0, float(assets[c.asset_id].duration or 0.0)
        else:
            start = c.start
            end = c.end if c.end is not None else start + segment_seconds
        if any(min(end, e) - max(start, s) > 0.05 for s, e in by_asset[c.asset_id]):
            continue
        kept.append((c, start, end))
        by_asset[c.asset_id].append((start, end))
        if len(kept) == k:
            break
    return kept
