"""The Faiss vector store against numpy brute force, on disk, in ANN mode and under concurrent use."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from audiosim.errors import StoreError
from audiosim.stores import UnknownIdError, VectorStore, faiss_store, open_store
from audiosim.stores.faiss_store import FaissStore

DIM = 40


def clustered(n: int, *, seed: int, dim: int = DIM, clusters: int = 100) -> np.ndarray:
    """Draws from one fixed mixture of Gaussian clusters (the same centres whatever ``seed``)."""
    centres = np.random.default_rng(1234).standard_normal((clusters, dim)).astype(np.float32) * 2
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)


def brute_force(
    queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean k-nearest ids among (ids, vectors), computed in float64."""
    q, x = queries.astype(np.float64), vectors.astype(np.float64)
    d = np.sqrt(np.maximum((q**2).sum(1)[:, None] - 2 * q @ x.T + (x**2).sum(1)[None, :], 0))
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), ids[order]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f[f >= 0], t)) / len(t) for f, t in zip(found, truth)]))


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(proc.stdout)


@pytest.fixture
def store(tmp_path: Path) -> FaissStore:
    s = FaissStore(tmp_path / "vectors", "segments", DIM)
    yield s
    s.close()


@pytest.fixture
def filled(store: FaissStore) -> tuple[FaissStore, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(10**12, size=600, replace=False)).astype(np.int64)  # sparse 64-bit ids
    vectors = rng.standard_normal((600, DIM)).astype(np.float32)
    store.add(ids, vectors)
    return store, ids, vectors


