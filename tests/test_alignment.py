"""Frame alignment: the fast offset search equals its definition, and finds a copy where it was cut from."""

from __future__ import annotations

import numpy as np

from audiosim.search import _best_offset, _sliding_square_distances


def _by_definition(span: np.ndarray, query: np.ndarray) -> np.ndarray:
    n_off = len(span) - len(query) + 1
    return np.stack([np.square(span[o:o + len(query)] - query).sum(axis=1) for o in range(n_off)])


def test_sliding_distances_equal_the_frame_by_frame_sum_and_mark_frames_outside_the_target():
    rng = np.random.default_rng(4)
    for _ in range(50):
        nq, extra = int(rng.integers(1, 80)), int(rng.integers(0, 60))
        span = (rng.normal(size=(nq + extra, 19)) * 4).astype(np.float32)
        outside = rng.integers(0, 4)
        span[:outside] = np.nan  # the part of the span before the target's first frame
        query = (rng.normal(size=(nq, 19)) * 4).astype(np.float32)
        fast, slow = _sliding_square_distances(span, query), _by_definition(span, query)
        assert fast.shape == slow.shape
        assert np.array_equal(np.isnan(fast), np.isnan(slow))
        np.testing.assert_allclose(fast[~np.isnan(fast)], slow[~np.isnan(slow)], rtol=1e-4, atol=1e-3)


def test_an_excerpt_is_placed_at_its_frame_even_at_another_level_and_over_the_edge():
    rng = np.random.default_rng(5)
    target = (rng.normal(size=(600, 20)) * 3).astype(np.float32)
    target[:, -1] = rng.uniform(-60, 0, 600)
    weights = np.ones(120, np.float32)
    for at in (0, 37, 300, 480):
        query = target[at:at + 120].copy()
        query[:, -1] -= 9.0  # 9 dB quieter
        offset, cost = _best_offset(query, weights, target, at + 11, radius=25)
        assert offset == at and cost < 1e-6
    # Hanging over the end: the half that overlaps still places it.
    query = np.concatenate([target[540:], target[:60]])
    offset, _ = _best_offset(query, weights, target, 530, radius=25)
    assert offset == 540
