"""Index folders: find audio files, analyse the new and changed ones in worker processes, and commit
the results in batches through the library's single writer.

Incremental and resumable: an unchanged file (same size and mtime, or same content fingerprint, under the
same analysis parameters) is skipped, so running again after a crash or a cancel picks up where it left.
A long file is analysed in parts by several workers (:func:`audiosim.analysis.plan_parts`) and committed
once all its parts are in: a crash or a cancel mid-file loses only that file's unfinished analysis.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from audiosim.analysis import Analysis, Failure, FilePart, PartAnalysis, analyze_file, analyze_part, assemble, \
    embed_analyses, fingerprint_file, plan_parts
from audiosim.crashpoints import crash_on_file, crash_point, hold_on_file
from audiosim.config import AUDIO_EXTENSIONS, AnalysisParams
from audiosim.errors import DecodeError
from audiosim.process_pool import ProcessPool
from audiosim.tasks import NullState, TaskState

# The database layer (SQLAlchemy: ~0.4 s to import) loads where it is used, so that the workers of a new
# library can be started before it (see HeadStart) and are not forked with it.
if TYPE_CHECKING:
    from audiosim.library.db import Library
    from audiosim.library.models import Asset
    from audiosim.library.writer import LibraryWriter

# Extensions that are certainly not audio: not worth opening to sniff.
_NOT_AUDIO = frozenset({
    ".txt", ".md", ".pdf", ".jpg", ".jpeg", ".png", ".gif", ".json", ".xml", ".html", ".nfo", ".db",
    ".asd", ".reapeaks", ".pk", ".mid", ".midi", ".zip", ".rar", ".7z", ".gz", ".py", ".doc", ".docx",
    ".rtf", ".csv", ".ini", ".log", ".npz", ".npy", ".exe", ".dll", ".so", ".dmg", ".iso",
})

COMMIT_EVERY_FILES = 64
BATCH_FILES = 8  # short files a worker analyses per task, embedding them together
COMMIT_EVERY_SECONDS = 1.0
SAVE_EVERY_SECONDS = 30.0


@dataclasses.dataclass
class IndexReport:
    indexed: int = 0
    skipped: int = 0
    removed: int = 0
    failed: list[dict] = dataclasses.field(default_factory=list)
    segments: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    audio_seconds: float = 0.0
    upgrade: dict | None = None  # what upgrading a library made by an older audiosim did, if it had to

    def to_json(self) -> dict:
        doc = {"indexed": self.indexed, "skipped": self.skipped, "removed": self.removed,
               "failed": self.failed, "segments": self.segments, "seconds": round(self.seconds, 3)}
        if self.upgrade is not None:
            doc["upgrade"] = self.upgrade
        return doc


@dataclasses.dataclass(frozen=True)
class _Job:
    """A file to analyse, or one part of a long file."""

    path: str
    params: AnalysisParams
    part: FilePart | None = None


_Result = tuple[_Job, "Analysis | PartAnalysis | None", "Failure | None"]


def _analyze_job(job: _Job, *, embed: bool = True) -> _Result:
    """Runs in a worker: never raises, so one bad file cannot stop the run."""
    crash_on_file(job.path)
    hold_on_file(job.path)
    try:
        if job.part is not None:
            return job, analyze_part(job.part, job.params), None
        return job, analyze_file(job.path, job.params, embed=embed), None
    except DecodeError as exc:
        error = str(exc)
    except MemoryError:
        error = "out of memory while decoding"
    except Exception as exc:  # noqa: BLE001 - report any bug as this file's failure, keep going
        error = f"unexpected error: {type(exc).__name__}: {exc}"
    return job_failure(job, error)


def _analyze_jobs(jobs: tuple[_Job, ...]) -> list[_Result]:
    """Runs in a worker: several jobs, the whole files' vectors from one pass of the learned map
    (:func:`audiosim.analysis.embed_analyses`: the same vectors as one file at a time)."""
    results = [_analyze_job(job, embed=False) for job in jobs]
    whole = [r for r in results if r[0].part is None and r[1] is not None]
    try:
        embed_analyses([analysis for _, analysis, _ in whole], jobs[0].params)
    except Exception as exc:  # noqa: BLE001 - as _analyze_job: these files' failure, not the run's
        failed = {id(r) for r in whole}
        return [job_failure(r[0], f"unexpected error: {type(exc).__name__}: {exc}") if id(r) in failed else r
                for r in results]
    return results


def _batches(jobs: list[_Job], size: int) -> list[tuple[_Job, ...]]:
    """Consecutive whole-file jobs in batches of up to ``size``; each part of a long file alone."""
    batches: list[tuple[_Job, ...]] = []
    files: list[_Job] = []
    for job in jobs:
        if job.part is not None:
            batches.append((job,))
            continue
        files.append(job)
        if len(files) == size:
            batches.append(tuple(files))
            files = []
    if files:
        batches.append(tuple(files))
    return batches


def job_failure(job: _Job, error: str) -> _Result:
    """The result of a job that failed with ``error``."""
    try:
        st = os.stat(job.path)
        size, mtime = st.st_size, st.st_mtime
    except OSError:  # (on a cluster the indexing process may not see the file either)
        size = mtime = None
    return job, None, Failure(job.path, error, size, mtime)


def _split_long_files(jobs: list[_Job]) -> list[_Job]:
    """Each long seekable file's job replaced by the jobs of its parts, in order."""
    out: list[_Job] = []
    for job in jobs:
        parts = plan_parts(job.path)
        out += [_Job(job.path, job.params, part) for part in parts] if parts else [job]
    return out


