"""Indexing on a real Dask ``LocalCluster`` of worker processes: the same vectors as the local pool, a
killed worker's file retried (or failed with the reason), a killed indexing process resumed without
duplicates, and cancel."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
from sqlalchemy import func, select

from tests.conftest import run_cli

pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """Short one-shots plus one file that is not decodable audio (a per-file failure either way)."""
    from tests.corpus import make_oneshots

    root = tmp_path_factory.mktemp("cluster_corpus")
    make_oneshots(root, 24, seed=12, min_seconds=0.2, max_seconds=1.0)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    return root


def _segments_by_path(lib) -> dict[str, list[tuple[float, float, bytes, bytes]]]:
    """path → [(start, end, embedding in the DB, vector in the store)] in time order."""
    from audiosim.library.db import Library
    from audiosim.library.models import Asset, Segment

    with Library(lib) as library:
        with library.Session() as s:
            rows = s.execute(select(Asset.path, Segment.id, Segment.start, Segment.end, Segment.embedding)
                             .join(Segment, Segment.asset_id == Asset.id)
                             .order_by(Asset.path, Segment.start)).all()
        store = library.store("segments")
        vectors = store.get(np.array([r.id for r in rows], np.int64))
    out: dict[str, list] = {}
    for row, vector in zip(rows, vectors):
        out.setdefault(row.path, []).append((row.start, row.end, row.embedding,
                                             np.asarray(vector, np.float32).tobytes()))
    return out


def _index(lib, corpus, **kwargs):
    from audiosim.indexer import index_paths
    from audiosim.library.db import Library

    with Library(lib, writable=True) as library:
        return index_paths(library, [corpus], **kwargs)


def test_cluster_gives_the_same_vectors_and_failures_as_the_local_pool(tmp_path, small_corpus):
    local = _index(tmp_path / "local", small_corpus, workers=2)
    on_cluster = _index(tmp_path / "cluster", small_corpus, cluster="local:2")
    assert on_cluster.indexed == local.indexed == 24
    # A file no decoder can read fails the same way on a worker as in a local process.
    assert sorted((f["path"], f["error"]) for f in on_cluster.failed) == \
        sorted((f["path"], f["error"]) for f in local.failed)
    assert len(on_cluster.failed) == 1
    expected = _segments_by_path(tmp_path / "local")
    assert len(expected) == 24
    assert _segments_by_path(tmp_path / "cluster") == expected  # bit for bit
    assert run_cli("--json", "verify", library=tmp_path / "cluster").json == {"ok": True, "problems": []}


def test_a_long_file_split_across_cluster_workers_gets_the_pools_vectors(tmp_path, small_corpus):
    """A long file's parts are jobs like any file: on the cluster they are analysed by several workers and
    joined in the indexing process, with the local pool's vectors bit for bit."""
    from audiosim.analysis import PART_SECONDS, plan_parts
    from tests.corpus import make_long_file

    folder = tmp_path / "sounds"
    folder.mkdir()
    long_file = make_long_file(folder / "long.wav", 2 * PART_SECONDS + 5, seed=3, sample_rate=16000, channels=1)
    assert len(plan_parts(str(long_file))) == 2
    for shot in sorted(small_corpus.glob("shot_*.wav"))[:4]:
        os.link(shot, folder / shot.name)
    local = _index(tmp_path / "local", folder, workers=2)
    on_cluster = _index(tmp_path / "cluster", folder, cluster="local:2")
    assert on_cluster.indexed == local.indexed == 5 and not on_cluster.failed
    expected = _segments_by_path(tmp_path / "local")
    assert len(expected[str(long_file)]) > 2 * PART_SECONDS
    assert _segments_by_path(tmp_path / "cluster") == expected  # bit for bit
    assert run_cli("--json", "verify", library=tmp_path / "cluster").json == {"ok": True, "problems": []}


def test_a_worker_killed_once_has_its_file_retried(tmp_path, small_corpus, monkeypatch):
    victim = sorted(p.name for p in small_corpus.rglob("*.wav") if p.name != "broken.wav")[3]
    marker = tmp_path / "worker-killed"
    # Workers are spawned after this, so they inherit the hook; the marker makes it fire only once.
    monkeypatch.setenv("AUDIOSIM_TEST_KILL_WORKER_ON", f"{victim}:{marker}")
    report = _index(tmp_path / "lib", small_corpus, cluster="local:2")
    assert marker.exists()  # a worker really died on that file
    assert report.indexed == 24
    assert [f["path"] for f in report.failed] == [str(small_corpus / "broken.wav")]
    assert any(p.endswith(victim) for p in _segments_by_path(tmp_path / "lib"))


