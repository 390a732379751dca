"""Exact vs ANN vector search in the Faiss store: build time, ms/query and recall@50, measured in one run.

    .venv/bin/python bench/store_recall.py [--sizes 10000 100000 300000] [--dim 80] [--queries 200]

The vectors are a clustered, correlated mixture (clusters of varied spread in a 16-dimensional latent
space, mapped linearly to ``dim`` dimensions plus a little isotropic noise) -- closer to audio embeddings
than isotropic noise, and harder for an IVF than well-separated blobs. Queries are fresh draws from the
same mixture (not in the store). Vectors are added in batches of 10 000, as the indexer would, so "build"
includes the switch to the IVF, its training and the nprobe measurement.

Rows:
  exact        ann_threshold above N: exhaustive search (the truth for recall)
  ivf@default  ann_threshold=100 000 (the default): what a user gets. At 300k this IVF was trained and
               tuned at 100k and has grown 3x since (it is retrained at 4x).
  ivf@N        ann_threshold=N: an IVF trained on all N vectors
ms/query is single queries one at a time (the GUI case); "batch" is 200 queries in one call, per query.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audiosim.stores.faiss_store import FaissStore

K = 50
BATCH = 10_000
DEFAULT_THRESHOLD = 100_000


class Mixture:
    """A fixed clustered distribution to draw stored vectors and queries from."""

    def __init__(self, dim: int, *, clusters: int = 2000, latent: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.centers = rng.standard_normal((clusters, latent)).astype(np.float32)
        self.spread = rng.uniform(0.15, 0.6, clusters).astype(np.float32)
        self.weights = rng.dirichlet(np.full(clusters, 0.5))  # some sounds are far more common
        self.mapping = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
        self.dim = dim

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        labels = rng.choice(len(self.centers), size=n, p=self.weights)
        z = (
            self.centers[labels]
            + rng.standard_normal((n, self.centers.shape[1]), dtype=np.float32) * (self.spread[labels, None])
        )
        x = z @ self.mapping + 0.05 * rng.standard_normal((n, self.dim), dtype=np.float32)
        return x.astype(np.float32)


def build(folder: Path, name: str, vectors: np.ndarray, threshold: int) -> tuple[FaissStore, float]:
    store = FaissStore(folder, name, vectors.shape[1], ann_threshold=threshold)
    started = time.perf_counter()
    for start in range(0, len(vectors), BATCH):
        stop = min(start + BATCH, len(vectors))
        store.add(np.arange(start, stop, dtype=np.int64), vectors[start:stop])
    return store, time.perf_counter() - started


def time_queries(store: FaissStore, queries: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(ms per single query, ms per query in one batch, ids of the batch search)."""
    store.search(queries[:5], K)  # warm up
    started = time.perf_counter()
    for q in queries:
        store.search(q[None, :], K)
    single = (time.perf_counter() - started) * 1000 / len(queries)
    started = time.perf_counter()
    _, ids = store.search(queries, K)
    batch = (time.perf_counter() - started) * 1000 / len(queries)
    return single, batch, ids


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f[f >= 0], t)) / K for f, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    parser.add_argument("--dim", type=int, default=80)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    mixture = Mixture(args.dim, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    queries = mixture.draw(args.queries, rng)
    data = mixture.draw(max(args.sizes), rng)

    header = (
        f"{'N':>8} {'store':<12} {'build s':>8} {'ms/query':>9} {'batch ms/q':>10} {'recall@50':>9}  index"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"dim {args.dim}, {args.queries} held-out queries, k={K}; {os.cpu_count()} CPUs, load {load:.1f}")
    print(header)
    print("-" * (len(header) + 40))
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            vectors = data[:n]
            exact, build_s = build(Path(tmp), f"exact{n}", vectors, threshold=n + 1)
            single, batch, truth = time_queries(exact, queries)
            print(
                f"{n:>8} {'exact':<12} {build_s:>8.2f} {single:>9.3f} {batch:>10.3f} {1.0:>9.3f}  {exact.description}"
            )
            exact.close()
            variants = [("ivf@default", DEFAULT_THRESHOLD)] if n >= DEFAULT_THRESHOLD else []
            if n != DEFAULT_THRESHOLD:
                variants.append((f"ivf@{n // 1000}k", n))
            for label, threshold in variants:
                store, build_s = build(Path(tmp), f"{label}{n}", vectors, threshold)
                single, batch, found = time_queries(store, queries)
                recall = recall_at_k(found, truth)
                print(
                    f"{n:>8} {label:<12} {build_s:>8.2f} {single:>9.3f} {batch:>10.3f} {recall:>9.3f}  "
                    f"{store.description}"
                )
                store.close()


if __name__ == "__main__":
    main()
