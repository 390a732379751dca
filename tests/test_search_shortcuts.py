"""The shortcuts a query takes give what the long way gives: a library file's stored vectors are those its
stored frames embed to, and the votes counted in arrays for all assets at once are those counted asset by
asset, as written out here."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import pytest

from audiosim import search as S
from audiosim.features.embedding import embed_windows
from audiosim.features.segments import segment_windows
from audiosim.library.db import Library


def test_stored_vectors_of_a_library_file_are_its_frames_embedded_again(corpus_library):
    with Library(corpus_library) as lib:
        assets = lib.assets(status="indexed")
        assert assets
        for asset in assets:
            frames = lib.load_frames(asset)
            windows = segment_windows(frames.rms_db, lib.params)
            stored = S._stored_vectors(lib, asset, windows)
            assert stored is not None, asset.path
            np.testing.assert_array_equal(stored, embed_windows(frames, windows, lib.params))
        # Windows that are not the stored ones (a region): not taken from the store.
        frames = lib.load_frames(assets[0])
        assert S._stored_vectors(lib, assets[0], [(1, len(frames))]) is None


def _alignments_asset_by_asset(lib, distances, ids, offsets, shares, excluded, span, limit):
    """The vote counting written out: each hit votes for (its asset, its start minus its window's offset);
    an asset's votes within the tolerance of a vote time are one alignment, at their median time, scored over
    all windows (a window without a vote counting as its worst distance); an asset's alignments nearer than
    max(tolerance, span / 2) to a better one are dropped; best first, ties in the order of first hits."""
    tolerance = lib.params.segment_hop_seconds * 0.75
    n_windows = len(offsets)
    rows = lib.segment_rows(ids[ids >= 0])
    votes = defaultdict(list)
    for r in range(len(ids)):
        for d, sid in zip(distances[r], ids[r]):
            found, where = rows.find(np.array([sid]))
            if sid < 0 or not found[0] or rows.asset_ids[where[0]] in excluded:
                continue
            votes[int(rows.asset_ids[where[0]])].append(
                (float(rows.starts[where[0]]) - offsets[r % n_windows], r % n_windows, float(d), int(sid)))
    miss = np.array([row[np.isfinite(row)].max() if np.isfinite(row).any() else 1e3 for row in distances])
    miss = miss.reshape(-1, n_windows).max(axis=0)
    out = []
    for asset, asset_votes in votes.items():
        asset_votes.sort()
        found = []
        for t in sorted({v[0] for v in asset_votes}):
            near = [v for v in asset_votes if t - tolerance <= v[0] < t + tolerance + 1e-9]
            best = miss.copy()
            for _, w, d, _ in near:
                best[w] = min(best[w], d)
            times = [v[0] for v in near]
            median = (times[(len(times) - 1) // 2] + times[len(times) // 2]) / 2
            nearest = min(near, key=lambda v: v[2])[3]
            found.append((float((best.astype(np.float64) * shares.astype(np.float64)).sum()), median, nearest))
        found.sort(key=lambda f: f[0])
        kept = []
        for score, median, nearest in found:
            if all(abs(median - k[1]) > max(tolerance, span / 2) for k in kept):
                kept.append((score, median, nearest))
        out += [(asset, median, score, nearest) for score, median, nearest in kept]
    out.sort(key=lambda c: c[2])
    return out[:limit]


@pytest.mark.parametrize("n_windows", [1, 3, 8])
def test_votes_counted_in_arrays_equal_votes_counted_asset_by_asset(corpus_library, n_windows):
    rng = np.random.default_rng(n_windows)
    with Library(corpus_library) as lib:
        store = lib.store("segments")
        all_ids = store.ids()
        for trial in range(24):
            seeds = store.get(rng.choice(all_ids, n_windows, replace=False))
            queries = seeds + rng.normal(0, 0.05, seeds.shape).astype(np.float32)
            distances, ids = store.search(queries, 40)
            offsets = np.sort(rng.choice(np.arange(0, 4, 0.125), n_windows, replace=False))
            shares = rng.uniform(0.2, 1, n_windows).astype(np.float32)
            shares /= shares.sum()
            excluded = {int(lib.segment_rows(ids[0, :1]).asset_ids[0])} if trial % 2 else set()
            span = float(offsets[-1]) + 1.0
            fast = S._alignments(lib, distances, ids, offsets, shares, excluded, span, 60)
            slow = _alignments_asset_by_asset(lib, distances, ids, offsets, shares, excluded, span, 60)
            assert [(c.asset_id, c.start, c.segment_id) for c in fast] == [(a, t, s) for a, t, _, s in slow]
            np.testing.assert_allclose([c.distance for c in fast], [d for _, _, d, _ in slow], rtol=1e-6)
            assert all(dataclasses.asdict(c)["end"] is None for c in fast)