class _PartsOfFiles:
    """Collects the parts of long files as they come back, in any order, and hands each file on whole."""

    def __init__(self, params: AnalysisParams) -> None:
        self.params = params
        self._pending: dict[str, dict[int, tuple]] = {}

    def add(self, job: _Job, result: Analysis | PartAnalysis | None, failure: Failure | None
            ) -> tuple[str, Analysis | None, Failure | None] | None:
        """The file's result once ``job`` completes it, else None."""
        part = job.part
        if part is None:
            return job.path, result, failure
        got = self._pending.setdefault(job.path, {})
        got[part.index] = (result, failure)
        if len(got) < part.count:
            crash_point("index-part-analysed")
            return None
        del self._pending[job.path]
        results = [got[i] for i in range(part.count)]
        failures = [f for _, f in results if f is not None]
        if failures:  # the earliest part's reason
            return job.path, None, failures[0]
        try:
            return job.path, assemble([r for r, _ in results], self.params), None
        except Exception as exc:  # noqa: BLE001 - as _analyze_job: one file's failure, never the run's
            return job.path, None, job_failure(job, f"unexpected error: {type(exc).__name__}: {exc}")[2]


def _looks_like_audio(entry: os.DirEntry | str, name: str) -> bool:
    ext = os.path.splitext(name)[1].lower()
    if ext in AUDIO_EXTENSIONS:
        return True
    if ext in _NOT_AUDIO:
        return False
    from audiosim.audio.decode import sniff_audio

    return sniff_audio(entry if isinstance(entry, str) else entry.path)


def walk_audio(roots: Iterable[str], errors: list[dict]) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (absolute path, stat) of audio files under ``roots``: recursive, follows symlinks to
    directories once (loops are cut), skips hidden entries and AppleDouble ``._`` files."""
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        path = os.path.abspath(root)
        try:
            st = os.stat(path)
        except OSError as exc:
            errors.append({"path": path, "error": _os_reason(exc)})
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(path, st, seen_dirs, errors)
        else:
            yield path, st  # named explicitly: tried whatever its extension


def _walk_dir(path: str, st: os.stat_result, seen: set, errors: list[dict]) -> Iterator:
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return
    seen.add(key)
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        errors.append({"path": path, "error": _os_reason(exc)})
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            entry_stat = entry.stat()  # follows symlinks
        except OSError as exc:
            if entry.is_symlink():
                errors.append({"path": entry.path, "error": "broken or looping symbolic link"})
            else:
                errors.append({"path": entry.path, "error": _os_reason(exc)})
            continue
        if stat.S_ISDIR(entry_stat.st_mode):
            yield from _walk_dir(entry.path, entry_stat, seen, errors)
        elif stat.S_ISREG(entry_stat.st_mode) and _looks_like_audio(entry, entry.name):
            yield entry.path, entry_stat


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _known_assets(library: Library, roots: list[str]) -> dict[str, Asset]:
    from sqlalchemy import or_, select

    from audiosim.library.models import Asset, FsPath

    clauses = [Asset.path == r for r in roots]
    clauses += [Asset.path.startswith(r.rstrip(os.sep) + os.sep, autoescape=True) for r in roots]
    clauses.append(Asset.path.startswith(FsPath.PREFIX))  # names that are not UTF-8: matched below
    with library.Session() as s:
        return {a.path: a for a in s.scalars(select(Asset).where(or_(*clauses))) if _under(a.path, roots)}


def _init_worker() -> None:
    """Ctrl-C is the parent's to handle (it cancels cleanly); one BLAS thread per worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    keep_freed_memory()