def test_a_file_that_kills_every_worker_is_recorded_as_failed_with_the_reason(tmp_path, small_corpus,
                                                                              monkeypatch):
    from audiosim.cluster import WORKER_DIED

    victim = sorted(p.name for p in small_corpus.rglob("*.wav") if p.name != "broken.wav")[5]
    monkeypatch.setenv("AUDIOSIM_TEST_KILL_WORKER_ON", victim)
    report = _index(tmp_path / "lib", small_corpus, cluster="local:2")
    assert report.indexed == 23  # the run went on and finished
    errors = {os.path.basename(f["path"]): f["error"] for f in report.failed}
    assert errors[victim] == WORKER_DIED
    assert set(errors) == {victim, "broken.wav"}
    # Recorded in the library like any other failure, so `assets` shows the reason.
    from audiosim.library.db import Library
    from audiosim.library.models import Asset

    with Library(tmp_path / "lib") as library, library.Session() as s:
        asset = s.scalars(select(Asset).where(Asset.path.endswith(victim))).one()
        assert asset.error == WORKER_DIED


class _CancelAfter:
    """A task state whose user presses Cancel once ``after`` files are done."""

    def __init__(self, after: int) -> None:
        self.after, self.cancelled = after, False

    def set_progress(self, done: int, total: int) -> None:
        if done >= self.after:
            self.cancelled = True

    def set_status(self, text: str) -> None:
        pass

    def set_partial_result(self, result) -> None:
        pass


def test_cancel_stops_the_cluster_run_and_a_rerun_finishes_it(tmp_path, small_corpus):
    cancelled = _index(tmp_path / "lib", small_corpus, cluster="local:2", state=_CancelAfter(5))
    assert cancelled.cancelled
    assert 5 <= cancelled.indexed + len(cancelled.failed) < 25
    rest = _index(tmp_path / "lib", small_corpus, cluster="local:2")
    assert not rest.cancelled
    assert rest.skipped + rest.indexed == 24
    assert len(_segments_by_path(tmp_path / "lib")) == 24


def test_sigkill_of_the_indexing_process_then_rerun_has_no_duplicates(tmp_path, small_corpus):
    from audiosim.library.db import Library
    from audiosim.library.models import Asset, Segment

    corpus = tmp_path / "corpus"
    shutil.copytree(small_corpus, corpus)
    lib = tmp_path / "lib"
    # Die right after the first batch reached the database, with tasks still on the workers.
    killed = run_cli("index", corpus, "--cluster", "local:2", library=lib,
                     env={"AUDIOSIM_TEST_KILL_AT": "index-batch-committed"}, timeout=120)
    assert killed.code == -9, killed
    rerun = run_cli("--json", "index", corpus, "--cluster", "local:2", library=lib, timeout=120)
    assert rerun.code == 3, rerun  # 3: finished, with the broken file failed
    assert rerun.json["indexed"] + rerun.json["skipped"] == 24
    assert rerun.json["skipped"] > 0  # the first run's committed batch was kept
    with Library(lib) as library, library.Session() as s:
        paths = list(s.scalars(select(Asset.path)))
        assert len(paths) == len(set(paths)) == 25
        n_segments = s.scalar(select(func.count()).select_from(Segment))
        assert len(library.store("segments").ids()) == n_segments
    assert run_cli("--json", "verify", library=lib).json == {"ok": True, "problems": []}


