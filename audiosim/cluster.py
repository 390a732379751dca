"""Analysis on a Dask cluster: the same jobs as the local worker pool, run as tasks on ``dask.distributed``
workers, with results streaming back to the indexing process's single writer.

The walk, change detection and every write stay in the indexing process; only ``indexer._analyze_job``
(decode → frames → descriptors → embeddings) runs on the cluster. Workers read files by the same path, so
remote workers need a shared mount; a worker that cannot see a file reports the usual per-file decode error.

Address forms (``--cluster``):

``local:N``
    a ``LocalCluster`` of N single-threaded worker processes on this machine.
``tcp://host:8786`` (or ``tls://…``)
    an existing scheduler (``dask scheduler``) with workers (``dask worker tcp://host:8786``) that have
    audiosim installed.

Needs the optional extra: ``pip install 'audiosim[cluster]'``.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator

from audiosim.errors import AudiosimError

# Tasks in flight per worker thread: enough to keep every worker busy while results travel back, few
# enough that the indexing process's memory does not grow with the number of files (backpressure).
IN_FLIGHT_PER_WORKER = 3
TARGET_TASK_SECONDS = 0.5
MAX_FILES_PER_TASK = 64
# How many times the scheduler reruns a task whose worker died before calling it failed ("retried once").
WORKER_DEATHS_ALLOWED = 1
WORKER_DIED = "worker died while analysing this file"

# The Dask settings of a ``local:N`` cluster (its nannies keep them for workers they restart). A remote
# scheduler and its workers keep their own; the README suggests the same ones.
LOCAL_CLUSTER_CONFIG = {
    # The scheduler of a LocalCluster lives in this process, so our retry policy applies to it.
    "distributed.scheduler.allowed-failures": WORKER_DEATHS_ALLOWED,
    # A worker holds only the task it runs, so when it dies the scheduler blames that task alone, not an
    # innocent one that was merely waiting there.
    "distributed.scheduler.worker-saturation": 1.0,
    # dask's default (64 KiB) returns freed memory to the OS after every array; analysis allocates many
    # mid-sized arrays and slows down.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # Background work that competes with the analysis for the same cores (measured idle: 0.1 instead of
    # 1.0 CPU-second per 10 s for local:2): the statistical profiler samples every worker thread each 10 ms,
    # and every server checks every 20 ms that its event loop is not blocked; both only feed the dashboard.
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "200ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}
INSTALL_HINT = "indexing on a cluster needs dask.distributed: pip install 'audiosim[cluster]'"

def worker_config_yaml() -> str:
    """``LOCAL_CLUSTER_CONFIG`` as a Dask YAML config file, for the scheduler and workers of a remote cluster
    (put it in ``~/.config/dask/`` or a folder named by ``DASK_CONFIG`` on each machine; see the README)."""
    import yaml  # a dependency of dask

    nested: dict = {}
    for dotted, value in LOCAL_CLUSTER_CONFIG.items():
        *parents, leaf = dotted.split(".")
        node = nested
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return yaml.safe_dump(nested, sort_keys=False)


def parse_cluster_address(address: str) -> tuple[str, int | str]:
    """``"local:4"`` → ``("local", 4)``; ``"tcp://host:8786"`` → ``("remote", "tcp://host:8786")``."""
    address = address.strip()
    if address.startswith("local:"):
        count = address.partition(":")[2]
        if not count.isdigit() or int(count) < 1:
            raise AudiosimError(f"--cluster {address!r}: local:N needs a number of workers, e.g. local:4")
        return "local", int(count)
    if "://" in address:
        return "remote", address
    raise AudiosimError(f"--cluster {address!r}: expected local:N or a scheduler address like tcp://host:8786")


def check_cluster_address(address: str) -> None:
    """Raise :class:`AudiosimError` with a one-line reason if ``address`` cannot be used (bad form, no extra)."""
    parse_cluster_address(address)
    _import_distributed()


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise AudiosimError(INSTALL_HINT) from None
    import logging

    # dask logs every worker start and stop at INFO to stderr; keep the CLI's progress readable unless --debug.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("distributed").setLevel(logging.WARNING)
    return distributed


def analyze_chunk_on_worker(jobs: list) -> tuple[list[tuple], float]:
    """The cluster task: the local pool's jobs, with one BLAS thread as there (so the same vectors).

    Returns the per-file results and the seconds they took, from which the pool sizes later chunks."""
    from threadpoolctl import threadpool_limits

    from audiosim.indexer import _analyze_job

    started = time.perf_counter()
    results = []
    with threadpool_limits(1):
        for job in jobs:
            results.append(_analyze_job(job))
    return results, time.perf_counter() - started


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # the extra is missing: _import_distributed says so when a cluster is asked for
    _WorkerPlugin = object


class _AnalysisWorkerSetup(_WorkerPlugin):
    """Runs on every worker, also one restarted after a death.

    Imports the analysis stack and builds its filters before the first file, as the local pool does before
    forking (a spawned worker would otherwise spend its first seconds importing librosa). On a local
    cluster, also ignores SIGINT: Ctrl-C at a terminal reaches the whole process group, and the indexing
    process is the one that cancels cleanly; a worker interrupted mid-file would fail that file."""

    name = "audiosim-analysis-setup"

    def __init__(self, params, *, ignore_sigint: bool) -> None:
        self.params, self.ignore_sigint = params, ignore_sigint

    def setup(self, worker) -> None:
        if self.ignore_sigint:
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            except ValueError:  # not the worker's main thread: nothing to protect there
                pass
        import audiosim.audio.decode  # noqa: F401
        import audiosim.audio.loudness  # noqa: F401
        from audiosim.features.mfcc import _filters
        from audiosim.indexer import keep_freed_memory

        _filters(self.params)
        keep_freed_memory()


def _start_method(params) -> str:
    """How a local cluster starts its worker processes: ``fork`` when this process has a single thread.

    A forked worker inherits the analysis stack this process imported (as the local pool's workers do): it
    is ready in a fraction of a second where a spawned one spends 1–2 s importing dask, librosa and scipy
    (and as long again shutting down). Forking is safe only before other threads exist (a GUI, a BLAS or
    OpenMP pool), as for ``indexer._Pool``; otherwise dask's default, ``spawn``. The method is read each time
    a worker starts, and this one holds only while the cluster starts: a worker the nanny restarts after a
    death, when this process runs the writer's threads, is spawned."""
    if os.name != "posix" or threading.active_count() > 1:
        return "spawn"
    if params is not None:  # what a forked worker inherits instead of importing
        import audiosim.audio.decode  # noqa: F401
        import audiosim.audio.loudness  # noqa: F401
        import audiosim.indexer  # noqa: F401
        from audiosim.features.mfcc import _filters

        _filters(params)
    return "fork"


class _ClusterPool:
    """The interface of ``indexer._Pool`` over a ``dask.distributed.Client``."""

    def __init__(self, address: str, params=None) -> None:
        kind, target = parse_cluster_address(address)
        distributed = _import_distributed()
        import dask

        self._cluster = None
        try:
            if kind == "local":
                with dask.config.set({**LOCAL_CLUSTER_CONFIG,
                                      "distributed.worker.multiprocessing-method": _start_method(params)}):
                    self._cluster = distributed.LocalCluster(
                        n_workers=target, threads_per_worker=1, processes=True, dashboard_address=":0")  # any free port
                self._client = distributed.Client(self._cluster)
            else:
                self._client = distributed.Client(target, timeout=30)
        except OSError as exc:  # unreachable scheduler, port in use, …
            self._close_cluster()
            raise AudiosimError(f"cannot reach the cluster at {address}: {exc}") from None
        self._pending: dict = {}  # future → chunk of jobs, for the failures' paths and for cancelling
        # The most tasks, and files in them, that were pending at once (the backpressure test reads them).
        self.max_in_flight = self.max_files_in_flight = self._files_pending = 0
        if params is not None:
            self._client.register_plugin(_AnalysisWorkerSetup(params, ignore_sigint=kind == "local"))

    @property
    def workers(self) -> int:
        """Worker threads the scheduler knows now (at least 1: a cluster may still be adding workers)."""
        threads = self._client.nthreads()
        return max(1, sum(threads.values()))

    def in_flight_limit(self) -> int:
        """Tasks pending at most: ``IN_FLIGHT_PER_WORKER`` per worker thread the scheduler knows now."""
        return IN_FLIGHT_PER_WORKER * self.workers

    def imap(self, jobs: list) -> Iterator[tuple]:
        """Per-job results ``(job, analysis, failure)`` in the order they finish, as ``indexer._Pool.imap``.

        Files go out in chunks sized so a task takes about ``TARGET_TASK_SECONDS`` (a task costs the
        scheduler a few milliseconds whatever it does, which would dominate short files), with at most
        ``IN_FLIGHT_PER_WORKER`` × workers tasks pending. A chunk whose worker died twice is split and its
        files retried one per task, so only the file that kills workers is recorded as failed."""
        from distributed import KilledWorker, as_completed

        from audiosim.indexer import job_failure

        todo = collections.deque(jobs)
        alone: collections.deque = collections.deque()  # files of a chunk that killed its workers
        limit = self.in_flight_limit()
        chunk_size = 1  # until the first results say how long a file takes
        finished = as_completed()

        def submit_next() -> bool:
            if alone:
                chunk = [alone.popleft()]
            elif todo:
                # Near the end, smaller chunks, so that no worker is left with a long last task while the
                # others have nothing to do (guided scheduling).
                size = min(chunk_size, -(-len(todo) // limit))
                chunk = [todo.popleft() for _ in range(size)]
            else:
                return False
            # pure=False: the same file may be analysed again (it changed), never reuse a cached result.
            future = self._client.submit(analyze_chunk_on_worker, chunk, pure=False, retries=1,
                                         key=_task_key(chunk))
            self._pending[future] = chunk
            self._files_pending += len(chunk)
            self.max_in_flight = max(self.max_in_flight, len(self._pending))
            self.max_files_in_flight = max(self.max_files_in_flight, self._files_pending)
            finished.add(future)
            return True

        def fill() -> None:
            while len(self._pending) < limit and submit_next():
                pass

        fill()
        for future in finished:
            chunk = self._pending.pop(future)
            self._files_pending -= len(chunk)
            try:
                results, seconds = future.result()
            except KilledWorker:
                if len(chunk) > 1:
                    alone.extend(chunk)
                    results = []
                else:
                    results = [job_failure(chunk[0], WORKER_DIED)]
            except Exception as exc:  # noqa: BLE001 - a task that failed on the cluster fails its files
                results = [job_failure(job, f"cluster task failed: {type(exc).__name__}: {exc}")
                           for job in chunk]
            else:
                per_file = max(seconds / len(chunk), 1e-4)
                chunk_size = max(1, min(MAX_FILES_PER_TASK, int(TARGET_TASK_SECONDS / per_file)))
            future.release()  # the cluster may forget the result now: memory stays flat
            limit = self.in_flight_limit()  # workers may have joined (or left) a remote cluster
            fill()  # before handing results to the writer, so workers stay busy while it commits
            yield from results

    def close(self, *, cancelled: bool) -> None:
        if cancelled and self._pending:
            self._client.cancel(list(self._pending))
        self._pending.clear()
        self._client.close()
        self._close_cluster()

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _task_key(chunk: list) -> str:
    # Readable in the dashboard, unique per submission.
    name = os.path.basename(chunk[0].path)[:60]
    return f"analyse-{name}-{len(chunk)}-{uuid.uuid4().hex}"
