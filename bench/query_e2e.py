"""End-to-end query latency and recall@50 at 10k / 100k / 1M segments, through ``audiosim.search.search``.

    .venv/bin/python bench/query_e2e.py --base LIBRARY [--sizes 10000 100000 1000000] [--queries 200]
                                        [--cache DIR] [--json]

``LIBRARY`` is a library of real sounds indexed by the CLI (``bench/suite.py`` builds one from the real
drum one-shots of ``tests/real_sounds.py``). For each size the library is copied and grown to that many
segments with *clones* of its real assets: each clone is a copy of a real asset's row (same duration,
segment times and frame file, another path) whose segment vectors are the original's plus Gaussian noise
of a third of the median distance to the 10th nearest real segment, inserted through the DB (SQLAlchemy core, explicit
ids) and the library's own vector store (one ``add``: Faiss exact below 100k, IVF above, as in use).
With ``--cache DIR`` the grown libraries are kept in ``DIR/lib<size>`` and reused by the next run (they
are only read): the same libraries for runs of two versions of the code, side by side.

Then, in the same process, with the library reopened read-only as the app and the CLI open it:

* ``open + first query``  open the library and answer one query (the store file is read);
* ``p50 / p99``  ``search(library, [Seed(path)], k=50)`` for ``--queries`` real files of the library
  (stored frames → window embeddings → store search → segment rows → votes for alignments → asset rows →
  alignment refinement → collapse of overlapping hits): what the app and ``audiosim query`` do; ``cpu``:
  the process's CPU time per query (``time.process_time``), steadier than wall time on a shared machine;
* ``recall@50``  the same queries with the segment store replaced by exact search over all vectors: the
  share of the exact run's 50 hits matched by a hit at least as near (as the store's nprobe tuning
  counts: the clones make many near-ties); ``same_hits_at_50``: the share of the very same (asset,
  segment) hits;
* ``store p50``  the store's ``search`` alone for the same query vectors (to tell the parts apart);
* ``io p50 / p99``  the *vector + metadata path*: each query's whole time minus the time spent in the
  alignment refinement on stored frames (``search._refine``; an asset join inside it is not refinement
  and stays in), i.e. the seed's embedding, the store search, the segment rows, the votes, the asset
  rows and the collapse into hits. The refinement re-embeds candidate alignments from their stored frames
  and is part of the ranking; ``io_cpu``: the same in CPU time; ``stages_p50_ms`` splits the time further
  where the code has those parts;
* memory: resident growth of a fresh process from before opening the library to after 20 queries, per
  segment;
  disk: DB + vector files per segment (the clones share their originals' frame files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402

from audiosim.library.db import Library  # noqa: E402
from audiosim.library.models import STATUS_INDEXED, Asset, Segment  # noqa: E402

CHUNK = 50_000


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def grow(folder: Path, target: int, seed: int = 0) -> dict:
    """Add clones of the real assets until the library holds ``target`` segments."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with Library(folder, writable=True) as lib:
        with lib.Session() as s:
            assets = s.execute(select(Asset).where(Asset.status == STATUS_INDEXED)).scalars().all()
            segs = s.execute(select(Segment.id, Segment.asset_id, Segment.start, Segment.end,
                                    Segment.embedding).order_by(Segment.id)).all()
            next_asset = int(s.scalar(select(func.max(Asset.id)))) + 1
            next_seg = int(s.scalar(select(func.max(Segment.id)))) + 1
        dim = lib.dim
        by_asset: dict[int, list] = {}
        for r in segs:
            by_asset.setdefault(r.asset_id, []).append(r)
        real = [a for a in assets if a.id in by_asset]
        real_vecs = np.stack([np.frombuffer(r.embedding, np.float32) for r in segs])
        real_ids = np.array([r.id for r in segs], np.int64)
        # noise: a third of the median distance from a real segment to its 10th nearest real segment (the
        # nearest is often a twin: the embedding ignores level, so a kit's velocity layers nearly coincide,
        # and clones as close as twins would make the benchmark a test of ties)
        import faiss

        d, _ = faiss.knn(real_vecs, real_vecs, 11)
        sigma = float(np.median(np.sqrt(np.maximum(d[:, 10], 0)))) / 3 / np.sqrt(dim)
        columns = [c.name for c in Asset.__table__.columns if c.name not in ("id", "path", "name")]
        need = target - len(segs)
        asset_rows, seg_rows, seg_ids, seg_vecs, file_ids, file_vecs = [], [], [], [], [], []
        made = 0
        clone = 0
        while made < need:
            a = real[rng.integers(len(real))]
            rows = by_asset[a.id][: need - made]
            aid = next_asset
            next_asset += 1
            row = {c: getattr(a, c) for c in columns}
            row.update(id=aid, path=f"/synthetic/clone{clone:07d}/{a.name}", name=a.name,
                       folder=f"/synthetic/clone{clone:07d}", n_segments=len(rows))
            if a.embedding is not None:
                fv = np.frombuffer(a.embedding, np.float32) + rng.normal(0, sigma, dim).astype(np.float32)
                row["embedding"] = fv.tobytes()
                file_ids.append(aid)
                file_vecs.append(fv)
            asset_rows.append(row)
            for r in rows:
                v = (np.frombuffer(r.embedding, np.float32) + rng.normal(0, sigma, dim)).astype(np.float32)
                seg_rows.append({"id": next_seg, "asset_id": aid, "start": r.start, "end": r.end,
                                 "embedding": v.tobytes()})
                seg_ids.append(next_seg)
                seg_vecs.append(v)
                next_seg += 1
            made += len(rows)
            clone += 1
        t_gen = time.perf_counter() - t0
        with lib.engine.begin() as conn:
            for i in range(0, len(asset_rows), CHUNK):
                conn.execute(insert(Asset.__table__), asset_rows[i:i + CHUNK])
            for i in range(0, len(seg_rows), CHUNK):
                conn.execute(insert(Segment.__table__), seg_rows[i:i + CHUNK])
        t_db = time.perf_counter() - t0 - t_gen
        all_ids = np.concatenate([real_ids, np.asarray(seg_ids, np.int64)])
        all_vecs = np.concatenate([real_vecs, np.asarray(seg_vecs, np.float32).reshape(-1, dim)])
        del seg_rows, seg_vecs, asset_rows
        store = lib.store("segments")
        store.add(all_ids[len(real_ids):], all_vecs[len(real_ids):])
        if file_ids:
            lib.store("files").add(np.asarray(file_ids, np.int64), np.stack(file_vecs))
        lib.save_stores()
        description = store.description
    t_store = time.perf_counter() - t0 - t_gen - t_db
    return {"ids": all_ids, "vectors": all_vecs, "real_assets": [a.path for a in real],
            "clones": clone, "sigma": sigma, "store": description,
            "build": {"generate": t_gen, "db": t_db, "store": t_store}}


