"""Worker processes for the indexer: they take tasks from one shared list themselves and send each result
back over a pipe of their own, which the calling thread reads. No threads in this process.

Why not :class:`multiprocessing.pool.Pool`:

* a worker that dies (a decoder crashing on a damaged file, the kernel's out-of-memory killer) loses its
  task there, and ``imap`` then waits for it forever; here the task is retried (a batch split into its
  files, each alone) and a file that kills its process a second time comes back as that file's failure;
* its worker-handler thread wakes every time a result waits in the pipe, and three threads move tasks
  and results: ~0.3 s of the indexing process's CPU for 1,776 one-shots, on cores the workers need.

The task list is sent to every worker once; a shared counter hands out the next task, so the workers keep
busy while the calling thread does something else (creating the library, committing a batch).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Generic, TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")

_IDLE = -1  # a worker's current task when it has none
_STOP = bytes(ForkingPickler.dumps(None))  # the message that ends a worker's loop
_IDLE_DEATHS_MAX = 3  # workers dying with no task in hand: more than this means they cannot start
# A worker's side of its pipe may hold this much of its results unread (the kernel caps it at
# net.core.wmem_max): a part of a long file's analysis is ~0.2 MB, over the default ~0.2 MB.
RESULTS_BUFFER_BYTES = 4 << 20


class WorkerError(RuntimeError):
    """The task function raised in a worker (a bug: the indexer's never raises)."""


class _Raised:
    def __init__(self, text: str) -> None:
        self.text = text


def _serve(conn, function: Callable, initializer: Callable | None, current, next_task) -> None:
    """A worker's loop: tasks sent to it alone first (retries), then the shared list's next one."""
    if initializer is not None:
        initializer()
    shared: Sequence | None = None
    exhausted = False
    try:
        while True:
            if shared is None or exhausted or conn.poll():
                message = conn.recv()
                if message is None:
                    return
                kind, payload = message
                if kind == "tasks":
                    shared, exhausted = payload, False
                    continue
                task_id, task = payload  # "run": a task for this worker alone
            else:
                with next_task.get_lock():
                    task_id = next_task.value
                    if task_id >= len(shared):
                        exhausted = True
                        continue
                    next_task.value = task_id + 1
                task = shared[task_id]
            current.value = task_id
            try:
                result = function(task)
            except Exception:  # noqa: BLE001 - reported to the caller, which raises it there
                result = _Raised(traceback.format_exc())
            conn.send((task_id, result))
            current.value = _IDLE
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the calling process is gone


class _Worker:
    def __init__(self, ctx, slot: int, function: Callable, initializer: Callable | None, next_task) -> None:
        self.slot = slot
        self.conn, child = ctx.Pipe()
        _buffer_results(child)
        self.current = ctx.RawValue("q", _IDLE)
        self.process = ctx.Process(target=_serve, args=(child, function, initializer, self.current, next_task),
                                   name=f"audiosim-worker-{slot}", daemon=True)
        self.process.start()
        child.close()
        self.handed: set[int] = set()  # retried pieces sent to this worker and not yet back

    def send_bytes(self, message: bytes) -> bool:
        """Whether the message went; a worker that has died gets nothing (its death is handled apart)."""
        try:
            self.conn.send_bytes(message)
        except OSError:  # BrokenPipeError and the like
            return False
        return True


def _buffer_results(conn) -> None:
    """Let a worker send results that the calling thread cannot read yet (it is importing the database
    layer, creating the library, committing) and go on with its next task, rather than wait on a full
    pipe: with the default buffer, a 10-min file's workers sat idle for 0.25 s of a 0.9 s run."""
    if os.name != "posix":  # Windows' pipes are not sockets: the default buffer still works
        return
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:  # the same socket; closing the dup only
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RESULTS_BUFFER_BYTES)
        except OSError:  # a limit of the system's: the default buffer still works
            pass


