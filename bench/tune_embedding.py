"""Tune the segment embedding on a labelled synthetic corpus (not the one the tests use).

Analyses every file once, then scores embedding variants by file-level precision@10 of same-class
neighbours, and prints the per-coefficient spreads that ``audiosim/features/segments.py`` freezes.

    python bench/tune_embedding.py [--per-class 16] [--seed 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audiosim.analysis import analyze_file  # noqa: E402
from audiosim.config import AnalysisParams  # noqa: E402
from audiosim.features.segments import file_embedding  # noqa: E402
from tests.corpus import make_labelled_corpus  # noqa: E402


def precision_at(x: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


def statistics(mfcc: np.ndarray, rms_db: np.ndarray, params: AnalysisParams):
    loud = rms_db >= params.silence_db
    first, last = np.flatnonzero(loud)[[0, -1]] if loud.any() else (0, len(mfcc) - 1)
    f = mfcc[first:last + 1]
    diff = np.abs(np.diff(f, axis=0)).mean(0) if len(f) > 1 else np.zeros(f.shape[1])
    return f[:, 1:].mean(0), f.std(0), diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    params = AnalysisParams()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_labelled_corpus(Path(tmp), per_class=args.per_class, seed=args.seed)
        analyses = [(label, analyze_file(path, params)) for path, label in corpus.items()]
    labels = np.array([label for label, _ in analyses])
    frames = [(a.mfcc.astype(np.float32), a.rms_db.astype(np.float32)) for _, a in analyses]
    mean, std, diff = (np.array(x) for x in zip(*(statistics(m, r, params) for m, r in frames)))
    spreads = mean.std(0), std.std(0), diff.std(0)
    print(f"{len(labels)} files, {len(set(labels))} classes")
    for weights in [(1, 0, 0), (1, 0.5, 0), (1, 0.5, 0.5), (1, 1, 0.7), (1, 1, 1), (1, 1.3, 1)]:
        x = np.concatenate([w * s / sp for w, s, sp in zip(weights, (mean, std, diff), spreads)], axis=1)
        print(f"weights mean/std/diff {weights}: precision@10 {precision_at(x, labels):.3f}")
    shipped = np.stack([file_embedding(m, r, params) for m, r in frames])
    print(f"shipped embedding: precision@10 {precision_at(shipped, labels):.3f}")
    for label in sorted(set(labels)):
        sel = labels == label
        d = ((shipped[:, None] - shipped[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        nearest = np.argsort(d, axis=1)[:, :10]
        print(f"  {label:>8}: {(labels[nearest][sel] == label).mean():.2f}")
    np.set_printoptions(precision=1, suppress=True, linewidth=120)
    for name, sp in zip(("mean c1..", "std c0..", "diff c0.."), spreads):
        print(f"spread of {name}: {sp}")


if __name__ == "__main__":
    main()
