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