def how_it_ended(exitcode: int | None) -> str:
    """How a worker process ended: ``"was killed by SIGSEGV"``, ``"exited with code 1"``."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class ProcessPool(Generic[Task, Result]):
    """``workers`` processes running ``function`` on tasks; see the module docstring.

    ``method`` is the :mod:`multiprocessing` start method (``fork`` is fastest, but only safe while the
    calling process has one thread). One :meth:`imap_unordered` per pool.
    """

    def __init__(self, workers: int, function: Callable[[Task], Result], *, method: str,
                 initializer: Callable[[], None] | None = None) -> None:
        self._ctx = multiprocessing.get_context(method)
        self._function, self._initializer = function, initializer
        # In the pool's own context: under fork its semaphore is unlinked at once (no resource-tracker
        # process to start), and a replacement worker started the same way can share it.
        self._next_task = self._ctx.Value("q", 0)
        self._workers = [self._start(slot) for slot in range(workers)]
        self._tasks: list | None = None
        self._tasks_message = b""
        self._finished = False
        self._idle_deaths = 0

    def _start(self, slot: int) -> _Worker:
        return _Worker(self._ctx, slot, self._function, self._initializer, self._next_task)

    def imap_unordered(self, tasks: Sequence[Task], *, split: Callable[[Task], list[Task]],
                       died: Callable[[Task, str], Result]) -> Iterator[Result]:
        """The results of ``tasks`` as they come. The workers start on them at once, before the iterator is
        read. A task whose process dies is retried as ``split(task)``, each piece alone; a piece whose
        process dies too gives ``died(piece, reason)`` as its result."""
        if self._tasks is not None:
            raise RuntimeError("a ProcessPool runs one list of tasks")
        self._tasks = list(tasks)
        self._tasks_message = bytes(ForkingPickler.dumps(("tasks", self._tasks)))  # pickled once for all
        for worker in self._workers:
            worker.send_bytes(self._tasks_message)
        return self._results(split, died)

    def _results(self, split, died) -> Iterator[Result]:
        tasks = self._tasks
        waiting = set(range(len(tasks)))
        retries: dict[int, Any] = {}  # task id (from len(tasks) on) -> a piece of a task that was lost
        unsent: list[int] = []  # retries not yet handed to a worker
        while waiting:
            unsent = [task_id for task_id in unsent if not self._hand_over(task_id, retries[task_id])]
            by_handle = {}
            for worker in self._workers:
                by_handle[worker.conn] = by_handle[worker.process.sentinel] = worker
            for handle in wait(list(by_handle)):
                worker = by_handle[handle]
                if worker not in self._workers:
                    continue  # replaced while handling an earlier handle of this round
                for task_id, result in self._drain(worker):
                    waiting.discard(task_id)
                    retries.pop(task_id, None)
                    worker.handed.discard(task_id)
                    if isinstance(result, _Raised):
                        raise WorkerError(f"a worker process failed:\n{result.text}")
                    yield result
                if worker.process.is_alive():
                    continue
                lost = self._replace(worker)
                unsent += [task_id for task_id in worker.handed if task_id != lost]  # still in its pipe
                if lost == _IDLE or lost not in waiting:
                    continue
                waiting.discard(lost)
                if lost in retries:  # it died alone, twice: this piece's failure
                    unsent = [task_id for task_id in unsent if task_id != lost]
                    yield died(retries.pop(lost), f"the analysis process {how_it_ended(worker.process.exitcode)} "
                                                  f"while analysing this file")
                    continue
                for piece in split(tasks[lost]):
                    task_id = len(tasks) + len(retries) + len(waiting)  # unused: ids only grow
                    while task_id in retries or task_id in waiting:
                        task_id += 1
                    retries[task_id] = piece
                    waiting.add(task_id)
                    unsent.append(task_id)
        self._finished = True

    def _replace(self, worker: _Worker) -> int:
        """Start a process in a dead worker's place; the task the dead one had in hand, or ``_IDLE``."""
        lost = worker.current.value
        worker.process.join()
        worker.conn.close()
        if lost == _IDLE:
            self._idle_deaths += 1
            if self._idle_deaths > _IDLE_DEATHS_MAX:
                raise WorkerError(f"the worker processes keep ending before they take a task (the last "
                                  f"{how_it_ended(worker.process.exitcode)})")
        # Started as the others were, even under fork in a process that has started threads since (a BLAS
        # or OpenMP pool of the vector store): the worker runs only the analysis, and must share the task
        # counter's lock.
        replacement = self._start(worker.slot)
        replacement.send_bytes(self._tasks_message)
        self._workers[self._workers.index(worker)] = replacement
        return lost

    def _hand_over(self, task_id: int, piece: Any) -> bool:
        """Send a retried piece to the worker with the fewest handed over so far; whether one took it."""
        message = bytes(ForkingPickler.dumps(("run", (task_id, piece))))
        for worker in sorted(self._workers, key=lambda w: len(w.handed)):
            if worker.process.is_alive() and worker.send_bytes(message):
                worker.handed.add(task_id)
                return True
        return False

    @staticmethod
    def _drain(worker: _Worker) -> Iterator[tuple[int, Any]]:
        """The results waiting in a worker's pipe (all of them, if its process has ended)."""
        while worker.conn.poll():
            try:
                yield worker.conn.recv()
            except (EOFError, ConnectionResetError):
                return

    def close(self, *, cancelled: bool = False) -> None:
        """Stop the workers: let them finish (all results read) or end them now; idempotent."""
        workers, self._workers = self._workers, []
        for worker in workers:
            if cancelled or not self._finished or not worker.send_bytes(_STOP):
                worker.process.terminate()
        for worker in workers:
            worker.process.join()
            worker.conn.close()
