"""Generated test audio: a labelled corpus, long files, mixes with known regions and a folder of bad files.

Nothing is downloaded; everything is synthesised with numpy/scipy (and ``espeak-ng`` for speech), and the
same ``seed`` gives the same files. Used by the tests and by ``bench/``.

Public API
----------
``make_labelled_corpus(root, *, per_class=12, seed=0, sample_rate=44100) -> {path: class}``
    ``root/<class>/<class>_<i>.wav`` for the classes in ``CLASSES`` (speech only if espeak-ng exists).
``make_oneshots(root, count, *, seed=0, sample_rate=44100, min_seconds=0.2, max_seconds=2.0) -> {path: class}``
    ``count`` synthetic one-shots of a duration drawn from ``[min_seconds, max_seconds]``, mixed mono/stereo.
``make_long_file(path, seconds, *, seed=0, sample_rate=44100, channels=2, chunk_seconds=10.0) -> Path``
    A long 16-bit WAV of varied overlapping events, written chunk by chunk (memory does not grow with length).
``make_mix_with_known_regions(path, sources, *, gap_seconds=1.0, seed=0, ...) -> [(source, start, end)]``
    The sources placed one after another between filler gaps; start/end in seconds in the mix.
``make_bad_files(root) -> {path: description}``
    A messy folder; each description starts with ``valid:``, ``edge:``, ``broken:`` or ``not-audio:``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import fft as sp_fft
from scipy import signal

SYNTH_CLASSES = ("kick", "snare", "hihat", "clap", "tone", "bell", "pad", "noise")
CLASSES = (*SYNTH_CLASSES, "speech")

Rng = np.random.Generator


# ---------------------------------------------------------------------------------------------------------
# Building blocks. Every synth returns float64 of shape (n,) or (n, 2), peak roughly 1.


def _t(seconds: float, sr: int) -> np.ndarray:
    return np.arange(max(1, round(seconds * sr))) / sr


def _filter(x: np.ndarray, kind: str, freq: float | tuple[float, float], sr: int, order: int = 2) -> np.ndarray:
    nyq = sr / 2
    if isinstance(freq, tuple):
        wn: float | tuple[float, float] = (max(10.0, freq[0]) / nyq, min(freq[1], nyq * 0.95) / nyq)
    else:
        wn = min(max(10.0, freq), nyq * 0.95) / nyq
    sos = signal.butter(order, wn, btype=kind, output="sos")
    return signal.sosfilt(sos, x, axis=0)


def _normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return x / peak if peak > 0 else x


def _saw(phase: np.ndarray) -> np.ndarray:
    """Naive sawtooth in [-1, 1) (scipy.signal.sawtooth is several times slower)."""
    return 2 * ((phase / (2 * np.pi)) % 1.0) - 1


def _square(phase: np.ndarray, duty: float = 0.5) -> np.ndarray:
    return np.where((phase / (2 * np.pi)) % 1.0 < duty, 1.0, -1.0)


def _coloured_noise(rng: Rng, n: int, exponent: float) -> np.ndarray:
    """Noise with power ∝ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    m = sp_fft.next_fast_len(n, real=True)  # an FFT of a prime length is slow
    spec = sp_fft.rfft(rng.standard_normal(m))
    f = np.arange(spec.size, dtype=float)
    f[0] = 1.0
    spec *= f ** (-exponent / 2)
    spec[0] = 0.0
    return _normalise(sp_fft.irfft(spec, m)[:n])


def _kick(rng: Rng, sr: int) -> np.ndarray:
    t = _t(rng.uniform(0.25, 0.9), sr)
    f_start, f_end = rng.uniform(120, 300), rng.uniform(38, 75)
    freq = f_end + (f_start - f_end) * np.exp(-t / rng.uniform(0.015, 0.06))
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.08, 0.35))
    click = _filter(rng.standard_normal(t.size), "highpass", rng.uniform(1500, 4000), sr)
    click *= np.exp(-t / rng.uniform(0.002, 0.006)) * rng.uniform(0.15, 0.5)
    return _normalise(np.tanh(rng.uniform(1.0, 3.0) * (body + click)))


