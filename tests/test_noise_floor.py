"""A query's noise floor: the stored frames of a clean recording, heard through the noise of a noisy copy,
look like the frames of that copy; and the noisy copy with its floor taken away looks like the original."""

from __future__ import annotations

import numpy as np

from audiosim.analysis import analyze_signal
from audiosim.config import AnalysisParams
from audiosim.features.noise import gain_db, noise_floor, with_noise_floor, without_noise_floor

PARAMS = AnalysisParams()
RATE = PARAMS.sample_rate


def _decaying_notes(seconds: float = 3.0) -> np.ndarray:
    """Two plucked notes with a gap of digital silence: tails that sink far below any noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.zeros_like(t)
    for start, freq in ((0.2, 220.0), (1.6, 330.0)):
        u = np.clip(t - start, 0, None)
        x += (t >= start) * np.exp(-u * 4.0) * (np.sin(2 * np.pi * freq * u) + 0.4 * np.sin(2 * np.pi * 3 * freq * u))
    x[int(1.4 * RATE):int(1.6 * RATE)] = 0.0
    return (0.5 * x).astype(np.float32)


def _spectra(frames, gain: float = 0.0) -> np.ndarray:
    return np.column_stack([frames.mfcc[:, 1:].astype(np.float32), frames.rms_db.astype(np.float32) + gain])


def test_clean_frames_heard_through_the_query_noise_match_the_noisy_recording():
    clean = _decaying_notes()
    rng = np.random.default_rng(0)
    gain = 0.6  # the excerpt is quieter than the original
    noisy = gain * clean + rng.normal(0.0, 10 ** (-45 / 20), len(clean)).astype(np.float32)
    stored, query = analyze_signal(clean, PARAMS), analyze_signal(noisy, PARAMS)

    floor = noise_floor(query, PARAMS)
    assert floor is not None and -60 < floor.rms_db < -40  # white noise at -45 dBFS RMS
    level = gain_db(query.rms_db, stored.rms_db, 0)
    assert abs(level - 20 * np.log10(gain)) < 0.5
    heard = with_noise_floor(stored, floor, level, PARAMS)

    before = np.abs(_spectra(stored, level) - _spectra(query)).mean()
    after = np.abs(_spectra(heard, level) - _spectra(query)).mean()
    assert after < 0.3 * before, (before, after)
    quiet = stored.rms_db.astype(np.float32) < -60  # the gap and the tails: where noise is everything
    assert np.abs(heard.rms_db[quiet] + level - query.rms_db[quiet].astype(np.float32)).mean() < 1.5


def test_the_noisy_recording_without_its_floor_is_silent_where_the_original_is():
    clean = _decaying_notes()
    rng = np.random.default_rng(1)
    noisy = clean + rng.normal(0.0, 10 ** (-45 / 20), len(clean)).astype(np.float32)
    stored, query = analyze_signal(clean, PARAMS), analyze_signal(noisy, PARAMS)
    denoised = without_noise_floor(query, noise_floor(query, PARAMS), PARAMS)
    gap = slice(int(1.45 / PARAMS.frame_seconds), int(1.55 / PARAMS.frame_seconds))
    assert query.rms_db[gap].astype(np.float32).max() > -55  # the noise fills the gap …
    assert denoised.rms_db[gap].max() < -80  # … and is gone once the floor is taken away
    loud = stored.rms_db.astype(np.float32) > -20
    assert np.abs(denoised.rms_db[loud] - stored.rms_db[loud].astype(np.float32)).max() < 0.5


def test_a_clean_query_with_silence_in_it_has_no_floor_to_add():
    with_silence = np.concatenate([np.zeros(RATE, np.float32), _decaying_notes()])
    assert noise_floor(analyze_signal(with_silence, PARAMS), PARAMS) is None
