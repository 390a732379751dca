"""A real Dask deployment for tests and benchmarks: a ``dask scheduler`` process and ``dask worker`` processes,
started as users start them (the command-line entry points), talking over tcp:// on loopback.

    remote = DaskProcesses(workers=2)   # returns once the scheduler knows both workers
    index_paths(library, [corpus], cluster=remote.address)
    remote.stop()

The scheduler picks a free port itself and writes its address to a scheduler file (no port guessing). Nothing
sleeps: readiness is the scheduler's own worker count, awaited through a ``Client`` with a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class DaskProcesses:
    def __init__(self, workers: int = 1, *, timeout: float = 90, env: dict[str, str] | None = None) -> None:
        from distributed import Client

        self._tmp = tempfile.TemporaryDirectory(prefix="audiosim-dask-")
        scheduler_file = os.path.join(self._tmp.name, "scheduler.json")
        # The settings `--cluster local:N` uses, in a Dask config file, as the README tells an operator.
        from audiosim.cluster import worker_config_yaml

        with open(os.path.join(self._tmp.name, "audiosim.yaml"), "w") as f:
            f.write(worker_config_yaml())
        self.env = {**os.environ, "DASK_CONFIG": self._tmp.name, **(env or {})}
        self.processes: list[subprocess.Popen] = []
        try:
            self.scheduler = self._start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", scheduler_file)
            with Client(scheduler_file=scheduler_file, timeout=timeout) as client:  # waits for the file too
                self.address = client.scheduler.address
                self.workers = [self._start_worker() for _ in range(workers)]
                self._wait_for_workers(client, workers, timeout)
        except BaseException as exc:
            logs = self._logs()
            self.stop()
            if isinstance(exc, Exception):  # say why a process did not come up: its own words
                raise RuntimeError(f"the Dask processes did not start: {exc}\n{logs}") from exc
            raise
        with open(scheduler_file) as f:
            assert json.load(f)["address"] == self.address

    def _start_worker(self) -> subprocess.Popen:
        return self._start("distributed.cli.dask_worker", self.address, "--nthreads", "1", "--host", "127.0.0.1",
                           "--no-dashboard")

    def _wait_for_workers(self, client, count: int, timeout: float) -> None:
        """Until the scheduler knows ``count`` workers; a worker process that exits before it registers is
        started again once (as an operator's supervisor would), so one unlucky start does not fail a run."""
        from distributed.exceptions import WorkerStartTimeoutError

        restarted = set()
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.wait_for_workers(count, timeout=min(10.0, max(1.0, deadline - time.monotonic())))
                return
            except (WorkerStartTimeoutError, TimeoutError):
                if time.monotonic() >= deadline:
                    raise
            for i, proc in enumerate(self.workers):
                if proc.poll() is not None and i not in restarted:
                    restarted.add(i)
                    self.workers[i] = self._start_worker()

    def _start(self, module: str, *args: str) -> subprocess.Popen:
        # A process group of its own (stop() kills the nanny's worker with it), but the caller's session: with
        # the kernel's autogroup scheduling a new session would get its own share of a busy machine's cores,
        # flattering the benchmark.
        log = open(os.path.join(self._tmp.name, f"process{len(self.processes)}.log"), "wb")
        with log:
            proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=self.env,
                                    stdout=log, stderr=subprocess.STDOUT, preexec_fn=os.setpgrp)
        self.processes.append(proc)
        return proc

    def _logs(self, tail: int = 3000) -> str:
        """The end of each process's output, with its exit code if it has exited."""
        out = []
        for i, proc in enumerate(self.processes):
            path = os.path.join(self._tmp.name, f"process{i}.log")
            text = Path(path).read_text(errors="replace")[-tail:] if os.path.exists(path) else ""
            out.append(f"--- {' '.join(proc.args[2:4])} (exit code {proc.poll()}):\n{text}")
        return "\n".join(out)

    def stop(self) -> None:
        """The workers (their nannies stop their worker processes), then the scheduler: a worker that lost
        its scheduler would wait to reconnect."""
        workers = [p for p in self.processes if p is not self.processes[0]]
        for group in (workers, self.processes[:1]):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait(timeout=30)
        self.processes.clear()
        self._tmp.cleanup()

    def __enter__(self) -> DaskProcesses:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