def _snare(rng: Rng, sr: int) -> np.ndarray:
    t = _t(rng.uniform(0.25, 0.8), sr)
    f0 = rng.uniform(150, 260)
    tone = (np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 1.6 * f0 * t)) * np.exp(-t / rng.uniform(0.03, 0.09))
    centre = rng.uniform(1500, 5000)
    noise = _filter(rng.standard_normal(t.size), "bandpass", (centre / 2.5, centre * 2.5), sr)
    noise = _normalise(noise) * np.exp(-t / rng.uniform(0.07, 0.22))
    return _normalise(rng.uniform(0.3, 0.8) * tone + noise)


def _hihat(rng: Rng, sr: int) -> np.ndarray:
    t = _t(rng.uniform(0.08, 0.6), sr)
    noise = _filter(rng.standard_normal(t.size), "highpass", rng.uniform(6000, 10000), sr, order=4)
    # a few square partials give the metallic ring of real cymbals
    metal = sum(_square(2 * np.pi * f * t) for f in rng.uniform(3000, 9000, 4))
    metal = _filter(metal, "highpass", 7000, sr, order=2)
    x = _normalise(noise) + 0.2 * _normalise(metal)
    return _normalise(x * np.exp(-t / rng.uniform(0.015, 0.2)))


def _clap(rng: Rng, sr: int) -> np.ndarray:
    t = _t(rng.uniform(0.25, 0.8), sr)
    centre = rng.uniform(900, 2200)
    noise = _normalise(_filter(rng.standard_normal(t.size), "bandpass", (centre / 1.8, centre * 1.8), sr))
    env = np.zeros_like(t)
    start = 0.0
    for _ in range(int(rng.integers(3, 6))):
        tt = np.clip(t - start, 0, None)
        env += (t >= start) * np.exp(-tt / rng.uniform(0.003, 0.008))
        start += rng.uniform(0.007, 0.016)
    env += (t >= start) * np.exp(-np.clip(t - start, 0, None) / rng.uniform(0.05, 0.15)) * 0.7
    return _normalise(noise * env)


def _adsr(t: np.ndarray, attack: float, release: float) -> np.ndarray:
    dur = t[-1] if t.size else 0.0
    env = np.minimum(1.0, t / max(attack, 1e-4))
    return env * np.clip((dur - t) / max(release, 1e-4), 0, 1)


def _tone(rng: Rng, sr: int) -> np.ndarray:
    t = _t(rng.uniform(0.5, 2.0), sr)
    f0 = np.exp(rng.uniform(np.log(100), np.log(800)))
    vib = 1 + rng.uniform(0, 0.006) * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
    phase = 2 * np.pi * np.cumsum(f0 * vib) / sr
    osc = _saw(phase) if rng.random() < 0.5 else _square(phase, rng.uniform(0.2, 0.5))
    x = _filter(osc, "lowpass", rng.uniform(800, 6000), sr, order=2)
    return _normalise(x * _adsr(t, rng.uniform(0.005, 0.08), rng.uniform(0.03, 0.3)))


def _bell(rng: Rng, sr: int) -> np.ndarray:
    t = _t(rng.uniform(0.7, 3.0), sr)
    f0 = rng.uniform(250, 1100)
    ratios = np.array([0.56, 0.92, 1.19, 1.71, 2.0, 2.74, 3.0, 3.76, 4.07]) * rng.uniform(0.97, 1.03, 9)
    decay = rng.uniform(0.8, 2.5)
    impulse = np.zeros_like(t)
    impulse[0] = 1.0
    x = np.zeros_like(t)
    for k, r in enumerate(ratios):
        w = 2 * np.pi * f0 * r / sr
        if w >= np.pi * 0.9:
            continue
        # a two-pole resonator rings as a decaying sine: far cheaper than sin * exp over the whole length
        pole = np.exp(-r / (decay * sr))
        ring = signal.lfilter([np.sin(w)], [1.0, -2 * pole * np.cos(w), pole**2], impulse)
        x += rng.uniform(0.3, 1.0) / (1 + 0.3 * k) * rng.choice([-1.0, 1.0]) * ring
    return _normalise(x * np.minimum(1, t / 0.002))


