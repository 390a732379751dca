"""Move a library's vectors to another store, or rebuild them from the metadata DB.

The DB stays the commit point: ``copy_store`` fills the new store first and only then records the new
spec in the DB, so a crash before that leaves the library on its old store (and a half-filled new one
that the next copy completes); after it, the library uses the new store and ``reconcile`` adds whatever
the old store lacked from the embeddings in the DB. The old store is left as it was.
"""

from __future__ import annotations

import numpy as np

from audiosim.errors import StoreError
from audiosim.library.db import Library
from audiosim.tasks import NullState, TaskState

COPY_CHUNK = 20_000
STORE_NAMES = ("segments", "files")


def copy_store(library: Library, to_spec: str, *, state: TaskState | None = None) -> dict:
    """Copy every vector to the store ``to_spec`` and make it the library's store; returns counts."""
    from audiosim.library.writer import LibraryWriter
    from audiosim.stores import parse_store_spec

    state = state or NullState()
    target_spec = parse_store_spec(to_spec)
    source_spec = library.store_spec
    if target_spec.text == source_spec.text:
        raise StoreError(f"the library already keeps its vectors in {target_spec.text}")
    expected = library.vector_ids()
    total = sum(len(ids) for ids in expected.values())
    done, copied = 0, {}
    for name in STORE_NAMES:
        source = library.store(name)
        with library.open_store_at(target_spec, name, create=True) as target:
            wanted = expected[name][source.contains(expected[name])]
            stale = np.setdiff1d(target.ids(), wanted, assume_unique=True)  # e.g. a half-done earlier copy
            if len(stale):
                target.remove(stale)
            for start in range(0, len(wanted), COPY_CHUNK):
                if state.cancelled:
                    raise StoreError("store copy cancelled; the library still uses " + source_spec.text)
                chunk = wanted[start:start + COPY_CHUNK]
                target.add(chunk, source.get(chunk))
                done += len(chunk)
                state.set_progress(done, total)
            target.save()
            copied[name] = int(len(wanted))
    library.set_store_spec(target_spec.text)  # the commit point
    filled = LibraryWriter(library).reconcile()  # vectors the old store lacked come from the DB
    return {"from": source_spec.text, "to": target_spec.text, "copied": copied, "reconciled": filled}


def rebuild_store(library: Library) -> dict:
    """Empty the library's store and refill it from the embeddings in the DB; returns counts."""
    from audiosim.library.writer import LibraryWriter

    for name in STORE_NAMES:
        library.discard_store(name)
    changes = LibraryWriter(library).reconcile()
    return {"store": library.store_spec.text,
            "rebuilt": {name: changes[f"{name}_missing_added"] for name in STORE_NAMES}}
