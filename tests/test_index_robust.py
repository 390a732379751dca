"""Messy folders, changes on disk, a second writer, and SIGKILL in the middle of a run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosim.crashpoints import HOLD_WORKER_ENV
from tests.conftest import ROOT, run_cli, stored_frame_count


def test_bad_files_fail_clearly_and_the_run_goes_on(tmp_path):
    from tests.corpus import make_bad_files

    files = make_bad_files(tmp_path / "messy")
    result = run_cli("--json", "index", tmp_path / "messy", library=tmp_path / "lib", timeout=900)
    assert result.code == 3, result
    doc = result.json
    failed = {f["path"]: f["error"] for f in doc["failed"]}
    for path, description in files.items():
        if description.startswith("broken:") and not (os.geteuid() == 0 and "chmod" in description):
            assert str(path) in failed, (path, description, failed)
    for error in failed.values():
        assert error and "Traceback" not in error and len(error) < 300
    assets = {a["path"]: a for a in run_cli("--json", "assets", library=tmp_path / "lib").json}
    for path, description in files.items():
        if description.startswith("valid:"):
            assert assets[str(path)]["status"] == "indexed", (path, assets.get(str(path)))
    # Failed files are recorded in the DB with their reason.
    for path in failed:
        if path in assets:
            assert assets[path]["status"] == "failed" and assets[path]["error"] == failed[path]
    assert doc["indexed"] == sum(1 for a in assets.values() if a["status"] == "indexed")
    verify = run_cli("--json", "verify", library=tmp_path / "lib")
    assert verify.code == 0, verify


def _tone(path: Path, freq: float, seconds: float = 1.0, sr: int = 44100) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(os.fsencode(path), 0.3 * np.sin(2 * np.pi * freq * t) * np.exp(-2 * t), sr)
    return path


def test_changed_and_deleted_files_are_updated(tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    paths = [_tone(folder / f"t{i}.wav", 200 + 150 * i) for i in range(4)]
    lib = tmp_path / "lib"
    first = run_cli("--json", "index", folder, library=lib).json
    assert first["indexed"] == 4
    segments_before = run_cli("--json", "stats", library=lib).json["segments"]
    _tone(paths[0], 1000, seconds=3.0)  # changed: longer, so more segments
    paths[1].unlink()
    os.utime(paths[2], (time.time() + 10, time.time() + 10))  # touched, not changed
    second = run_cli("--json", "index", folder, library=lib).json
    assert second == {**second, "indexed": 1, "skipped": 2, "removed": 1, "failed": []}
    stats = run_cli("--json", "stats", library=lib).json
    assert stats["assets"] == 3
    assets = {a["path"]: a for a in run_cli("--json", "assets", library=lib).json}
    assert abs(assets[str(paths[0])]["duration"] - 3.0) < 1e-3
    assert stats["segments"] > segments_before - 1
    assert run_cli("--json", "verify", library=lib).code == 0
    top = run_cli("--json", "query", paths[0], "-k", "1", library=lib).json["results"][0]
    assert top["path"] == str(paths[0]) and top["distance"] < 1e-4


def test_a_second_writer_is_told_the_library_is_in_use(tmp_path):
    from audiosim.library.db import Library

    folder = tmp_path / "samples"
    folder.mkdir()
    _tone(folder / "a.wav", 300)
    with Library(tmp_path / "lib", writable=True):
        result = run_cli("--json", "index", folder, library=tmp_path / "lib")
        assert result.code == 1
        assert "in use" in result.stderr and "Traceback" not in result.stderr
        # Readers are not blocked by the writer.
        assert run_cli("--json", "stats", library=tmp_path / "lib").code == 0
    assert run_cli("--json", "index", folder, library=tmp_path / "lib").code == 0


def _open_or_absent(lib) -> str:
    """A reader after a kill: the library is complete, or there is none yet; never half-made."""
    from audiosim.errors import LibraryIncompleteError
    from audiosim.library.db import Library

    try:
        Library(lib).close()
        return "complete"
    except LibraryIncompleteError as exc:
        assert str(exc).startswith("no library at"), exc
        return "absent"


def test_sigkill_at_any_moment_then_resume(tmp_path):
    """Kills from 0 ms after start (library creation, lock, schema) to deep into indexing. Each round
    brings new files, so there is always work to interrupt; the kill moment is drawn below the fastest
    complete run seen, so a fast machine still gets its kills and a cold one (imports, numba) its early ones."""
    from tests.corpus import make_oneshots

    pool = tmp_path / "pool"
    make_oneshots(pool, 150, seed=3)
    pool_files = sorted(pool.iterdir())
    folder = tmp_path / "shots"
    folder.mkdir()
    lib = tmp_path / "lib"
    rng = np.random.default_rng(11)
    argv = [sys.executable, "-m", "audiosim", "--library", str(lib), "--json", "index", str(folder)]
    kills = rounds = 0
    longest_delay = 2.5
    while kills < 6 and rounds < 15:
        for path in pool_files[rounds * 10:rounds * 10 + 10]:
            shutil.copy(path, folder / path.name)
        rounds += 1
        stderr_file = tmp_path / f"stderr-{rounds}.txt"
        with open(stderr_file, "w") as stderr:
            started = time.monotonic()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT,
                                    start_new_session=True)
            delay = 0.0 if rounds == 1 else float(rng.uniform(0.0, longest_delay))
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
            else:
                longest_delay = min(longest_delay, 0.8 * (time.monotonic() - started))
            proc.wait()
        assert "Traceback" not in stderr_file.read_text()
        assert _open_or_absent(lib) in ("complete", "absent")
    assert kills >= 3, (kills, rounds)
    final = run_cli("--json", "index", folder, library=lib)
    assert final.code == 0, final
    assert run_cli("--json", "verify", library=lib).code == 0
    stats = run_cli("--json", "stats", library=lib).json
    assert stats["assets"] == len(list(folder.iterdir()))
    from audiosim.library.db import Library

    with Library(lib) as library:
        store_ids = library.store("segments").ids()
        assert len(store_ids) == len(np.unique(store_ids)) == stats["segments"]


def test_index_symlinks_and_odd_names(tmp_path):
    folder = tmp_path / "odd names"
    sub = folder / "sub dir ü"
    sub.mkdir(parents=True)
    _tone(sub / "Über Kick ü 01.wav", 220)
    (folder / "loop").symlink_to(folder)
    (folder / "link to sub").symlink_to(sub)
    result = run_cli("--json", "index", folder, library=tmp_path / "lib")
    assert result.code == 0, result
    assets = run_cli("--json", "assets", library=tmp_path / "lib").json
    assert [Path(a["path"]).name for a in assets] == ["Über Kick ü 01.wav"]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make m4a")
def test_formats_through_soundfile_and_ffmpeg(tmp_path):
    src = _tone(tmp_path / "src.wav", 440, seconds=2.0)
    folder = tmp_path / "formats"
    folder.mkdir()
    made = []
    for ext, extra in ((".flac", []), (".ogg", ["-c:a", "libvorbis"]), (".mp3", []), (".m4a", ["-c:a", "aac"]),
                       (".aiff", []), (".opus", ["-c:a", "libopus"])):
        dest = folder / f"tone{ext}"
        proc = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *extra, str(dest)],
                              capture_output=True)
        if proc.returncode == 0:
            made.append(dest)
    assert len(made) >= 4
    result = run_cli("--json", "index", folder, library=tmp_path / "lib")
    assert result.code == 0, result
    assets = {Path(a["path"]).suffix: a for a in run_cli("--json", "assets", library=tmp_path / "lib").json}
    for dest in made:
        assert abs(assets[dest.suffix]["duration"] - 2.0) < 0.1, assets[dest.suffix]


def test_ctrl_c_cancels_cleanly_and_a_rerun_resumes(tmp_path):
    import json

    from tests.corpus import make_oneshots

    folder = tmp_path / "shots"
    make_oneshots(folder, 300, seed=4)
    lib = tmp_path / "lib"
    argv = [sys.executable, "-m", "audiosim", "--library", str(lib), "--json", "index", str(folder)]
    # One file's worker stops at it for good: the run is still under way when Ctrl-C comes, however fast
    # the rest went (the workers can finish 300 one-shots before the first commit).
    env = {**os.environ, HOLD_WORKER_ENV: "shot_0150."}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while not stored_frame_count(lib) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    first = json.loads(out)
    assert "cancelling" in err
    assert run_cli("--json", "verify", library=lib).code == 0
    second = run_cli("--json", "index", folder, library=lib).json
    assert second["skipped"] == first["indexed"]
    assert second["indexed"] + second["skipped"] == 300


def test_readers_keep_working_while_a_writer_indexes(tmp_path):
    from tests.corpus import make_oneshots

    first = tmp_path / "first"
    make_oneshots(first, 20, seed=5)
    lib = tmp_path / "lib"
    assert run_cli("--json", "index", first, library=lib).code == 0
    more = tmp_path / "more"
    make_oneshots(more, 300, seed=6)
    argv = [sys.executable, "-m", "audiosim", "--library", str(lib), "--json", "index", str(more)]
    writer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        query_file = sorted(first.iterdir())[0]
        reads = 0
        while writer.poll() is None and reads < 6:
            result = run_cli("--json", "query", query_file, "-k", "3", library=lib)
            assert result.code == 0, result
            assert result.json["results"][0]["path"] == str(query_file)
            assert run_cli("--json", "assets", "--filter", "duration > 0", library=lib).code == 0
            reads += 1
        second = run_cli("--json", "index", more, library=lib)
        if writer.poll() is None:
            assert second.code == 1 and "in use" in second.stderr
    finally:
        writer.wait(timeout=300)
    assert reads >= 1
    assert writer.returncode == 0
    assert run_cli("--json", "verify", library=lib).code == 0


def test_names_that_are_not_utf8_or_very_long(tmp_path):
    import json

    folder = tmp_path / "names"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/kick \xff\xfe latin1 \xe9.wav"
    weird = os.fsdecode(raw)
    _tone(Path(weird), 180)
    long_name = folder / ("x" * 240 + ".wav")
    _tone(long_name, 260)
    lib = tmp_path / "lib"
    first = run_cli("--json", "index", folder, library=lib)
    assert first.code == 0, first
    assert first.json["indexed"] == 2
    assets = run_cli("--json", "assets", library=lib)
    paths = {a["path"] for a in json.loads(assets.stdout)}
    assert paths == {weird, str(long_name)}  # exact, through JSON's \u escapes
    assert run_cli("--json", "index", folder, library=lib).json["skipped"] == 2
    top = run_cli("--json", "query", weird, "-k", "1", library=lib).json["results"][0]
    assert top["path"] == weird and top["distance"] < 1e-4
    human = run_cli("assets", library=lib)
    assert human.code == 0 and "latin1" in human.stdout
    os.remove(raw)
    assert run_cli("--json", "index", folder, library=lib).json["removed"] == 1
    assert run_cli("--json", "verify", library=lib).code == 0


def _oneshots(folder: Path, count: int) -> list[Path]:
    from tests.corpus import make_oneshots

    make_oneshots(folder, count, seed=21, min_seconds=0.2, max_seconds=1.0)
    return sorted(folder.rglob("*.wav"))


def test_a_worker_process_killed_mid_run_has_its_files_retried(tmp_path):
    """A decoder crash or the out-of-memory killer ends a worker process: the files of its batch are
    analysed again, each alone, and the run ends with every file indexed (it used to wait forever)."""
    files = _oneshots(tmp_path / "shots", 40)
    marker = tmp_path / "killed-once"
    result = run_cli("--json", "index", "--workers", "2", tmp_path / "shots", library=tmp_path / "lib",
                     env={"AUDIOSIM_TEST_KILL_WORKER_ON": f"{files[17].name}:{marker}"}, timeout=300)
    assert marker.exists()  # a worker really died on that file
    assert result.code == 0, result
    assert result.json["indexed"] == 40 and result.json["failed"] == []
    assert run_cli("--json", "verify", library=tmp_path / "lib").json == {"ok": True, "problems": []}


def test_a_file_that_kills_its_worker_process_every_time_fails_alone_with_the_reason(tmp_path):
    files = _oneshots(tmp_path / "shots", 40)
    victim = files[9]
    result = run_cli("--json", "index", "--workers", "2", tmp_path / "shots", library=tmp_path / "lib",
                     env={"AUDIOSIM_TEST_KILL_WORKER_ON": victim.name}, timeout=300)
    assert result.code == 3, result  # some files failed
    reason = "the analysis process was killed by SIGKILL while analysing this file"
    assert result.json["failed"] == [{"path": str(victim), "error": reason}]
    assert result.json["indexed"] == 39
    assets = {a["path"]: a for a in run_cli("--json", "assets", library=tmp_path / "lib").json}
    assert assets[str(victim)]["status"] == "failed" and assets[str(victim)]["error"] == reason