def _pad(rng: Rng, sr: int) -> np.ndarray:
    t = _t(rng.uniform(0.7, 3.0), sr)
    root = np.exp(rng.uniform(np.log(80), np.log(300)))
    chord = [0, 4, 7] if rng.random() < 0.5 else [0, 3, 7]
    if rng.random() < 0.5:
        chord.append(10 if rng.random() < 0.5 else 11)
    channels = []
    for _ in range(2):
        x = np.zeros_like(t)
        for semis in chord:
            for cents in rng.uniform(-15, 15, 2):
                f = root * 2 ** ((semis + cents / 100) / 12)
                x += _saw(2 * np.pi * f * t + rng.uniform(0, 6.3))
        channels.append(x)
    x = _filter(np.stack(channels, axis=1), "lowpass", rng.uniform(700, 3000), sr)
    return _normalise(x * _adsr(t, rng.uniform(0.1, 0.5), rng.uniform(0.2, 0.6))[:, None])


def _noise(rng: Rng, sr: int) -> np.ndarray:
    t = _t(rng.uniform(0.5, 3.0), sr)
    exponent = rng.uniform(0.8, 2.0)
    x = np.stack([_coloured_noise(rng, t.size, exponent) for _ in range(2)], axis=1)
    if rng.random() < 0.5:
        mix = rng.uniform(0.3, 0.9)  # partly correlated stereo
        x[:, 1] = mix * x[:, 0] + (1 - mix) * x[:, 1]
    lfo = 1 + rng.uniform(0, 0.5) * np.sin(2 * np.pi * rng.uniform(0.2, 3) * t + rng.uniform(0, 6.3))
    return _normalise(x * (lfo * _adsr(t, rng.uniform(0.01, 0.3), rng.uniform(0.05, 0.4)))[:, None])


SYNTHS: dict[str, Callable[[Rng, int], np.ndarray]] = {
    "kick": _kick, "snare": _snare, "hihat": _hihat, "clap": _clap,
    "tone": _tone, "bell": _bell, "pad": _pad, "noise": _noise,
}


def _finish(x: np.ndarray, rng: Rng, sr: int, *, level_db: float = -14.0) -> np.ndarray:
    """Gain ±12 dB, a little silence around, a noise floor, and a random mono/stereo layout.

    Returns float32 of shape (n,) (mono) or (n, 2).
    """
    x = _normalise(np.asarray(x, dtype=float)) * 10 ** ((level_db + rng.uniform(-12, 12)) / 20)
    stereo = rng.random() < 0.5
    if stereo and x.ndim == 1:
        delay = int(rng.integers(0, int(0.0006 * sr) + 1))  # small inter-channel delay + pan
        pan = rng.uniform(0.2, 0.8)
        right = np.concatenate([np.zeros(delay), x[: x.size - delay]])
        x = np.stack([x * np.sqrt(1 - pan), right * np.sqrt(pan)], axis=1) * np.sqrt(2)
    elif not stereo and x.ndim == 2:
        x = x.mean(axis=1)
    lead, tail = int(rng.uniform(0.0, 0.06) * sr), int(rng.uniform(0.0, 0.7) * sr)
    pad_width = ((lead, tail),) + ((0, 0),) * (x.ndim - 1)
    x = np.pad(x, pad_width)
    x += rng.standard_normal(x.shape) * 10 ** (rng.uniform(-80, -62) / 20)
    return np.clip(x, -1, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Speech


_PHRASES = (
    "the quick brown fox", "hello world", "where is the station", "turn left at the corner",
    "one two three four", "good morning everyone", "please close the door", "it is raining again",
    "bring me the red box", "seven o'clock sharp", "how are you today", "look over there",
    "this is a test", "the coffee is cold", "open the window", "thank you very much",
)
_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "klatt", "croak", "")


