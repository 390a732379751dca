"""Asset rows as a query reads them (plain selects, no file vector) agree with the ORM's ``Asset`` objects:
the same values for indexed files, nothing for failed or unknown ones, undecodable file names intact."""

from __future__ import annotations

import os
import shutil

from sqlalchemy import select

from audiosim.library.db import Library
from audiosim.library.models import STATUS_FAILED, STATUS_INDEXED, Asset, AssetRow
from tests.conftest import run_cli


def test_asset_row_has_every_column_but_the_file_vector_in_table_order():
    columns = [c.name for c in Asset.__table__.columns]
    assert list(AssetRow._fields) == [c for c in columns if c != "embedding"]


def test_rows_match_the_orm_and_leave_out_failed_and_unknown_assets(tmp_path, labelled_corpus):
    audio = tmp_path / "audio"
    audio.mkdir()
    good = sorted(labelled_corpus)[:3]
    for f in good:
        shutil.copy(f, audio / f.name)
    odd_name = audio / os.fsdecode(b"caf\xe9 kick.wav")  # not valid UTF-8: stored as bytes
    shutil.copy(good[0], odd_name)
    (audio / "broken.wav").write_bytes(b"RIFF not really a wave file")
    library = tmp_path / "lib"
    result = run_cli("--json", "index", audio, library=library)
    # exit code 3: some files failed
    assert result.code == 3 and result.json["indexed"] == 4 and len(result.json["failed"]) == 1, result

    with Library(library) as lib:
        with lib.Session() as s:
            assets = {a.id: a for a in s.scalars(select(Asset))}
        indexed = {i for i, a in assets.items() if a.status == STATUS_INDEXED}
        failed = {i for i, a in assets.items() if a.status == STATUS_FAILED}
        assert len(indexed) == 4 and len(failed) == 1

        rows = lib.indexed_asset_rows(indexed | failed | {max(assets) + 1000})
        assert rows.keys() == indexed
        for asset_id, row in rows.items():
            assert isinstance(row, AssetRow)
            assert row == tuple(getattr(assets[asset_id], f) for f in AssetRow._fields)
        assert lib.indexed_asset_rows(set()) == {}

        by_path = lib.asset_by_path(str(odd_name))
        assert by_path is not None and by_path.path == str(odd_name) and by_path.status == STATUS_INDEXED
        assert by_path.frames_file.startswith("frames.db:") and len(lib.load_frames(by_path)) > 0
        broken = lib.asset_by_path(str(audio / "broken.wav"))
        assert broken is not None and broken.status == STATUS_FAILED and broken.error
        assert lib.asset_by_path(str(audio / "never-indexed.wav")) is None
