"""A library shared by several machines: metadata in PostgreSQL, vectors in pgvector, the library folder on
a shared mount (reached here through a second path, as another machine would mount it).

One writer at a time, enforced by a PostgreSQL advisory lock (no local lock file is involved); readers
elsewhere see each commit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import ROOT, run_cli
from tests.services import unique_prefix
from tests.test_cli_stores import write_sounds

HOLDER = textwrap.dedent("""
    import sys
    from audiosim.library.db import Library

    with Library(sys.argv[1], writable=True):
        print("ready", flush=True)
        sys.stdin.read()  # hold the writer lock until the test closes our stdin
""")


@pytest.fixture
def shared_db(pg_url) -> str:
    """A fresh database on the test PostgreSQL, for one shared library."""
    import psycopg

    name = unique_prefix("shared")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(pg_url)._replace(path=f"/{name}"))


def test_two_machines_share_one_library(tmp_path, shared_db):
    share = tmp_path / "share"
    share.mkdir()
    second_mount = tmp_path / "machine2"
    second_mount.symlink_to(share)  # the same shared folder, mounted elsewhere on another machine
    folder_a, folder_b = share / "lib", second_mount / "lib"
    first = write_sounds(tmp_path / "first", 4, seed=1)
    second = write_sounds(tmp_path / "second", 3, seed=2)
    store = f"{shared_db}{'&' if '?' in shared_db else '?'}prefix=studio"

    created = run_cli("--library", folder_a, "--db", shared_db, "--store", store, "index", first, "--workers", "1")
    assert created.code == 0, created
    # Machine 2 names only its library folder: the DB URL is in library.json, the store spec in the DB.
    stats = run_cli("stats", "--json", library=folder_b)
    assert stats.code == 0, stats
    assert (stats.json["assets"], stats.json["store_backend"]) == (4, "pgvector")
    assert not (share / "lib" / "library.lock").exists()  # the writer lock is in the database

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder_a)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "ready"
        refused = run_cli("index", second, "--workers", "1", library=folder_b)
        assert refused.code == 1
        assert f"in use by another audiosim process (pid {holder.pid} on " in refused.stderr
        assert run_cli("stats", "--json", library=folder_b).json["assets"] == 4  # readers are not blocked
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)

    added = run_cli("index", second, "--workers", "1", library=folder_b)
    assert added.code == 0, added
    # Machine 1 sees machine 2's commit, and finds its sounds.
    assert run_cli("stats", "--json", library=folder_a).json["assets"] == 7
    hit = run_cli("query", second / "tone001.wav", "-k", "1", "--json", library=folder_a)
    assert hit.code == 0, hit
    assert hit.json["results"][0]["path"] == str(second / "tone001.wav")
    assert run_cli("verify", "--json", library=folder_a).json["ok"]


def test_a_killed_writer_releases_the_lock(tmp_path, shared_db):
    folder = tmp_path / "lib"
    sounds = write_sounds(tmp_path / "s", 2)
    assert run_cli("--db", shared_db, "index", sounds, "--workers", "1", library=folder).code == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == "ready"
    holder.kill()
    holder.wait()
    again = run_cli("index", sounds, "--workers", "1", library=folder)  # PostgreSQL ended the dead session
    assert again.code == 0, again
    assert os.path.exists(folder / "library.json")
    assert Path(folder / "library.json").stat().st_mode & 0o077 == 0  # the URL may hold a password
