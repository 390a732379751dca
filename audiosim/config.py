"""Where the library lives and how audio is analysed.

The analysis parameters are recorded in the library; a library made under another ``ANALYSIS_VERSION`` or
``EMBEDDING_VERSION`` is upgraded (:mod:`audiosim.library.upgrade`), and the indexer re-analyses files
analysed under other parameters.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

ANALYSIS_VERSION = 2  # what the frames hold (2: the low-frequency profile)
EMBEDDING_VERSION = 3  # how vectors are made from the frames (3: learned networks beside the linear map)

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".mp3", ".mp2",
    ".m4a", ".mp4", ".aac", ".wma", ".wv", ".ape", ".caf", ".w64", ".au", ".snd", ".mka", ".webm",
    ".alac", ".ac3", ".amr",
})


@dataclasses.dataclass(frozen=True)
class AnalysisParams:
    """How every file in a library is analysed. Frozen: a worker gets a snapshot."""

    sample_rate: int = 22050
    n_mfcc: int = 20
    n_mels: int = 64
    n_fft: int = 2048
    hop_length: int = 512
    fmin: float = 30.0
    fmax: float = 11025.0
    segment_seconds: float = 1.0
    segment_hop_seconds: float = 0.5
    silence_db: float = -90.0  # absolute floor: a file never louder than this is silent
    quiet_below_peak_db: float = 50.0  # a window this far below the file's peak is a gap, not a sound
    version: int = ANALYSIS_VERSION
    embedding: int = EMBEDDING_VERSION

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def frames_per_segment(self) -> int:
        return max(1, round(self.segment_seconds / self.frame_seconds))

    @property
    def frames_per_segment_hop(self) -> int:
        return max(1, round(self.segment_hop_seconds / self.frame_seconds))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AnalysisParams:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


def default_library_dir() -> Path:
    """``AUDIOSIM_LIBRARY`` if set, else the platform's per-user data folder."""
    override = os.environ.get("AUDIOSIM_LIBRARY")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_path

    return user_data_path("audiosim", appauthor=False) / "library"


def analysis_key(params: AnalysisParams) -> str:
    """A short stable hash of the parameters: an asset analysed under another key is re-analysed."""
    import hashlib

    return hashlib.blake2b(params.to_json().encode(), digest_size=8).hexdigest()
