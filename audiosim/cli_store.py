"""``audiosim store copy --to SPEC`` and ``audiosim store rebuild``: move or rebuild a library's vectors."""

from __future__ import annotations

import argparse


def add_store_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("store", help="move the vectors to another store, or rebuild them from the DB")
    actions = p.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    common = [subparsers.global_options] if hasattr(subparsers, "global_options") else []
    copy = actions.add_parser("copy", parents=common,
                              help="copy every vector to another store and switch the library to it")
    copy.add_argument("--to", required=True, metavar="SPEC",
                      help="faiss, annoy, milvus:///path/vectors.db, http://host:19530 or postgresql://...")
    actions.add_parser("rebuild", parents=common, help="empty the store and refill it from the embeddings in the DB")
    return p


def cmd_store(args) -> int:
    from audiosim.cli import EXIT_OK, _emit
    from audiosim.library.store_ops import copy_store, rebuild_store
    from audiosim.tasks import TqdmState

    store = args.store
    args.store = None  # --store names the library's store: copy --to names the new one
    with _open_writable(args, store) as library:
        if args.store_action == "copy":
            state = TqdmState("copying vectors", unit="vector")
            try:
                doc = copy_store(library, args.to, state=state)
            finally:
                state.close()
            _emit(args, doc, lambda d: print(f"copied {sum(d['copied'].values())} vectors from {d['from']} "
                                             f"to {d['to']}; the library now uses {d['to']}"))
        else:
            doc = rebuild_store(library)
            _emit(args, doc, lambda d: print(f"rebuilt {sum(d['rebuilt'].values())} vectors in {d['store']}"))
    return EXIT_OK


def _open_writable(args, store: str | None):
    from audiosim.library.db import Library

    return Library(args.library, writable=True, store=store, db_url=args.db)