class ExactSegments:
    """Stand-in for the segment store: exact search over every vector (the reference for recall)."""

    def __init__(self, store, ids: np.ndarray, vectors: np.ndarray) -> None:
        import faiss

        self._store, self._ids = store, ids
        self._index = faiss.IndexFlatL2(vectors.shape[1])
        self._index.add(vectors)

    def search(self, queries, k, *, allow_ids=None):
        if allow_ids is not None:
            return self._store.search(queries, k, allow_ids=allow_ids)
        d, rows = self._index.search(np.ascontiguousarray(queries, np.float32), k)
        ids = np.where(rows >= 0, self._ids[np.maximum(rows, 0)], -1)
        return np.sqrt(np.maximum(d, 0)).astype(np.float32), ids

    def __getattr__(self, name):
        return getattr(self._store, name)


_MEMORY_PROBE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from audiosim import search as S
from audiosim.library.db import Library
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
paths = json.loads(sys.argv[3])
S.search  # imported: numpy, faiss, SQLAlchemy are in before the first figure
import faiss  # noqa: F401
before = rss()
lib = Library(sys.argv[2])
for p in paths:
    S.search(lib, [S.Seed(p)], k=50)
print(json.dumps({"before": before, "after": rss()}))
"""


def resident_growth(folder: Path, paths: list[str]) -> int:
    """Resident memory a fresh process gains by opening the library and answering ``paths`` queries."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(ROOT), str(folder), json.dumps(paths)],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["after"] - r["before"]


IO_STAGES = ("seed", "store", "segment_rows", "votes", "asset_rows", "hits")


