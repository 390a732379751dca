"""Who uses the CPU of an ``audiosim index`` run: the main process, thread by thread, and the workers.

    .venv/bin/python bench/index_cpu_split.py FOLDER [--workers 2]

Runs the CLI's ``index`` in this process into a fresh temporary library and prints the wall time from
``main()`` (the interpreter's own start is not in it), the main process's CPU split by thread (sampled
from ``/proc/PID/task`` every 20 ms by a monitor process; a thread's last sample counts, so one shorter
than that may be missed) and the CPU of the worker processes (``RUSAGE_CHILDREN``). Linux only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# Sampling runs in another process: a thread here would make the indexer fork its workers through a
# forkserver (it forks directly only while the process has one thread), which is not what is measured.
_MONITOR = r"""
import json, os, select, sys
pid, tick, last = int(sys.argv[1]), os.sysconf("SC_CLK_TCK"), {}
while True:
    ready = select.select([sys.stdin], [], [], 0.02)[0]
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        last[tid] = (int(fields[11]) + int(fields[12])) / tick
    if ready:
        break
print(json.dumps(last))
"""


class ThreadCpu:
    """Each thread's CPU seconds (user + system), sampled every 20 ms by a monitor process; a thread's
    last sample counts."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {threading.main_thread().native_id: "MainThread"}
        self._run = threading.Thread.run
        self._monitor: subprocess.Popen | None = None
        self.seconds: dict[int, float] = {}

    def __enter__(self) -> ThreadCpu:
        names, run = self.names, self._run

        def named_run(thread: threading.Thread) -> None:
            names[threading.get_native_id()] = thread.name
            run(thread)

        threading.Thread.run = named_run  # type: ignore[method-assign]
        self._monitor = subprocess.Popen([sys.executable, "-c", _MONITOR, str(os.getpid())],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc) -> None:
        threading.Thread.run = self._run  # type: ignore[method-assign]
        out, _ = self._monitor.communicate("stop\n")
        self.seconds = {int(tid): cpu for tid, cpu in json.loads(out).items()}

    def by_name(self) -> collections.Counter:
        """CPU seconds by thread name, threads of one pool (``frames_0``, ``frames_1`` …) together."""
        total: collections.Counter = collections.Counter()
        for tid, seconds in self.seconds.items():
            name = self.names.get(tid, "threads not started by Python (BLAS, OpenMP)")
            total[name.rstrip("0123456789").rstrip("_")] += seconds
        return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: bench/index_cpu_split.py /tmp/audiosim-bench/oneshots --workers 2")
    ap.add_argument("folder", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    library = Path(tempfile.mkdtemp(prefix="audiosim-cpu-split-"))
    try:
        threads = ThreadCpu()
        with threads:
            started = time.perf_counter()
            from audiosim.cli import main as cli_main

            code = cli_main(["--library", str(library / "lib"), "index", str(args.folder),
                             "--workers", str(args.workers)])
            wall = time.perf_counter() - started
            own = resource.getrusage(resource.RUSAGE_SELF)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers (the monitor is still running)
    finally:
        shutil.rmtree(library, ignore_errors=True)
    print(f"exit {code}; wall {wall:.2f} s from main(); main process CPU {own.ru_utime + own.ru_stime:.2f} s, "
          f"workers CPU {children.ru_utime + children.ru_stime:.2f} s")
    for name, seconds in threads.by_name().most_common():
        print(f"  {name:32s} {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
