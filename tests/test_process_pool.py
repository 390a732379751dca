"""The indexer's worker processes: every task's result comes back, once, whatever dies on the way."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from audiosim.process_pool import ProcessPool, WorkerError


def _square(task):
    return task * task


def _kill_self_on_negative(task):
    if task < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return task


def _kill_self_once(task):
    """Dies on a task named "die:PATH" unless PATH exists; creates it first, so the retry succeeds."""
    if isinstance(task, str) and task.startswith("die:"):
        marker = task[4:]
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return task
        os.kill(os.getpid(), signal.SIGKILL)
    return task


def _large_result_after_marking(marker):
    """A long file's part: ~0.25 MB of results, more than a pipe holds by default."""
    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    return bytes(250_000)


def _wait_until_all_exist(paths, seconds: float) -> None:
    pause = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if all(p.exists() for p in paths):
            return
        pause.wait(0.05)


def _fail_on_three(task):
    if task == 3:
        raise ValueError("three is not allowed")
    return task


def _exit_at_start():
    os._exit(7)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_every_result_comes_back_once(method):
    pool = ProcessPool(2, _square, method=method)
    try:
        results = list(pool.imap_unordered(range(200), split=lambda t: [t], died=lambda t, why: None))
    finally:
        pool.close()
    assert sorted(results) == [i * i for i in range(200)]


def test_the_workers_start_before_the_results_are_read(tmp_path):
    """The indexer hands the pool its jobs, then creates the library: the workers must not wait for it."""
    pool = ProcessPool(2, _kill_self_once, method="fork")
    markers = [tmp_path / f"m{i}" for i in range(6)]
    try:
        results = pool.imap_unordered([f"die:{m}" for m in markers], split=lambda t: [t], died=lambda t, w: w)
        _wait_until_all_exist(markers[:2], 5.0)  # nothing read yet: the workers take the tasks on their own
        assert markers[0].exists() and markers[1].exists()
        assert sorted(results) == sorted(f"die:{m}" for m in markers)  # each retried after its worker died
    finally:
        pool.close()


def test_the_workers_go_on_while_their_large_results_wait_unread(tmp_path):
    """The indexer reads no result while it creates the library (~0.3 s): a worker whose result it has not
    read must still go on to its next task, not wait for the pipe to be emptied."""
    pool = ProcessPool(2, _large_result_after_marking, method="fork")
    markers = [tmp_path / f"m{i}" for i in range(6)]
    try:
        results = pool.imap_unordered([str(m) for m in markers], split=lambda t: [t], died=lambda t, w: w)
        _wait_until_all_exist(markers, 10.0)  # nothing read yet
        started = [m.name for m in markers if m.exists()]
        assert len(started) == len(markers), f"only {started} started while no result was read"
        assert [len(r) for r in results] == [250_000] * len(markers)
    finally:
        pool.close()


def test_a_task_whose_worker_dies_is_split_and_each_piece_retried():
    """A batch [1, -5, 2] kills its worker: its pieces run alone; the piece that kills its worker again
    comes back as ``died``'s result with the reason, and the run goes on."""
    died = []

    def on_death(piece, reason):
        died.append((piece, reason))
        return [("failed", *piece)]

    pool = ProcessPool(2, _batch_kill, method="fork")
    try:
        batches = [(1, -5, 2), (3, 4), (-6,), (7,)]
        results = [r for batch in pool.imap_unordered(batches, split=lambda b: [(x,) for x in b], died=on_death)
                   for r in batch]
    finally:
        pool.close()
    assert sorted(r for r in results if not isinstance(r, tuple)) == [1, 2, 3, 4, 7]
    assert sorted(r for r in results if isinstance(r, tuple)) == [("failed", -6), ("failed", -5)]
    assert {piece for piece, _ in died} == {(-5,), (-6,)}
    assert all(reason == "the analysis process was killed by SIGKILL while analysing this file"
               for _, reason in died)


def _batch_kill(batch):
    return [_kill_self_on_negative(x) for x in batch]


@pytest.mark.parametrize("function,initializer,message", [
    (_fail_on_three, None, "three is not allowed"),  # the task function raised: its traceback
    (_square, _exit_at_start, "keep ending before they take a task .*exited with code 7"),
])
def test_a_worker_that_fails_stops_the_run_with_the_reason(function, initializer, message):
    pool = ProcessPool(2, function, method="fork", initializer=initializer)
    try:
        with pytest.raises(WorkerError, match=message):
            list(pool.imap_unordered(range(6), split=lambda t: [t], died=lambda t, w: None))
    finally:
        pool.close(cancelled=True)


def test_close_ends_workers_that_are_still_busy():
    pool = ProcessPool(2, _square, method="fork")
    results = pool.imap_unordered(range(100_000), split=lambda t: [t], died=lambda t, w: None)
    assert next(results) is not None
    workers = [w.process for w in pool._workers]
    pool.close(cancelled=True)
    assert all(not p.is_alive() for p in workers)


def test_a_forked_pool_replaces_a_dead_worker_once_the_caller_has_threads(tmp_path):
    """The indexing process may have started threads (a BLAS or OpenMP pool of the vector store) by the
    time a worker dies: the replacement still starts and takes its share of the tasks."""
    pool = ProcessPool(2, _kill_self_once, method="fork")
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        first = [w.process.pid for w in pool._workers]
        tasks = [f"die:{tmp_path / 'once'}"] + list(range(50))
        results = list(pool.imap_unordered(tasks, split=lambda t: [t], died=lambda t, w: None))
        assert sorted(map(str, results)) == sorted(map(str, tasks))
        assert len({w.process.pid for w in pool._workers} - set(first)) == 1  # one worker was replaced
    finally:
        stop.set()
        thread.join()
        pool.close()
