"""Audition for the window: clips are read in workers into a small cache, so a click on a result plays
at once (the top results are read ahead); the :class:`~audiosim.playback.Player` does the rest."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal

from audiosim.gui.audio_io import Clip, ClipCache, read_clip
from audiosim.gui.workers import Task, TaskRunner

PREFETCH = 24
POSITION_MS = 30


class Audition(QObject):
    """``started(key, offset)`` when a clip begins; ``position(seconds | None)`` while playing (absolute
    time in the file); ``error(text)`` when a clip cannot be read or the device fails."""

    started = Signal(object)
    position = Signal(object)
    error = Signal(str)

    def __init__(self, parent: QObject | None = None, *, device: str | None = None) -> None:
        super().__init__(parent)
        self.cache = ClipCache()
        self.device = device
        self.player = None
        self._player_lock = threading.Lock()  # the start-up thread and a first click may race to open it
        self._volume = 0.8
        self._loop = False
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._runner = TaskRunner(self._pool, self)
        self._wanted: tuple | None = None  # the clip the user asked for last
        self._requested_at = 0.0
        self.current: Clip | None = None
        self.last_latency: float | None = None  # request → first audio block, seconds
        self._timer = QTimer(self, interval=POSITION_MS)
        self._timer.timeout.connect(self._tick)

    # -- player -------------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Import sounddevice and open the output stream (called from a background thread at start-up)."""
        from audiosim.playback import AudioDeviceError

        try:
            self._open_player()
        except AudioDeviceError:
            pass  # said when the user first plays something

    def _open_player(self) -> None:
        from audiosim.playback import Player

        with self._player_lock:
            if self.player is None:
                player = Player(self.device)
                player.open(44100)
                player.volume, player.loop = self._volume, self._loop
                self.player = player

    def _ensure_player(self) -> bool:
        from audiosim.playback import AudioDeviceError

        try:
            self._open_player()
        except AudioDeviceError as exc:
            self.error.emit(str(exc))
            return False
        return True

    def set_device(self, device: str | None) -> None:
        self.device = device
        if self.player is not None:
            from audiosim.playback import AudioDeviceError

            try:
                self.player.set_device(device)
            except AudioDeviceError as exc:
                self.player = None
                self.error.emit(str(exc))

    def set_volume(self, percent: int) -> None:
        self._volume = max(0.0, min(1.0, percent / 100))
        if self.player is not None:
            self.player.volume = self._volume

    def set_loop(self, loop: bool) -> None:
        self._loop = loop
        if self.player is not None:
            self.player.loop = loop

    @property
    def playing(self) -> bool:
        return self.player is not None and self.player.playing

    # -- clips --------------------------------------------------------------------------------------------
    def play(self, path: str, start: float, end: float | None) -> None:
        """Play exactly ``path[start:end]``; replaces what is playing."""
        key = ClipCache.key(path, start, end)
        self._wanted = key
        self._requested_at = time.perf_counter()
        clip = self.cache.get(key)
        if clip is not None:
            self._start(key, clip)
            return
        self.stop(keep_wanted=True)
        self._runner.start(Task(read_clip, path, start, end),
                           lambda c, k=key: self._loaded(k, c, play=True),
                           lambda e, k=key: self._failed(k, e))

    def prefetch(self, items: list[tuple[str, float, float | None]]) -> None:
        for path, start, end in items[:PREFETCH]:
            key = ClipCache.key(path, start, end)
            if key not in self.cache:
                self._runner.start(Task(read_clip, path, start, end),
                                   lambda c, k=key: self._loaded(k, c, play=False))

    def clip(self, path: str, start: float, end: float | None) -> Clip | None:
        return self.cache.get(ClipCache.key(path, start, end))

    def _loaded(self, key: tuple, clip: Clip, *, play: bool) -> None:
        self.cache.put(key, clip)
        if play and key == self._wanted:
            self._start(key, clip)

    def _failed(self, key: tuple, exc: BaseException) -> None:
        if key == self._wanted:
            self.error.emit(f"cannot play {key[0]}: {exc}")

    def _start(self, key: tuple, clip: Clip) -> None:
        if not self._ensure_player():
            return
        from audiosim.playback import AudioDeviceError

        try:
            self.player.play(clip.samples, clip.sample_rate)
        except AudioDeviceError as exc:
            self.player = None
            self.error.emit(str(exc))
            return
        self.current = clip
        self.started.emit(key)
        self._timer.start()

    def toggle(self) -> bool:
        """Stop if playing, else replay the last clip; returns whether it now plays."""
        if self.playing:
            self.stop()
            return False
        if self.current is not None:
            self._requested_at = time.perf_counter()
            self._start(self._wanted, self.current)
            return True
        return False

    def stop(self, *, keep_wanted: bool = False) -> None:
        if not keep_wanted:
            self._wanted = None
        if self.player is not None:
            self.player.stop()
        self._timer.stop()
        self.position.emit(None)

    def _tick(self) -> None:
        player = self.player
        if player is None:
            return
        first = player.first_block_at
        if first is not None and first >= self._requested_at:
            self.last_latency = first - self._requested_at
        seconds = player.position
        if seconds is None:
            self._timer.stop()
            self.position.emit(None)
        elif self.current is not None:
            self.position.emit(self.current.start + seconds)

    def close(self) -> None:
        self._timer.stop()
        self._runner.cancel_all()
        self._pool.waitForDone(3000)
        if self.player is not None:
            self.player.close()
            self.player = None
