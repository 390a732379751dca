"""The naive baseline for ``index_throughput.py``: MFCCs of every file in a folder, one librosa call at a time.

    python bench/naive_mfcc.py FOLDER

For each audio file (sorted, recursive): ``librosa.load(path, sr=22050)`` then
``librosa.feature.mfcc(y=y, sr=22050)``. Prints one JSON line: files, failures, audio seconds, seconds
spent in the loop. Nothing is stored; this is what "just use librosa in a loop" costs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".m4a", ".opus"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import librosa  # inside the timing, as an audiosim process pays for its imports too

    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    audio_seconds = 0.0
    frames = 0
    failures = 0
    for path in files:
        try:
            y, _ = librosa.load(path, sr=22050)
            mfcc = librosa.feature.mfcc(y=y, sr=22050)
        except Exception as exc:  # noqa: BLE001 - a baseline that stops at the first bad file is no baseline
            print(f"{path}: {exc}", file=sys.stderr)
            failures += 1
            continue
        audio_seconds += len(y) / 22050
        frames += mfcc.shape[1]
    print(json.dumps({
        "files": len(files), "failures": failures, "audio_seconds": round(audio_seconds, 3),
        "mfcc_frames": frames, "seconds": round(time.perf_counter() - started, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
