"""Map timings: cold UMAP, warm restart after a min_dist change, and transform of added points.

    .venv/bin/python bench/map_timings.py [--sizes 2000 10000 50000] [--json]

Synthetic file vectors (12 Gaussian blobs, the library's embedding dimension) in a temporary library, so
the neighbour graph really comes from the vector store as in the app. For each size, one process and one
run (numba JIT paid once before timing, by ``warm_up``; its cost is printed):

* ``knn``        the store's kNN graph within the result set (k = 15, self included);
* ``cold``       first map: PCA placeholder + kNN + UMAP (spectral init), seeded;
* ``placeholder`` time to the first picture (PCA), reported by the same run;
* ``warm``       ``min_dist`` 0.1 → 0.3 with the previous layout as start (kNN from the cache);
* ``warm disp``  mean displacement of the warm map from the previous one, in units of the map's RMS
  spread, against a cold run with the new parameters (Procrustes-aligned): smaller is steadier;
* ``transform``  5% more points placed by the fitted model, no refit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audiosim import projection as P  # noqa: E402
from audiosim.library.db import Library  # noqa: E402
from audiosim.tasks import NullState  # noqa: E402
from tests.test_projection import make_vector_library  # noqa: E402


class _FirstPicture(NullState):
    def __init__(self) -> None:
        super().__init__()
        self.t0 = time.perf_counter()
        self.first: float | None = None

    def set_partial_result(self, result) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.t0


def _disp(a: np.ndarray, b: np.ndarray) -> float:
    spread = np.sqrt(np.mean(np.sum((b - b.mean(0)) ** 2, 1)))
    return float(np.mean(np.linalg.norm(a - b, axis=1)) / spread)


def run(size: int, folder: Path) -> dict:
    labels = make_vector_library(folder, size, clusters=12, spread=1.2, seed=size)
    row: dict = {"points": size}
    with Library(folder) as lib:
        rs_all = P.build_result_set(lib, level="file")
        keep = np.sort(np.random.default_rng(0).choice(size, int(size / 1.05), replace=False))
        rs = rs_all.subset(keep)
        store = lib.store("files")
        vectors = store.get(rs.ids)
        t = time.perf_counter()
        P._knn_graph(store, rs.ids, vectors, "euclidean", 15, 42)
        row["knn"] = time.perf_counter() - t
        cache = P.KnnCache()
        state = _FirstPicture()
        t = time.perf_counter()
        cold = P.compute_map(lib, rs, P.MapParams(), state=state, cache=cache)
        row["cold"] = time.perf_counter() - t
        row["placeholder"] = state.first
        params = P.MapParams(min_dist=0.3)
        t = time.perf_counter()
        warm = P.compute_map(lib, rs, params, previous=cold, cache=cache)
        row["warm"] = time.perf_counter() - t
        ref = P.compute_map(lib, rs, params, cache=cache)
        rot, scale, shift = P.procrustes(ref.coords.astype(float), cold.coords.astype(float))
        row["warm_disp"] = _disp(warm.coords, cold.coords)
        row["cold_disp"] = _disp(scale * ref.coords @ rot + shift, cold.coords)
        row["purity"] = P.pairwise_purity(warm.coords[:2000], labels[keep][:2000]) if size <= 2000 else None
        t = time.perf_counter()
        grown = P.compute_map(lib, rs_all, params, previous=warm, cache=cache)
        row["transform"] = time.perf_counter() - t
        assert grown.kind == "transform", grown.kind
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 50000])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t = time.perf_counter()
    P.warm_up()
    jit = time.perf_counter() - t
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            rows.append(run(size, Path(tmp) / f"lib{size}"))
    if args.json:
        print(json.dumps({"jit_warm_up": jit, "cores": os.cpu_count(), "rows": rows}))
        return 0
    print(f"numba JIT warm-up (once per process): {jit:.1f} s; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'points':>7} {'first pic':>9} {'knn':>6} {'cold':>7} {'warm':>7} {'transform':>9} "
          f"{'warm disp':>9} {'cold disp':>9}")
    for r in rows:
        print(f"{r['points']:>7} {r['placeholder']:>8.2f}s {r['knn']:>5.2f}s {r['cold']:>6.1f}s "
              f"{r['warm']:>6.1f}s {r['transform']:>8.2f}s {r['warm_disp']:>9.3f} {r['cold_disp']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