class _time_stages:
    """Wrap the parts of ``search`` so each query's time splits into: the seed's frames and embedding
    (``seed``), the store search, the segment-row and asset-row joins, the votes for alignments (``votes``),
    collapsing into hits (``hits``, its asset join counted under ``asset_rows``) and the alignment
    refinement on stored frames (``refine``, without an asset join inside it). A part the code does not
    have (by that name) is not timed: the bench also runs on older versions of ``search``, for figures
    side by side."""

    def __init__(self, S, lib, spent: dict) -> None:
        self.saved = []

        def wrap(owner, name, stage, exclude=()):
            if not hasattr(owner, name):
                return
            original = getattr(owner, name)

            def timed(*args, **kwargs):
                before = {e: spent.get(e, 0.0) for e in exclude}
                before_cpu = {e: spent.get(e + ":cpu", 0.0) for e in exclude}
                t, c = time.perf_counter(), time.process_time()
                try:
                    return original(*args, **kwargs)
                finally:
                    inner = sum(spent.get(e, 0.0) - before[e] for e in exclude)
                    inner_cpu = sum(spent.get(e + ":cpu", 0.0) - before_cpu[e] for e in exclude)
                    spent[stage] = spent.get(stage, 0.0) + time.perf_counter() - t - inner
                    spent[stage + ":cpu"] = spent.get(stage + ":cpu", 0.0) + time.process_time() - c - inner_cpu

            setattr(owner, name, timed)
            self.saved.append((owner, name, original))

        store = lib.store("segments")
        wrap(S, "_seed_features", "seed")
        wrap(store, "search", "store")
        wrap(S, "_segment_rows", "segment_rows")
        wrap(S, "_alignments", "votes")  # main: per asset; since: all of them (with the segment rows)
        wrap(S, "_assets", "asset_rows")  # before 2026-12-07
        wrap(lib, "indexed_asset_rows", "asset_rows")
        wrap(S, "_refine", "refine", exclude=("asset_rows",))
        wrap(S, "_to_hits", "hits", exclude=("asset_rows",))

    def undo(self) -> None:
        for owner, name, original in reversed(self.saved):
            if isinstance(owner, type) or hasattr(owner, "__file__"):
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # an instance attribute shadowing the method


def _key(hit) -> tuple:
    return hit.asset_id, hit.segment_id if hit.segment_id is not None else round(hit.start, 2)


def grown_library(base: Path, size: int, work: Path, cache: Path | None) -> tuple[Path, dict]:
    """The base library grown to ``size`` segments: made afresh in ``work``, or taken from / kept in
    ``cache`` (with the vectors the exact reference searches)."""
    folder = (cache or work) / f"lib{size}"
    saved = folder / "grown.npz"
    if cache is not None and saved.exists():
        with np.load(saved) as f:
            grown = {"ids": f["ids"], "vectors": f["vectors"]}
        grown.update(json.loads((folder / "grown.json").read_text()))
        return folder, grown
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base, folder, ignore=shutil.ignore_patterns("*.lock", "*-wal", "*-shm"))
    grown = grow(folder, size)
    if cache is not None:
        np.savez(folder / "grown.tmp.npz", ids=grown["ids"], vectors=grown["vectors"])
        (folder / "grown.json").write_text(json.dumps({k: v for k, v in grown.items()
                                                       if k not in ("ids", "vectors")}))
        os.replace(folder / "grown.tmp.npz", saved)
    return folder, grown