def keep_freed_memory() -> None:
    """Make glibc keep the memory an analysis frees, for the next block's arrays, instead of unmapping it
    and faulting it in again: with its defaults a worker process spent a third of its time on page faults
    (a long file's part: 17,000 faults, 0.15 s -> 0.10 s; 1,776 one-shots: 11.5 -> 9.1 CPU-s in the
    workers). For worker processes only (their memory is the analysis's, bounded). No-op off glibc."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # arrays below 32 MB come from the heap, not fresh mappings
    mallopt(_M_TRIM_THRESHOLD, 128 << 20)  # and the heap keeps up to 128 MB free at its top


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def _in_process(jobs: list[_Job]) -> Iterator:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small matrices: BLAS threads only add overhead
        for batch in _batches(jobs, BATCH_FILES):
            yield from _analyze_jobs(batch)


class _Pool:
    """Worker processes, or the calling thread when ``workers == 1``."""

    def __init__(self, workers: int, params: AnalysisParams) -> None:
        self.workers = workers
        self._pool: ProcessPool | None = None
        # Import the analysis stack and build its filters once, here, so forked workers inherit them.
        import audiosim.audio.decode  # noqa: F401
        import audiosim.audio.loudness  # noqa: F401
        from audiosim.features.mfcc import _filters

        _filters(params)
        if workers > 1:
            # fork is fastest (workers inherit the imported numeric stack) but unsafe once other threads
            # exist (a GUI, a BLAS pool); then forkserver.
            method = "fork" if threading.active_count() == 1 and os.name == "posix" else "forkserver"
            self._pool = ProcessPool(workers, _analyze_jobs, method=method, initializer=_init_worker)

    def imap(self, jobs: list[_Job]) -> Iterator:
        if self._pool is None:
            return _in_process(jobs)
        # Batches of up to 8 files, fewer when there are few (every worker should get a share early).
        size = max(1, min(BATCH_FILES, len(jobs) // (self.workers * 16) or 1))
        batches = self._pool.imap_unordered(_batches(jobs, size), split=_each_alone, died=_died)
        return (result for batch in batches for result in batch)

    def close(self, *, cancelled: bool) -> None:
        """Wait for the workers to finish (or stop them when ``cancelled``); idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(cancelled=cancelled)


def _each_alone(batch: tuple[_Job, ...]) -> list[tuple[_Job, ...]]:
    """A batch whose worker process died, retried a file at a time (the one that killed it fails alone)."""
    return [(job,) for job in batch]


def _died(batch: tuple[_Job, ...], reason: str) -> list[_Result]:
    return [job_failure(job, reason) for job in batch]


def _make_pool(workers: int, params: AnalysisParams, cluster: str | None):
    if not cluster:
        return _Pool(workers, params)
    from audiosim.cluster import _ClusterPool

    return _ClusterPool(cluster, params)


@dataclasses.dataclass
class HeadStart:
    """Analysis under way before the library is opened: when the library does not exist yet, every file
    found is new, so the workers need not wait for the database layer to load and the library to be
    created (~0.6 s). :func:`index_paths` takes it over, or cancels it if the library turns out not to be
    new after all."""

    roots: list[str]
    params: AnalysisParams
    pool: _Pool
    found: dict[str, os.stat_result]
    walk_errors: list[dict]
    jobs: list[_Job]
    results: Iterator[_Result]

    def close(self) -> None:
        """Stop the workers if :func:`index_paths` did not take them over (idempotent)."""
        self.pool.close(cancelled=True)


