"""`audiosim verify` finds disagreements between the vector store, the DB, the frame files and the disk,
and `verify --repair` fixes them without touching what is fine."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from tests.conftest import run_cli


def _make_library(tmp_path, n=6):
    folder = tmp_path / "samples"
    folder.mkdir()
    sr = 22050
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        t = np.arange(int(sr * (1.0 + 0.5 * i))) / sr
        tone = 0.2 * np.sin(2 * np.pi * (150 + 90 * i) * t) + 0.02 * rng.standard_normal(len(t))
        paths.append(folder / f"s{i}.wav")
        sf.write(paths[-1], tone.astype(np.float32), sr)
    lib = tmp_path / "lib"
    assert run_cli("--json", "index", folder, library=lib).code == 0
    return lib, folder, paths


def _kinds(result) -> set[str]:
    return {p["kind"] for p in result.json["problems"]}


def test_verify_repair_fixes_each_kind_of_damage(tmp_path):
    from audiosim.library.db import Library

    lib, folder, paths = _make_library(tmp_path)
    assert run_cli("--json", "verify", library=lib).json == {"ok": True, "problems": []}
    assets = {a["path"]: a for a in run_cli("--json", "assets", library=lib).json}
    with Library(lib, writable=True) as library:
        store = library.store("segments")
        victim = store.ids()[:2]
        store.remove(victim)  # segments without vectors
        store.add(np.array([10**12], np.int64), np.ones((1, library.dim), np.float32))  # orphan vector
        store.save()
        lost = library.asset_by_path(str(paths[1])).frames_file
        library.frames_db.delete([lost])  # an asset without its frames
        orphan_row = library.frames_db.put([library.load_frames(library.asset_by_path(str(paths[0])))],
                                           library.params)  # frames stored by a run killed before its commit
    (lib / "frames" / "00" / "999-deadbeef.npy").parent.mkdir(parents=True, exist_ok=True)
    (lib / "frames" / "00" / "999-deadbeef.npy").write_bytes(b"left by a crash")
    paths[2].unlink()  # vanished from disk
    sf.write(paths[3], np.zeros(22050 * 3, np.float32) + 0.1 * np.sin(np.arange(22050 * 3) / 3), 22050)

    found = run_cli("--json", "verify", library=lib)
    assert found.code == 1
    orphans = next(p for p in found.json["problems"] if p["kind"] == "orphan_frames")
    assert orphans["count"] == 2 and set(orphans["examples"]) == {orphan_row[0], "frames/00/999-deadbeef.npy"}
    assert _kinds(found) == {"missing_vectors", "orphan_vectors", "missing_frames", "orphan_frames",
                             "vanished_files", "changed_files"}, found.json
    repaired = run_cli("--json", "verify", "--repair", library=lib)
    assert repaired.code == 0, repaired
    assert repaired.json["ok"] and repaired.json["problems"] == []
    assert run_cli("--json", "verify", library=lib).json["ok"]
    after = {a["path"]: a for a in run_cli("--json", "assets", library=lib).json}
    assert str(paths[2]) not in after
    assert abs(after[str(paths[3])]["duration"] - 3.0) < 1e-3
    # Untouched assets keep their rows (same ids, same fingerprints).
    for p in (paths[0], paths[4], paths[5]):
        assert after[str(p)]["id"] == assets[str(p)]["id"]
        assert after[str(p)]["fingerprint"] == assets[str(p)]["fingerprint"]
    top = run_cli("--json", "query", paths[1], "-k", "1", library=lib).json["results"][0]
    assert top["path"] == str(paths[1]) and top["distance"] < 1e-4


def test_store_is_rebuilt_from_the_db_when_its_file_is_lost(tmp_path):
    lib, folder, paths = _make_library(tmp_path)
    before = run_cli("--json", "stats", library=lib).json
    for f in (lib / "vectors").iterdir():
        f.unlink()
    broken = run_cli("--json", "verify", library=lib)
    assert broken.code == 1 and "missing_vectors" in _kinds(broken)
    assert run_cli("--json", "verify", "--repair", library=lib).code == 0
    assert run_cli("--json", "stats", library=lib).json["segments"] == before["segments"]
    top = run_cli("--json", "query", paths[0], "-k", "1", library=lib).json["results"][0]
    assert top["path"] == str(paths[0])


def test_damaged_store_file_gives_a_clear_error_and_repair_rebuilds_it(tmp_path):
    lib, folder, paths = _make_library(tmp_path)
    store_file = lib / "vectors" / "segments.faiss"
    store_file.write_bytes(store_file.read_bytes()[:100])
    query = run_cli("--json", "query", paths[0], library=lib)
    assert query.code == 1 and "damaged" in query.stderr and "Traceback" not in query.stderr
    repaired = run_cli("--json", "verify", "--repair", library=lib)
    assert repaired.code == 0, repaired
    assert json.loads(repaired.stdout)["ok"]
    assert run_cli("--json", "query", paths[0], "-k", "1", library=lib).json["results"][0]["path"] == str(paths[0])
