"""Another take of the same sound: what differs between two kits' recordings of one drum, applied at random.

Used to train the embedding (``bench/tune_embedding.py``), never at run time. Each copy of a clip gets:

* another **tuning** (±3 semitones, by resampling: pitch and length change together, as when a drum is
  tuned or a sample is played at another rate);
* another **microphone and EQ**: a spectral tilt (±2.5 dB per octave), one or two broad boosts or cuts
  (±9 dB anywhere from 60 Hz to 10 kHz), sometimes a high-pass or a low-pass;
* sometimes a **room** (an exponentially decaying noise response, RT60 0.08–0.6 s, 5–40 % wet) and some
  **saturation** (tanh drive);
* another **level** and a **noise floor** 50–75 dB below the peak.

A listener still names the class of every copy; the training asks the embedding to agree.
"""

from __future__ import annotations

import numpy as np


def augment(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A random other take of the mono clip ``x`` [shape=(n,)] at ``rate``; same rate, float64."""
    import soxr

    semitones = rng.uniform(-3.0, 3.0)
    x = soxr.resample(x, rate, rate / 2 ** (semitones / 12))  # played back at `rate`: pitch moves by that
    n = len(x)
    tail = int(0.3 * rate)  # room for a reverberant tail
    n_fft = 1 << int(np.ceil(np.log2(n + rate)))
    spectrum = np.fft.rfft(x, n_fft)
    freqs = np.maximum(np.fft.rfftfreq(n_fft, 1.0 / rate), 1.0)
    gain_db = rng.uniform(-2.5, 2.5) * np.log2(np.maximum(freqs, 20.0) / 1000.0)
    for _ in range(int(rng.integers(1, 3))):
        centre = np.exp(rng.uniform(np.log(60.0), np.log(10000.0)))
        octaves = rng.uniform(0.5, 2.0)
        gain_db += rng.uniform(-9.0, 9.0) * np.exp(-0.5 * (np.log2(freqs / centre) / (octaves / 2)) ** 2)
    if rng.random() < 0.3:  # high-pass, 12 dB per octave below the corner
        corner = rng.uniform(30.0, 120.0)
        gain_db -= 6.0 * np.log2(1.0 + (corner / freqs) ** 2)
    if rng.random() < 0.3:  # low-pass
        corner = rng.uniform(5000.0, 14000.0)
        gain_db -= 6.0 * np.log2(1.0 + (freqs / corner) ** 2)
    spectrum *= 10.0 ** (gain_db / 20.0)
    if rng.random() < 0.5:
        rt60 = rng.uniform(0.08, 0.6)
        t = np.arange(int(rt60 * rate)) / rate
        response = rng.normal(size=len(t)) * 10.0 ** (-3.0 * t / rt60)
        response /= np.sqrt(np.sum(response ** 2))
        wet = rng.uniform(0.05, 0.4)
        spectrum *= (1.0 - wet) + wet * np.fft.rfft(response, n_fft)
    y = np.fft.irfft(spectrum, n_fft)[: n + tail]
    if rng.random() < 0.3:
        drive = rng.uniform(1.0, 4.0)
        y = np.tanh(drive * y / max(np.max(np.abs(y)), 1e-12)) / np.tanh(drive)
    y = y / max(np.max(np.abs(y)), 1e-12) * rng.uniform(0.1, 0.9)
    return y + rng.normal(size=len(y)) * np.max(np.abs(y)) * 10.0 ** (-rng.uniform(50.0, 75.0) / 20.0)