def test_a_bad_cluster_address_or_a_missing_extra_is_one_line(tmp_path):
    bad = run_cli("index", tmp_path, "--cluster", "local:zero", library=tmp_path / "lib")
    assert bad.code != 0 and "local:N" in bad.stderr and "Traceback" not in bad.stderr
    # Without dask installed (simulated by blocking its import): the error names the extra to install.
    import subprocess

    code = ("import sys; sys.modules['distributed'] = None; from audiosim.cli import main; "
            f"sys.exit(main(['--library', {str(tmp_path / 'lib')!r}, 'index', {str(tmp_path)!r}, "
            "'--cluster', 'local:2']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "pip install 'audiosim[cluster]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ctrl_c_cancels_the_cluster_run_and_a_rerun_finishes_it(tmp_path):
    """Ctrl-C at a terminal reaches the whole process group, the local cluster's workers included: the run
    stops cleanly (exit 130) with no file failed because its worker was interrupted."""
    import signal
    import subprocess
    import time

    from tests.conftest import ROOT
    from tests.corpus import make_oneshots

    n_files = 500  # enough that the run is still going after its first commit
    corpus = tmp_path / "corpus"
    make_oneshots(corpus, n_files, seed=4, min_seconds=0.2, max_seconds=0.6)
    lib = tmp_path / "lib"
    proc = subprocess.Popen([sys.executable, "-m", "audiosim", "--library", str(lib), "--json", "index", str(corpus),
                             "--cluster", "local:2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    import sqlite3

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:  # press Ctrl-C once a first batch is in
        time.sleep(0.05)
        try:
            with sqlite3.connect(f"file:{lib / 'library.db'}?mode=ro", uri=True) as db:
                if db.execute("select count(*) from assets").fetchone()[0] > 0:
                    break
        except sqlite3.Error:  # not created yet
            continue
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    import json

    report = json.loads(stdout)
    assert report["failed"] == [], report["failed"][:3]
    assert 0 < report["indexed"] < n_files
    rerun = run_cli("--json", "index", corpus, "--cluster", "local:2", library=lib, timeout=120)
    assert rerun.code == 0, rerun
    assert rerun.json["skipped"] >= report["indexed"]
    assert rerun.json["indexed"] + rerun.json["skipped"] == n_files


def test_a_real_scheduler_and_workers_over_tcp_give_the_same_results_as_the_local_pool(tmp_path, small_corpus):
    """`dask scheduler` and two `dask worker` processes, started as an operator would, on loopback: the CLI's
    `--cluster tcp://…` indexes the same vectors and failures as the local pool, and verify passes."""
    from tests.dask_processes import DaskProcesses

    local = run_cli("--json", "index", small_corpus, "--workers", "2", library=tmp_path / "local", timeout=120)
    with DaskProcesses(workers=2) as remote:
        assert remote.address.startswith("tcp://127.0.0.1:")
        on_cluster = run_cli("--json", "index", small_corpus, "--cluster", remote.address,
                             library=tmp_path / "remote", timeout=120)
        # The run released everything it asked for: nothing of it stays on the scheduler.
        from distributed import Client

        with Client(remote.address, timeout=30) as client:
            assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0
    assert local.code == on_cluster.code == 3, (local, on_cluster)  # 3: finished, the broken file failed
    assert on_cluster.json["indexed"] == local.json["indexed"] == 24
    assert on_cluster.json["failed"] == local.json["failed"]
    assert _segments_by_path(tmp_path / "remote") == _segments_by_path(tmp_path / "local")  # bit for bit
    assert run_cli("--json", "verify", library=tmp_path / "remote").json == {"ok": True, "problems": []}


def test_in_flight_work_is_bounded_however_many_files(tmp_path, monkeypatch):
    """Backpressure: with many more files than the bound, the indexing process never has more than
    IN_FLIGHT_PER_WORKER tasks per worker pending (counted where it submits them), nor more than that many
    chunks of files, so its memory does not grow with the number of files."""
    import resource

    from audiosim import cluster, indexer
    from tests.corpus import make_oneshots

    corpus = tmp_path / "corpus"
    make_oneshots(corpus, 300, seed=7, min_seconds=0.05, max_seconds=0.15)
    monkeypatch.setattr(cluster, "MAX_FILES_PER_TASK", 4)
    pools = []

    def recording_pool(*args, **kwargs):
        pools.append(real_make_pool(*args, **kwargs))
        return pools[-1]

    real_make_pool = indexer._make_pool
    monkeypatch.setattr(indexer, "_make_pool", recording_pool)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = _index(tmp_path / "lib", corpus, cluster="local:1")
    assert report.indexed == 300 and not report.failed
    (pool,) = pools
    bound = cluster.IN_FLIGHT_PER_WORKER * 1
    assert pool.max_in_flight == bound  # the bound was reached (the test means something) and held
    assert pool.max_files_in_flight <= bound * 4 < 300 // 10
    assert pool._files_pending == 0 and not pool._pending
    # Cheap RSS check: the peak grew by far less than holding every file's analysis would take.
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, grown_mb
