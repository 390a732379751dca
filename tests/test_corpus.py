"""The generated test audio is what the tests and benches assume it is."""

from __future__ import annotations

import os
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests import corpus


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, str]:
    return corpus.make_labelled_corpus(tmp_path_factory.mktemp("labelled"), per_class=4, seed=1)


def test_labelled_corpus_layout_and_labels(labelled: dict[Path, str]) -> None:
    expected = corpus.CLASSES if shutil.which("espeak-ng") else corpus.SYNTH_CLASSES
    assert Counter(labelled.values()) == {name: 4 for name in expected}
    for path, label in labelled.items():
        assert path.parent.name == label
        assert path.name.startswith(f"{label}_") and path.suffix == ".wav"
        info = sf.info(path)
        assert info.samplerate == 44100
        assert info.channels in (1, 2)
        assert 0.1 < info.duration < 4.0, (path, info.duration)


def test_labelled_corpus_varies_within_a_class(labelled: dict[Path, str]) -> None:
    by_class: dict[str, list[tuple[float, float, int]]] = {}
    for path, label in labelled.items():
        x, sr = sf.read(path, always_2d=True)
        peak_db = 20 * np.log10(np.max(np.abs(x)))
        by_class.setdefault(label, []).append((peak_db, len(x) / sr, x.shape[1]))
    for label, items in by_class.items():
        peaks, durations, _ = zip(*items)
        assert max(peaks) - min(peaks) > 3, label
        assert max(durations) - min(durations) > 0.05, label
    layouts = {channels for items in by_class.values() for _, _, channels in items}
    assert layouts == {1, 2}


def test_labelled_corpus_is_deterministic_and_size_independent(tmp_path: Path) -> None:
    small = corpus.make_labelled_corpus(tmp_path / "a", per_class=2, seed=3)
    large = corpus.make_labelled_corpus(tmp_path / "b", per_class=3, seed=3)
    other = corpus.make_labelled_corpus(tmp_path / "c", per_class=2, seed=4)
    for path in small:
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert twin in large and twin.read_bytes() == path.read_bytes()
    kick = Path("kick/kick_00.wav")
    assert (tmp_path / "a" / kick).read_bytes() != (tmp_path / "c" / kick).read_bytes()
    assert len(other) == len(small)


def test_speech_is_skipped_with_a_warning_without_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="espeak-ng"):
        labels = corpus.make_labelled_corpus(tmp_path, per_class=1)
    assert "speech" not in labels.values() and len(labels) == len(corpus.SYNTH_CLASSES)


def test_oneshots_durations(tmp_path: Path) -> None:
    shots = corpus.make_oneshots(tmp_path, 12, seed=2, min_seconds=0.2, max_seconds=2.0)
    assert len(shots) == 12 and set(shots.values()) <= set(corpus.SYNTH_CLASSES)
    for path in shots:
        assert 0.2 <= sf.info(path).duration <= 2.0


def test_long_file_is_exact_length_busy_and_chunk_independent(tmp_path: Path) -> None:
    a = corpus.make_long_file(tmp_path / "a.wav", 20.0, seed=5, chunk_seconds=10.0)
    b = corpus.make_long_file(tmp_path / "b.wav", 20.0, seed=5, chunk_seconds=1.3)
    info = sf.info(a)
    assert (info.frames, info.channels, info.samplerate) == (20 * 44100, 2, 44100)
    x, sr = sf.read(a)
    y, _ = sf.read(b)
    np.testing.assert_array_equal(x, y)  # chunking changes nothing: the stream is really seamless
    rms_per_2s = [np.sqrt(np.mean(x[i : i + 2 * sr] ** 2)) for i in range(0, len(x), 2 * sr)]
    assert min(rms_per_2s) > 1e-3
    mono = corpus.make_long_file(tmp_path / "mono.wav", 3.0, channels=1, sample_rate=22050)
    assert sf.info(mono).channels == 1 and sf.info(mono).frames == 3 * 22050


@pytest.mark.parametrize("filler", ["silence", "noise", "events"])
def test_mix_regions_hold_the_sources(tmp_path: Path, labelled: dict[Path, str], filler: str) -> None:
    sources = [p for p in labelled if p.name.endswith("_00.wav")][:4]
    mix = tmp_path / "mix.wav"
    regions = corpus.make_mix_with_known_regions(mix, sources, gap_seconds=1.0, seed=2, filler=filler)
    assert [r[0] for r in regions] == sources
    x, sr = sf.read(mix, always_2d=True)
    assert x.shape[1] == 2
    previous_end = 0.0
    for source, start, end in regions:
        assert start - previous_end >= 1.0 - 1e-9
        previous_end = end
        src, _ = sf.read(source, always_2d=True)
        assert end - start == pytest.approx(len(src) / sr)
        part = x[round(start * sr) : round(end * sr)]
        np.testing.assert_allclose(part, np.repeat(src, 2 // src.shape[1], axis=1), atol=1 / 32768)
    assert len(x) / sr - previous_end >= 1.0 - 1e-9
    starts = np.array([start for _, start, _ in regions])
    assert np.any(np.abs(starts / 0.5 - np.round(starts / 0.5)) > 0.1)  # not all on a 0.5 s grid


def test_bad_files(tmp_path: Path) -> None:
    bad = corpus.make_bad_files(tmp_path)
    categories = Counter(d.split(":")[0] for d in bad.values())
    assert set(categories) == {"valid", "edge", "broken", "not-audio"}
    names = {p.name for p in bad}
    for expected in ("empty.wav", "truncated_header.wav", "random_bytes.wav", "notes.mp3", "picture.flac",
                     "one_sample.wav", "ten_ms.wav", "silence.wav", "dc_only.wav", "nan_inf_float.wav",
                     "eight_channels_96k_24bit.wav", "Über Kick ü 01.wav", "x.wav", "inside.wav", "loop",
                     "unreadable.wav", "truncated_data.wav"):
        assert expected in names
    assert (tmp_path / "x.wav").is_dir()
    assert (tmp_path / "loop").is_symlink() and (tmp_path / "loop").resolve() == tmp_path.resolve()
    assert (tmp_path / "unreadable.wav").stat().st_mode & 0o777 == 0
    assert (tmp_path / "empty.wav").stat().st_size == 0
    assert sf.info(tmp_path / "eight_channels_96k_24bit.wav").channels == 8
    assert sf.info(tmp_path / "eight_channels_96k_24bit.wav").samplerate == 96000
    assert sf.info(tmp_path / "one_sample.wav").frames == 1
    assert np.isnan(sf.read(tmp_path / "nan_inf_float.wav")[0]).any()
    for path, description in bad.items():
        if description.startswith("broken:") and path.name != "unreadable.wav":
            with pytest.raises(sf.LibsndfileError), warnings.catch_warnings():
                sf.read(path)
        elif (description.startswith("valid:") and path.suffix in (".wav", ".flac", ".ogg", ".aiff")
              and os.access(path, os.R_OK)):
            assert sf.info(path).frames > 0, path
    if shutil.which("sox"):  # libsndfile formats sox always writes
        assert {tmp_path / f"encoded.{ext}" for ext in ("flac", "ogg", "aiff")} <= set(bad)
    for ext in ("flac", "ogg", "mp3", "m4a", "aiff", "opus"):
        made = tmp_path / f"encoded.{ext}"
        if made in bad:
            assert made.stat().st_size > 0
