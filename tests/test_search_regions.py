"""Query by a region, and by an excerpt that is not in the library: the right file at the right time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def mix_library(tmp_path_factory, labelled_corpus):
    """A long mix holding known one-shots at known times, plus the other corpus files as distractors."""
    from tests.corpus import make_mix_with_known_regions

    folder = tmp_path_factory.mktemp("mix")
    picks = [p for p, c in labelled_corpus.items() if c in ("speech", "bell", "pad", "tone")][::3]
    mix = folder / "music" / "long mix.wav"
    regions = make_mix_with_known_regions(mix, picks, gap_seconds=2.0, seed=5, filler="events")
    library = folder / "lib"
    result = run_cli("--json", "index", mix.parent, library=library)
    assert result.code == 0, result
    return library, mix, regions


def _excerpt(mix: Path, start: float, end: float, dest: Path) -> Path:
    data, sr = sf.read(mix, always_2d=True)
    sf.write(dest, data[int(start * sr):int(end * sr)], sr)
    return dest


def test_region_of_indexed_file_is_found_at_its_time(mix_library):
    library, mix, regions = mix_library
    for _source, start, end in regions[:4]:
        q0, q1 = start + 0.13, min(end, start + 2.6)
        result = run_cli("--json", "query", mix, "--start", q0, "--end", q1, "-k", "3", library=library)
        assert result.code == 0, result
        top = result.json["results"][0]
        assert top["path"] == str(mix)
        assert abs(top["start"] - q0) < 0.1, (top, q0)
        assert abs(top["end"] - q1) < 0.15, (top, q1)


def test_excerpt_not_in_library_finds_the_mix_at_the_right_time(mix_library, tmp_path):
    library, mix, regions = mix_library
    errors = []
    for i, (_source, start, end) in enumerate(regions):
        q0 = start + 0.31
        q1 = min(end + 1.0, q0 + 3.0)
        clip = _excerpt(mix, q0, q1, tmp_path / f"clip {i}.wav")
        result = run_cli("--json", "query", clip, "-k", "5", library=library)
        assert result.code == 0, result
        top = result.json["results"][0]
        assert top["path"] == str(mix), result.json
        errors.append(abs(top["start"] - q0))
    assert max(errors) < 0.1, errors


def test_exclude_self_drops_the_queried_file(mix_library):
    library, mix, regions = mix_library
    _, start, end = regions[0]
    result = run_cli("--json", "query", mix, "--start", start, "--end", end, "--exclude-self",
                     library=library)
    assert result.code == 0, result
    assert all(r["path"] != str(mix) for r in result.json["results"])


def test_region_errors_are_clear(mix_library):
    library, mix, _ = mix_library
    empty = run_cli("--json", "query", mix, "--start", "5", "--end", "4", library=library)
    assert empty.code == 1 and "region" in empty.stderr
    past = run_cli("--json", "query", mix, "--start", "100000", library=library)
    assert past.code == 1 and "past the end" in past.stderr


def test_stored_frames_have_timestamps(mix_library):
    library, mix, _ = mix_library
    from audiosim.library.db import Library
    from audiosim.library.frames import load_stored_frames

    with Library(library) as lib:
        asset = lib.asset_by_path(str(mix))
        assert asset.frames_file.startswith("frames.db:")  # a short file's frames are a row of frames.db
        frames, times = load_stored_frames(lib.folder, asset.frames_file, lib.frames_db)
    data = {"mfcc": frames.mfcc, "rms_db": frames.rms_db, "time": times}
    assert data["mfcc"].dtype == np.float16 and data["mfcc"].shape[1] == 20
    assert data["rms_db"].shape == data["time"].shape == (len(frames),) and len(frames) > 100
    assert np.allclose(np.diff(data["time"]), 512 / 22050, atol=1e-5)


def test_a_region_aligned_near_the_end_of_a_noisy_span_is_scored_not_an_index_error(tmp_path):
    """A candidate placed through the query's noise floor is compared on a span cut around its alignment; a
    seed window past that span's end once raised IndexError (a 0.6 s region of sonic-pi's bell, top 30, in a
    library of it and a guitar)."""
    from tests.real_sounds import SONIC_PI

    bell, guitar = SONIC_PI / "perc_bell.flac", SONIC_PI / "guit_e_fifths.flac"
    if not (bell.exists() and guitar.exists()):
        pytest.skip("needs sonic-pi-samples (apt-get install sonic-pi-samples)")
    (tmp_path / "audio").mkdir()
    for f in (bell, guitar):
        (tmp_path / "audio" / f.name).symlink_to(f)
    library = tmp_path / "lib"
    assert run_cli("--json", "index", tmp_path / "audio", library=library).code == 0
    result = run_cli("--json", "query", tmp_path / "audio" / bell.name, "--start", "1.0", "--end", "1.6", "-k", "30",
                     library=library)
    assert result.code == 0, result
    top = result.json["results"][0]
    assert top["path"] == str(tmp_path / "audio" / bell.name) and abs(top["start"] - 1.0) < 0.05, top
