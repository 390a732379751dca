"""Throughput of indexing on a local Dask cluster against the local worker pool, on the same machine.

    .venv/bin/python bench/cluster_throughput.py [--files 1000] [--min-seconds 0.2] [--max-seconds 0.6] [--json]

Generates ``--files`` short one-shots (default 0.2–0.6 s, ``tests.corpus.make_oneshots``) once, then indexes them into
a fresh library with each of: the local pool of 1 and 2 processes, and ``--cluster local:1`` / ``local:2``.
Cluster times include starting the cluster, which is also timed on its own, so the per-file scheduler overhead
is ``(cluster seconds - cluster start - pool seconds) / files`` for the same number of workers. Prints one
line per configuration and the overhead of ``local:2`` over the 2-process pool.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audiosim.indexer import index_paths
from audiosim.library.db import Library
from tests.corpus import make_oneshots


def _run(corpus: Path, lib: Path, **kwargs) -> tuple[float, int]:
    with Library(lib, writable=True) as library:
        started = time.perf_counter()
        report = index_paths(library, [corpus], **kwargs)
        seconds = time.perf_counter() - started
    assert not report.failed, report.failed[:3]
    return seconds, report.indexed


def _cluster_start_seconds(workers: int) -> float:
    from audiosim.cluster import _ClusterPool
    from audiosim.config import AnalysisParams

    started = time.perf_counter()
    pool = _ClusterPool(f"local:{workers}", AnalysisParams())
    pool._client.wait_for_workers(workers)
    seconds = time.perf_counter() - started
    pool.close(cancelled=False)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-seconds", type=float, default=0.2, help="shortest file")
    parser.add_argument("--max-seconds", type=float, default=0.6, help="longest file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audiosim-cluster-bench-") as tmp:
        corpus = Path(tmp) / "corpus"
        make_oneshots(corpus, args.files, seed=args.seed, min_seconds=args.min_seconds,
                      max_seconds=args.max_seconds)
        results: dict[str, dict] = {}
        for name, kwargs in (("pool:1", {"workers": 1}), ("pool:2", {"workers": 2}),
                             ("local:1", {"cluster": "local:1"}), ("local:2", {"cluster": "local:2"})):
            seconds, indexed = _run(corpus, Path(tmp) / f"lib-{name.replace(':', '-')}", **kwargs)
            results[name] = {"seconds": round(seconds, 2), "files_per_second": round(indexed / seconds, 1)}
            if not args.json:
                print(f"{name:8s} {seconds:7.2f} s  {indexed / seconds:6.1f} files/s", flush=True)
        for workers in (1, 2):
            start = _cluster_start_seconds(workers)
            cluster, pool = results[f"local:{workers}"], results[f"pool:{workers}"]
            cluster["start_seconds"] = round(start, 2)
            cluster["overhead_percent"] = round(100 * (cluster["seconds"] / pool["seconds"] - 1), 1)
            cluster["overhead_percent_after_start"] = round(
                100 * ((cluster["seconds"] - start) / pool["seconds"] - 1), 1)
            cluster["scheduler_ms_per_file"] = round(
                1000 * (cluster["seconds"] - start - pool["seconds"]) / args.files, 2)
    if args.json:
        print(json.dumps({"files": args.files, "results": results}, indent=2))
    else:
        for workers in (1, 2):
            c = results[f"local:{workers}"]
            print(f"local:{workers} vs pool:{workers}: {c['overhead_percent']:+.1f} % overall "
                  f"({c['overhead_percent_after_start']:+.1f} % after a {c['start_seconds']:.1f} s cluster start), "
                  f"{c['scheduler_ms_per_file']:.2f} ms per file")
        print(f"scaling 1→2 workers: pool x{results['pool:1']['seconds'] / results['pool:2']['seconds']:.2f}, "
              f"cluster x{results['local:1']['seconds'] / results['local:2']['seconds']:.2f}")


if __name__ == "__main__":
    main()
