"""Throughput of indexing on a local Dask cluster against the local worker pool, on the same machine.

    .venv/bin/python bench/cluster_throughput.py [--files 1000] [--min-seconds 0.2] [--max-seconds 0.6]
                                                 [--rounds 3] [--workers 1,2] [--json]

Generates ``--files`` short one-shots (default 0.2–0.6 s, ``tests.corpus.make_oneshots``) once, then indexes them
into a fresh library with the local pool of N processes and with ``--cluster local:N``, for each N in
``--workers``. The machine may be shared, so the configurations are interleaved: each round runs every one of
them once, in the opposite order to the round before, and the figures are medians over rounds — the ratio
cluster/pool of each round is taken within that round, side by side.

Each run is one ``index_paths`` call in a fresh process (as ``audiosim index`` runs; imports not timed), so
cluster times include starting and stopping the cluster; the start is also timed on its own (once per round),
which gives the per-file scheduler overhead ``(cluster seconds - cluster start - pool seconds) / files``.
``--remote`` adds a ``tcp://`` configuration: a ``dask scheduler`` and N ``dask worker`` processes started by
this script (their start is not timed: they run before and after).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))



def _run(corpus: Path, lib: Path, **kwargs) -> tuple[float, int, float]:
    """One ``index_paths`` call in a fresh process, as ``audiosim index`` runs (workers forked from a process
    that has not run anything yet): the call's own seconds (imports excluded), the files indexed, and the CPU
    seconds of the whole process tree (imports included: less noisy than wall time on a shared machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, __file__, "--one", str(corpus), str(lib), json.dumps(kwargs)],
                         check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    doc = json.loads(out.splitlines()[-1])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return doc["seconds"], doc["indexed"], cpu


def _one(corpus: str, lib: str, kwargs: str) -> None:
    from audiosim.indexer import index_paths
    from audiosim.library.db import Library

    with Library(Path(lib), writable=True) as library:
        started = time.perf_counter()
        report = index_paths(library, [corpus], **json.loads(kwargs))
        seconds = time.perf_counter() - started
    assert not report.failed, report.failed[:3]
    print(json.dumps({"seconds": seconds, "indexed": report.indexed}))


def _cluster_start_seconds(workers: int) -> tuple[float, float]:
    """Importing dask.distributed, then starting (and stopping) a ``local:N`` cluster with the analysis set up,
    in a fresh process: (seconds in all, of which importing)."""
    out = subprocess.run([sys.executable, __file__, "--start", str(workers)],
                         check=True, capture_output=True, text=True).stdout
    doc = json.loads(out.splitlines()[-1])
    return doc["seconds"], doc["import_seconds"]


