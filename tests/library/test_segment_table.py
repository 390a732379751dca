"""The in-memory segment table of a reader follows what a writer (another process) commits: new segments are
found, deleted ones are never returned, and the table is re-read whole only when rows were deleted."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from audiosim.library.db import Library
from audiosim.library.models import Asset, Segment
from audiosim.search import Seed, search
from tests.conftest import run_cli


def _db_segments(lib: Library) -> dict[int, tuple[int, float, float, int]]:
    with lib.Session() as s:
        return {r.id: (r.asset_id, r.start, r.duration, r.n_segments)
                for r in s.execute(select(Segment.id, Segment.asset_id, Segment.start, Asset.duration,
                                          Asset.n_segments).join(Asset, Asset.id == Segment.asset_id))}


def _table(lib: Library) -> dict[int, tuple[int, float, float, int]]:
    rows = lib.segment_rows(np.empty(0, np.int64))
    return {int(i): (int(a), float(t0), float(d), int(n))
            for i, a, t0, d, n in zip(rows.ids, rows.asset_ids, rows.starts, rows.asset_durations,
                                      rows.asset_segments)}


@pytest.fixture()
def folders(tmp_path, labelled_corpus) -> tuple[Path, Path, Path]:
    """Two folders of a few corpus files each, and where the library goes."""
    files = sorted(labelled_corpus)
    first, second = tmp_path / "audio" / "first", tmp_path / "audio" / "second"
    for folder, picks in ((first, files[0:12:2]), (second, files[1:12:2])):
        folder.mkdir(parents=True)
        for f in picks:
            shutil.copy(f, folder / f.name)
    return first, second, tmp_path / "lib"


def test_a_reader_finds_segments_a_writer_committed_after_it_opened(folders):
    first, second, library = folders
    assert run_cli("--json", "index", first, library=library).code == 0
    with Library(library) as reader:
        assert _table(reader) == _db_segments(reader)
        assert reader._segment_table.reloads == 1
        assert run_cli("--json", "index", second, library=library).code == 0  # another process writes
        table, db = _table(reader), _db_segments(reader)
        assert table == db and len(db) > 0
        assert reader._segment_table.reloads == 1  # only the new rows were read
        # The reader's searches see the new files (a query by one of them finds itself, at its own time).
        new_file = sorted(second.iterdir())[0]
        hits = search(reader, [Seed(str(new_file))], k=5)
        assert hits and hits[0].path == str(new_file)


def test_segments_a_writer_deleted_are_never_returned(folders):
    first, second, library = folders
    assert run_cli("--json", "index", first.parent, library=library).code == 0
    gone = sorted(second.iterdir())[0]
    changed = sorted(first.iterdir())[0]
    with Library(library) as reader:
        before = _table(reader)
        gone_id = reader.asset_by_path(str(gone)).id
        changed_id = reader.asset_by_path(str(changed)).id
        old_of_changed = {i for i, row in before.items() if row[0] == changed_id}
        gone.unlink()  # removed from disk: the next index removes it from the library
        shutil.copy(sorted(second.iterdir())[0], changed)  # changed: re-indexed, new segment ids
        result = run_cli("--json", "index", first.parent, library=library)
        assert result.code == 0 and result.json["removed"] == 1, result
        table = _table(reader)
        assert table == _db_segments(reader)
        assert reader._segment_table.reloads == 2  # rows were deleted: read whole again
        assert all(row[0] != gone_id for row in table.values())
        assert not old_of_changed & table.keys()
        # Searching the store (which a reader opened before the deletion still holds) returns none of them.
        hits = search(reader, [Seed(str(p)) for p in sorted(first.iterdir())[1:3]], k=50)
        assert hits and all(h.asset_id != gone_id for h in hits)
        assert all(h.segment_id not in old_of_changed for h in hits)


def test_rows_are_looked_up_by_id_and_unknown_ids_are_not_found_also_without_the_table(corpus_library):
    with Library(corpus_library) as lib:
        with lib.Session() as s:
            some = s.execute(select(Segment.id, Segment.asset_id, Segment.start, Asset.duration, Asset.n_segments)
                             .join(Asset).order_by(Segment.id.desc()).limit(7)).all()
        ids = np.array([r.id for r in some] + [-1, 10**12], np.int64)
        table = lib.segment_rows(ids)
        lib._segment_table = None  # what a library whose metadata is not in SQLite does: one query
        queried = lib.segment_rows(ids)
        assert len(queried) == 7 < len(table)
        for rows in (table, queried):
            found, where = rows.find(ids)
            assert found.tolist() == [True] * 7 + [False, False]
            assert rows.asset_ids[where[:7]].tolist() == [r.asset_id for r in some]
            assert rows.starts[where[:7]].tolist() == [r.start for r in some]
            assert rows.asset_durations[where[:7]].tolist() == [r.duration for r in some]
            assert rows.asset_segments[where[:7]].tolist() == [r.n_segments for r in some]
