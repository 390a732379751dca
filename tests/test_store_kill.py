"""SIGKILL a process in the middle of saving the vector store, many times: the store on disk always
opens, holding the last completed save or the one before — never a damaged file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from tests.conftest import ROOT

SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from pathlib import Path
    from audiosim.stores import open_store

    folder, dim = Path(sys.argv[1]), 59
    store = open_store("faiss", path=folder, name="segments", dim=dim)
    rng = np.random.default_rng(int(sys.argv[2]))
    next_id = int(store.ids().max()) + 1 if store.count() else 0
    while True:
        ids = np.arange(next_id, next_id + 20000, dtype=np.int64)
        store.add(ids, rng.standard_normal((len(ids), dim)).astype(np.float32))
        next_id += len(ids)
        store.save()
        print(store.count(), flush=True)
""")


def test_kill_during_store_saves(tmp_path):
    from audiosim.stores import open_store

    rng = np.random.default_rng(7)
    saved_counts = [0]
    for round_ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path), str(round_)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # at least one save finished in this process
        assert first.strip(), "the saver died before saving"
        time.sleep(float(rng.uniform(0.0, 0.3)))  # then kill at a random moment, often mid-save
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait()
        completed = [int(line) for line in (first + rest).split()]
        store = open_store("faiss", path=tmp_path, name="segments", dim=59)
        count = store.count()
        store.close()
        # The last save that reported finishing, or one that finished but was killed before printing.
        assert count >= completed[-1], (count, completed)
        assert count <= completed[-1] + 20000
        assert count >= saved_counts[-1]
        saved_counts.append(count)
    assert saved_counts[-1] > 0
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    store = open_store("faiss", path=tmp_path, name="segments", dim=59)
    store.add(np.array([10**9], np.int64), np.ones((1, 59), np.float32))
    store.save()  # a save cleans up the temp files of killed processes
    store.close()
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name], leftovers
