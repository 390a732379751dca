"""Decoding real files of every format, streaming resampling, bounded memory, and the clear errors."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from audiosim.audio import decode
from audiosim.audio.decode import (
    AudioInfo,
    MonoResampler,
    decode_mono,
    open_audio,
    sniff_audio,
)
from audiosim.audio.loudness import LoudnessMeter
from audiosim.errors import DecodeError

SR = 44100
TARGET = 22050
HAVE_FFMPEG = shutil.which("ffmpeg") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg not installed")


def sine(seconds: float = 1.0, freq: float = 440.0, sr: int = SR, channels: int = 2, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    mono = amp * np.sin(2 * np.pi * freq * t)
    # Channels differ (phase), so a wrong downmix would show.
    cols = [amp * np.sin(2 * np.pi * freq * t + 0.3 * c) for c in range(channels)] if channels > 1 else [mono]
    return np.stack(cols, axis=1).astype(np.float32)


def dominant_hz(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spectrum)])


def reference_mono(x: np.ndarray, sr: int, target: int = TARGET) -> np.ndarray:
    return soxr.resample(x.mean(axis=1).astype(np.float32), sr, target, quality="HQ")


def encode(src: Path, dst: Path, *commands: list[str]) -> Path:
    """Run the first available encoder command; skip the test when none is installed or all fail."""
    for cmd in commands:
        if shutil.which(cmd[0]) is None:
            continue
        args = [a.format(src=src, dst=dst) for a in cmd]
        made = subprocess.run(args, check=False, capture_output=True).returncode == 0
        if made and dst.exists() and dst.stat().st_size:
            return dst
    pytest.skip(f"no encoder for {dst.suffix}")


def ffmpeg_cmd(*codec: str) -> list[str]:
    return ["ffmpeg", "-y", "-v", "error", "-i", "{src}", *codec, "{dst}"]


# ---------------------------------------------------------------------------------------------------------
# Formats


LOSSLESS = {
    "wav16": lambda src, tmp: _sf_write(tmp / "x.wav", "WAV", "PCM_16"),
    "wav24": lambda src, tmp: _sf_write(tmp / "x.wav", "WAV", "PCM_24"),
    "wavfloat": lambda src, tmp: _sf_write(tmp / "x.wav", "WAV", "FLOAT"),
    "flac": lambda src, tmp: _sf_write(tmp / "x.flac", "FLAC", "PCM_16"),
    "aiff": lambda src, tmp: encode(src, tmp / "x.aiff", ["sox", "{src}", "{dst}"], ffmpeg_cmd()),
    "w64": lambda src, tmp: _sf_write(tmp / "x.w64", "W64", "PCM_16"),
    "caf": lambda src, tmp: _sf_write(tmp / "x.caf", "CAF", "PCM_16"),
    "alac_m4a": lambda src, tmp: encode(src, tmp / "x.m4a", ffmpeg_cmd("-c:a", "alac")),
    "wavpack": lambda src, tmp: encode(src, tmp / "x.wv", ffmpeg_cmd("-c:a", "wavpack")),
}
# Lossy codecs pad to whole codec frames and may drop priming: allowed error in frames at 22050 Hz.
LOSSY = {
    "mp3": (lambda src, tmp: encode(src, tmp / "x.mp3", ffmpeg_cmd("-c:a", "libmp3lame"),
                                    ["sox", "{src}", "{dst}"]), 1200),
    "ogg": (lambda src, tmp: encode(src, tmp / "x.ogg", ffmpeg_cmd("-c:a", "libvorbis"),
                                    ["sox", "{src}", "{dst}"]), 1),
    "opus": (lambda src, tmp: encode(src, tmp / "x.opus", ffmpeg_cmd("-c:a", "libopus"),
                                     ["sox", "{src}", "{dst}"]), 1),
    "m4a": (lambda src, tmp: encode(src, tmp / "x.m4a", ffmpeg_cmd("-c:a", "aac")), 1200),
    "aac_adts": (lambda src, tmp: encode(src, tmp / "x.aac", ffmpeg_cmd("-c:a", "aac", "-f", "adts")), 1200),
    "wma": (lambda src, tmp: encode(src, tmp / "x.wma", ffmpeg_cmd("-c:a", "wmav2")), 2100),
}
EXPECTED_DECODER = {"alac_m4a": "ffmpeg", "wavpack": "ffmpeg", "m4a": "ffmpeg", "aac_adts": "ffmpeg",
                    "wma": "ffmpeg"}

_SOURCE = sine(1.0)


def _sf_write(path: Path, fmt: str, subtype: str) -> Path:
    sf.write(path, _SOURCE, SR, format=fmt, subtype=subtype)
    return path


@pytest.fixture
def source_wav(tmp_path: Path) -> Path:
    path = tmp_path / "source.wav"
    sf.write(path, _SOURCE, SR, subtype="FLOAT")
    return path


@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_formats_decode_exactly(name: str, source_wav: Path, tmp_path: Path) -> None:
    path = LOSSLESS[name](source_wav, tmp_path)
    mono, info = decode_mono(path, TARGET)
    assert info.decoder == EXPECTED_DECODER.get(name, "soundfile")
    assert (info.sample_rate, info.channels) == (SR, 2)
    reference = reference_mono(_SOURCE, SR)
    assert abs(len(mono) - len(reference)) <= 1
    assert info.frames == len(_SOURCE)
    assert info.duration == pytest.approx(1.0, abs=1e-6)
    n = min(len(mono), len(reference))
    assert np.corrcoef(mono[:n], reference[:n])[0, 1] >= 0.99
    assert dominant_hz(mono, TARGET) == pytest.approx(440, abs=2)
    assert mono.dtype == np.float32


@pytest.mark.parametrize("name", sorted(LOSSY))
def test_lossy_formats_decode_to_the_right_length_and_pitch(name: str, source_wav: Path, tmp_path: Path) -> None:
    make, tolerance = LOSSY[name]
    path = make(source_wav, tmp_path)
    mono, info = decode_mono(path, TARGET)
    assert info.decoder == EXPECTED_DECODER.get(name, "soundfile")
    assert info.channels == 2
    assert abs(len(mono) - TARGET) <= tolerance
    assert info.frames == round(len(mono) * info.sample_rate / TARGET) or abs(
        info.frames / info.sample_rate - len(mono) / TARGET) < 1e-3
    assert dominant_hz(mono, TARGET) == pytest.approx(440, abs=2)
    assert mono.dtype == np.float32


@needs_ffmpeg
def test_ffmpeg_info_comes_from_its_log(source_wav: Path, tmp_path: Path) -> None:
    # Metadata is logged too; it must not pass for an error or for the duration.
    spoof = "[error] Stream map '0:a:0' matches no streams.\n[info]   Duration: 09:00:00.00, start"
    path = encode(source_wav, tmp_path / "x.m4a", ffmpeg_cmd("-c:a", "aac", "-metadata", f"title={spoof}"))
    with open_audio(path) as stream:
        info = stream.info
        assert sum(len(b) for b in stream.blocks()) > 40000
    assert info.decoder == "ffmpeg"
    assert "mp4" in info.format and info.subtype == "aac"
    assert info.frames is None and info.duration == pytest.approx(1.0, abs=0.05)


def test_eight_channels_96k_24bit(tmp_path: Path) -> None:
    rate = 96000
    t = np.arange(rate) / rate
    x = np.stack([0.1 * np.sin(2 * np.pi * 110 * (c + 1) * t) for c in range(8)], axis=1)
    path = tmp_path / "eight.wav"
    sf.write(path, x, rate, subtype="PCM_24")
    stored = sf.read(path, dtype="float32")[0]
    mono, info = decode_mono(path, TARGET)
    assert (info.channels, info.sample_rate, info.subtype, info.frames) == (8, rate, "PCM_24", rate)
    expected = soxr.resample(stored.mean(axis=1), rate, TARGET, quality="HQ")
    assert len(mono) == len(expected)
    np.testing.assert_allclose(mono, expected, atol=1e-5)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"])
def test_blocks_equal_libsndfile_float_output(subtype: str, tmp_path: Path) -> None:
    x = (np.random.default_rng(3).standard_normal((10007, 3)) * 0.2).clip(-1, 0.99)
    path = tmp_path / "x.wav"
    sf.write(path, x, SR, subtype=subtype)
    expected = sf.read(path, dtype="float32", always_2d=True)[0]
    with open_audio(path) as stream:
        blocks = list(stream.blocks(block_frames=1000))
        assert stream.frames_read == len(expected)
    assert all(b.dtype == np.float32 and b.shape[1] == 3 and 0 < len(b) <= 1000 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), expected)


@pytest.mark.parametrize("container,subtype_format", [("WAV", "WAV"), ("WAVEX", "WAVEX"), ("W64", "W64"),
                                                      ("RF64", "RF64"), ("AIFF", "AIFF")])
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_24_bit_pcm_read_raw_is_libsndfiles_conversion(container: str, subtype_format: str, channels: int,
                                                       tmp_path: Path) -> None:
    """24-bit PCM in WAV-family containers is read as raw bytes and widened by numpy: the same int32 as
    libsndfile's own conversion, across block boundaries and from a seek (AIFF, big-endian, goes through
    libsndfile)."""
    x = (np.random.default_rng(channels).standard_normal((30011, channels)) * 0.3).clip(-1, 0.999)
    x[:3] = [[-1.0] * channels, [0.999] * channels, [0.0] * channels]  # the extremes and a zero
    path = tmp_path / f"x.{'aiff' if container == 'AIFF' else 'wav'}"
    sf.write(path, x, 96000, subtype="PCM_24", format=subtype_format)
    expected = sf.read(path, dtype="float32", always_2d=True)[0]
    with sf.SoundFile(path) as f:
        assert decode._reads_pcm24_raw(f) == (container != "AIFF")
    with open_audio(path) as stream:
        assert stream.info.subtype == "PCM_24"
        blocks = list(stream.blocks(block_frames=4096))
    np.testing.assert_array_equal(np.concatenate(blocks), expected)
    with open_audio(path) as stream:
        tail = np.concatenate(list(stream.blocks(block_frames=1000, start=12345, stop=20000)))
    np.testing.assert_array_equal(tail, expected[12345:20000])


def test_24_bit_pcm_cut_short_decodes_the_whole_frames_there(tmp_path: Path) -> None:
    x = (np.random.default_rng(1).standard_normal((5000, 2)) * 0.3).clip(-1, 0.999)
    full = tmp_path / "full.wav"
    sf.write(full, x, 48000, subtype="PCM_24")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 6 * 3000 + 4])  # 3000 whole frames and part of one
    expected = sf.read(cut, dtype="float32", always_2d=True)[0]
    with open_audio(cut) as stream:
        got = np.concatenate(list(stream.blocks()))
    np.testing.assert_array_equal(got, expected)
    assert len(got) == 3000


def test_non_finite_samples_become_zero(tmp_path: Path) -> None:
    x = np.full((1000, 1), 0.25, dtype=np.float32)
    x[10], x[20], x[30] = np.nan, np.inf, -np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    with open_audio(path) as stream:
        y = np.concatenate(list(stream.blocks(block_frames=64)))
    assert np.isfinite(y).all()
    assert y[10, 0] == y[20, 0] == y[30, 0] == 0.0
    assert y[11, 0] == 0.25


def test_blocks_can_be_iterated_once(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.wav", sine(0.1))
    with open_audio(path) as stream:
        list(stream.blocks())
        with pytest.raises(RuntimeError):
            stream.blocks()
    with pytest.raises(ValueError):
        stream.blocks()


# ---------------------------------------------------------------------------------------------------------
# Resampling


@pytest.mark.parametrize(("in_rate", "channels"), [(44100, 2), (48000, 1), (96000, 6), (8000, 2), (22050, 2)])
def test_streamed_resampling_equals_one_shot(in_rate: int, channels: int) -> None:
    rng = np.random.default_rng(in_rate + channels)
    x = (rng.standard_normal((in_rate * 2 + 17, channels)) * 0.3).astype(np.float32)
    expected = soxr.resample(x.mean(axis=1), in_rate, TARGET, quality="HQ")
    resampler = MonoResampler(in_rate, TARGET, channels)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        parts.append(resampler.process(x[i:i + n]))
        i += n
    parts.append(resampler.flush())
    out = np.concatenate(parts)
    assert out.dtype == np.float32
    assert len(out) == len(expected)
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("n", [1, 2, 100, 22050])
def test_single_block_resampling_equals_one_shot(n: int) -> None:
    x = np.random.default_rng(n).standard_normal((n, 2)).astype(np.float32)
    resampler = MonoResampler(SR, TARGET, 2)
    out = np.concatenate([resampler.process(x), resampler.flush()])
    expected = soxr.resample(x.mean(axis=1), SR, TARGET, quality="HQ")
    assert len(out) == len(expected)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_resampler_passthrough_and_mono_input() -> None:
    x = np.random.default_rng(0).standard_normal((500, 2)).astype(np.float32)
    resampler = MonoResampler(TARGET, TARGET, 2)
    np.testing.assert_allclose(resampler.process(x), x.mean(axis=1), atol=1e-7)
    assert len(resampler.flush()) == 0
    mono = MonoResampler(TARGET, TARGET, 1)
    np.testing.assert_array_equal(mono.process(x[:, 0]), x[:, 0])
    with pytest.raises(ValueError):
        MonoResampler(SR, TARGET, 2).process(np.zeros((10, 3), np.float32))


# ---------------------------------------------------------------------------------------------------------
# Memory stays flat in file length


def _write_long_wav(path: Path, seconds: int, sr: int) -> None:
    chunk = (np.random.default_rng(0).standard_normal(10 * sr) * 0.1).astype(np.float32)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for i in range(seconds // 10):
            f.write(chunk * np.float32(0.5 + (i % 5) / 10))  # written chunk by chunk: the test itself stays small


def test_memory_stays_flat_for_a_20_minute_file(tmp_path: Path) -> None:
    seconds, sr = 20 * 60, 44100
    path = tmp_path / "long.wav"
    _write_long_wav(path, seconds, sr)
    whole_file_float32 = seconds * sr * 4  # 212 MB
    tracemalloc.start()
    try:
        with open_audio(path) as stream:
            resampler = MonoResampler(sr, TARGET, 1)
            meter = LoudnessMeter(sr, 1)
            out_samples = 0
            for block in stream.blocks():
                meter.process(block)
                out_samples += len(resampler.process(block))
            out_samples += len(resampler.flush())
            loudness = meter.integrated()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stream.frames_read == seconds * sr
    assert out_samples == seconds * TARGET
    assert np.isfinite(loudness)
    assert peak < 32 * 2**20 < whole_file_float32 / 4, f"peak traced allocation {peak / 2**20:.1f} MB"


def test_header_claiming_4_gb_decodes_what_is_there(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.wav", sine(0.05, channels=2))
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 0xFFFFFFF0)
    data[40:44] = struct.pack("<I", 0xFFFFFFE0)  # data chunk size of a canonical 44-byte header
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with open_audio(path) as stream:
            frames = sum(len(b) for b in stream.blocks())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames == (len(data) - 44) // 4
    assert peak < 8 * 2**20


# ---------------------------------------------------------------------------------------------------------
# Bad inputs


def _write(path: Path, x: np.ndarray, sr: int = SR) -> Path:
    sf.write(path, x, sr, subtype="PCM_16")
    return path


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def _make_zero_bytes(tmp: Path) -> Path:
    (p := tmp / "empty.wav").write_bytes(b"")
    return p


def _make_random_bytes(tmp: Path) -> Path:
    (p := tmp / "random.wav").write_bytes(np.random.default_rng(7).bytes(50_000))
    return p


def _make_text_mp3(tmp: Path) -> Path:
    (p := tmp / "notes.mp3").write_text("This is not an mp3.\nJust some notes, café.\n" * 20)
    return p


def _make_png_flac(tmp: Path) -> Path:
    (p := tmp / "picture.flac").write_bytes(_png())
    return p


def _make_truncated_header(tmp: Path) -> Path:
    wav = _write(tmp / "full.wav", sine(0.2)).read_bytes()
    (p := tmp / "truncated_header.wav").write_bytes(wav[:20])
    return p


def _make_header_only(tmp: Path) -> Path:
    wav = _write(tmp / "full.wav", sine(0.2)).read_bytes()
    (p := tmp / "header_only.wav").write_bytes(wav[:44])
    return p


def _make_directory(tmp: Path) -> Path:
    (p := tmp / "x.wav").mkdir()
    return p


def _make_missing(tmp: Path) -> Path:
    return tmp / "missing.wav"


def _make_unreadable(tmp: Path) -> Path:
    if os.name != "posix" or os.geteuid() == 0:
        pytest.skip("root (or a non-POSIX system) can read a chmod-000 file")
    p = _write(tmp / "locked.wav", sine(0.1))
    p.chmod(0)
    return p


def _make_fifo(tmp: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(p := tmp / "fifo.wav")
    return p


def _make_video_only(tmp: Path) -> Path:
    if not HAVE_FFMPEG:
        pytest.skip("ffmpeg not installed")
    p = tmp / "video.mp4"
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc=d=0.5:s=64x64", "-c:v", "mpeg4",
                    str(p)], check=True)
    return p


def _make_truncated_m4a(tmp: Path) -> Path:
    if not HAVE_FFMPEG:
        pytest.skip("ffmpeg not installed")
    src = _write(tmp / "src.wav", sine(1.0))
    full = encode(src, tmp / "full.m4a", ffmpeg_cmd("-c:a", "aac"))
    (p := tmp / "cut.m4a").write_bytes(full.read_bytes()[:3000])  # the moov atom is at the end
    return p


BAD_INPUTS = {
    "zero_bytes": (_make_zero_bytes, "empty file (0 bytes)"),
    "random_bytes": (_make_random_bytes, "not an audio file"),
    "text_as_mp3": (_make_text_mp3, "not an audio file (looks like text)"),
    "png_as_flac": (_make_png_flac, "not an audio file (looks like a PNG image)"),
    "truncated_header": (_make_truncated_header, "truncated or damaged audio data"),
    "header_only": (_make_header_only, "0 audio frames"),
    "directory": (_make_directory, "is a directory"),
    "missing": (_make_missing, "file not found"),
    "unreadable": (_make_unreadable, "permission denied"),
    "fifo": (_make_fifo, "not a regular file"),
    "video_only": (_make_video_only, "no audio stream"),
    "truncated_m4a": (_make_truncated_m4a, "truncated or damaged audio data"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_a_clear_decode_error(case: str, tmp_path: Path) -> None:
    make, reason = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(DecodeError) as caught, open_audio(path) as stream:
        list(stream.blocks())
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message and "Error" not in message and "Traceback" not in message
    assert caught.value.path == str(path)
    assert reason in caught.value.reason
    with pytest.raises(DecodeError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode_mono(path, TARGET)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to switch to an unprivileged user")
def test_unreadable_file_as_an_unprivileged_user() -> None:
    """Running as root, check the chmod-000 mapping by decoding in a child process as ``nobody``."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="audiosim-perm-"))
    try:
        folder.chmod(0o755)
        locked = _write(folder / "locked.wav", sine(0.1))
        locked.chmod(0)
        code = ("import sys; sys.path.insert(0, sys.argv[2]); from audiosim.audio.decode import open_audio\n"
                "try:\n    open_audio(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__, e)")
        root = str(Path(__file__).resolve().parents[2])
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
             "--bounding-set=-all", sys.executable, "-c", code, str(locked), root],
            cwd=folder, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0 and "DecodeError" not in done.stdout:
            pytest.skip(f"cannot run Python as nobody here: {done.stderr.strip()[-200:]}")
        assert done.stdout.strip() == "DecodeError permission denied", done.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_truncated_data_decodes_what_exists(tmp_path: Path) -> None:
    x = sine(0.5)
    wav = _write(tmp_path / "full.wav", x).read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(wav[: 44 + 4 * 5000 + 3])  # 5000 whole frames and a partial one
    mono, info = decode_mono(path, TARGET)
    assert info.frames == 5000
    assert len(mono) == len(soxr.resample(np.zeros(5000, np.float32), SR, TARGET, quality="HQ"))
    assert dominant_hz(mono, TARGET) == pytest.approx(440, abs=10)