def head_start(folder: str | os.PathLike | None, db_url: str | None, paths: Iterable[str | os.PathLike], *,
               workers: int | None = None) -> HeadStart | None:
    """Start analysing ``paths`` for the library at ``folder`` if that library does not exist yet (a new
    ``library.db``, default analysis parameters), else None. Before anything in the process has threads."""
    from audiosim.config import default_library_dir
    from audiosim.library.location import DB_FILE, resolve_db_url

    folder = Path(folder).expanduser().resolve() if folder else default_library_dir().resolve()
    try:
        if resolve_db_url(folder, db_url) is not None or (folder / DB_FILE).exists():
            return None  # an existing library (or one on a database server): its files are planned first
    except Exception:  # noqa: BLE001 - whatever it is, opening the library will say it
        return None
    roots = [os.path.abspath(os.fspath(p)) for p in paths]
    params = AnalysisParams()  # what a new library records
    pool = _Pool(max(1, workers or os.cpu_count() or 1), params)
    walk_errors: list[dict] = []
    found = dict(walk_audio(roots, walk_errors))
    jobs = [_Job(path, params) for path in found]
    return HeadStart(roots, params, pool, found, walk_errors, jobs, pool.imap(_split_long_files(jobs)))


def _take_head_start(head: HeadStart | None, library: Library, roots: list[str],
                     cluster: str | None) -> HeadStart | None:
    """``head`` if it analyses what this run would (a library with no assets yet, the same parameters)."""
    if head is None:
        return None
    from sqlalchemy import select

    from audiosim.library.models import Asset

    with library.Session() as s:
        empty = s.scalars(select(Asset.id).limit(1)).first() is None
    if empty and not cluster and head.roots == roots and head.params == library.params:
        return head
    head.close()
    return None


def index_paths(library: Library, paths: Iterable[str | os.PathLike], *, workers: int | None = None,
                state: TaskState | None = None, force: bool = False, cluster: str | None = None,
                head_start: HeadStart | None = None) -> IndexReport:
    """Index files and folders into a writable library; see the module docstring.

    Parameters
    ----------
    library : opened with ``writable=True``
    paths : files and folders (recursive)
    workers : analysis processes; default: all cores
    state : progress, status, partial results (each failure as ``("failed", path, error)``), cancel
    force : re-analyse files even when they look unchanged
    cluster : analyse on a Dask cluster instead of local processes: ``"local:N"`` or a scheduler address
        such as ``"tcp://host:8786"`` (see :mod:`audiosim.cluster`); the walk and the writes stay here
    head_start : from :func:`head_start`, called before this library was created
    """
    state = state or NullState()
    started = time.perf_counter()
    roots = [os.path.abspath(os.fspath(p)) for p in paths]
    workers = max(1, workers or os.cpu_count() or 1)
    report = IndexReport()
    from audiosim.library.upgrade import needs_upgrade, upgrade_library
    from audiosim.library.writer import LibraryWriter

    head = _take_head_start(head_start, library, roots, cluster)
    if head is None and needs_upgrade(library):  # a library made by an older audiosim moves forward first
        report.upgrade = upgrade_library(library, workers=workers, state=state).to_json()
        if state.cancelled:
            report.cancelled = True
            return report
    # Start workers before anything spawns threads (the vector store's BLAS pool, for example).
    pool = head.pool if head is not None else _make_pool(workers, library.params, cluster)
    try:
        writer = LibraryWriter(library)
        died = unfinished_scan(library) is not None  # the last run died: it may have left frames

        def before_first_commit() -> None:
            # While the workers start on the first files: opening the vector stores costs ~0.1-0.3 s.
            writer.reconcile()
            if died:
                writer.sweep_orphan_frames()

        scan_id = _begin_scan(library, roots)
        crash_point("index-scan-begun")
        state.set_status("looking for audio files")
        if head is not None:  # a new library: every file found is a job, already under way
            walk_errors, found, jobs, touched, removed = head.walk_errors, head.found, head.jobs, [], []
        else:
            walk_errors = []
            found = dict(walk_audio(roots, walk_errors))
            known = _known_assets(library, [r for r in roots if os.path.isdir(r) or r in found])
            jobs, touched = _plan(found, {} if force else known, writer, report)
            removed = [a.id for p, a in known.items() if p not in found and not os.path.lexists(p)]
        for err in walk_errors:
            report.failed.append(err)
            state.set_partial_result(("failed", err["path"], err["error"]))
        if touched:
            _touch_unchanged(library, touched)
        total = len(jobs)
        state.set_progress(0, total)
        _run_jobs(pool, jobs, writer, report, state, library.params, before_first_commit=before_first_commit,
                  results=None if head is None else head.results)
        if not state.cancelled and removed:
            writer.commit(removed_asset_ids=removed)
            report.removed = len(removed)
        writer.save()
        report.cancelled = state.cancelled
        _end_scan(library, scan_id, report)
    finally:
        pool.close(cancelled=state.cancelled)
    report.seconds = time.perf_counter() - started
    return report