@pytest.fixture(scope="module")
def ann_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20k stored vectors (ids 1..20000) and 200 held-out queries from the same mixture."""
    return np.arange(1, 20_001, dtype=np.int64), clustered(20_000, seed=1), clustered(200, seed=2)


def build_ann(tmp_path: Path, ids: np.ndarray, vectors: np.ndarray) -> FaissStore:
    s = FaissStore(tmp_path, "ann", DIM, ann_threshold=3000)
    for start in range(0, len(ids), 2000):
        s.add(ids[start : start + 2000], vectors[start : start + 2000])
    return s


# --- exact mode ---------------------------------------------------------------------------------------


def test_search_matches_numpy_brute_force_with_euclidean_distances(filled) -> None:
    store, ids, vectors = filled
    queries = np.random.default_rng(1).standard_normal((25, DIM)).astype(np.float32)
    distances, found = store.search(queries, 10)
    true_d, true_ids = brute_force(queries, ids, vectors, 10)
    assert distances.dtype == np.float32 and found.dtype == np.int64
    assert distances.shape == found.shape == (25, 10)
    np.testing.assert_array_equal(found, true_ids)
    np.testing.assert_allclose(distances, true_d, rtol=1e-4)  # not squared
    assert np.all(np.diff(distances, axis=1) >= 0)
    assert store.description == "faiss flat (600 vectors)" and store.kind == "flat"


def test_store_is_a_vector_store_and_open_store_checks_its_arguments(tmp_path: Path) -> None:
    with open_store("faiss", path=tmp_path, name="s", dim=8, ann_threshold=5000) as s:
        assert isinstance(s, VectorStore) and s.ann_threshold == 5000
    with pytest.raises(StoreError, match="known backends: annoy, faiss, milvus, pgvector"):
        open_store("qdrant", path=tmp_path, name="s", dim=8)
    with pytest.raises(StoreError, match="bad options"):
        open_store("faiss", path=tmp_path, name="s", dim=8, nlist=12)


def test_adding_an_existing_id_replaces_it(filled) -> None:
    store, ids, vectors = filled
    new = vectors[0] + 5
    store.add(ids[:1], new[None, :])
    assert store.count() == len(ids)
    np.testing.assert_array_equal(store.get(ids[:1])[0], new)
    _, found = store.search(vectors[:1], 3)
    assert ids[0] not in found[0, :1]  # the old vector is gone
    d_new, f_new = store.search(new[None, :], 1)
    assert f_new[0, 0] == ids[0] and d_new[0, 0] == pytest.approx(0, abs=1e-3)
    # within one batch the last occurrence wins
    store.add(np.array([ids[1], ids[1]]), np.stack([vectors[1] + 1, vectors[1] + 2]))
    np.testing.assert_array_equal(store.get(ids[1:2])[0], vectors[1] + 2)
    assert store.count() == len(ids)


def test_removed_ids_are_never_returned(filled) -> None:
    store, ids, vectors = filled
    gone = ids[::3]
    assert store.remove(np.concatenate([gone, [7, 8, -1]])) == len(gone)  # unknown ids are ignored
    assert store.remove(gone) == 0
    assert store.count() == len(ids) - len(gone)
    assert not store.contains(gone).any() and store.contains(ids[1::3]).all()
    _, found = store.search(vectors[::3], store.count())
    assert not np.isin(found, gone).any()
    np.testing.assert_array_equal(store.ids(), np.setdiff1d(ids, gone))


def test_get_keeps_the_order_asked_and_rejects_unknown_ids(filled) -> None:
    store, ids, vectors = filled
    order = np.array([5, 0, 599, 5, 42])
    np.testing.assert_array_equal(store.get(ids[order]), vectors[order])
    assert store.get(np.array([], dtype=np.int64)).shape == (0, DIM)
    with pytest.raises(UnknownIdError, match="1 id\\(s\\) not in the vector store: 3") as info:
        store.get(np.array([ids[0], 3]))
    assert isinstance(info.value, StoreError) and isinstance(info.value, KeyError)
    np.testing.assert_array_equal(info.value.ids, [3])
    np.testing.assert_array_equal(store.contains([ids[0], 3, -1]), [True, False, False])


@pytest.mark.parametrize("exact_subset_max", [50_000, 10])  # 10: large filters take the Faiss selector path
def test_allow_ids_restricts_results_exactly(filled, monkeypatch, exact_subset_max: int) -> None:
    monkeypatch.setattr(faiss_store, "EXACT_SUBSET_MAX", exact_subset_max)
    store, ids, vectors = filled
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((10, DIM)).astype(np.float32)
    tiny = ids[[7, 300]]
    medium = rng.choice(ids, 200, replace=False)
    huge = np.concatenate([rng.choice(ids, 500, replace=False), rng.integers(0, 10**12, 1_000_000)])
    for allowed in (tiny, medium, huge):
        present = ids[np.isin(ids, allowed)]
        k = min(20, len(present))
        distances, found = store.search(queries, 20, allow_ids=allowed)
        rows = np.searchsorted(ids, present)
        true_d, true_ids = brute_force(queries, present, vectors[rows], k)
        np.testing.assert_array_equal(found[:, :k], true_ids)
        np.testing.assert_allclose(distances[:, :k], true_d, rtol=1e-4)
        assert (found[:, k:] == -1).all() and np.isinf(distances[:, k:]).all()
    distances, found = store.search(queries, 5, allow_ids=np.array([1, 2, 3]))  # none present
    assert (found == -1).all() and np.isinf(distances).all()


def test_results_are_padded_when_there_are_fewer_than_k(store: FaissStore) -> None:
    q = np.zeros((2, DIM), np.float32)
    distances, found = store.search(q, 4)  # empty store
    assert found.shape == (2, 4) and (found == -1).all() and np.isinf(distances).all()
    store.add(np.arange(3), np.eye(3, DIM, dtype=np.float32))
    distances, found = store.search(q, 5)
    assert (found[:, :3] >= 0).all() and (found[:, 3:] == -1).all()
    np.testing.assert_allclose(distances[:, :3], 1.0, rtol=1e-6)
    assert np.isinf(distances[:, 3:]).all()
    assert store.search(q, 0)[1].shape == (2, 0)


def test_bad_arguments_are_store_errors(store: FaissStore) -> None:
    with pytest.raises(StoreError, match="shape"):
        store.add(np.arange(2), np.zeros((2, DIM + 1), np.float32))
    with pytest.raises(StoreError, match="2 ids for 3 vectors"):
        store.add(np.arange(2), np.zeros((3, DIM), np.float32))
    with pytest.raises(StoreError, match="NaN"):
        store.add(np.arange(1), np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(StoreError, match="non-negative"):
        store.add(np.array([-1]), np.zeros((1, DIM), np.float32))
    with pytest.raises(StoreError, match="queries must have shape"):
        store.search(np.zeros(DIM, np.float32), 3)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.search(np.zeros((1, DIM), np.float32), 3)


# --- on disk ------------------------------------------------------------------------------------------


def test_save_and_reopen_round_trip(filled, tmp_path: Path) -> None:
    store, ids, vectors = filled
    store.remove(ids[:10])
    store.save()
    folder = tmp_path / "vectors"
    assert sorted(p.name for p in folder.iterdir()) == ["segments.faiss", "segments.json"]
    queries = vectors[:20] + 0.1
    before = store.search(queries, 7)
    store.close()
    with FaissStore(folder, "segments", DIM) as again:
        np.testing.assert_array_equal(again.ids(), ids[10:])
        np.testing.assert_array_equal(again.get(ids[10:20]), vectors[10:20])
        after = again.search(queries, 7)
        np.testing.assert_array_equal(after[1], before[1])
        np.testing.assert_allclose(after[0], before[0])


def test_missing_folder_is_created_and_an_empty_store_saves(tmp_path: Path) -> None:
    with FaissStore(tmp_path / "a" / "b", "empty", DIM) as s:
        s.save()
    with FaissStore(tmp_path / "a" / "b", "empty", DIM) as s:
        assert s.count() == 0 and s.ids().dtype == np.int64


def test_opening_with_another_dimension_is_an_error(filled, tmp_path: Path) -> None:
    store, _, _ = filled
    store.save()
    with pytest.raises(StoreError, match=f"holds {DIM}-dimensional vectors but 64 are expected"):
        FaissStore(tmp_path / "vectors", "segments", 64)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_file_is_reported_with_the_repair_command(filled, tmp_path: Path, damage: str) -> None:
    store, _, _ = filled
    store.save()
    path = tmp_path / "vectors" / "segments.faiss"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage])
    with pytest.raises(StoreError, match="is damaged .*audiosim verify --repair"):
        FaissStore(tmp_path / "vectors", "segments", DIM)


def test_a_crash_during_save_leaves_the_old_store(filled, tmp_path: Path, monkeypatch) -> None:
    store, ids, _ = filled
    store.save()
    folder = tmp_path / "vectors"
    # A crashed save of another process leaves a half-written temp file: opening ignores it.
    stale = folder / f"segments.faiss.tmp-{dead_pid()}"
    stale.write_bytes(b"half a faiss index")
    with FaissStore(folder, "segments", DIM) as other:
        assert other.count() == len(ids)

    # A save that fails before the rename (disk full, crash...) leaves the old file and no temp file.
    store.remove(ids[:100])

    def fail(*args: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(faiss_store.os, "replace", fail)
        with pytest.raises(StoreError, match="could not save .*disk full"):
            store.save()
    assert not list(folder.glob(f"*.tmp-{os.getpid()}"))
    with FaissStore(folder, "segments", DIM) as old:
        assert old.count() == len(ids)
    store.save()  # works again and sweeps the dead process's temp file
    assert not stale.exists()
    with FaissStore(folder, "segments", DIM) as new:
        assert new.count() == len(ids) - 100


# --- ANN mode -----------------------------------------------------------------------------------------


def test_switches_to_ivf_above_the_threshold_with_measured_recall(
    tmp_path: Path, ann_data, monkeypatch
) -> None:
    ids, vectors, queries = ann_data
    store = FaissStore(tmp_path, "ann", DIM, ann_threshold=3000)
    store.add(ids[:2999], vectors[:2999])
    assert store.kind == "flat"
    store.add(ids[2999:3000], vectors[2999:3000])
    assert store.kind == "ivf" and store.ann_params.trained_count == 3000
    for start in range(3000, len(ids), 2000):
        store.add(ids[start : start + 2000], vectors[start : start + 2000])
    params = store.ann_params
    assert params.trained_count == 13_000  # retrained by the first batch that took it to >= 4 x 3000
    assert params.build_recall >= faiss_store.TARGET_RECALL and 1 <= params.nprobe <= params.nlist
    assert store.description.startswith(
        f"faiss ivf nlist={params.nlist} nprobe={params.nprobe} (20000 vectors"
    )

    distances, found = store.search(queries, 50)
    _, truth = brute_force(queries, ids, vectors, 50)
    assert recall(found, truth) >= 0.95
    # distances are true Euclidean distances to the vectors returned
    expected = np.linalg.norm(store.get(found[:5].ravel()).reshape(5, 50, DIM) - queries[:5, None], axis=2)
    np.testing.assert_allclose(distances[:5], expected, rtol=1e-4)
    np.testing.assert_array_equal(store.get(ids[[17, 3, 19_999]]), vectors[[17, 3, 19_999]])

    # filters: a small one is answered exactly, a large one through the IVF with a selector
    small = ids[::100]
    _, found_small = store.search(queries, 10, allow_ids=small)
    np.testing.assert_array_equal(found_small, brute_force(queries, small, vectors[::100], 10)[1])
    large = ids[: len(ids) // 2]
    with monkeypatch.context() as m:
        m.setattr(faiss_store, "EXACT_SUBSET_MAX", 100)
        _, found_large = store.search(queries, 50, allow_ids=large)
    assert np.isin(found_large[found_large >= 0], large).all()
    assert recall(found_large, brute_force(queries, large, vectors[: len(ids) // 2], 50)[1]) >= 0.95

    store.save()
    store.close()
    with FaissStore(tmp_path, "ann", DIM, ann_threshold=3000) as again:
        assert again.ann_params == params
        np.testing.assert_array_equal(again.search(queries, 50)[1], found)
    (tmp_path / "ann.json").unlink()  # the sidecar is a convenience: without it the store still opens
    with FaissStore(tmp_path, "ann", DIM, ann_threshold=3000) as again:
        assert again.kind == "ivf" and again.ann_params.nprobe == params.nprobe
        assert again.count() == len(ids)


def test_removal_in_ivf_mode_and_back_to_exact(tmp_path: Path, ann_data) -> None:
    ids, vectors, queries = ann_data
    store = build_ann(tmp_path, ids[:8000], vectors[:8000])
    assert store.kind == "ivf"
    gone = ids[:8000:2]
    assert store.remove(np.concatenate([gone, [10**15]])) == len(gone)
    assert store.count() == 4000 and not store.contains(gone).any()
    _, found = store.search(vectors[gone[:200]], 50)
    assert not np.isin(found, gone).any()
    kept, kept_vectors = ids[1:8000:2], vectors[1:8000:2]
    np.testing.assert_array_equal(store.get(kept[:50]), kept_vectors[:50])
    assert recall(found, brute_force(vectors[gone[:200]], kept, kept_vectors, 50)[1]) >= 0.95
    # re-adding a removed id in IVF mode works too
    store.add(gone[:1], vectors[:1])
    assert store.contains(gone[:1])[0] and store.count() == 4001

    # below half the threshold the store goes back to exact search
    store.remove(kept[:2600])
    assert store.kind == "flat" and store.count() == 1401
    left = np.sort(np.concatenate([gone[:1], kept[2600:]]))
    _, found = store.search(queries, 10)
    np.testing.assert_array_equal(found, brute_force(queries, left, store.get(left), 10)[1])
    store.close()


def test_concurrent_searches_while_another_thread_adds(tmp_path: Path, ann_data) -> None:
    ids, vectors, queries = ann_data
    store = FaissStore(tmp_path, "busy", DIM, ann_threshold=3000)
    store.add(ids[:500], vectors[:500])
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for start in range(500, 8000, 500):  # crosses the threshold: rebuilds while readers search
                store.add(ids[start : start + 500], vectors[start : start + 500])
                store.remove(ids[start : start + 10])
        except BaseException as exc:  # noqa: BLE001 -- reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    searches = 0
    while not done.is_set() or searches < 20:
        _, found = store.search(queries[searches % 50 : searches % 50 + 4], 10)
        assert found.shape == (4, 10) and (found[:, 0] >= 0).all()
        np.testing.assert_array_equal(store.get(ids[:5]), vectors[:5])  # never removed
        searches += 1
    thread.join()
    assert not errors, errors
    assert store.kind == "ivf" and store.count() == 8000 - 15 * 10
    store.close()


# --- neighbour graph (maps) ---------------------------------------------------------------------------


def test_neighbour_graph_exact_below_the_threshold_and_blocked_above(tmp_path: Path, ann_data, monkeypatch) -> None:
    ids, vectors, _ = ann_data
    store = FaissStore(tmp_path, "graph", DIM)
    store.add(ids, vectors)
    subset = ids[::4]  # a result set: 5,000 of the store's vectors
    done = []
    distances, found = store.neighbour_graph(subset, 16, progress=lambda d, t: done.append((d, t)))
    truth_d, truth = brute_force(vectors[::4], subset, vectors[::4], 16)
    assert found.shape == (len(subset), 16) and np.isin(found, subset).all()
    assert recall(found, truth) == 1.0 and (found[:, 0] == subset).all()  # exact; itself first
    np.testing.assert_allclose(distances[:, 1:], truth_d[:, 1:], rtol=1e-3)  # self: 0 up to rounding
    assert done and done[-1] == (len(subset), len(subset))
    # The default (chunked store searches) agrees.
    _, default = VectorStore.neighbour_graph(store, subset, 16)
    assert recall(default, truth) == 1.0

    monkeypatch.setattr(faiss_store, "GRAPH_BLOCKED_MIN", 3000)  # now block by block
    _, approx = store.neighbour_graph(subset, 16, vectors=vectors[::4])
    assert recall(approx, truth) >= 0.95 and np.isin(approx[approx >= 0], subset).all()

    def cancel(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.neighbour_graph(subset, 16, progress=cancel)
    store.close()
