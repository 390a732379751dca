"""A full disk and a read-only library: writes fail with a clear message and the library stays usable."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import run_cli


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 400 KB we can fill, remount larger, or make read-only (needs root's mount)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount_point)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _remount(mount_point, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)


def _long_files(folder, n=5, seconds=40):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        sr = 22050
        t = np.arange(int(sr * seconds)) / sr
        x = 0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t * (1 + 0.1 * np.sin(t))) + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"long{i}.wav", x.astype(np.float32), sr)
    return folder


def test_disk_full_fails_cleanly_and_the_library_survives(tmp_path, small_disk):
    folder = _long_files(tmp_path / "samples")
    lib = small_disk / "lib"
    full = run_cli("--json", "index", folder, library=lib)
    assert full.code == 1, full
    assert "No space left on device" in full.stderr or "disk is full" in full.stderr, full.stderr
    assert "Traceback" not in full.stderr
    # What was committed before the disk filled is readable and consistent.
    stats = run_cli("--json", "stats", library=lib)
    assert stats.code == 0, stats
    assert stats.json["assets"] < 5
    _remount(small_disk, "size=50m")
    again = run_cli("--json", "index", folder, library=lib)
    assert again.code == 0, again
    assert run_cli("--json", "stats", library=lib).json["assets"] == 5
    verify = run_cli("--json", "verify", library=lib)
    assert verify.code == 0, verify


def test_read_only_library_reads_but_refuses_writes(tmp_path, small_disk):
    folder = _long_files(tmp_path / "samples", n=2, seconds=3)
    lib = small_disk / "lib"
    assert run_cli("--json", "index", folder, library=lib).code == 0
    _remount(small_disk, "ro")
    write = run_cli("--json", "index", folder, library=lib)
    assert write.code == 1 and "Read-only file system" in write.stderr and "Traceback" not in write.stderr
    assert run_cli("--json", "stats", library=lib).json["assets"] == 2
    query = run_cli("--json", "query", folder / "long0.wav", "-k", "1", library=lib)
    assert query.code == 0 and query.json["results"][0]["path"] == str(folder / "long0.wav")
    assert run_cli("--json", "verify", library=lib).code == 0
