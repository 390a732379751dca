"""What analyze_file derives from a file's frames."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from audiosim.analysis import analyze_file
from audiosim.config import AnalysisParams
from audiosim.features.embedding import embed_windows, file_embedding


def test_a_file_that_is_one_segment_has_that_segments_vector_as_its_file_vector(tmp_path):
    """analyze_file reuses the segment's vector for the file (half a drum library is such files): it must be
    exactly what file_embedding computes for the same frames."""
    params = AnalysisParams()
    rng = np.random.default_rng(4)
    t = np.arange(int(0.7 * 44100)) / 44100
    for i, tone in enumerate((0.4 * np.sin(2 * np.pi * 180 * t) * np.exp(-6 * t),
                              0.3 * rng.standard_normal(len(t)) * np.exp(-20 * t))):
        path = tmp_path / f"shot{i}.wav"
        sf.write(path, tone.astype(np.float32), 44100)
        analysis = analyze_file(path, params)
        assert analysis.windows == [(0, len(analysis.frames))]
        np.testing.assert_array_equal(analysis.file_vector, file_embedding(analysis.frames, params))
        np.testing.assert_array_equal(analysis.segment_vectors,
                                      embed_windows(analysis.frames, analysis.windows, params))


def test_the_learned_map_gives_a_row_the_same_bits_whatever_shares_its_batch():
    """Transform.apply is what lets the indexer embed many files at once: a row's vector must not depend on
    the rows beside it (BLAS alone rounds a row differently with the batch's size)."""
    from audiosim.features.embedding import raw_dim, transform

    rng = np.random.default_rng(7)
    rows = rng.standard_normal((40, raw_dim(AnalysisParams().n_mfcc))) * 3
    alone = np.concatenate([transform().apply(row[None]) for row in rows])
    for size in (2, 7, 16, 17, 40):
        together = np.concatenate([transform().apply(rows[i:i + size]) for i in range(0, len(rows), size)])
        np.testing.assert_array_equal(together, alone)


def test_files_embedded_together_get_the_vectors_they_get_alone(tmp_path):
    """embed_analyses (a worker's batch of files, one pass of the learned map) against analyze_file: the
    same segment and file vectors, bit for bit, for one-segment files, multi-segment files and a silent one."""
    from audiosim.analysis import embed_analyses

    params = AnalysisParams()
    rng = np.random.default_rng(5)
    paths = []
    for i, seconds in enumerate((0.4, 0.9, 3.5, 6.0, 1.0)):
        t = np.arange(int(seconds * 44100)) / 44100
        if i == 4:
            signal = np.zeros_like(t)  # silent: segments but no file vector
        else:
            hits = np.zeros_like(t)
            hits[:: int(0.8 * 44100)] = 1.0  # a few onsets: several segments in the longer files
            envelope = np.convolve(hits, np.exp(-np.arange(4000) / 600.0))[: len(t)]
            signal = envelope * np.sin(2 * np.pi * (150 + 60 * i) * t)
            signal += 0.01 * rng.standard_normal(len(t))
        paths.append(tmp_path / f"f{i}.wav")
        sf.write(paths[-1], (0.4 * signal).astype(np.float32), 44100)
    alone = [analyze_file(p, params) for p in paths]
    together = [analyze_file(p, params, embed=False) for p in paths]
    assert all(a.segment_vectors is None for a in together)
    embed_analyses(together, params)
    assert any(len(a.windows) > 1 for a in alone) and alone[4].file_vector is None
    for a, b in zip(alone, together):
        assert a.windows == b.windows
        np.testing.assert_array_equal(b.segment_vectors, a.segment_vectors)
        if a.file_vector is None:
            assert b.file_vector is None
        else:
            np.testing.assert_array_equal(b.file_vector, a.file_vector)


def test_a_blocks_descriptors_are_the_same_bits_whatever_shares_the_pass():
    """raw_descriptors describes many blocks of frames laid end to end (a worker's batch of files): each
    block's row must be what it gets alone, whatever its length (1 frame, shorter than the envelope's
    offsets, longer than the 64 frames the patch looks at) and whatever is beside it."""
    from audiosim.features.embedding import Blocks, raw_descriptors
    from audiosim.features.mfcc import N_LOW_BANDS, Frames

    params = AnalysisParams()
    rng = np.random.default_rng(11)
    n = 900
    level = np.cumsum(rng.normal(0, 3, n))
    frames = Frames(rng.normal(0, 20, (n, params.n_mfcc)).astype(np.float16),
                    np.clip(level - level.max(), -100, 0).astype(np.float16),
                    rng.uniform(-60, 0, (n, N_LOW_BANDS)).astype(np.float16))
    frames.rms_db[100:130] = -100.0  # silence inside a block: frames outside the sound
    windows = [(0, 1), (5, 6), (3, 40), (90, 160), (100, 131), (200, 500), (0, n), (600, 603), (640, 704)]
    alone = np.concatenate([raw_descriptors(Blocks.of(frames, [w]), params) for w in windows])
    assert np.isfinite(alone).all()
    together = raw_descriptors(Blocks.of(frames, windows), params)
    np.testing.assert_array_equal(together, alone)
    order = rng.permutation(len(windows))
    shuffled = raw_descriptors(Blocks.join([Blocks.of(frames, [windows[i]]) for i in order]), params)
    np.testing.assert_array_equal(shuffled, alone[order])


def test_block_descriptors_measure_the_envelope_they_describe():
    """The level-curve numbers of a block read off a made-up envelope: peak 3 frames in, a 20 dB attack, a
    10 dB drop 4 frames after the peak, never 40 dB down before the block ends."""
    from audiosim.features.embedding import Blocks, _level_shape
    from audiosim.features.mfcc import N_LOW_BANDS, Frames

    params = AnalysisParams()
    rms = np.array([-60, -30, -15, -6, -8, -10, -12, -17, -20, -30, -35, -40], np.float16)
    n = len(rms)
    frames = Frames(np.zeros((n, params.n_mfcc), np.float16), rms, np.zeros((n, N_LOW_BANDS), np.float16))
    other = Frames(frames.mfcc[:5], np.array([-3, -2, -1, -2, -3], np.float16), frames.low[:5])
    for blocks, b in ((Blocks.of(frames, [(0, n)]), 0),
                      (Blocks.join([Blocks.of(other, [(0, 5)]), Blocks.of(frames, [(0, n)])]), 1)):
        level = _level_shape(blocks)
        assert level["peak_at"][b] == 3 and level["onset"][b] == 2  # -15 dB: the first frame within 20 dB
        decay_10, decay_20, decay_40 = np.expm1(level["shape"][b, 7:10])
        assert round(decay_10) == 4 and round(decay_20) == 6 and round(decay_40) == n - 3  # censored
        assert round(float(np.expm1(level["shape"][b, 10]))) == 1  # attack: onset to peak
