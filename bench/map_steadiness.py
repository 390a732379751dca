"""Map steadiness on real sounds: how far points move when the user changes a parameter or a filter.

    apt-get install sonic-pi-samples fluidsynth fluid-soundfont-gm     # once
    .venv/bin/python bench/map_steadiness.py [--root /tmp/audiosim-real] [--seeds 42 1 2] [--json]

The library is built once by ``bench/real_sound_library.py`` (sonic-pi samples + fluidsynth renders of
GM soundfonts, indexed with the CLI) and reused from ``--root``. At file and at segment level, for each
seed, a chain of 12 changes is applied to the map on screen, as a user would click through them:
min_dist, n_neighbors, metric, and a loudness filter that drops ~10 % of the assets and then adds them back.
For each change:

* ``warm``  displacement of the new map (warm-started from the one on screen) from the one on screen;
* ``cold``  the same for a cold layout of the new parameters (same seed, no previous map), aligned onto
  the one on screen by Procrustes (rotation, reflection, uniform scale, shift) — the best a cold relayout
  could look;
* ``cold, other seed``  the same for a cold layout with another seed: the "unrelated cold layout" the
  issue compared against;
* displacement is the mean distance moved by the points both maps share, in units of the old map's RMS
  spread; ``warm s`` / ``cold s`` are wall times of the layout (kNN graphs are cached, as in the app).

The table gives, per kind of change, the median and the worst warm/cold ratio and warm displacement, and
the median and worst warm time. Numba JIT is paid before timing (``warm_up``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audiosim import projection as P  # noqa: E402
from audiosim.library.db import Library  # noqa: E402

CHAIN: tuple[tuple[str, dict], ...] = (
    ("min_dist", {"min_dist": 0.3}), ("min_dist", {"min_dist": 0.6}), ("min_dist", {"min_dist": 0.05}),
    ("n_neighbors", {"n_neighbors": 30}), ("n_neighbors", {"n_neighbors": 8}),
    ("n_neighbors", {"n_neighbors": 15}),
    ("metric", {"metric": "cosine"}), ("metric", {"metric": "manhattan"}), ("metric", {"metric": "euclidean"}),
    ("filter -10%", {"filter": True}), ("filter +10%", {"filter": False}),
    ("min_dist", {"min_dist": 0.1}),
)


def displacement(new: np.ndarray, old: np.ndarray) -> float:
    spread = np.sqrt(np.mean(np.sum((old - old.mean(0)) ** 2, axis=1)))
    return float(np.mean(np.linalg.norm(new - old, axis=1)) / spread)


def aligned(coords: np.ndarray, target: np.ndarray) -> np.ndarray:
    rot, scale, shift = P.procrustes(coords.astype(float), target.astype(float))
    return scale * coords.astype(float) @ rot + shift


def quiet_tenth_filter(lib: Library) -> str:
    """A loudness filter that leaves out the quietest ~10 % of the assets (a filter a user would type)."""
    loudness = np.array([a.avg_loudness for a in lib.assets() if a.avg_loudness is not None])
    return f"avg_loudness > {np.quantile(loudness, 0.1):.2f}"


def run_chain(lib: Library, level: str, seed: int, expression: str) -> list[dict]:
    sets = {False: P.build_result_set(lib, level=level),
            True: P.build_result_set(lib, level=level, filter_expression=expression)}
    cache = P.KnnCache()
    params = P.MapParams(level=level, seed=seed)
    filtered = False
    shown = P.compute_map(lib, sets[filtered], params, cache=cache)
    rows = []
    for kind, change in CHAIN:
        if "filter" in change:
            filtered = change["filter"]
        else:
            params = P.MapParams(**{**params.to_json(), **change})
        rs = sets[filtered]
        t0 = time.perf_counter()
        warm = P.compute_map(lib, rs, params, previous=shown, cache=cache)
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cold = P.compute_map(lib, rs, params, cache=cache)
        cold_s = time.perf_counter() - t0
        other = P.compute_map(lib, rs, dataclasses.replace(params, seed=params.seed + 1000), cache=cache)
        _, old_rows, new_rows = np.intersect1d(shown.result_set.ids, rs.ids, return_indices=True)
        old = shown.coords[old_rows].astype(float)
        warm_disp = displacement(warm.coords[new_rows], old)
        cold_disp = displacement(aligned(cold.coords[new_rows], old), old)
        other_disp = displacement(aligned(other.coords[new_rows], old), old)
        rows.append({"level": level, "seed": seed, "change": kind, "points": len(rs), "how": warm.kind,
                     "anchored": warm.n_anchored, "warm": warm_disp, "cold": cold_disp, "cold_other_seed": other_disp,
                     "ratio": warm_disp / cold_disp, "warm_s": warm_s, "cold_s": cold_s})
        shown = warm
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    groups = [("all changes", rows)] + [(kind, [r for r in rows if r["change"] == kind])
                                       for kind in dict.fromkeys(k for k, _ in CHAIN)]
    for name, group in groups:
        ratio = np.array([r["ratio"] for r in group])
        warm = np.array([r["warm"] for r in group])
        cold = np.array([r["cold"] for r in group])
        secs = np.array([r["warm_s"] for r in group])
        out.append({"change": name, "n": len(group), "warm median": np.median(warm), "warm worst": warm.max(),
                    "cold median": np.median(cold),
                    "cold other seed median": np.median([r["cold_other_seed"] for r in group]),
                    "ratio median": np.median(ratio), "ratio worst": ratio.max(),
                    "warm s median": np.median(secs), "warm s worst": secs.max(),
                    "cold s median": np.median([r["cold_s"] for r in group])})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/audiosim-real"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    library = args.root / "library"
    if not library.exists():
        from bench.real_sound_library import build

        build(args.root)
    print(f"numba warm-up: {P.warm_up():.1f} s", file=sys.stderr)
    rows = []
    with Library(library) as lib:
        expression = quiet_tenth_filter(lib)
        for level in ("file", "segment"):
            for seed in args.seeds:
                rows += run_chain(lib, level, seed, expression)
    table = {level: summarise([r for r in rows if r["level"] == level]) for level in ("file", "segment")}
    if args.json:
        print(json.dumps({"filter": expression, "rows": rows, "summary": table}, indent=1, default=float))
        return
    print(f"real-sound library {library}; filter: {expression}; seeds {args.seeds}")
    for level, summary in table.items():
        points = sorted({r["points"] for r in rows if r["level"] == level})
        print(f"\n{level} level ({'/'.join(map(str, points))} points)")
        print("| change | n | warm disp median | warm disp worst | cold disp median | cold, other seed, median "
              "| warm/cold median "
              "| warm/cold worst | warm s median | warm s worst | cold s median |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for s in summary:
            print(f"| {s['change']} | {s['n']} | {s['warm median']:.3f} | {s['warm worst']:.3f} | "
                  f"{s['cold median']:.3f} | {s['cold other seed median']:.3f} | {s['ratio median']:.2f} | "
                  f"{s['ratio worst']:.2f} | "
                  f"{s['warm s median']:.2f} | {s['warm s worst']:.2f} | {s['cold s median']:.2f} |")


if __name__ == "__main__":
    main()
