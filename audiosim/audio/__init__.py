"""Decoding any audio file in blocks, streaming resampling, and streaming loudness.

Names load lazily so ``import audiosim.audio`` stays cheap (``loudness`` pulls in scipy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audiosim.audio.decode import (
        AudioInfo,
        AudioStream,
        MonoResampler,
        decode_mono,
        open_audio,
        sniff_audio,
    )
    from audiosim.audio.loudness import LoudnessMeter

_EXPORTS = {
    "AudioInfo": "decode", "AudioStream": "decode", "MonoResampler": "decode", "decode_mono": "decode",
    "open_audio": "decode", "sniff_audio": "decode", "LoudnessMeter": "loudness",
}
__all__ = ["AudioInfo", "AudioStream", "LoudnessMeter", "MonoResampler", "decode_mono", "open_audio", "sniff_audio"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
