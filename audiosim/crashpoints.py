"""Named moments where a test can make the process die, to prove each multi-step write is crash-safe.

``AUDIOSIM_TEST_KILL_AT=<step>`` makes the process SIGKILL itself (and its worker processes) the first time
it reaches ``crash_point("<step>")``; ``<step>#N`` waits for the N-th time. A kill chosen this way lands at
exactly the same place on a fast or a cold machine, which a timer cannot promise.

Steps (in the order a first ``audiosim index`` reaches them):

``library-folder-created``, ``lock-acquired``, ``database-opened``, ``schema-tables-created`` (inside the
creating transaction), ``schema-meta-written`` (same transaction, before its commit), ``schema-committed``,
``migration-backup-written``, ``migration-columns-added`` (inside the migrating transaction),
``meta-updated`` (inside :meth:`audiosim.library.db.Library.transaction` before its commit),
``index-scan-begun``, ``index-part-analysed`` (a part of a long file is in, the file is not complete),
``index-batch-committed`` (DB committed, vector stores not yet saved), ``index-stores-saved``; in
``verify --repair``: ``repair-vectors-reconciled``.

Worker processes can be made to die (``AUDIOSIM_TEST_KILL_WORKER_ON``) or to wait
(``AUDIOSIM_TEST_HOLD_WORKER_ON``) at a named file.
"""

from __future__ import annotations

import os
import signal
import threading

KILL_AT_ENV = "AUDIOSIM_TEST_KILL_AT"
# A worker about to analyse a file whose name contains this text SIGKILLs itself, to prove a dead worker's
# file is retried. ``name:/path/marker`` kills only once (the first worker to create the marker).
KILL_WORKER_ENV = "AUDIOSIM_TEST_KILL_WORKER_ON"
# A worker about to analyse a file whose name contains this text stops there, so a run is certainly still
# under way when a test interrupts or looks at it, however fast the machine: ``name`` until the pool ends
# the worker, ``name:/path/release`` until that file exists.
HOLD_WORKER_ENV = "AUDIOSIM_TEST_HOLD_WORKER_ON"

_reached: dict[str, int] = {}


def crash_point(step: str) -> None:
    """SIGKILL this process here if ``AUDIOSIM_TEST_KILL_AT`` names ``step`` (cheap when it does not)."""
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted or not wanted.startswith(step):
        return
    name, _, nth = wanted.partition("#")
    if name != step:
        return
    _reached[step] = _reached.get(step, 0) + 1
    if _reached[step] < int(nth or 1):
        return
    _kill_children()
    os.kill(os.getpid(), signal.SIGKILL)


def crash_on_file(path: str) -> None:
    """SIGKILL this (worker) process if ``AUDIOSIM_TEST_KILL_WORKER_ON`` names ``path``'s file."""
    named, marker = _file_named(KILL_WORKER_ENV, path)
    if not named:
        return
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def hold_on_file(path: str) -> None:
    """Wait here if ``AUDIOSIM_TEST_HOLD_WORKER_ON`` names ``path``'s file: for good, or until its release
    file exists."""
    named, release = _file_named(HOLD_WORKER_ENV, path)
    pause = threading.Event()
    while named and not (release and os.path.exists(release)):
        pause.wait(0.02)


def _file_named(variable: str, path: str) -> tuple[bool, str]:
    """Whether the variable ``name[:extra]`` names ``path``'s file (its name contains ``name``); ``extra``."""
    name, _, extra = os.environ.get(variable, "").partition(":")
    return bool(name) and name in os.path.basename(path), extra


def _kill_children() -> None:
    # Worker processes would otherwise wait forever for jobs from a parent that is gone.
    import multiprocessing

    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid, signal.SIGKILL)
        except OSError:
            pass
