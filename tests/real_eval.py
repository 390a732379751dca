"""Scoring audiosim on real sounds as a user would: through the CLI, neighbours from *other* sources only.

Shared by ``bench/eval_real.py`` (the full evaluation) and ``tests/test_real_sounds.py`` (a small one).

* ``index(library, folder)`` runs ``audiosim index``;
* ``query_each(library, files, level=…, k=…)`` runs one ``audiosim query --each --json`` for all files;
* ``cross_source_precision(results, labels)``: the share of same-class files among the 10 nearest results
  from another source, per query, with per-class means;
* ``baseline_vectors(files)``: the textbook recipe beside it (librosa MFCC mean + standard deviation,
  each coefficient standardised over the corpus);
* ``distinct_recordings(files)``: one file per recording (no velocity layers of the same hit);
* ``make_excerpts(...)`` / ``localization(...)``: excerpts of long recordings with gain and noise, and how
  many are found in the right file within a tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIOSIM = [sys.executable, "-m", "audiosim"]


def run_cli(library: Path, *args: str, timeout: float = 3600) -> str:
    env = {**os.environ, "AUDIOSIM_LIBRARY": str(library)}
    proc = subprocess.run([*AUDIOSIM, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"audiosim {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def index(library: Path, *folders: Path) -> None:
    run_cli(library, "index", *map(str, folders))


def query_each(library: Path, files: Sequence[Path], *, level: str = "file", k: int = 60) -> dict[str, list]:
    """``{query path: [result dicts]}`` from one ``audiosim query --each`` process."""
    out = run_cli(library, "--json", "query", "--each", "--level", level, "-k", str(k), *map(str, files))
    results = {}
    for line in out.splitlines():
        if line.strip():
            doc = json.loads(line)
            results[os.path.abspath(doc["query"])] = doc["results"]
    return results


def cross_source_precision(results: dict[str, list], labels: dict[str, tuple[str, str]], *,
                           k: int = 10) -> tuple[float, dict[str, float]]:
    """Mean share of same-class hits among the first ``k`` results from another source.

    ``labels``: absolute path -> (class, source). Results from the query's own file or source are skipped.
    """
    scores: dict[str, list[float]] = {}
    for query, hits in results.items():
        cls, source = labels[query]
        others = [labels[h["path"]][0] for h in hits
                  if h["path"] != query and h["path"] in labels and labels[h["path"]][1] != source][:k]
        if others:
            scores.setdefault(cls, []).append(sum(c == cls for c in others) / len(others))
    every = [s for v in scores.values() for s in v]
    return float(np.mean(every)), {c: float(np.mean(v)) for c, v in sorted(scores.items())}


def baseline_vectors(files: Sequence[Path], *, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """librosa MFCC (20, at 22050 Hz) mean and standard deviation, standardised per coefficient: per file,
    or per window of ``window`` frames every ``window // 2`` (segments). Returns (vectors, file row)."""
    import librosa

    rows, owner = [], []
    for i, f in enumerate(files):
        y, sr = librosa.load(str(f), sr=22050, mono=True)
        mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
        n = mfcc.shape[1]
        width = n if window is None else min(window, n)
        starts = range(0, max(1, n - width + 1), max(1, width // 2)) if window else [0]
        for s in starts:
            block = mfcc[:, s:s + width]
            rows.append(np.concatenate([block.mean(1), block.std(1)]))
            owner.append(i)
    x = np.array(rows)
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-9), np.array(owner)


def nearest_results(vectors: tuple[np.ndarray, np.ndarray], files: Sequence[Path], queries: Sequence[Path],
                    *, k: int = 60) -> dict[str, list]:
    """Results in the shape of ``query_each`` from in-memory (vectors, file row) — for the baseline. A
    result's distance is its nearest to any of the query's own vectors."""
    x, owner = vectors
    paths = [os.path.abspath(f) for f in files]
    row = {p: i for i, p in enumerate(paths)}
    sq = (x * x).sum(1)
    out = {}
    for q in queries:
        mine = np.flatnonzero(owner == row[os.path.abspath(q)])
        d = (sq[:, None] - 2 * x @ x[mine].T + sq[mine][None, :]).min(axis=1)
        d[mine] = np.inf
        order = np.argsort(d)[:k]
        out[paths[row[os.path.abspath(q)]]] = [{"path": paths[owner[j]]} for j in order]
    return out


def map_purity(points: list[dict], asset_labels: dict[int, tuple[str, str]], queries: set[int], *,
               k: int = 10) -> float:
    """Cross-source k-NN class purity in the 2-D map, over the query assets."""
    ids = np.array([p["asset_id"] for p in points])
    xy = np.array([[p["x"], p["y"]] for p in points])
    cls = np.array([asset_labels[i][0] for i in ids])
    src = np.array([asset_labels[i][1] for i in ids])
    scores = []
    for r in np.flatnonzero(np.isin(ids, list(queries))):
        d = ((xy - xy[r]) ** 2).sum(1)
        d[src == src[r]] = np.inf
        nearest = np.argsort(d)[:k]
        scores.append(float((cls[nearest] == cls[r]).mean()))
    return float(np.mean(scores))


def distinct_recordings(files: dict) -> list[Path]:
    """One file per recording: velocity layers of one drum (which sound the same once the level is
    normalised) and the kits of one family that share samples collapse to a single file, so that an
    excerpt's audio exists in one place only. ``files``: path -> Label; sorted, deterministic."""
    import re

    chosen: dict[tuple[str, str], Path] = {}
    for path in sorted(files):
        key = (files[path].source, re.sub(r"_v\d+$", "", Path(path).stem))
        chosen.setdefault(key, Path(path))
    return sorted(chosen.values())


def make_excerpts(recordings: Sequence[Path], folder: Path, count: int, *, seed: int = 0,
                  seconds: tuple[float, float] = (1.5, 3.0), gain: tuple[float, float] = (0.5, 1.2),
                  snr_db: float = 30.0) -> list[tuple[Path, Path, float]]:
    """Excerpts of the recordings, louder or quieter and with white noise ``snr_db`` below the excerpt's
    own level; returns ``[(excerpt, recording, start seconds)]``. Starts avoid near-silent stretches."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    while len(out) < count:
        rec = recordings[int(rng.integers(len(recordings)))]
        x, rate = sf.read(str(rec), always_2d=True)
        x = x.mean(1)
        length = int(rng.uniform(*seconds) * rate)
        if len(x) <= length + rate // 10:
            continue
        start = int(rng.integers(0, len(x) - length))
        clip = x[start:start + length]
        rms = float(np.sqrt(np.mean(clip ** 2)))
        if rms < 1e-3:  # mostly silence: nothing a user would search with
            continue
        clip = clip * rng.uniform(*gain) + rng.normal(0, rms * 10 ** (-snr_db / 20), len(clip))
        path = folder / f"excerpt{len(out):03d}.wav"
        sf.write(str(path), np.clip(clip, -1, 1).astype(np.float32), rate, subtype="PCM_16")
        out.append((path, Path(os.path.abspath(rec)), start / rate))
    return out


def localization(library: Path, excerpts: list[tuple[Path, Path, float]], *,
                 tolerance: float = 0.25) -> dict:
    """How many excerpts find their recording as the first result, starting within ``tolerance``."""
    results = query_each(library, [e for e, _, _ in excerpts], level="segment", k=5)
    right, errors, wrong_file = 0, [], 0
    for excerpt, recording, start in excerpts:
        hits = results.get(os.path.abspath(excerpt), [])
        if not hits or hits[0]["path"] != str(recording):
            wrong_file += 1
            continue
        error = abs(hits[0]["start"] - start)
        errors.append(error)
        right += error <= tolerance
    return {"count": len(excerpts), "right": right, "rate": right / len(excerpts), "wrong_file": wrong_file,
            "median_error": float(np.median(errors)) if errors else None}