def _speech_clips(rngs: Sequence[Rng], sr: int) -> list[np.ndarray] | None:
    """One espeak-ng utterance per rng, synthesised in parallel; None if espeak-ng is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory(prefix="audiosim-speech-") as tmp:
        jobs = []
        for i, rng in enumerate(rngs):
            variant = _VARIANTS[int(rng.integers(len(_VARIANTS)))]
            voice = _VOICES[int(rng.integers(len(_VOICES)))] + (f"+{variant}" if variant else "")
            phrase = _PHRASES[int(rng.integers(len(_PHRASES)))]
            out = Path(tmp) / f"{i}.wav"
            cmd = [exe, "-v", voice, "-s", str(int(rng.integers(120, 230))), "-p", str(int(rng.integers(20, 80))),
                   "-w", str(out), phrase]
            jobs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out, phrase))
        clips = []
        for proc, out, phrase in jobs:
            if proc.wait() != 0 or not out.exists() or out.stat().st_size <= 44:
                # an espeak-ng build without this voice or variant: fall back to its default voice
                subprocess.run([exe, "-w", str(out), phrase], check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            data, file_sr = sf.read(out, dtype="float64", always_2d=False)
            if data.ndim == 2:
                data = data.mean(axis=1)
            clips.append(_resample(data, file_sr, sr))
        return clips


def _resample(x: np.ndarray, from_sr: int, to_sr: int) -> np.ndarray:
    if from_sr == to_sr:
        return x
    import soxr

    return soxr.resample(x, from_sr, to_sr)


# ---------------------------------------------------------------------------------------------------------
# Corpora


def _rng(seed: int, *keys: int) -> Rng:
    return np.random.default_rng([seed, *keys])


def make_labelled_corpus(
    root: Path, *, per_class: int = 12, seed: int = 0, sample_rate: int = 44100
) -> dict[Path, str]:
    """Write ``root/<class>/<class>_<i>.wav`` (16-bit PCM) and return ``{path: class}``.

    Each file is independent of ``per_class``: file ``i`` of a class is the same for any corpus size.
    The speech class is skipped with a warning when espeak-ng is not installed.
    """
    root = Path(root)
    labels: dict[Path, str] = {}
    for class_index, name in enumerate(CLASSES):
        rngs = [_rng(seed, class_index, i) for i in range(per_class)]
        if name == "speech":
            clips = _speech_clips(rngs, sample_rate)
            if clips is None:
                warnings.warn("espeak-ng not found: the speech class is skipped", stacklevel=2)
                continue
        else:
            clips = [SYNTHS[name](rng, sample_rate) for rng in rngs]
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, (rng, clip) in enumerate(zip(rngs, clips)):
            path = root / name / f"{name}_{i:02d}.wav"
            sf.write(path, _finish(clip, rng, sample_rate), sample_rate, subtype="PCM_16")
            labels[path] = name
    return labels


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim with a short fade-out, or pad with silence, to exactly ``n`` frames."""
    if x.shape[0] >= n:
        x = x[:n].copy()
        fade = min(n, 256)
        ramp = np.linspace(1, 0, fade)
        x[n - fade :] *= ramp if x.ndim == 1 else ramp[:, None]
        return x
    return np.pad(x, ((0, n - x.shape[0]),) + ((0, 0),) * (x.ndim - 1))


