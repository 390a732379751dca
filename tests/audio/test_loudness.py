"""The streaming loudness meter against pyloudnorm on whole signals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from audiosim.audio.decode import open_audio
from audiosim.audio.loudness import LoudnessMeter, k_weighting_sos


def feed(meter: LoudnessMeter, x: np.ndarray, rng: np.random.Generator, max_block: int = 20000) -> None:
    i = 0
    while i < len(x):
        n = int(rng.integers(1, max_block))
        meter.process(x[i:i + n])
        i += n


def signal(kind: str, seconds: float, rate: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * rate)
    if kind == "noise":
        x = rng.standard_normal((n, channels)) * 0.1
    else:
        t = np.arange(n)[:, None] / rate
        x = 0.4 * np.sin(2 * np.pi * np.array([220.0, 1000.0, 3000.0][:channels] + [500.0] * (channels - 3))
                         * t)
    x[: n // 3] *= 0.01  # a quiet first third: exercises the relative gate
    return x.astype(np.float32)


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("kind", ["noise", "sine"])
@pytest.mark.parametrize("seconds", [0.4, 1.07, 3.3])
def test_matches_pyloudnorm(rate: int, channels: int, kind: str, seconds: float) -> None:
    rng = np.random.default_rng(rate + 10 * channels + int(seconds * 100))
    x = signal(kind, seconds, rate, channels, rng)
    expected = pyloudnorm.Meter(rate).integrated_loudness(x)
    meter = LoudnessMeter(rate, channels)
    feed(meter, x, rng)
    assert meter.integrated() == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("rate", [8000, 11025, 96000])
def test_matches_pyloudnorm_at_rates_without_whole_sample_hops(rate: int) -> None:
    rng = np.random.default_rng(rate)
    x = signal("noise", 2.05, rate, 5, rng)
    meter = LoudnessMeter(rate, 5)
    feed(meter, x, rng)
    assert meter.integrated() == pytest.approx(pyloudnorm.Meter(rate).integrated_loudness(x), abs=0.01)


def test_block_sizes_do_not_change_the_result() -> None:
    rng = np.random.default_rng(0)
    x = signal("noise", 1.0, 44100, 2, rng)
    whole = LoudnessMeter(44100, 2)
    whole.process(x)
    for max_block in (97, 4410, 100_000):
        meter = LoudnessMeter(44100, 2)
        feed(meter, x, rng, max_block)
        # float32 FFT convolution: block boundaries move the result by ~1e-7 LU at most
        assert meter.integrated() == pytest.approx(whole.integrated(), abs=1e-5)


def test_k_weighting_matches_pyloudnorm_filters() -> None:
    for rate in (22050, 44100, 48000, 96000):
        stages = pyloudnorm.Meter(rate)._filters
        sos = k_weighting_sos(rate)
        for row, stage in zip(sos, (stages["high_shelf"], stages["high_pass"]), strict=True):
            np.testing.assert_allclose(row[:3], stage.b, rtol=1e-12)
            np.testing.assert_allclose(row[3:], stage.a, rtol=1e-12)


def test_silence_and_nothing_are_minus_infinity() -> None:
    meter = LoudnessMeter(48000, 2)
    assert meter.integrated() == -math.inf and meter.peak_db == -math.inf
    meter.process(np.zeros((48000, 2), np.float32))
    assert meter.integrated() == -math.inf and meter.peak_db == -math.inf
    quiet = LoudnessMeter(48000, 1)
    quiet.process(np.full(48000, 1e-5, np.float32) * np.sin(np.arange(48000)))  # about -100 LUFS: gated out
    assert quiet.integrated() == -math.inf


def test_shorter_than_one_block_is_measured_as_one_block() -> None:
    rate = 44100
    tone = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(rate // 10) / rate)).astype(np.float32)  # 100 ms
    meter = LoudnessMeter(rate, 1)
    meter.process(tone)
    short = meter.integrated()
    assert math.isfinite(short)
    steady = pyloudnorm.Meter(rate).integrated_loudness(np.tile(tone, 20))  # the same tone, 2 s
    assert short == pytest.approx(steady, abs=0.1)
    one_sample = LoudnessMeter(rate, 1)
    one_sample.process(np.array([0.5], np.float32))
    assert math.isfinite(one_sample.integrated())


def test_peak_is_exact() -> None:
    x = np.zeros((1000, 2), np.float32)
    x[10, 0], x[500, 1] = 0.25, -0.5
    meter = LoudnessMeter(44100, 2)
    meter.process(x[:300])
    meter.process(x[300:])
    assert meter.peak == 0.5
    assert meter.peak_db == 20 * math.log10(0.5)


def test_many_channels_weigh_one_each() -> None:
    rng = np.random.default_rng(1)
    mono = signal("noise", 2.0, 48000, 1, rng)
    single = LoudnessMeter(48000, 1)
    single.process(mono)
    eight = LoudnessMeter(48000, 8)
    eight.process(np.repeat(mono, 8, axis=1))
    assert eight.integrated() == pytest.approx(single.integrated() + 10 * math.log10(8), abs=1e-6)


def test_rejects_blocks_of_the_wrong_shape() -> None:
    meter = LoudnessMeter(44100, 2)
    with pytest.raises(ValueError):
        meter.process(np.zeros((10, 3), np.float32))
    with pytest.raises(ValueError):
        meter.process(np.zeros(10, np.float32))
    mono = LoudnessMeter(44100, 1)
    mono.process(np.zeros(10, np.float32))  # 1-D is fine when mono


def test_streamed_file_matches_pyloudnorm(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = signal("noise", 5.0, 48000, 2, rng)
    path = tmp_path / "x.wav"
    sf.write(path, x, 48000, subtype="PCM_24")
    meter = LoudnessMeter(48000, 2)
    with open_audio(path) as stream:
        for block in stream.blocks(block_frames=12345):
            meter.process(block)
    stored = sf.read(path, dtype="float32")[0]
    assert meter.integrated() == pytest.approx(pyloudnorm.Meter(48000).integrated_loudness(stored), abs=0.01)
    assert meter.peak == np.abs(stored).max()


@pytest.mark.parametrize("rate", [8000, 44100, 96000, 192000])
def test_k_weighting_matches_the_biquads_run_in_float64(rate: int) -> None:
    """The blocked recursion against scipy's biquads on content that stresses it: a 30 Hz tone (the
    high pass's states stay large) under noise, fed in blocks of awkward sizes."""
    from scipy.signal import sosfilt

    from audiosim.audio.loudness import _KWeighting

    rng = np.random.default_rng(7)
    n = 3 * rate + 17
    x = (0.3 * rng.standard_normal((2, n)) + 0.5 * np.sin(2 * np.pi * 30 * np.arange(n) / rate)).astype(np.float32)
    expected = sosfilt(k_weighting_sos(rate), x.astype(np.float64), axis=1)
    kw = _KWeighting(rate, 2)
    cuts = [0, 1, 33, 1000, 70001, n]
    got = np.concatenate([kw(x[:, a:b]) for a, b in zip(cuts, cuts[1:])], axis=1)
    assert np.abs(got - expected).max() < 1e-4
    assert (got.astype(np.float64) ** 2).sum() / (expected ** 2).sum() == pytest.approx(1.0, abs=2e-6)


def test_stretches_measured_apart_join_into_the_whole() -> None:
    """A long file's parts are measured by different processes: each after a short warm-up with the samples
    before it; joined, they give the loudness and peak of the whole."""
    from audiosim.audio.loudness import Loudness, hop_start

    rng = np.random.default_rng(3)
    rate = 44100
    x = signal("noise", 7.3, rate, 2, rng)
    whole = LoudnessMeter(rate, 2)
    feed(whole, x, rng)
    bounds = [0, hop_start(23, rate), hop_start(51, rate), len(x)]
    parts = []
    for a, b in zip(bounds, bounds[1:]):
        meter = LoudnessMeter(rate, 2, start=a)
        meter.warm_up(x[max(0, a - rate // 2):a])
        feed(meter, x[a:b], rng)
        parts.append(meter.measurement())
    joined = Loudness.join(parts)
    assert joined.integrated() == pytest.approx(whole.integrated(), abs=1e-6)
    assert joined.peak == whole.peak and joined.end == len(x)
    with pytest.raises(ValueError):
        Loudness.join([parts[0], parts[2]])
    with pytest.raises(ValueError):
        LoudnessMeter(rate, 2, start=hop_start(23, rate) + 1)