def _start(workers: int) -> None:
    import audiosim.indexer  # noqa: F401 - imported before an index_paths call is timed
    from audiosim.config import AnalysisParams

    started = time.perf_counter()
    from audiosim.cluster import _ClusterPool  # imports dask.distributed

    imported = time.perf_counter()
    pool = _ClusterPool(f"local:{workers}", AnalysisParams())
    pool._client.wait_for_workers(workers)
    pool.close(cancelled=False)
    print(json.dumps({"seconds": time.perf_counter() - started, "import_seconds": imported - started}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-seconds", type=float, default=0.2, help="shortest file")
    parser.add_argument("--max-seconds", type=float, default=0.6, help="longest file")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians are reported)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2")
    parser.add_argument("--remote", action="store_true",
                        help="also a real dask scheduler + workers over tcp:// (started here)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # internal: one run in this process
    parser.add_argument("--start", type=int, help=argparse.SUPPRESS)  # internal: time a cluster start
    args = parser.parse_args()
    if args.one:
        return _one(*args.one)
    if args.start:
        return _start(args.start)
    counts = [int(n) for n in args.workers.split(",")]
    configs = []
    for n in counts:
        configs += [(f"pool:{n}", {"workers": n}), (f"local:{n}", {"cluster": f"local:{n}"})]
    remotes = []
    if args.remote:
        from tests.dask_processes import DaskProcesses

        for n in counts:
            remote = DaskProcesses(workers=n)
            remotes.append(remote)
            configs.append((f"tcp:{n}", {"cluster": remote.address}))
    try:
        results = _measure(args, configs, counts)
    finally:
        for remote in remotes:
            remote.stop()
    if args.json:
        print(json.dumps({"files": args.files, "rounds": args.rounds, "results": results}, indent=2))
        return
    for name, r in results.items():
        print(f"{name:8s} {r['seconds']:7.2f} s  {r['files_per_second']:6.1f} files/s  "
              f"cpu {r['cpu_seconds']:6.2f} s  (rounds: "
              + ", ".join(f"{s:.2f}" for s in r["rounds"]) + ")")
    for n in counts:
        c = results[f"local:{n}"]
        print(f"local:{n} vs pool:{n}: {c['overhead_percent']:+.1f} % overall (median of per-round ratios; "
              f"{c['overhead_percent_after_start']:+.1f} % after a {c['start_seconds']:.2f} s cluster start, "
              f"{c['of_which_import_seconds']:.2f} s of it importing dask.distributed), "
              f"{c['scheduler_ms_per_file']:.2f} ms per file; CPU of the process tree "
              f"{c['cpu_overhead_percent']:+.1f} %")
        if f"tcp:{n}" in results:
            t = results[f"tcp:{n}"]
            print(f"tcp:{n} vs pool:{n}: {t['overhead_percent']:+.1f} % (workers already running: their CPU is not "
                  f"counted), {t['scheduler_ms_per_file']:.2f} ms per file")
    if len(counts) > 1:
        a, b = counts[0], counts[-1]
        speedup = {kind: results[f"{kind}:{a}"]["seconds"] / results[f"{kind}:{b}"]["seconds"]
                   for kind in ("pool", "local", "tcp") if f"{kind}:{b}" in results}
        print(f"scaling {a}→{b} workers: " + ", ".join(f"{kind} x{x:.2f}" for kind, x in speedup.items()))


def _measure(args, configs, counts) -> dict[str, dict]:
    seconds: dict[str, list[float]] = {name: [] for name, _ in configs}
    cpu: dict[str, list[float]] = {name: [] for name, _ in configs}
    starts: dict[int, list[float]] = {n: [] for n in counts}
    import_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="audiosim-cluster-bench-") as tmp:
        from tests.corpus import make_oneshots

        corpus = Path(tmp) / "corpus"
        make_oneshots(corpus, args.files, seed=args.seed, min_seconds=args.min_seconds,
                      max_seconds=args.max_seconds)
        for round_ in range(args.rounds):
            order = configs if round_ % 2 == 0 else configs[::-1]
            for name, kwargs in order:
                lib = Path(tmp) / f"lib-{name.replace(':', '-')}-{round_}"
                took, indexed, cpu_seconds = _run(corpus, lib, **kwargs)
                assert indexed == args.files, (name, indexed)
                seconds[name].append(took)
                cpu[name].append(cpu_seconds)
                if not args.json:
                    print(f"  round {round_ + 1} {name:8s} {took:7.2f} s  cpu {cpu_seconds:7.2f} s", flush=True)
            for n in counts:
                start, imports = _cluster_start_seconds(n)
                starts[n].append(start)
                import_seconds.append(imports)
    results: dict[str, dict] = {}
    for name, values in seconds.items():
        median = statistics.median(values)
        results[name] = {"seconds": round(median, 2), "files_per_second": round(args.files / median, 1),
                         "rounds": [round(v, 2) for v in values], "cpu_seconds": round(statistics.median(cpu[name]), 2)}
    for n in counts:
        pool = seconds[f"pool:{n}"]
        for kind in ("local", "tcp"):
            if f"{kind}:{n}" not in seconds:
                continue
            other = seconds[f"{kind}:{n}"]
            entry = results[f"{kind}:{n}"]
            entry["overhead_percent"] = round(100 * (statistics.median(c / p for c, p in zip(other, pool)) - 1), 1)
            entry["cpu_overhead_percent"] = round(
                100 * (statistics.median(c / p for c, p in zip(cpu[f"{kind}:{n}"], cpu[f"pool:{n}"])) - 1), 1)
            if kind == "local":
                start = statistics.median(starts[n])
                entry["start_seconds"] = round(start, 2)
                entry["of_which_import_seconds"] = round(statistics.median(import_seconds), 2)
                entry["overhead_percent_after_start"] = round(
                    100 * (statistics.median((c - s) / p for c, s, p in zip(other, starts[n], pool)) - 1), 1)
                entry["scheduler_ms_per_file"] = round(
                    1000 * statistics.median(c - s - p for c, s, p in zip(other, starts[n], pool)) / args.files, 2)
            else:
                entry["scheduler_ms_per_file"] = round(
                    1000 * statistics.median(c - p for c, p in zip(other, pool)) / args.files, 2)
    return results


if __name__ == "__main__":
    main()