def make_oneshots(
    root: Path,
    count: int,
    *,
    seed: int = 0,
    sample_rate: int = 44100,
    min_seconds: float = 0.2,
    max_seconds: float = 2.0,
) -> dict[Path, str]:
    """``count`` synthetic one-shots ``root/shot_<i>.wav`` of random class and duration; ``{path: class}``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    labels: dict[Path, str] = {}
    for i in range(count):
        rng = _rng(seed, 1000, i)
        name = SYNTH_CLASSES[int(rng.integers(len(SYNTH_CLASSES)))]
        x = _finish(SYNTHS[name](rng, sample_rate), rng, sample_rate)
        x = _fit_length(x, int(rng.uniform(min_seconds, max_seconds) * sample_rate))
        path = root / f"shot_{i:04d}.wav"
        sf.write(path, x, sample_rate, subtype="PCM_16")
        labels[path] = name
    return labels


def _event(rng: Rng, sr: int, channels: int, level_db: float) -> np.ndarray:
    """One synthetic event of a random class as float32 (n, channels)."""
    name = SYNTH_CLASSES[int(rng.integers(len(SYNTH_CLASSES)))]
    x = _finish(SYNTHS[name](rng, sr), rng, sr, level_db=level_db)
    return _to_channels(x, channels)


def _to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    x = x[:, None] if x.ndim == 1 else x
    if x.shape[1] == channels:
        return x
    if channels == 1:
        return x.mean(axis=1, keepdims=True)
    if x.shape[1] == 1:
        return np.repeat(x, channels, axis=1)
    return np.resize(x.T, (channels, x.shape[0])).T  # cycle the source channels


def make_long_file(
    path: Path,
    seconds: float,
    *,
    seed: int = 0,
    sample_rate: int = 44100,
    channels: int = 2,
    chunk_seconds: float = 10.0,
) -> Path:
    """Write a long 16-bit WAV of varied, partly overlapping synthetic events.

    Generated and written ``chunk_seconds`` at a time, so memory does not depend on ``seconds``. Events
    (drums, tones, bells, pads, noise textures) at varied levels follow each other with random gaps and
    overlaps, so every excerpt of a second or more is distinctive.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = _rng(seed, 2000)
    total = round(seconds * sample_rate)
    chunk = max(1, int(chunk_seconds * sample_rate))
    max_event = int(4.0 * sample_rate)  # longer than any synth + _finish padding
    buf = np.zeros((chunk + max_event, channels), dtype=np.float32)
    buf_start = 0  # absolute frame of buf[0]
    cursor = int(rng.uniform(0, 0.3) * sample_rate)  # absolute frame where the next event starts
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, subtype="PCM_16") as out:
        while buf_start < total:
            while cursor < min(buf_start + chunk, total):
                ev = _event(rng, sample_rate, channels, level_db=rng.uniform(-10, -4))[:max_event]
                off = cursor - buf_start
                buf[off : off + ev.shape[0]] += ev
                gap = rng.uniform(-0.4, 0.6) * sample_rate  # negative: the next event overlaps this one
                cursor += max(int(0.05 * sample_rate), ev.shape[0] + int(gap))
            n = min(chunk, total - buf_start)
            out.write(np.clip(buf[:n], -1, 1))  # libsndfile wraps, not clips, on float → int
            buf[:-chunk] = buf[chunk:]
            buf[-chunk:] = 0
            buf_start += chunk
    return path


