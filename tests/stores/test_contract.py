"""One contract, every backend: the same tests against Faiss, Annoy, pgvector and Milvus (Lite).

Results are compared with numpy brute force on the same data.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from audiosim.errors import StoreError
from audiosim.stores import UnknownIdError, open_store, parse_store_spec
from tests.services import store_spec
from tests.stores.test_faiss_store import brute_force, clustered, recall

DIM = 40
BACKENDS = ["faiss", "annoy", "pgvector", "milvus"]


class Opener:
    """Opens the store of one backend at one place, again and again (to test reopening)."""

    def __init__(self, backend: str, folder: Path, spec: str) -> None:
        self.backend, self.folder, self.spec = backend, folder, parse_store_spec(spec)
        self.opened: list = []

    def __call__(self, name: str = "segments", dim: int = DIM):
        store = open_store(self.spec.backend, path=self.folder, name=name, dim=dim, **self.spec.options)
        self.opened.append(store)
        return store


@pytest.fixture(params=BACKENDS)
def opener(request, tmp_path) -> Opener:
    o = Opener(request.param, tmp_path / "vectors", store_spec(request.param, request))
    yield o
    for store in o.opened:
        store.close()


@pytest.fixture
def filled(opener):
    store = opener()
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(10**12, size=600, replace=False)).astype(np.int64)  # sparse 64-bit ids
    vectors = clustered(600, seed=1)
    store.add(ids, vectors)
    return store, ids, vectors


def test_search_matches_brute_force(filled):
    store, ids, vectors = filled
    queries = clustered(20, seed=2)
    distances, found = store.search(queries, 10)
    true_d, true_ids = brute_force(queries, ids, vectors, 10)
    assert recall(found, true_ids) >= 0.99
    np.testing.assert_allclose(distances, true_d, rtol=1e-3, atol=1e-3)
    assert store.count() == 600
    np.testing.assert_array_equal(store.ids(), ids)


def test_remove_then_re_add_with_a_new_vector(filled):
    store, ids, vectors = filled
    assert store.remove(np.concatenate([ids[:10], [123]])) == 10  # unknown ids are ignored
    assert store.count() == 590
    assert not store.contains(ids[:10]).any() and store.contains(ids[10:]).all()
    _, found = store.search(vectors[:10], 5)
    assert not np.isin(found, ids[:10]).any()
    moved = vectors[:10] + 100.0
    store.add(ids[:10], moved)
    np.testing.assert_allclose(store.get(ids[:10]), moved, atol=1e-5)
    distances, found = store.search(moved, 1)
    np.testing.assert_array_equal(found[:, 0], ids[:10])
    assert distances.max() < 1e-2


def test_replacing_a_vector_keeps_one_entry(filled):
    store, ids, vectors = filled
    store.add(ids[:1], vectors[1:2])
    assert store.count() == 600
    np.testing.assert_allclose(store.get(ids[:1])[0], vectors[1], atol=1e-5)


def test_k_larger_than_the_count_pads(opener):
    store = opener()
    assert store.search(clustered(2, seed=3), 5)[1].tolist() == [[-1] * 5] * 2
    store.add(np.array([7, 9]), clustered(2, seed=4))
    distances, found = store.search(clustered(3, seed=5), 5)
    assert found.shape == (3, 5) and (np.sort(found[:, :2], axis=1) == [7, 9]).all()
    assert (found[:, 2:] == -1).all() and np.isinf(distances[:, 2:]).all()


@pytest.mark.parametrize("fraction", [0.02, 0.6])
def test_allow_ids_restricts_the_results(filled, fraction):
    store, ids, vectors = filled
    rng = np.random.default_rng(5)
    allowed = np.sort(rng.choice(ids, size=int(fraction * len(ids)), replace=False))
    queries = clustered(10, seed=6)
    _, found = store.search(queries, 8, allow_ids=np.concatenate([allowed, [5, 6]]))  # 5, 6: not stored
    keep = np.isin(ids, allowed)
    _, true_ids = brute_force(queries, ids[keep], vectors[keep], 8)
    assert np.isin(found[found >= 0], allowed).all()
    assert recall(found, true_ids) >= 0.95
    assert (store.search(queries, 8, allow_ids=np.array([], np.int64))[1] == -1).all()


def test_get_keeps_the_order_and_names_missing_ids(filled):
    store, ids, vectors = filled
    order = np.array([5, 0, 300, 5])
    np.testing.assert_allclose(store.get(ids[order]), vectors[order], atol=1e-5)
    with pytest.raises(UnknownIdError) as caught:
        store.get(np.array([ids[0], 42]))
    assert caught.value.ids.tolist() == [42]


def test_persists_across_reopen(opener, filled):
    store, ids, vectors = filled
    store.remove(ids[:5])
    store.save()
    store.close()
    again = opener()
    np.testing.assert_array_equal(again.ids(), ids[5:])
    np.testing.assert_allclose(again.get(ids[5:15]), vectors[5:15], atol=1e-5)
    _, found = again.search(vectors[5:6], 1)
    assert found[0, 0] == ids[5]


def test_reopening_with_another_dimension_is_a_clear_error(opener, filled):
    store, _, _ = filled
    store.save()
    store.close()
    with pytest.raises(StoreError, match="dimensional|vector\\("):
        opener(dim=DIM + 1)


def test_the_two_stores_of_a_library_are_separate(opener):
    segments, files = opener("segments"), opener("files")
    segments.add(np.array([1]), clustered(1, seed=1))
    assert files.count() == 0 and segments.count() == 1


def test_readers_during_a_write_see_a_consistent_store(opener):
    store = opener()
    store.add(np.arange(500), clustered(500, seed=1))
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        queries = clustered(4, seed=2)
        try:
            while not stop.is_set():
                distances, found = store.search(queries, 10)
                assert (found >= 0).all() and np.isfinite(distances).all()
                assert (np.diff(distances, axis=1) >= -1e-4).all()
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for start in range(500, 3500, 500):
            store.add(np.arange(start, start + 500), clustered(500, seed=start))
            store.remove(np.arange(start - 500, start - 400))
            store.save()
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert not errors, errors[0]
    assert store.count() == 3500 - 600


def test_100k_vectors_recall_at_50(opener):
    """Recall@50 >= 0.95 against exact search at 100k vectors, with and without a large filter."""
    store = opener()
    n = 100_000
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    vectors = clustered(n, seed=11)
    store.add(ids[:-1000], vectors[:-1000])  # one bulk load, then an ordinary add and remove on top
    store.add(ids[-1000:], vectors[-1000:])
    store.remove(ids[:500])
    store.add(ids[:500], vectors[:500])
    store.save()
    assert store.count() == n
    queries = clustered(10 if opener.backend == "milvus" else 40, seed=12)  # Milvus Lite is slow
    _, found = store.search(queries, 50)
    _, true_ids = brute_force(queries, ids, vectors, 50)
    assert recall(found, true_ids) >= 0.95
    allowed = ids[::2]  # half the store: pushed down as a filter, not searched exactly
    _, found = store.search(queries, 50, allow_ids=allowed)
    _, true_ids = brute_force(queries, allowed, vectors[::2], 50)
    assert np.isin(found, allowed).all()
    assert recall(found, true_ids) >= 0.95