@needs_ffmpeg
def test_wav_with_zeroed_size_fields_is_read_to_the_end(tmp_path: Path) -> None:
    """What a recorder that crashed leaves behind: libsndfile sees 0 frames, ffmpeg reads the data."""
    x = sine(0.5)
    data = bytearray(_write(tmp_path / "x.wav", x).read_bytes())
    data[4:8] = data[40:44] = bytes(4)
    path = tmp_path / "crashed.wav"
    path.write_bytes(bytes(data))
    mono, info = decode_mono(path, TARGET)
    assert info.decoder == "ffmpeg" and info.frames == len(x)
    assert len(mono) == len(x) // 2


def test_missing_ffmpeg_is_a_clear_error(source_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(decode, "_ffmpeg_executable", lambda: None)
    with pytest.raises(DecodeError, match="ffmpeg is not installed"):
        open_audio(path)


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as a fake ffmpeg")
def test_a_hanging_ffmpeg_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    path = tmp_path / "x.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(decode, "_ffmpeg_executable", lambda: str(fake))
    monkeypatch.setattr(decode, "FFMPEG_STALL_SECONDS", 0.5)
    with pytest.raises(DecodeError, match="stalled"):
        open_audio(path)


# ---------------------------------------------------------------------------------------------------------
# Files that change while being read


def _multi_block_wav(tmp: Path) -> Path:
    return _write(tmp / "x.wav", sine(1.0))


def _replace(path: Path) -> None:
    other = _write(path.with_name("other.wav"), sine(1.0, freq=1000))
    os.replace(other, path)


def _rewrite_in_place(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize(("change", "reason"), [
    (_replace, "file changed while being read"),
    (_rewrite_in_place, "file changed while being read"),
    (os.remove, "file was deleted while being read"),
])
def test_a_file_changed_during_iteration_raises(change, reason: str, tmp_path: Path) -> None:
    path = _multi_block_wav(tmp_path)
    with open_audio(path) as stream:
        blocks = stream.blocks(block_frames=4096)
        next(blocks)
        change(path)
        with pytest.raises(DecodeError, match=reason):
            list(blocks)


@needs_ffmpeg
def test_ffmpeg_stream_detects_replacement_and_is_killed_on_close(source_wav: Path, tmp_path: Path) -> None:
    path = encode(source_wav, tmp_path / "x.m4a", ffmpeg_cmd("-c:a", "aac"))
    with open_audio(path) as stream:
        blocks = stream.blocks(block_frames=1024)
        first = next(blocks)
        assert first.shape == (1024, 2)
        shutil.copy(source_wav, tmp_path / "copy")
        os.replace(tmp_path / "copy", path)
        with pytest.raises(DecodeError, match="changed"):
            list(blocks)
    assert stream._proc.poll() is not None

    path = encode(source_wav, tmp_path / "y.m4a", ffmpeg_cmd("-c:a", "aac"))
    stream = open_audio(path)
    next(stream.blocks(block_frames=256))
    stream.close()
    assert stream._proc.poll() is not None


# ---------------------------------------------------------------------------------------------------------
# Sniffing


def _sf_bytes(tmp: Path, name: str, fmt: str, subtype: str) -> Path:
    path = tmp / name
    sf.write(path, sine(0.05, channels=1), SR, format=fmt, subtype=subtype)
    return path


SNIFF_SAMPLES = {
    "wav": lambda tmp: _sf_bytes(tmp, "a.wav", "WAV", "PCM_16"),
    "rf64": lambda tmp: _sf_bytes(tmp, "a.rf64", "RF64", "PCM_16"),
    "w64": lambda tmp: _sf_bytes(tmp, "a.w64", "W64", "PCM_16"),
    "aiff": lambda tmp: _sf_bytes(tmp, "a.aiff", "AIFF", "PCM_16"),
    "aifc": lambda tmp: _sf_bytes(tmp, "a.aifc", "AIFF", "ULAW"),
    "flac": lambda tmp: _sf_bytes(tmp, "a.flac", "FLAC", "PCM_16"),
    "ogg": lambda tmp: _sf_bytes(tmp, "a.ogg", "OGG", "VORBIS"),
    "caf": lambda tmp: _sf_bytes(tmp, "a.caf", "CAF", "PCM_16"),
    "au": lambda tmp: _sf_bytes(tmp, "a.au", "AU", "PCM_16"),
    "mp3_id3": b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(100),
    "mp3_sync": b"\xff\xfb\x90\x64" + bytes(100),
    "adts": b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(100),
    "m4a": b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + bytes(100),
    "wma": bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + bytes(100),
    "wavpack": b"wvpk" + bytes(100),
    "ape": b"MAC \x96\x0f" + bytes(100),
    "snd": b".snd\x00\x00\x00\x18" + bytes(100),
    "matroska": b"\x1a\x45\xdf\xa3" + bytes(100),
}
NOT_AUDIO_SAMPLES = {
    "text": b"hello, this is text\n" * 10,
    "png": _png(),
    "empty": b"",
    "random_ff": b"\xff\xff\xff\xff" + bytes(100),  # sync bits but every field reserved
    "avi_riff": b"RIFF\x00\x01\x00\x00AVI LIST" + bytes(100),
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(100),
}


@pytest.mark.parametrize("kind", sorted(SNIFF_SAMPLES))
def test_sniff_recognises_audio_containers(kind: str, tmp_path: Path) -> None:
    sample = SNIFF_SAMPLES[kind]
    if isinstance(sample, bytes):
        path = tmp_path / "noext"
        path.write_bytes(sample)
    else:
        path = sample(tmp_path)
    assert sniff_audio(path) is True
    assert sniff_audio(str(path)) is True


@pytest.mark.parametrize("kind", sorted(NOT_AUDIO_SAMPLES))
def test_sniff_rejects_other_files(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "thing.wav"
    path.write_bytes(NOT_AUDIO_SAMPLES[kind])
    assert sniff_audio(path) is False


def test_sniff_never_raises(tmp_path: Path) -> None:
    assert sniff_audio(tmp_path / "missing.wav") is False
    assert sniff_audio(tmp_path) is False  # a directory
    assert sniff_audio("bad\0path") is False


def test_audio_info_is_frozen(tmp_path: Path) -> None:
    with open_audio(_write(tmp_path / "x.wav", sine(0.1))) as stream:
        info = stream.info
    assert isinstance(info, AudioInfo)
    assert info.path == str(tmp_path / "x.wav") and info.decoder == "soundfile"
    with pytest.raises(AttributeError):
        info.channels = 3  # type: ignore[misc]


def test_pathlike_and_non_ascii_names(tmp_path: Path) -> None:
    path = _write(tmp_path / "Über Kick ü 01.wav", sine(0.1))
    mono, info = decode_mono(path, TARGET)
    assert info.path == str(path) and len(mono) == 2205


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX-only cleanup check")
def test_no_subprocess_for_libsndfile_formats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("spawned a subprocess for a format libsndfile reads")

    paths = [_write(tmp_path / "x.wav", sine(0.1)), _sf_bytes(tmp_path, "x.flac", "FLAC", "PCM_16"),
             _sf_bytes(tmp_path, "x.ogg", "OGG", "VORBIS"), _sf_bytes(tmp_path, "x.mp3", "MP3", "MPEG_LAYER_III")]
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    for path in paths:
        assert decode_mono(path, TARGET)[1].decoder == "soundfile"
