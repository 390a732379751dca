"""``audiosim map``: lay out a result set in 2-D (UMAP) and print asset → [x, y]; or open the map window.

Coordinates are computed on demand and never stored. Wired into :mod:`audiosim.cli` by::

    add_map_parser(sub)          # in build_parser()
    COMMANDS["map"] = cmd_map
"""

from __future__ import annotations

import argparse
import sys

# Kept here as literals so that `audiosim --help` does not import the projection module (tested equal).
METRIC_CHOICES = ("euclidean", "cosine", "correlation", "manhattan", "chebyshev")
DEFAULT_MAX_POINTS = 20_000


def add_map_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "map", help="map a result set in 2-D (UMAP): asset -> [x, y]; nothing is stored",
        description="Lay out a result set with UMAP over the stored vectors. The result set is the assets "
                    "matching --filter, the results of --similar-to, both (intersection), or the whole "
                    f"library (a random sample above {DEFAULT_MAX_POINTS:,} points unless --max-points).")
    p.add_argument("--filter", metavar="EXPR", help="only assets matching this expression")
    p.add_argument("--similar-to", metavar="FILE", help="the -k files/segments most similar to FILE")
    p.add_argument("-k", type=int, default=200, metavar="N", help="results of --similar-to (default 200)")
    p.add_argument("--level", choices=("file", "segment"), default="file",
                   help="one point per file (default) or per segment")
    p.add_argument("--n-neighbors", type=int, default=15, metavar="N",
                   help="UMAP neighbourhood size, 2-200 (default 15): larger shows more global structure")
    p.add_argument("--min-dist", type=float, default=0.1, metavar="F",
                   help="UMAP minimum distance, 0-1 (default 0.1): larger spreads clusters out")
    p.add_argument("--metric", choices=METRIC_CHOICES, default="euclidean",
                   help="distance between vectors (default euclidean, the one search uses)")
    p.add_argument("--seed", type=int, default=42, metavar="S",
                   help="random seed (default 42): the same seed and parameters give the same map")
    p.add_argument("--n-epochs", type=int, default=None, metavar="N", help="UMAP epochs (default: UMAP's)")
    p.add_argument("--max-points", type=int, default=None, metavar="N",
                   help="map a random sample of N points when the result set is larger")
    p.add_argument("--gui", action="store_true", help="open the map window instead of printing")
    return p


def cmd_map(args) -> int:
    from audiosim.cli import EXIT_OK, _emit, _open
    from audiosim.errors import AudiosimError

    if args.k < 1:
        raise AudiosimError("-k must be at least 1")
    if args.max_points is not None and args.max_points < 1:
        raise AudiosimError("--max-points must be at least 1")
    if args.gui:
        return _open_window(args)
    from audiosim.projection import MapParams, build_result_set, compute_map, describe_points
    from audiosim.tasks import TqdmState

    params = MapParams(level=args.level, n_neighbors=args.n_neighbors, min_dist=args.min_dist,
                       metric=args.metric, seed=args.seed, n_epochs=args.n_epochs).validate()
    with _open(args) as library:
        hits = _similar(library, args) if args.similar_to else None
        whole = not args.filter and hits is None
        max_points = args.max_points if args.max_points is not None else (DEFAULT_MAX_POINTS if whole else None)
        result_set = build_result_set(library, level=args.level, filter_expression=args.filter, hits=hits,
                                      max_points=max_points, sample_seed=args.seed)
        state = TqdmState("mapping", unit="epoch")
        try:
            result = compute_map(library, result_set, params, state=state)
        finally:
            state.close()
        table = describe_points(library, result_set) if not getattr(args, "json", False) else None
    document = result.to_json()
    for notice in document["notices"]:
        print(f"audiosim: {notice}", file=sys.stderr)

    def human(doc) -> None:
        for point, path in zip(doc["points"], table["path"]):
            where = "" if point["start"] is None else f"  {point['start']:.2f}-{point['end']:.2f}"
            print(f"{point['x']:9.3f} {point['y']:9.3f}  {path}{where}")
        print(f"{doc['count']} points ({doc['kind']})", file=sys.stderr)

    _emit(args, document, human)
    return EXIT_OK


def _similar(library, args) -> list:
    from audiosim.search import Seed, search

    return search(library, [Seed(args.similar_to)], k=args.k, level=args.level,
                  filter_expression=args.filter)


def _open_window(args) -> int:
    from pathlib import Path

    from audiosim.config import default_library_dir
    from audiosim.errors import AudiosimError
    from audiosim.library.db import Library

    folder = Path(args.library).expanduser() if args.library else default_library_dir()
    hits = None
    if args.similar_to:
        with Library(folder, store=args.store, db_url=args.db) as library:
            hits = _similar(library, args)
    try:
        from PySide6.QtWidgets import QApplication

        from audiosim.gui.explorer import ExplorerWindow
    except ImportError as exc:
        raise AudiosimError(f"the map window needs the GUI extras (pip install 'audiosim[gui]'): {exc}") from None
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = ExplorerWindow(folder)
    window.set_parameters(level=args.level, n_neighbors=args.n_neighbors, min_dist=args.min_dist,
                          metric=args.metric)
    window.show()
    window.show_result_set(filter_expression=args.filter, hits=hits)
    return app.exec()
