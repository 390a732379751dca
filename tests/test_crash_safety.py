"""SIGKILL the indexer at many random moments: nothing indexed is lost, and the vector store and the
metadata DB always agree after a restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import soundfile as sf
from sqlalchemy import func, select

from tests.conftest import ROOT, frames_ever_written, run_cli

KILLS = 50


def _library_state(lib):
    from audiosim.library.db import Library
    from audiosim.library.models import STATUS_INDEXED, Asset, Segment

    with Library(lib) as library:
        with library.Session() as s:
            indexed = {p: f for p, f in s.execute(select(Asset.path, Asset.fingerprint)
                                                  .where(Asset.status == STATUS_INDEXED))}
            n_segments = s.scalar(select(func.count()).select_from(Segment))
            segment_ids = np.fromiter(s.scalars(select(Segment.id)), np.int64)
        store_ids = library.store("segments").ids()
    return indexed, n_segments, segment_ids, store_ids


def test_fifty_random_kills(tmp_path):
    from tests.corpus import make_oneshots

    pool = tmp_path / "pool"
    make_oneshots(pool, 400, seed=9, max_seconds=1.5)
    pool_files = sorted(pool.iterdir())
    folder = tmp_path / "samples"
    folder.mkdir()
    lib = tmp_path / "lib"
    rng = np.random.default_rng(2024)
    argv = [sys.executable, "-m", "audiosim", "--library", str(lib), "--json", "index", str(folder)]
    kills = rounds = 0
    indexed_before: dict[str, str] = {}
    while kills < KILLS and rounds < 3 * KILLS:
        rounds += 1
        # Each round brings new files and changes old ones, so every kill interrupts real work.
        for path in pool_files[(rounds * 8) % 400:(rounds * 8) % 400 + 8]:
            shutil.copy(path, folder / path.name)
        present = sorted(folder.iterdir())
        for path in rng.choice(present, size=min(12, len(present)), replace=False):
            data, sr = sf.read(path)
            sf.write(path, data * float(rng.uniform(0.5, 0.9)), sr)
        before = frames_ever_written(lib)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                                start_new_session=True)
        # Kill once the run has started writing, after a random extra moment within what is left of its
        # writes (a round's ~20 files are one commit: frames, DB transaction, stores, then the exit).
        while proc.poll() is None and frames_ever_written(lib) <= before:
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0.0, 0.05)))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        indexed, _, _, _ = _library_state(lib)
        # Everything indexed before this kill is still there (a file rewritten since may be re-indexed).
        assert set(indexed_before) <= set(indexed)
        indexed_before = indexed
        if rounds % 10 == 0:  # a restart completes the run and the library agrees with itself
            result = run_cli("--json", "index", folder, library=lib)
            assert result.code == 0, result
            assert run_cli("--json", "verify", library=lib).code == 0
    assert kills == KILLS, (kills, rounds)
    final = run_cli("--json", "index", folder, library=lib)
    assert final.code == 0, final
    assert run_cli("--json", "verify", library=lib).code == 0
    indexed, n_segments, segment_ids, store_ids = _library_state(lib)
    assert len(indexed) == len(list(folder.iterdir()))
    assert len(store_ids) == len(np.unique(store_ids)) == n_segments
    assert np.array_equal(np.sort(store_ids), np.sort(segment_ids))