def make_mix_with_known_regions(
    path: Path,
    sources: Sequence[Path],
    *,
    gap_seconds: float = 1.0,
    seed: int = 0,
    sample_rate: int = 44100,
    channels: int = 2,
    filler: str = "noise",
) -> list[tuple[Path, float, float]]:
    """Write a mix where each source appears once, unchanged, and return ``[(source, start, end)]`` in seconds.

    Sources are placed in the given order; before each one and after the last comes a gap of a length drawn
    from ``[gap_seconds, 1.5 * gap_seconds]`` so region starts do not fall on a grid. Gaps hold ``filler``:
    ``"silence"``, ``"noise"`` (quiet pink noise, about -50 dBFS) or ``"events"`` (other synthetic events,
    which may sound like the sources). Sources are resampled to ``sample_rate`` and mapped to ``channels``
    (mono is duplicated, stereo downmixed to mono); their level is kept. Written as 16-bit WAV.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if filler not in ("silence", "noise", "events"):
        raise ValueError(f"filler must be 'silence', 'noise' or 'events', not {filler!r}")
    rng = _rng(seed, 3000)
    regions: list[tuple[Path, float, float]] = []
    frame = 0

    def gap(out: sf.SoundFile) -> int:
        n = round(rng.uniform(gap_seconds, 1.5 * gap_seconds) * sample_rate)
        block = np.zeros((n, channels), dtype=np.float32)
        if n and filler == "noise":
            noise = np.stack([_coloured_noise(rng, n, 1.0) for _ in range(channels)], axis=1)
            block += (noise * 10 ** (-50 / 20)).astype(np.float32)
        elif n and filler == "events":
            pos = int(rng.uniform(0.05, 0.2) * sample_rate)
            while pos < n - int(0.1 * sample_rate):
                ev = _event(rng, sample_rate, channels, level_db=-10)[: n - pos]
                block[pos : pos + ev.shape[0]] += _fit_length(ev, ev.shape[0])
                pos += ev.shape[0] + int(rng.uniform(0.05, 0.3) * sample_rate)
        out.write(np.clip(block, -1, 1))
        return n

    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, subtype="PCM_16") as out:
        for source in sources:
            frame += gap(out)
            data, source_sr = sf.read(source, dtype="float32", always_2d=True)
            data = _to_channels(_resample(data, source_sr, sample_rate).astype(np.float32), channels)
            out.write(np.clip(data, -1, 1))
            regions.append((Path(source), frame / sample_rate, (frame + data.shape[0]) / sample_rate))
            frame += data.shape[0]
        gap(out)
    return regions


# ---------------------------------------------------------------------------------------------------------
# Bad files


def _tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])  # 1x1, 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(
        b"IEND", b""
    )


def _encode(tool: list[str], src: Path, dst: Path) -> bool:
    """Run an encoder command (``{src}``/``{dst}`` placeholders); True if it produced a non-empty file."""
    exe = shutil.which(tool[0])
    if exe is None:
        return False
    cmd = [exe] + [a.format(src=src, dst=dst) for a in tool[1:]]
    try:
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
                                check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    ok = result.returncode == 0 and dst.exists() and dst.stat().st_size > 0
    if not ok:
        dst.unlink(missing_ok=True)
    return ok


_ENCODERS: dict[str, list[list[str]]] = {
    "flac": [["sox", "{src}", "{dst}"], ["ffmpeg", "-y", "-v", "error", "-i", "{src}", "{dst}"]],
    "ogg": [["sox", "{src}", "{dst}"], ["ffmpeg", "-y", "-v", "error", "-i", "{src}", "-c:a", "libvorbis", "{dst}"]],
    "mp3": [["ffmpeg", "-y", "-v", "error", "-i", "{src}", "-c:a", "libmp3lame", "{dst}"], ["sox", "{src}", "{dst}"]],
    "m4a": [["ffmpeg", "-y", "-v", "error", "-i", "{src}", "-c:a", "aac", "{dst}"]],
    "aiff": [["sox", "{src}", "{dst}"], ["ffmpeg", "-y", "-v", "error", "-i", "{src}", "{dst}"]],
    "opus": [["ffmpeg", "-y", "-v", "error", "-i", "{src}", "-c:a", "libopus", "{dst}"], ["sox", "{src}", "{dst}"]],
}


def make_bad_files(root: Path) -> dict[Path, str]:
    """Write a messy folder and return ``{path: description}``.

    Each description starts with a category:

    ``valid:``
        real audio an indexer should index (other formats, odd names, 8 channels at 96 kHz/24-bit...);
    ``edge:``
        decodes, but is degenerate (1 sample, 10 ms, silence, DC, NaN/inf samples, data cut short); an
        indexer may index it with few or no segments or skip it with a message, but must not crash;
    ``broken:``
        cannot be decoded (empty, truncated header, random bytes, text or PNG with an audio extension,
        unreadable), and should be reported and skipped;
    ``not-audio:``
        a directory named like an audio file, a symlink loop; a walker must not recurse forever.

    Formats the local encoders cannot make are left out. Running as root, the chmod-000 file stays readable.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sr = 44100
    out: dict[Path, str] = {}
    kick = _finish(_kick(_rng(7, 0), sr), _rng(7, 1), sr)
    tone = _finish(_tone(_rng(7, 2), sr), _rng(7, 3), sr)

    def put(name: str, description: str, data: bytes | None = None) -> Path:
        p = root / name
        if data is not None:
            p.write_bytes(data)
        out[p] = description
        return p

    reference = root / "reference_tone.wav"
    sf.write(reference, tone, sr, subtype="PCM_16")
    out[reference] = "valid: plain 16-bit wav"
    wav_bytes = reference.read_bytes()

    put("empty.wav", "broken: zero bytes", b"")
    put("truncated_header.wav", "broken: only the first 20 bytes of a wav", wav_bytes[:20])
    put("truncated_data.wav", "edge: header promises more data than the file holds", wav_bytes[: len(wav_bytes) // 2])
    put("random_bytes.wav", "broken: random bytes", np.random.default_rng(7).bytes(50_000))
    put("notes.mp3", "broken: text file with an .mp3 extension", b"This is not an mp3.\nJust some notes.\n" * 20)
    put("picture.flac", "broken: PNG image with a .flac extension", _tiny_png())

    sf.write(put("one_sample.wav", "edge: a single sample"), np.array([0.5], dtype=np.float32), sr, subtype="PCM_16")
    sf.write(put("ten_ms.wav", "edge: 10 ms long"), kick[: sr // 100], sr, subtype="PCM_16")
    sf.write(put("silence.wav", "edge: 2 s of digital silence"), np.zeros(2 * sr, dtype=np.float32), sr,
             subtype="PCM_16")
    sf.write(put("dc_only.wav", "edge: 2 s of constant DC offset 0.5"), np.full(2 * sr, 0.5, dtype=np.float32), sr,
             subtype="PCM_16")
    nonfinite = kick[:, 0].copy() if kick.ndim == 2 else kick.copy()
    nonfinite[100:200] = np.nan
    nonfinite[1000:1010] = np.inf
    nonfinite[2000:2010] = -np.inf
    sf.write(put("nan_inf_float.wav", "edge: 32-bit float wav with NaN and ±inf samples"), nonfinite, sr,
             subtype="FLOAT")

    t = np.arange(2 * 96000) / 96000
    eight = np.stack([np.sin(2 * np.pi * 110 * (c + 1) * t) * 0.3 for c in range(8)], axis=1)
    sf.write(put("eight_channels_96k_24bit.wav", "valid: 8 channels, 96 kHz, 24-bit, 2 s"), eight, 96000,
             subtype="PCM_24")
    sf.write(put("Über Kick ü 01.wav", "valid: non-ASCII name with spaces"), kick, sr, subtype="PCM_16")

    folder = root / "x.wav"
    folder.mkdir(exist_ok=True)
    out[folder] = "not-audio: a directory named x.wav"
    sf.write(put("x.wav/inside.wav", "valid: wav inside a directory named x.wav"), kick, sr, subtype="PCM_16")

    loop = root / "loop"
    if not loop.is_symlink():
        loop.symlink_to(".", target_is_directory=True)
    out[loop] = "not-audio: symlink loop (loop -> .)"

    locked = root / "unreadable.wav"
    sf.write(locked, kick, sr, subtype="PCM_16")
    locked.chmod(0)
    out[locked] = "broken: unreadable (chmod 000)"

    for ext, tools in _ENCODERS.items():
        dst = root / f"encoded.{ext}"
        made_by = next((tool[0] for tool in tools if _encode(tool, reference, dst)), None)
        if made_by is not None:
            out[dst] = f"valid: {ext} made by {made_by}"
    return out
