"""Where a library stores frames: short files' in rows of ``frames.db``, longer files' in a ``.npy`` each;
both read back as analysed, replaced and deleted with their assets, and checked by ``verify``."""

from __future__ import annotations

import numpy as np
import soundfile as sf

import audiosim.library.writer as writer_module
from audiosim.analysis import analyze_file
from audiosim.indexer import index_paths
from audiosim.library.db import Library
from audiosim.library.frames import is_inline
from audiosim.library.verify import verify


def _tone(path, seconds: float, freq: float, sr: int = 22050) -> None:
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) * np.exp(-t)).astype(np.float32), sr)


def _assets(lib: Library) -> dict[str, object]:
    return {p: lib.asset_by_path(p) for p in map(str, sorted(lib.folder.parent.glob("audio/*.wav")))}


def test_short_files_go_to_frames_db_long_ones_to_files_and_both_follow_their_assets(tmp_path, monkeypatch):
    # 100 frames (2.3 s) stands for the real limit (6 min), so that "long" files stay quick to make.
    monkeypatch.setattr(writer_module, "INLINE_MAX_FRAMES", 100)
    audio = tmp_path / "audio"
    audio.mkdir()
    _tone(audio / "short.wav", 1.0, 220.0)
    _tone(audio / "long.wav", 4.0, 330.0)
    _tone(audio / "gone.wav", 1.5, 440.0)
    with Library(tmp_path / "lib", writable=True) as lib:
        report = index_paths(lib, [audio], workers=1)
        assert report.indexed == 3 and not report.failed
        first = _assets(lib)
        keys = {p.rsplit("/", 1)[1]: a.frames_file for p, a in first.items()}
        assert is_inline(keys["short.wav"]) and is_inline(keys["gone.wav"])
        assert not is_inline(keys["long.wav"]) and (lib.folder / keys["long.wav"]).is_file()
        for path, asset in first.items():  # exactly the analysis's frames, wherever they are
            fresh = analyze_file(path, lib.params).frames
            stored = lib.load_frames(asset)
            for name in ("mfcc", "rms_db", "low"):
                assert np.array_equal(getattr(stored, name), getattr(fresh, name)), (path, name)

        _tone(audio / "long.wav", 3.0, 500.0)  # changed: new frames, the old file deleted
        _tone(audio / "short.wav", 1.2, 250.0)  # changed: a new row, the old one deleted
        (audio / "gone.wav").unlink()  # removed: its row deleted
        report = index_paths(lib, [audio], workers=1)
        assert report.indexed == 2 and report.removed == 1
        second = _assets(lib)
        assert second[str(audio / "long.wav")].frames_file != keys["long.wav"]
        assert not (lib.folder / keys["long.wav"]).exists()
        assert second[str(audio / "short.wav")].frames_file != keys["short.wav"]
        assert lib.frames_db.keys() == {second[str(audio / "short.wav")].frames_file}
        assert len(lib.load_frames(second[str(audio / "long.wav")])) == 1 + 3 * 22050 // 512
        assert verify(lib) == {"ok": True, "problems": []}


def test_a_library_whose_frames_are_all_files_still_reads_and_verifies(tmp_path, monkeypatch):
    """A library made before frames.db held every asset's frames in a file: it reads and verifies as it
    did, and its next analyses go into frames.db."""
    monkeypatch.setattr(writer_module, "INLINE_MAX_FRAMES", -1)  # every file's frames to a file
    audio = tmp_path / "audio"
    audio.mkdir()
    _tone(audio / "a.wav", 1.0, 220.0)
    with Library(tmp_path / "lib", writable=True) as lib:
        index_paths(lib, [audio], workers=1)
    assert not (tmp_path / "lib" / "frames.db").exists()
    with Library(tmp_path / "lib") as lib:  # a reader, with no frames.db at all
        old = lib.asset_by_path(str(audio / "a.wav"))
        assert not is_inline(old.frames_file) and len(lib.load_frames(old)) == 1 + 22050 // 512
        assert verify(lib)["ok"]
    monkeypatch.undo()
    _tone(audio / "b.wav", 1.0, 330.0)
    with Library(tmp_path / "lib", writable=True) as lib:
        index_paths(lib, [audio], workers=1)
        assert not is_inline(lib.asset_by_path(str(audio / "a.wav")).frames_file)  # unchanged: kept
        assert is_inline(lib.asset_by_path(str(audio / "b.wav")).frames_file)
        assert verify(lib)["ok"]
