"""Audition: play a float32 buffer through sounddevice (PortAudio), and record a short clip. No Qt here.

The :class:`Player` keeps one output stream *open* (the device is allocated once) and merely starts it
when there is something to play; a callback that runs out of samples stops it again, so an idle player
costs no CPU. Starting an open stream takes a few milliseconds, which is what makes a click on a result
sound at once. When a buffer comes at another sample rate the stream is reopened at that rate, so the
samples reach the device unresampled (the OS may still convert for the hardware).

Nothing here decodes: callers hand in ``[shape=(n,)]`` or ``[shape=(n, channels)]`` float32 arrays.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from audiosim.errors import AudiosimError

OUTPUT_CHANNELS = 2
MAX_RECORD_SECONDS = 10.0


class AudioDeviceError(AudiosimError):
    """No usable audio device (none present, unplugged, busy or refusing the format)."""


def _sd():
    try:
        import sounddevice
    except OSError as exc:  # PortAudio library missing
        raise AudioDeviceError(f"audio is unavailable: {exc}") from None
    return sounddevice


def output_devices() -> list[tuple[int, str]]:
    """(index, name) of the devices that can play, for a preferences list."""
    sd = _sd()
    return [(i, d["name"]) for i, d in enumerate(sd.query_devices()) if d["max_output_channels"] > 0]


def input_devices() -> list[tuple[int, str]]:
    sd = _sd()
    return [(i, d["name"]) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def _device_index(name: str | None, kind: str) -> int | None:
    """The index of the device called ``name`` (``None`` or not found → the system default)."""
    if not name:
        return None
    devices = output_devices() if kind == "output" else input_devices()
    for index, device_name in devices:
        if device_name == name:
            return index
    raise AudioDeviceError(f"the {kind} device {name!r} is not available (unplugged?); "
                           "choose another in Preferences")


def _as_stereo(buffer: np.ndarray) -> np.ndarray:
    data = np.asarray(buffer, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, np.newaxis]
    if data.shape[1] == 1:
        return np.repeat(data, OUTPUT_CHANNELS, axis=1)
    return np.ascontiguousarray(data[:, :OUTPUT_CHANNELS])


class Player:
    """Plays one buffer at a time; a new :meth:`play` replaces what is playing.

    Parameters
    ----------
    device : output device name (``None``: the system default)
    on_position : called from the audio thread with the position in seconds after each block, and with
        ``None`` when playback ends; keep it short (set a variable, post an event)
    """

    def __init__(self, device: str | None = None, *, on_position: Callable[[float | None], Any] | None = None,
                 latency: str | float = "low") -> None:
        self.device = device
        self.on_position = on_position
        self.latency = latency
        self.volume = 1.0
        self.loop = False
        self._lock = threading.Lock()
        self._stream = None
        self._rate: int | None = None
        self._data: np.ndarray | None = None
        self._pos = 0
        self._playing = False
        self._stopping = False  # the callback has asked PortAudio to stop the stream
        self.started_at: float | None = None  # perf_counter of the play() call
        self.first_block_at: float | None = None  # perf_counter of the first block holding its samples

    # -- stream -------------------------------------------------------------------------------------------
    def open(self, sample_rate: int = 44100) -> None:
        """Open (or reopen) the output stream at ``sample_rate``; raises :class:`AudioDeviceError`."""
        sd = _sd()
        self._close_stream()
        try:
            stream = sd.OutputStream(samplerate=sample_rate, channels=OUTPUT_CHANNELS, dtype="float32",
                                     device=_device_index(self.device, "output"), latency=self.latency,
                                     callback=self._callback)
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"cannot open the output device: {exc}") from None
        self._stream, self._rate = stream, int(sample_rate)

    def set_device(self, device: str | None) -> None:
        self.stop()
        self.device = device
        rate = self._rate
        self._close_stream()
        if rate is not None:
            self.open(rate)

    @property
    def sample_rate(self) -> int | None:
        return self._rate

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    # -- transport ----------------------------------------------------------------------------------------
    def play(self, buffer: np.ndarray, sample_rate: int, *, start: float = 0.0) -> None:
        """Play ``buffer`` from ``start`` seconds; returns at once (the sound starts within a block)."""
        data = _as_stereo(buffer)
        self.started_at, self.first_block_at = time.perf_counter(), None
        if self._stream is None or self._rate != int(sample_rate):
            self.open(int(sample_rate))
        stream = self._stream
        with self._lock:
            self._data = data
            self._pos = min(len(data), max(0, int(round(start * sample_rate))))
            self._playing = True
            restart = self._stopping or not stream.active
            self._stopping = False
        if restart:
            sd = _sd()
            try:
                if not stream.stopped:
                    stream.abort()  # the callback ended it; PortAudio needs an explicit stop first
                stream.start()
            except sd.PortAudioError as exc:
                raise AudioDeviceError(f"cannot start playback: {exc}") from None

    def stop(self) -> None:
        with self._lock:
            self._playing = False
            self._data = None
        if self.on_position is not None:
            self.on_position(None)

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def position(self) -> float | None:
        """Seconds into the current buffer, or ``None`` when idle."""
        if not self._playing or not self._rate:
            return None
        return self._pos / self._rate

    def close(self) -> None:
        self.stop()
        self._close_stream()

    def _close_stream(self) -> None:
        stream, self._stream, self._rate = self._stream, None, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:  # noqa: BLE001 - a vanished device must not stop us closing
                pass

    # -- audio thread -------------------------------------------------------------------------------------
    def _callback(self, out: np.ndarray, frames: int, _time, _status) -> None:
        with self._lock:
            data, pos = self._data, self._pos
            if data is None or not self._playing:
                out.fill(0)
                self._playing = False
                self._stopping = True
                raise _sd().CallbackStop
            written = 0
            while written < frames:
                n = min(frames - written, len(data) - pos)
                if n > 0:
                    np.multiply(data[pos:pos + n], self.volume, out=out[written:written + n])
                    written += n
                    pos += n
                if pos >= len(data):
                    if self.loop and len(data) > 0:
                        pos = 0
                        continue
                    break
            if written < frames:
                out[written:].fill(0)
            if self.first_block_at is None and written:
                self.first_block_at = time.perf_counter()
            self._pos = pos
            ended = pos >= len(data) and not self.loop
            if ended:
                self._playing = False
                self._stopping = True
        if self.on_position is not None:
            self.on_position(None if ended else pos / (self._rate or 1))
        if ended:
            raise _sd().CallbackStop


class Recorder:
    """Records mono float32 from an input device, at most ``max_seconds``."""

    def __init__(self, device: str | None = None, *, sample_rate: int = 44100,
                 max_seconds: float = MAX_RECORD_SECONDS) -> None:
        self.device, self.sample_rate = device, sample_rate
        self._max = int(max_seconds * sample_rate)
        self._blocks: list[np.ndarray] = []
        self._count = 0
        self._stream = None

    def start(self) -> None:
        sd = _sd()
        self._blocks, self._count = [], 0
        try:
            self._stream = sd.InputStream(samplerate=self.sample_rate, channels=1, dtype="float32",
                                          device=_device_index(self.device, "input"), callback=self._callback)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self._stream = None
            raise AudioDeviceError(f"cannot open the input device: {exc}") from None

    @property
    def seconds(self) -> float:
        return self._count / self.sample_rate

    @property
    def full(self) -> bool:
        return self._count >= self._max

    def _callback(self, indata: np.ndarray, frames: int, _time, _status) -> None:
        room = self._max - self._count
        if room > 0:
            block = indata[:room, 0].copy()
            self._blocks.append(block)
            self._count += len(block)

    def stop(self) -> np.ndarray:
        """Stop and return what was recorded ``[shape=(n,)]``."""
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._stream = None
        return np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.float32)
