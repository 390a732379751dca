"""Where an indexing worker's time goes, per file: the analysis of each file run in this process as a
worker runs it (batches of files embedded together, one BLAS thread, glibc keeping freed memory), whole
and split by stage.

    .venv/bin/python bench/worker_profile.py FOLDER [--every 3] [--rounds 3]

Takes every ``--every``-th audio file under FOLDER (sorted), analyses them once to warm the caches, then
``--rounds`` times, and prints the best round's time per file; then one more round with the stages timed
(the wrappers cost a little, so their sum is a bit above the plain figure). Stages nest: ``frames`` is
inside ``mfcc finish`` and ``mfcc process``. Without ``keep_freed_memory`` (as the workers call it) each
new FFT batch would pay ~0.4 ms of page faults that the workers do not pay.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

import audiosim.audio.decode as decode  # noqa: E402
import audiosim.audio.loudness as loudness  # noqa: E402
import audiosim.features.embedding as embedding  # noqa: E402
import audiosim.features.mfcc as mfcc  # noqa: E402
from audiosim import analysis, indexer  # noqa: E402
from audiosim.config import AUDIO_EXTENSIONS, AnalysisParams  # noqa: E402

STAGES = (  # (owner, attribute, label)
    (decode, "open_audio", "open"),
    (analysis, "fingerprint_file", "fingerprint"),
    (loudness.LoudnessMeter, "process", "loudness"),
    (decode.MonoResampler, "process", "resample process"),
    (decode.MonoResampler, "flush", "resample flush"),
    (mfcc.MfccStream, "process", "mfcc process"),
    (mfcc.MfccStream, "finish", "mfcc finish"),
    (mfcc, "frames_from_signal", "frames (in mfcc)"),
    (analysis, "raw_descriptors", "descriptors"),  # a batch's windows and files in one pass
    (embedding, "raw_descriptors", "descriptors"),  # a long file's windows, 256 at a time
    (analysis, "raw_file_descriptor", "long file's descriptor"),
    (embedding, "raw_file_descriptor", "long file's descriptor"),
    (embedding.Transform, "apply", "learned map"),
)


def _timed(spent: collections.Counter, function, label: str):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - started
    return timed


def _round(files: list[str], params: AnalysisParams) -> float:
    """One pass over ``files`` as the workers take them: batches of ``BATCH_FILES`` embedded together."""
    batches = indexer._batches([indexer._Job(path, params) for path in files], indexer.BATCH_FILES)
    started = time.perf_counter()
    for batch in batches:
        indexer._analyze_jobs(batch)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: bench/worker_profile.py /tmp/audiosim-bench/oneshots --every 3")
    ap.add_argument("folder", type=Path)
    ap.add_argument("--every", type=int, default=3, help="take every N-th file (default 3)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    files = sorted(str(p) for p in args.folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)[::args.every]
    if not files:
        ap.error(f"no audio files under {args.folder}")
    params = AnalysisParams()
    indexer.keep_freed_memory()
    with threadpool_limits(1):
        _round(files[:50], params)
        best = min(_round(files, params) for _ in range(args.rounds))
        spent: collections.Counter = collections.Counter()
        originals = [(owner, name, getattr(owner, name)) for owner, name, _ in STAGES]
        for (owner, name, label), (_, _, function) in zip(STAGES, originals):
            setattr(owner, name, _timed(spent, function, label))
        try:
            staged = _round(files, params)
        finally:
            for owner, name, function in originals:
                setattr(owner, name, function)
    n = len(files)
    print(f"{n} files under {args.folder}: {best / n * 1000:.2f} ms a file (best of {args.rounds}); "
          f"with the stages timed {staged / n * 1000:.2f} ms")
    for label, seconds in spent.most_common():
        print(f"  {label:20s} {seconds / n * 1000:6.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
