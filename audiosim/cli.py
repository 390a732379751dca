"""The ``audiosim`` command line: the same core the GUI drives.

Read commands print one JSON document on stdout with ``--json``; progress and logs go to stderr.
Exit codes: 0 success, 1 error, 2 usage error, 3 index finished but some files failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from audiosim import __version__
from audiosim.cli_map import add_map_parser, cmd_map
from audiosim.cli_store import add_store_parser, cmd_store
from audiosim.errors import AudiosimError, internal_error_summary

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3

ASSET_JSON_FIELDS = ("id", "path", "name", "folder", "status", "error", "duration", "sample_rate", "channels",
                     "format", "subtype", "size", "mtime", "fingerprint", "avg_loudness", "peak_db", "centroid",
                     "n_segments")


GLOBAL_OPTIONS_HELP = """global options (before or after the command):
  --library DIR   library folder (default: $AUDIOSIM_LIBRARY or the platform's user data folder)
  --store SPEC    vector store of a new library, remembered by it: faiss (default), annoy,
                  milvus:///path/vectors.db (Milvus Lite), http://host:19530 (Milvus server),
                  postgresql://user@host/db (pgvector)
  --db URL        metadata database of a new library instead of DIR/library.db (e.g.
                  postgresql://user@host/db), remembered in DIR/library.json; default $AUDIOSIM_DB_URL
  --json          print one JSON document on stdout
  --debug         show tracebacks and debug logs"""


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes. On the subcommands they default to SUPPRESS, so a value given
    before the command is kept unless it is given again after it (the later one wins)."""
    def default(value):
        return argparse.SUPPRESS if suppress else value

    hide = argparse.SUPPRESS if suppress else None  # documented once, in the main help
    parser.add_argument("--library", metavar="DIR", default=default(None), help=hide or "library folder")
    parser.add_argument("--store", metavar="SPEC", default=default(None), help=hide or "vector store spec")
    parser.add_argument("--db", metavar="URL", default=default(None), help=hide or "metadata database URL")
    parser.add_argument("--json", action="store_true", default=default(False), help=hide or "JSON output")
    parser.add_argument("--debug", action="store_true", default=default(False), help=hide or "tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiosim", description="Find, hear and map similar sounds. With no command, opens the window.",
        epilog=GLOBAL_OPTIONS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"audiosim {__version__}")
    _add_global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    real_add_parser = sub.add_parser

    def add_parser(name, **kwargs):  # every command takes the global options too
        return real_add_parser(name, parents=[common, *kwargs.pop("parents", [])], **kwargs)

    sub.add_parser = add_parser
    sub.global_options = common  # for commands with actions of their own (`store copy`)

    p = sub.add_parser(
        "index", help="index files and folders (recursive, incremental)",
        epilog="examples:\n  audiosim index ~/Samples\n"
               "  audiosim index ~/Samples --cluster local:4          # a local Dask cluster of 4 processes\n"
               "  audiosim index /mnt/archive --cluster tcp://scheduler:8786   # workers see /mnt/archive too",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="analysis processes (default: cores)")
    p.add_argument("--cluster", default=None, metavar="ADDR",
                   help="analyse on Dask workers: local:N or a scheduler address tcp://host:8786 "
                        "(needs pip install 'audiosim[cluster]')")

    p = sub.add_parser("query", help="find the segments most similar to a file, a region or several files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--each", action="store_true", help="one query per FILE, JSON Lines output")
    p.add_argument("--start", type=float, metavar="S", help="region start in seconds")
    p.add_argument("--end", type=float, metavar="E", help="region end in seconds")
    p.add_argument("--not", dest="negatives", action="append", default=[], metavar="FILE",
                   help="a negative example (repeatable): less like this")
    p.add_argument("-k", type=int, default=50, metavar="N", help="number of results (default 50)")
    p.add_argument("--level", choices=("segment", "file"), default="segment")
    p.add_argument("--filter", metavar="EXPR", help="only assets matching this expression")
    p.add_argument("--exclude-self", action="store_true", help="leave the query's own file out")

    p = sub.add_parser("assets", help="list assets and their metadata")
    p.add_argument("--filter", metavar="EXPR", help="e.g. 'avg_loudness > -18 dB and duration < 2s'")

    sub.add_parser("stats", help="library size, vector store and metadata database")

    p = sub.add_parser("verify", help="check that the vector store and the metadata DB agree")
    p.add_argument("--repair", action="store_true", help="fix what is found")
    p.add_argument("--workers", type=int, default=None, metavar="N")

    p = sub.add_parser(
        "upgrade", help="bring a library made by an older audiosim up to date (resumable)",
        description="Re-derive every asset for this version's analysis: from the stored frames where they "
                    "suffice (no decoding), otherwise from the audio. `index` does this first by itself.",
        epilog="example: audiosim upgrade --workers 2", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=None, metavar="N", help="analysis processes (default: cores)")

    add_map_parser(sub)
    add_store_parser(sub)
    return parser


def run() -> int:
    """The program's entry point (``audiosim``, ``python -m audiosim``): :func:`main`, then nothing more for
    the garbage collector to walk at exit. Shutting the interpreter down otherwise walked every object
    SQLAlchemy and numpy made, 0.15–0.2 s after an ``index`` (a 10-min file, median of 5 runs side by
    side: 1.21 -> 1.09 s in all).
    ``main`` alone is for callers in a process that goes on."""
    code = main()
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # print file names that are not UTF-8 as their raw bytes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command is None:
            from audiosim.gui import launch

            return launch(library=args.library)
        return COMMANDS[args.command](args)
    except AudiosimError as exc:
        if args.debug:
            raise
        print(f"audiosim: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("audiosim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # before OSError, which it is: a closed pipe (`| head`) is not an error
        return EXIT_OK
    except OSError as exc:
        if args.debug:
            raise
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"audiosim: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, the traceback with --debug
        if args.debug:
            raise
        print(f"audiosim: internal error: {internal_error_summary(exc)} (run with --debug for details)",
              file=sys.stderr)
        return EXIT_ERROR


def _open(args, *, writable: bool = False):
    from audiosim.library.db import Library

    library = Library(args.library, writable=writable, store=args.store, db_url=args.db)
    for notice in library.notices:  # what opening did (completed, upgraded, rebuilt), one line each
        print(f"audiosim: {notice}", file=sys.stderr)
    return library


def _emit(args, document, human) -> None:
    if args.json:
        text = json.dumps(document, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a file name that is not UTF-8: JSON's \u escapes keep it exact
            text = json.dumps(document, ensure_ascii=True)
        sys.stdout.write(text + "\n")
    else:
        human(document)
    sys.stdout.flush()


# -- index ------------------------------------------------------------------------------------------------
def _one_thread_for_numerics() -> None:
    """One BLAS / OpenMP thread in this process, if it has not loaded them yet and the user did not choose.

    While indexing, this process only joins long files' parts and commits: its products are small, and
    the threads BLAS keeps for them spin between calls, taking a core from the workers (a 10-min file:
    2.2 -> 1.6 CPU-s in all; a 2 h file: 9.5 -> 8.5, no slower). The workers limit themselves anyway."""
    if "numpy" in sys.modules:  # called in a process that already uses numpy (a test): leave it be
        return
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")


def cmd_index(args) -> int:
    _one_thread_for_numerics()
    from audiosim.indexer import head_start, index_paths
    from audiosim.tasks import TqdmState

    if args.workers is not None and args.workers < 1:
        raise AudiosimError("--workers must be at least 1")
    if args.cluster:
        from audiosim.cluster import check_cluster_address

        check_cluster_address(args.cluster)  # a typo or a missing extra fails before the library opens
    state = TqdmState("indexing")
    previous = signal.getsignal(signal.SIGINT)

    def cancel(_signum, _frame):  # first Ctrl-C: stop cleanly, keep what is done
        state.cancel()
        signal.signal(signal.SIGINT, previous)
        print("\naudiosim: cancelling after the files in progress (Ctrl-C again to abort)", file=sys.stderr)

    signal.signal(signal.SIGINT, cancel)
    # A library about to be created: its workers start on the files while it is being created.
    head = None if args.cluster else head_start(args.library, args.db, args.paths, workers=args.workers)
    try:
        with _open(args, writable=True) as library:
            # What the imports and the opened library made lives as long as the run: kept out of the
            # garbage collections while the results come in (~0.04 s of 1,776 one-shots').
            gc.freeze()
            try:
                report = index_paths(library, args.paths, workers=args.workers, state=state,
                                     cluster=args.cluster, head_start=head)
            finally:
                gc.unfreeze()
    finally:
        if head is not None:
            head.close()  # a no-op once index_paths has taken the workers over and closed them
        state.close()
        signal.signal(signal.SIGINT, previous)
    for failure in report.failed:
        print(f"failed: {failure['path']}: {failure['error']}", file=sys.stderr)

    def human(doc):
        rate = f", {report.audio_seconds / report.seconds:.0f}x realtime" if report.seconds > 0 else ""
        print(f"indexed {doc['indexed']}, skipped {doc['skipped']}, removed {doc['removed']}, "
              f"failed {len(doc['failed'])}; {doc['segments']} segments in {doc['seconds']:.1f} s{rate}"
              + (" (cancelled)" if report.cancelled else ""))

    _emit(args, report.to_json(), human)
    if report.cancelled:
        return 130
    return EXIT_SOME_FAILED if report.failed else EXIT_OK


# -- query ------------------------------------------------------------------------------------------------
def cmd_query(args) -> int:
    from audiosim.search import Seed, search

    if (args.start is not None or args.end is not None) and args.level == "file":
        raise AudiosimError("--start/--end select a region; use --level segment")
    with _open(args) as library:
        def run(files: list[str]) -> list:
            seeds = [Seed(f, args.start, args.end) for f in files]
            seeds += [Seed(f, positive=False) for f in args.negatives]
            return search(library, seeds, k=args.k, level=args.level, filter_expression=args.filter,
                          exclude_self=args.exclude_self)

        if args.each:
            failed = False
            for f in args.files:
                try:
                    doc = {"query": f, "results": [h.to_json() for h in run([f])]}
                except AudiosimError as exc:
                    if args.debug:
                        raise
                    failed = True
                    doc = {"query": f, "error": str(exc), "results": []}
                    print(f"audiosim: error: {f}: {exc}", file=sys.stderr)
                _emit(args, doc, _print_results)
            return EXIT_ERROR if failed else EXIT_OK
        _emit(args, {"results": [h.to_json() for h in run(args.files)]}, _print_results)
    return EXIT_OK


def _print_results(doc) -> None:
    if "query" in doc:
        print(f"# {doc['query']}")
    if not doc["results"]:
        print("no results")
    for r in doc["results"]:
        print(f"{r['rank']:>4}  {r['distance']:8.4f}  {r['start']:8.2f}-{r['end']:<8.2f} {r['path']}")


# -- assets, stats, verify -----------------------------------------------------------------------------------
def asset_to_json(asset) -> dict:
    return {field: getattr(asset, field) for field in ASSET_JSON_FIELDS}


def cmd_assets(args) -> int:
    with _open(args) as library:
        docs = [asset_to_json(a) for a in library.assets(args.filter)]

    def human(rows):
        for a in rows:
            loud = "" if a["avg_loudness"] is None else f"{a['avg_loudness']:6.1f} LUFS"
            dur = "" if a["duration"] is None else f"{a['duration']:8.2f} s"
            extra = f"  ({a['error']})" if a["error"] else ""
            print(f"{a['id']:>6}  {a['status']:<8}{dur:>11} {loud:>12}  {a['path']}{extra}")
        print(f"{len(rows)} assets", file=sys.stderr)

    _emit(args, docs, human)
    return EXIT_OK


def cmd_stats(args) -> int:
    with _open(args) as library:
        doc = library.stats()
    _emit(args, doc, lambda d: print("\n".join(f"{k:>14}: {v}" for k, v in d.items())))
    return EXIT_OK


def cmd_verify(args) -> int:
    from audiosim.library.verify import verify

    with _open(args, writable=args.repair) as library:
        doc = verify(library, repair=args.repair, workers=args.workers)

    def human(d):
        for p in d.get("found", []) if d["ok"] else d["problems"]:
            print(f"{'repaired' if d['ok'] else 'problem'}: {p['message']}")
        print("ok" if d["ok"] else f"{len(d['problems'])} problems (run `audiosim verify --repair`)")

    _emit(args, doc, human)
    return EXIT_OK if doc["ok"] else EXIT_ERROR


def cmd_upgrade(args) -> int:
    from audiosim.library.upgrade import upgrade_library
    from audiosim.tasks import TqdmState

    state = TqdmState("upgrading")
    try:
        with _open(args, writable=True) as library:
            report = upgrade_library(library, workers=args.workers, state=state)
    finally:
        state.close()
    for failure in report.failed:
        print(f"failed: {failure['path']}: {failure['error']}", file=sys.stderr)
    for path in report.missing:
        print(f"not on disk, kept as it was until it is back: {path}", file=sys.stderr)

    def human(doc):
        print(f"upgraded {doc['from_frames']} from stored frames, {doc['decoded']} from audio; "
              f"{len(doc['missing'])} not on disk, {len(doc['failed'])} failed, in {doc['seconds']:.1f} s")

    _emit(args, report.to_json(), human)
    return EXIT_SOME_FAILED if report.failed or report.missing else EXIT_OK


COMMANDS = {"index": cmd_index, "query": cmd_query, "assets": cmd_assets, "stats": cmd_stats,
            "verify": cmd_verify, "map": cmd_map, "upgrade": cmd_upgrade, "store": cmd_store}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