def _plan(found: dict[str, os.stat_result], known: dict[str, Asset], writer: LibraryWriter,
          report: IndexReport) -> tuple[list[_Job], list[tuple[int, float]]]:
    """Which files need analysis; unchanged files are counted as skipped."""
    from audiosim.library.models import STATUS_INDEXED

    jobs, touched = [], []
    params = writer.library.params
    for path, st in found.items():
        asset = known.get(path)
        if asset is not None and asset.status == STATUS_INDEXED and asset.analysis_key == writer.key:
            if asset.size == st.st_size and asset.mtime == st.st_mtime:
                report.skipped += 1
                continue
            if asset.size == st.st_size:  # touched, maybe not changed: compare content
                try:
                    same = fingerprint_file(path, st.st_size) == asset.fingerprint
                except OSError:
                    same = False
                if same:
                    touched.append((asset.id, st.st_mtime))
                    report.skipped += 1
                    continue
        jobs.append(_Job(path, params))
    return jobs, touched


def _touch_unchanged(library: Library, touched: list[tuple[int, float]]) -> None:
    from audiosim.library.models import Asset

    with library.Session.begin() as s:
        for asset_id, mtime in touched:
            asset = s.get(Asset, asset_id)
            if asset is not None:
                asset.mtime = mtime


def _run_jobs(pool: _Pool, jobs: list[_Job], writer: LibraryWriter, report: IndexReport,
              state: TaskState, params: AnalysisParams, *,
              before_first_commit: Callable[[], None] | None = None,
              results: Iterator[_Result] | None = None) -> None:
    """Analyse ``jobs`` on ``pool`` and commit the results in batches; ``before_first_commit`` runs once
    the pool has the jobs (so their analysis and its work overlap). ``results``: the jobs' results if
    they are already under way."""
    batch: list[Analysis] = []
    failures: list[Failure] = []
    done = 0
    files = _PartsOfFiles(params)
    if results is None:
        results = pool.imap(_split_long_files(jobs))
    if before_first_commit is not None:
        before_first_commit()
    last_commit = last_save = time.monotonic()
    for job, result, failure in results:
        state.set_status(os.path.basename(job.path))
        whole = files.add(job, result, failure)
        if whole is not None:
            path, analysis, failure = whole
            done += 1
            if analysis is not None:
                batch.append(analysis)
                report.indexed += 1
                report.segments += len(analysis.windows)
                report.audio_seconds += analysis.duration
            else:
                failures.append(failure)
                report.failed.append({"path": failure.path, "error": failure.error})
                state.set_partial_result(("failed", failure.path, failure.error))
            state.set_progress(done, len(jobs))
        now = time.monotonic()
        if (batch or failures) and (len(batch) + len(failures) >= COMMIT_EVERY_FILES
                                    or now - last_commit >= COMMIT_EVERY_SECONDS):
            writer.commit(batch, failures)
            batch, failures, last_commit = [], [], now
            if now - last_save >= SAVE_EVERY_SECONDS:
                writer.save()
                last_save = now
        if state.cancelled:
            break
    if batch or failures:
        writer.commit(batch, failures)


def _begin_scan(library: Library, roots: list[str]) -> int:
    from audiosim.library.models import Scan

    with library.Session.begin() as s:
        scan = Scan(roots=json.dumps(roots), started_at=time.time(), state="running")
        s.add(scan)
        s.flush()
        return scan.id


def _end_scan(library: Library, scan_id: int, report: IndexReport) -> None:
    from audiosim.library.models import Scan

    with library.Session.begin() as s:
        scan = s.get(Scan, scan_id)
        scan.finished_at = time.time()
        scan.state = "cancelled" if report.cancelled else "finished"
        scan.indexed, scan.skipped = report.indexed, report.skipped
        scan.removed, scan.failed = report.removed, len(report.failed)


def unfinished_scan(library: Library) -> list[str] | None:
    """Roots of the latest scan that neither finished nor was cancelled (the process died), if any."""
    from sqlalchemy import select

    from audiosim.library.models import Scan

    with library.Session() as s:
        scan = s.scalars(select(Scan).order_by(Scan.id.desc()).limit(1)).first()
        if scan is not None and scan.state == "running":
            return json.loads(scan.roots)
    return None