def run(base: Path, size: int, work: Path, queries: int, cache: Path | None = None) -> dict:
    from audiosim import search as S

    folder, grown = grown_library(base, size, work, cache)
    rng = np.random.default_rng(size)
    paths = [grown["real_assets"][i] for i in rng.integers(len(grown["real_assets"]), size=queries)]
    row: dict = {"segments": int(len(grown["ids"])), "store": grown["store"], "build": grown["build"]}
    row["memory_bytes_per_segment"] = resident_growth(folder, paths[:20]) / row["segments"]
    t = time.perf_counter()
    lib = Library(folder)
    S.search(lib, [S.Seed(paths[0])], k=50)
    row["open_first_query_ms"] = (time.perf_counter() - t) * 1000
    times, cpu, results, stages = [], [], [], []
    spent: dict[str, float] = {}
    timed = _time_stages(S, lib, spent)
    for p in paths:
        spent.clear()
        c = time.process_time()
        t = time.perf_counter()
        results.append(S.search(lib, [S.Seed(p)], k=50))
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        stages.append(dict(spent))
    timed.undo()
    io = [t - st.get("refine", 0.0) for t, st in zip(times, stages)]
    io_cpu = [c - st.get("refine:cpu", 0.0) for c, st in zip(cpu, stages)]
    row["io_p50_ms"] = float(np.percentile(io, 50) * 1000)
    row["io_p99_ms"] = float(np.percentile(io, 99) * 1000)
    row["io_cpu_p50_ms"] = float(np.percentile(io_cpu, 50) * 1000)
    row["io_cpu_p99_ms"] = float(np.percentile(io_cpu, 99) * 1000)
    row["stages_p50_ms"] = {name: float(np.percentile([st.get(name, 0.0) for st in stages], 50) * 1000)
                            for name in (*IO_STAGES, "refine")}
    row["p50_ms"] = float(np.percentile(times, 50) * 1000)
    row["p99_ms"] = float(np.percentile(times, 99) * 1000)
    row["mean_ms"] = float(np.mean(times) * 1000)
    row["cpu_p50_ms"] = float(np.percentile(cpu, 50) * 1000)
    row["cpu_mean_ms"] = float(np.mean(cpu) * 1000)
    # The store alone, for the same query vectors (the single-window query of a one-shot is its windows).
    store = lib.store("segments")
    qv = [S._seed_features(lib, S.Seed(p)).vectors[: S.MAX_QUERY_WINDOWS] for p in paths[:50]]
    st = []
    for v in qv:
        t = time.perf_counter()
        store.search(v, 4 * 50 + 16)
        st.append(time.perf_counter() - t)
    row["store_p50_ms"] = float(np.percentile(st, 50) * 1000)
    lib._stores["segments"] = ExactSegments(store, grown["ids"], grown["vectors"])
    recalls, same = [], []
    for p, got in zip(paths, results):
        exact = S.search(lib, [S.Seed(p)], k=50)
        want = {_key(h) for h in exact}
        same.append(len(want & {_key(h) for h in got}) / max(1, len(want)))
        # As the store's own tuning counts: a hit as near as the exact run's last one is not a miss (ties).
        worst = max((h.distance for h in exact), default=np.inf) * (1 + 1e-4) + 1e-6
        recalls.append(min(len(exact), sum(h.distance <= worst for h in got)) / max(1, len(exact)))
    lib.close()
    row["recall_at_50"] = float(np.mean(recalls))
    row["recall_at_50_min"] = float(np.min(recalls))
    row["same_hits_at_50"] = float(np.mean(same))
    db = sum(_size(p) for p in folder.glob("library.db*"))
    vectors = _size(folder / "vectors")
    row["disk_bytes_per_segment"] = {"db": db / row["segments"], "vectors": vectors / row["segments"]}
    if cache is None:
        shutil.rmtree(folder, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="a library of real sounds (read, not changed)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--work", type=Path, help="where the grown libraries go (default: a temp folder)")
    ap.add_argument("--cache", type=Path, help="keep the grown libraries here and reuse them")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="audiosim-query-", dir=args.work) as tmp:
        for size in args.sizes:
            print(f"query_e2e: {size} segments", file=sys.stderr, flush=True)
            rows.append(run(args.base, size, Path(tmp), args.queries, args.cache))
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "queries": args.queries, "rows": rows}, indent=2))
        return 0
    print(f"{'segments':>9} {'open+1st':>9} {'p50':>8} {'p99':>8} {'cpu p50':>8} {'io p50':>8} {'io p99':>8} "
          f"{'io cpu':>8} {'store p50':>9} {'recall@50':>9} {'RAM B/seg':>9} {'disk B/seg':>10}  store")
    for r in rows:
        disk = sum(r["disk_bytes_per_segment"].values())
        print(f"{r['segments']:>9} {r['open_first_query_ms']:>7.0f}ms {r['p50_ms']:>6.1f}ms {r['p99_ms']:>6.1f}ms "
              f"{r['cpu_p50_ms']:>6.1f}ms {r['io_p50_ms']:>6.1f}ms {r['io_p99_ms']:>6.1f}ms "
              f"{r['io_cpu_p50_ms']:>6.1f}ms "
              f"{r['store_p50_ms']:>7.2f}ms {r['recall_at_50']:>9.3f} {r['memory_bytes_per_segment']:>9.0f} "
              f"{disk:>10.0f}  {r['store']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
