"""SIGKILL at each named step of a run, from the first moments (library creation, lock, schema) to the
last commit: the library is then absent or complete, a reader says which in one line, and the next run
finishes the work. ``AUDIOSIM_TEST_KILL_AT`` makes the kill land at the same place on any machine."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import soundfile as sf

from audiosim.crashpoints import KILL_AT_ENV
from tests.conftest import run_cli

N_FILES = 6

FIRST_RUN_STEPS = [
    "library-folder-created", "lock-acquired", "database-opened", "schema-tables-created",
    "schema-meta-written", "schema-committed", "index-scan-begun", "index-batch-committed",
    "index-stores-saved",
]


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill-steps") / "sounds"
    folder.mkdir()
    sr = 22050
    t = np.arange(sr) / sr
    for i in range(N_FILES):
        sf.write(folder / f"tone{i}.wav", 0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t) * np.exp(-3 * t), sr)
    return folder


def reader_view(lib) -> str | dict:
    """``"absent"`` when a reader is told there is no library yet, else the library's stats."""
    from audiosim.errors import LibraryIncompleteError
    from audiosim.library.db import Library

    try:
        library = Library(lib)
    except LibraryIncompleteError as exc:
        assert str(exc).startswith("no library at"), exc  # never "half-created": creation is atomic
        return "absent"
    with library:
        return library.stats()


def assert_library_agrees_with_itself(lib) -> None:
    from audiosim.library.db import Library
    from audiosim.library.verify import find_problems

    with Library(lib) as library:
        problems, _ = find_problems(library)
    assert problems == []


@pytest.mark.parametrize("step", FIRST_RUN_STEPS)
def test_a_kill_during_the_first_run_leaves_no_library_or_a_complete_one(tmp_path, sounds, step):
    lib = tmp_path / "lib"
    killed = run_cli("--json", "index", "--workers", "2", sounds, library=lib, env={KILL_AT_ENV: step})
    assert killed.code == -signal.SIGKILL, killed  # the run reached the step and died there
    view = reader_view(lib)
    if step.startswith("index-") or step == "schema-committed":
        assert view != "absent" and view["dim"] > 0  # created before the kill: complete
    if step in ("library-folder-created", "lock-acquired", "database-opened", "schema-tables-created",
                "schema-meta-written"):
        assert view == "absent"  # the creating transaction never committed
    stats = run_cli("--json", "stats", library=lib)
    assert "Traceback" not in stats.stderr and len(stats.stderr.splitlines()) <= 1, stats
    resumed = run_cli("--json", "index", sounds, library=lib)
    assert resumed.code == 0, resumed
    assert "Traceback" not in resumed.stderr
    view = reader_view(lib)
    assert view["assets"] == N_FILES and view["segments"] >= N_FILES
    assert_library_agrees_with_itself(lib)


def test_a_kill_after_the_last_commit_keeps_every_commit(tmp_path, sounds):
    """``step#N`` kills the N-th time: here after the files' commit and the removal's, before the vector
    stores are saved and the scan is marked finished."""
    lib = tmp_path / "lib"
    assert run_cli("--json", "index", sounds, library=lib).code == 0
    (sounds / "tone0.wav").rename(tmp_path / "tone0.wav")  # the next run commits files, then the removal
    try:
        sf.write(sounds / "extra.wav", 0.2 * np.sin(np.arange(22050) * 0.03), 22050)
        killed = run_cli("--json", "index", sounds, library=lib, env={KILL_AT_ENV: "index-batch-committed#2"})
        assert killed.code == -signal.SIGKILL, killed
        assert reader_view(lib)["assets"] == N_FILES  # extra.wav added and tone0.wav removed, both durable
        resumed = run_cli("--json", "index", sounds, library=lib)
        assert resumed.code == 0, resumed
        assert resumed.json == {**resumed.json, "indexed": 0, "removed": 0, "skipped": N_FILES}
        assert_library_agrees_with_itself(lib)
    finally:
        (sounds / "extra.wav").unlink(missing_ok=True)
        (tmp_path / "tone0.wav").rename(sounds / "tone0.wav")


def test_a_kill_during_verify_repair_keeps_the_repairs_done_and_the_next_repair_finishes(tmp_path, sounds):
    import shutil

    folder = tmp_path / "sounds"
    shutil.copytree(sounds, folder)
    lib = tmp_path / "lib"
    assert run_cli("--json", "index", folder, library=lib).code == 0
    for store_file in (lib / "vectors").glob("segments.*"):  # the store is lost...
        store_file.unlink()
    (folder / "tone0.wav").unlink()  # ...and a file vanished
    before = {p["kind"] for p in run_cli("--json", "verify", library=lib).json["problems"]}
    assert before == {"missing_vectors", "vanished_files"}
    killed = run_cli("--json", "verify", "--repair", library=lib, env={KILL_AT_ENV: "repair-vectors-reconciled"})
    assert killed.code == -signal.SIGKILL, killed
    after = run_cli("--json", "verify", library=lib)
    assert "Traceback" not in after.stderr
    assert {p["kind"] for p in after.json["problems"]} == {"vanished_files"}  # the store repair was kept
    repaired = run_cli("--json", "verify", "--repair", library=lib)
    assert repaired.code == 0 and repaired.json["ok"], repaired
    assert run_cli("--json", "verify", library=lib).json == {"ok": True, "problems": []}
