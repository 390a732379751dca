"""Creating, completing and upgrading a library's schema: all or nothing, and reopening says what it did."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import create_engine, update
from sqlalchemy.orm import Session

from audiosim.crashpoints import KILL_AT_ENV
from audiosim.errors import LibraryIncompleteError
from audiosim.library.db import Library
from audiosim.library.models import Base, Meta, Segment
from tests.conftest import ROOT, run_cli


def _half_made_by_an_older_audiosim(lib) -> None:
    """What the old ``_prepare_schema`` left when killed between two ``set_meta`` calls."""
    lib.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{lib / 'library.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Meta(key="schema_version", value="1"))
        s.commit()
    engine.dispose()


def _sounds(folder, n: int = 3):
    folder.mkdir()
    t = np.arange(22050) / 22050
    for i in range(n):
        sf.write(folder / f"s{i}.wav", 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) * np.exp(-3 * t), 22050)
    return folder


def _meta(lib) -> dict[str, str]:
    with sqlite3.connect(lib / "library.db") as conn:
        return dict(conn.execute("SELECT key, value FROM meta"))


def _columns(lib, table: str) -> set[str]:
    with sqlite3.connect(lib / "library.db") as conn:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_a_half_made_library_is_named_to_readers_and_completed_by_the_next_writer(tmp_path):
    lib = tmp_path / "lib"
    _half_made_by_an_older_audiosim(lib)
    with pytest.raises(LibraryIncompleteError, match="half-created"):
        Library(lib)
    stats = run_cli("stats", library=lib)
    assert stats.code == 1 and stats.stderr.count("\n") == 1 and "half-created" in stats.stderr, stats
    indexed = run_cli("--json", "index", _sounds(tmp_path / "sounds"), library=lib)
    assert indexed.code == 0, indexed
    notice, = [line for line in indexed.stderr.splitlines() if "half-created" in line]
    assert notice.startswith("audiosim: recreated a library") and "analysis_params" in notice
    assert indexed.json["indexed"] == 3
    assert set(_meta(lib)) >= {"schema_version", "analysis_params", "store_backend"}
    again = run_cli("--json", "index", tmp_path / "sounds", library=lib)
    assert again.code == 0 and "half-created" not in again.stderr  # said once, when it was done


def test_an_interrupted_upgrade_leaves_the_old_schema_and_the_next_writer_finishes_it(tmp_path):
    lib = tmp_path / "lib"
    sounds = _sounds(tmp_path / "sounds")
    assert run_cli("--json", "index", sounds, library=lib).code == 0
    with sqlite3.connect(lib / "library.db") as conn:  # an older library: no centroid column, schema 0
        conn.execute("ALTER TABLE assets DROP COLUMN centroid")
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    killed = run_cli("--json", "index", sounds, library=lib, env={KILL_AT_ENV: "migration-columns-added"})
    assert killed.code == -signal.SIGKILL, killed
    assert "centroid" not in _columns(lib, "assets")  # the ALTER TABLE was rolled back with the rest
    assert _meta(lib)["schema_version"] == "0"
    assert (lib / "library.db.backup-v0").is_file()
    assert not list(lib.glob("*.tmp-*"))
    upgraded = run_cli("--json", "index", sounds, library=lib)
    assert upgraded.code == 0, upgraded
    assert "upgraded the library database: schema 0 → 1, column assets.centroid (backup: library.db.backup-v0)" \
        in upgraded.stderr
    assert "centroid" in _columns(lib, "assets") and _meta(lib)["schema_version"] == "1"
    assert run_cli("--json", "stats", library=lib).json["assets"] == 3
    with sqlite3.connect(lib / "library.db.backup-v0") as conn:  # a consistent copy of the old database
        assert conn.execute("SELECT count(*) FROM assets").fetchone() == (3,)


def test_meta_updates_commit_together_or_not_at_all(tmp_path):
    lib = tmp_path / "lib"
    Library(lib, writable=True).close()
    script = ("from audiosim.library.db import Library\n"
              f"lib = Library({str(lib)!r}, writable=True)\n"
              "lib.update_meta({'store_backend': 'annoy', 'store_options': '{\"trees\": 5}'})\n")
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**_env(), KILL_AT_ENV: "meta-updated"})
    assert killed.returncode == -signal.SIGKILL
    assert _meta(lib)["store_backend"] == "faiss" and "store_options" not in _meta(lib)
    assert subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env()).returncode == 0
    assert _meta(lib)["store_backend"] == "annoy" and _meta(lib)["store_options"] == '{"trees": 5}'


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != KILL_AT_ENV}


def test_vectors_changed_in_a_transaction_are_rebuilt_by_the_next_writer(tmp_path):
    """The analysis-upgrade hook: new embeddings and the "stores outdated" mark commit together."""
    lib = tmp_path / "lib"
    assert run_cli("--json", "index", _sounds(tmp_path / "sounds"), library=lib).code == 0
    with Library(lib, writable=True) as library:
        with library.Session() as s:
            segment_id, blob = s.execute(Segment.__table__.select().with_only_columns(
                Segment.id, Segment.embedding).limit(1)).one()
        new_vector = -np.frombuffer(blob, np.float32)
        with library.transaction() as conn:
            conn.execute(update(Segment).where(Segment.id == segment_id).values(embedding=new_vector.tobytes()))
            library.update_meta({"analysis_note": "upgraded"}, conn=conn)
            library.mark_stores_outdated(conn)
        assert np.allclose(library.store("segments").get(np.array([segment_id]))[0], -new_vector)  # stale
    with Library(lib, writable=True) as library:
        assert any("rebuilt the vector stores" in n for n in library.notices)
        assert np.allclose(library.store("segments").get(np.array([segment_id]))[0], new_vector)
    with Library(lib, writable=True) as library:
        assert library.notices == []  # done once
