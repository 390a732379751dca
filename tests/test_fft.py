"""audiosim.features.fft: scipy's real FFT, loaded without importing scipy.fft."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from audiosim.features.fft import rfft_rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rfft_rows_is_scipys_rfft_bit_for_bit(dtype):
    import scipy.fft

    rows = np.random.default_rng(3).standard_normal((37, 2048)).astype(dtype)
    expected = scipy.fft.rfft(rows, axis=-1)
    got = rfft_rows(rows)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_analysing_audio_does_not_import_scipy_fft():
    """The point of the module: an index run's processes never pay for importing scipy.fft (~0.17 s)."""
    code = ("import sys, numpy as np\n"
            "from audiosim.analysis import analyze_signal\n"
            "from audiosim.config import AnalysisParams\n"
            "frames = analyze_signal(np.random.default_rng(0).standard_normal(22050).astype(np.float32), "
            "AnalysisParams())\n"
            "assert len(frames) == 44, len(frames)\n"
            "print(sorted(m for m in sys.modules if m.startswith('scipy')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['scipy.fft._pocketfft.pypocketfft']"


def test_dct_matrix_is_scipys_orthonormal_dct():
    import scipy.fft

    from audiosim.config import AnalysisParams
    from audiosim.features.mfcc import dct_matrix

    params = AnalysisParams()
    expected = scipy.fft.dct(np.eye(params.n_mels), type=2, norm="ortho", axis=0)[: params.n_mfcc]
    np.testing.assert_array_equal(dct_matrix(params), expected.astype(np.float32))
