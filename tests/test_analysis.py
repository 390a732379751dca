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
