"""A long file is analysed in parts by several workers: the joined parts give what one pass over the file
gives (to float16 storage precision: the resampler's rounding differs near where a part's stream began),
the vectors do not depend on the number of workers, and a kill mid-file loses only that file's work."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

from audiosim.analysis import PART_SECONDS, analyze_file, analyze_part, assemble, plan_parts
from audiosim.config import AnalysisParams
from audiosim.crashpoints import KILL_AT_ENV
from tests.conftest import run_cli

SECONDS = 3 * PART_SECONDS + 7  # three parts, the last one longer


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    """The same generated recording as 16 kHz FLAC (resampled by the analysis) and at the analysis rate."""
    from tests.corpus import make_long_file

    folder = tmp_path_factory.mktemp("long")
    source = make_long_file(folder / "source.wav", SECONDS, seed=5, sample_rate=16000, channels=2)
    x, rate = sf.read(source, dtype="float32")
    flac = folder / "long.flac"
    sf.write(flac, x, rate, subtype="PCM_16")
    at_analysis_rate = make_long_file(folder / "at22050.wav", SECONDS, seed=6, sample_rate=22050, channels=1)
    source.unlink()
    return flac, at_analysis_rate


def _in_parts(path, params):
    parts = plan_parts(str(path))
    assert parts is not None and len(parts) == 3
    return assemble([analyze_part(p, params) for p in reversed(parts)][::-1], params)


def _within_float16_precision(single, joined, *, audible: np.ndarray | None = None) -> None:
    """Each frame's values differ by at most one float16 step of the frame's largest value."""
    x, y = single.astype(np.float32), joined.astype(np.float32)
    if audible is not None:
        x, y = x[audible], y[audible]
    scale = np.maximum(np.abs(x), np.abs(y)).reshape(len(x), -1).max(axis=1)
    step = np.spacing(scale.astype(np.float16)).astype(np.float32)
    assert (np.abs(x - y).reshape(len(x), -1).max(axis=1) <= step).all()


def test_parts_joined_give_what_one_pass_gives(long_files):
    params = AnalysisParams()
    flac, _ = long_files
    single, joined = analyze_file(flac, params), _in_parts(flac, params)
    assert len(joined.frames) == len(single.frames) == 1 + int(SECONDS * 22050) // 512
    _within_float16_precision(single.frames.mfcc, joined.frames.mfcc)
    _within_float16_precision(single.frames.rms_db, joined.frames.rms_db)
    # The low-frequency profile of a silent frame is a ratio of rounding noise; of any other, it holds.
    audible = single.frames.rms_db.astype(np.float32) > -80
    _within_float16_precision(single.frames.low, joined.frames.low, audible=audible)
    assert joined.windows == single.windows
    np.testing.assert_allclose(joined.segment_vectors, single.segment_vectors, atol=2e-3)
    np.testing.assert_allclose(joined.file_vector, single.file_vector, atol=2e-3)
    assert joined.avg_loudness == pytest.approx(single.avg_loudness, abs=1e-5)
    assert joined.centroid == pytest.approx(single.centroid, rel=1e-4)
    for field in ("duration", "peak_db", "size", "mtime", "fingerprint", "format", "subtype", "sample_rate",
                  "channels"):
        assert getattr(joined, field) == getattr(single, field), field


def test_without_resampling_the_parts_are_exact(long_files):
    """At the analysis rate nothing is resampled: the pre-roll leaves the STFT and the K-weighting exactly
    where one pass has them, so frames and vectors are identical."""
    params = AnalysisParams()
    _, wav = long_files
    single, joined = analyze_file(wav, params), _in_parts(wav, params)
    for name in ("mfcc", "rms_db", "low"):
        np.testing.assert_array_equal(getattr(joined.frames, name), getattr(single.frames, name))
    np.testing.assert_array_equal(joined.segment_vectors, single.segment_vectors)
    assert joined.avg_loudness == pytest.approx(single.avg_loudness, abs=1e-6)


def test_short_or_unseekable_files_are_one_job(tmp_path, long_files):
    assert plan_parts(str(long_files[0]))[0].stop == PART_SECONDS * 16000
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros((16000 * 30, 2), np.float32), 16000)
    assert plan_parts(str(short)) is None
    assert plan_parts(str(tmp_path / "missing.wav")) is None


def test_a_part_of_a_file_changed_since_the_plan_fails(tmp_path, long_files):
    from audiosim.errors import DecodeError

    path = tmp_path / "long.flac"
    path.write_bytes(long_files[0].read_bytes())
    parts = plan_parts(str(path))
    os.utime(path, ns=(0, 0))
    with pytest.raises(DecodeError, match="changed"):
        analyze_part(parts[1], AnalysisParams())


def _stored(lib) -> dict[str, tuple]:
    """path → (loudness, segment times, segment vectors from the DB and from the store)."""
    from audiosim.library.db import Library
    from audiosim.library.models import Asset, Segment

    with Library(lib) as library:
        with library.Session() as s:
            assets = {a.id: a for a in s.scalars(select(Asset))}
            rows = s.execute(select(Segment.asset_id, Segment.id, Segment.start, Segment.end, Segment.embedding)
                             .order_by(Segment.asset_id, Segment.start)).all()
        vectors = library.store("segments").get(np.array([r.id for r in rows], np.int64))
    out: dict[str, tuple] = {}
    for asset_id, asset in assets.items():
        mine = [(r, v) for r, v in zip(rows, vectors) if r.asset_id == asset_id]
        out[os.path.basename(asset.path)] = (
            asset.avg_loudness, asset.n_segments, [(r.start, r.end) for r, _ in mine],
            b"".join(r.embedding for r, _ in mine), np.asarray([v for _, v in mine], np.float32).tobytes())
    return out


def test_indexing_gives_the_same_vectors_whatever_the_workers_and_a_kill_mid_file_resumes(tmp_path, long_files):
    folder = tmp_path / "sounds"
    folder.mkdir()
    os.link(long_files[0], folder / "long.flac")
    sf.write(folder / "shot.wav", 0.3 * np.sin(np.arange(11025) * 0.05).astype(np.float32), 22050)
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_cli("--json", "index", folder, "--workers", "1", library=one).code == 0
    assert run_cli("--json", "index", folder, "--workers", "2", library=two).code == 0
    expected = _stored(one)
    assert _stored(two) == expected
    assert expected["long.flac"][1] == len(expected["long.flac"][2]) > SECONDS  # 1 s windows every 0.5 s, some gaps

    killed_lib = tmp_path / "killed"
    killed = run_cli("--json", "index", folder, "--workers", "2", library=killed_lib,
                     env={KILL_AT_ENV: "index-part-analysed"})
    assert killed.code == -signal.SIGKILL, killed  # died with the long file's parts half in
    resumed = run_cli("--json", "index", folder, "--workers", "2", library=killed_lib)
    assert resumed.code == 0, resumed
    assert resumed.json["indexed"] >= 1 and not resumed.json["failed"]
    assert _stored(killed_lib) == expected
    assert run_cli("--json", "verify", library=killed_lib).json == {"ok": True, "problems": []}
