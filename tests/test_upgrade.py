"""A library made by an older audiosim moves forward: from its stored frames when they suffice (no
decoding), from the audio when the frames lack what the new analysis needs; a kill mid-way resumes."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import soundfile as sf

from tests.conftest import ROOT, run_cli


def _samples(folder, n=8):
    folder.mkdir()
    sr = 22050
    rng = np.random.default_rng(4)
    for i in range(n):
        t = np.arange(int(sr * (0.6 + 0.4 * i))) / sr
        decay = np.exp(-t * (3 + i))
        x = 0.3 * decay * np.sin(2 * np.pi * (80 + 70 * i) * t) + 0.05 * decay * rng.standard_normal(len(t))
        sf.write(folder / f"hit{i}.wav", x.astype(np.float32), sr)
    return sorted(folder.iterdir())


def _indexed_twice(tmp_path):
    """Sample files, and two libraries of them: one to age, one fresh to compare with."""
    paths = _samples(tmp_path / "audio")
    fresh, lib = tmp_path / "fresh", tmp_path / "lib"
    for library in (fresh, lib):
        assert run_cli("index", tmp_path / "audio", library=library).code == 0
    return paths, fresh, lib


def _segment_vectors(library) -> dict[tuple[str, float], bytes]:
    with sqlite3.connect(library / "library.db") as db:
        return {(path, start): blob for path, start, blob in db.execute(
            "select a.path, s.start, s.embedding from segments s join assets a on a.id = s.asset_id")}


def _pretend_older(library, **changes) -> None:
    """Rewrite the recorded analysis parameters (and every asset's key) as an older audiosim left them."""
    from audiosim.config import AnalysisParams, analysis_key

    with sqlite3.connect(library / "library.db") as db:
        params = json.loads(db.execute("select value from meta where key = 'analysis_params'").fetchone()[0])
        params.update(changes)
        for gone in [k for k, v in changes.items() if v is None]:
            del params[gone]
        db.execute("update meta set value = ? where key = 'analysis_params'", (json.dumps(params),))
        db.execute("update assets set analysis_key = ?", (analysis_key(AnalysisParams.from_json(json.dumps(params))),))


def _strip_low_profile(library) -> None:
    """Frames as version 1 stored them: a file per asset, without the low-frequency profile."""
    from audiosim.library.frames import frames_dtype

    with sqlite3.connect(library / "library.db") as db, sqlite3.connect(library / "frames.db") as frames_db:
        for asset_id, key in db.execute("select id, frames_file from assets where frames_file is not null").fetchall():
            if key.startswith("frames.db:"):
                n_mfcc, data = frames_db.execute("select n_mfcc, data from frames where id = ?",
                                                 (int(key.split(":")[1]),)).fetchone()
                records = np.frombuffer(data, frames_dtype(n_mfcc))
                key = f"frames/{asset_id % 256:02x}/{asset_id}-1.npy"
                db.execute("update assets set frames_file = ? where id = ?", (key, asset_id))
            else:
                records = np.load(library / key)
            old = np.empty(len(records), np.dtype([("time", "<f4"), ("rms_db", "<f2"), ("mfcc", "<f2", (20,))]))
            for name in old.dtype.names:
                old[name] = records[name]
            (library / key).parent.mkdir(parents=True, exist_ok=True)
            with open(library / key, "wb") as f:
                np.save(f, old)
        frames_db.execute("delete from frames")


def test_new_embedding_is_rederived_from_stored_frames_without_the_audio(tmp_path):
    from audiosim.config import EMBEDDING_VERSION

    paths, fresh, lib = _indexed_twice(tmp_path)
    _pretend_older(lib, embedding=EMBEDDING_VERSION - 1)
    refused = run_cli("query", paths[0], library=lib)
    assert refused.code == 1 and "audiosim upgrade" in refused.stderr and "Traceback" not in refused.stderr
    shutil.move(tmp_path / "audio", tmp_path / "away")  # proof that nothing is decoded
    done = run_cli("--json", "upgrade", library=lib)
    assert done.code == 0, done
    assert done.json["from_frames"] == len(paths) and done.json["decoded"] == 0
    shutil.move(tmp_path / "away", tmp_path / "audio")
    assert _segment_vectors(lib) == _segment_vectors(fresh)  # exactly what a fresh index makes
    assert run_cli("--json", "verify", library=lib).json["ok"]
    hits = run_cli("--json", "query", paths[3], "-k", "3", library=lib).json["results"]
    assert hits[0]["path"] == str(paths[3]) and hits[0]["distance"] == 0.0
    again = run_cli("--json", "upgrade", library=lib)
    assert again.json["from_frames"] == again.json["decoded"] == 0  # nothing left to do


def test_version_1_library_is_reanalysed_from_audio_and_reports_missing_files(tmp_path):
    paths, fresh, lib = _indexed_twice(tmp_path)
    _pretend_older(lib, version=1, embedding=None, quiet_below_peak_db=None, silence_db=-60.0)
    _strip_low_profile(lib)
    from audiosim.stores.faiss_store import FaissStore

    for name in ("segments", "files"):  # version 1 stores held 59-dimensional vectors
        for old in (lib / "vectors").glob(f"{name}.*"):
            old.unlink()
        store = FaissStore(lib / "vectors", name, 59)
        store.add(np.arange(1, 4), np.ones((3, 59), np.float32))
        store.save()
        store.close()
    stats = run_cli("--json", "stats", library=lib)
    assert stats.code == 0 and "audiosim upgrade" in stats.json["store"]
    moved = tmp_path / "elsewhere.wav"
    shutil.move(paths[-1], moved)
    done = run_cli("--json", "upgrade", library=lib)
    assert done.code == 3, done  # some files could not be upgraded: said, per file
    assert done.json["decoded"] == len(paths) - 1 and done.json["from_frames"] == 0
    assert done.json["missing"] == [str(paths[-1])] and str(paths[-1]) in done.stderr
    shutil.move(moved, paths[-1])
    resumed = run_cli("--json", "index", tmp_path / "audio", library=lib)  # indexing finishes the upgrade
    assert resumed.code == 0 and resumed.json["upgrade"]["decoded"] == 1, resumed
    assert _segment_vectors(lib) == _segment_vectors(fresh)
    assert run_cli("--json", "verify", library=lib).json["ok"]


_KILL_AFTER_COMMITS = """
import os, signal, sys
from audiosim.library.db import Library
from audiosim.library import writer as writer_module
from audiosim.library.upgrade import upgrade_library

commit, done = writer_module.LibraryWriter.commit, []
def commit_then_die(self, *args, **kwargs):
    commit(self, *args, **kwargs)
    done.append(1)
    if len(done) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
writer_module.LibraryWriter.commit = commit_then_die
writer_module.COMMIT_EVERY = 1
import audiosim.library.upgrade as up
up.COMMIT_EVERY = 1
with Library(sys.argv[1], writable=True) as library:
    upgrade_library(library, workers=1)
"""


def test_a_kill_during_the_upgrade_loses_nothing_and_a_rerun_resumes(tmp_path):
    paths, fresh, lib = _indexed_twice(tmp_path)
    _pretend_older(lib, embedding=1)
    killed = subprocess.run([sys.executable, "-c", _KILL_AFTER_COMMITS, str(lib), "3"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    resumed = run_cli("--json", "upgrade", library=lib)
    assert resumed.code == 0, resumed
    assert resumed.json["from_frames"] == len(paths) - 3  # the three committed before the kill stay done
    assert _segment_vectors(lib) == _segment_vectors(fresh)
    assert run_cli("--json", "verify", library=lib).json["ok"]
