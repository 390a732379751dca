"""Library chores the window runs in workers: create, list the indexed folders, remove folders.
Plain functions over the core (no Qt); writers are given a library opened ``writable=True`` for the job only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import func, or_, select

from audiosim.errors import LibraryIncompleteError
from audiosim.library.db import DB_FILE, Library
from audiosim.library.location import POINTER_FILE
from audiosim.library.models import Asset, Scan

# The Storage dialog's choices: key -> (label, what the location field holds; None: no location)
STORE_KINDS: dict[str, tuple[str, str | None]] = {
    "faiss": ("Faiss (in the library folder, default)", None),
    "annoy": ("Annoy (in the library folder, memory-mapped)", None),
    "milvus-lite": ("Milvus Lite (a local file)", "/path/to/vectors.db"),
    "milvus": ("Milvus server or cluster", "http://host:19530"),
    "pgvector": ("PostgreSQL + pgvector", "postgresql://user@host/db"),
}


def library_exists(folder: str | os.PathLike) -> bool:
    return ((Path(folder) / DB_FILE).exists() or (Path(folder) / POINTER_FILE).exists()
            or bool(os.environ.get("AUDIOSIM_DB_URL")))


def build_store_spec(kind: str, location: str) -> str:
    """The store spec for a choice of the Storage dialog; `StoreError` when the location does not fit."""
    from audiosim.errors import StoreError
    from audiosim.stores import parse_store_spec

    location = location.strip()
    if kind in ("faiss", "annoy"):
        return kind
    if not location:
        raise StoreError(f"give the location of the {STORE_KINDS[kind][0]}: {STORE_KINDS[kind][1]}")
    if kind == "milvus-lite":
        text = location if location.startswith("milvus://") else f"milvus://{os.path.abspath(location)}"
    else:
        text = location
    spec = parse_store_spec(text)
    expected = "pgvector" if kind == "pgvector" else "milvus"
    if spec.backend != expected:
        raise StoreError(f"{location!r} is not a location for {STORE_KINDS[kind][0]}: {STORE_KINDS[kind][1]}")
    return spec.text


def store_kind_of(spec_text: str) -> tuple[str, str]:
    """The Storage dialog's (kind, location) for a recorded spec."""
    from audiosim.stores import parse_store_spec

    spec = parse_store_spec(spec_text)
    if spec.backend in ("faiss", "annoy"):
        return spec.backend, ""
    if spec.backend == "milvus" and spec_text.startswith("milvus://"):
        return "milvus-lite", spec.options["uri"]
    return spec.backend, spec_text


def storage_info(library: Library) -> dict:
    """What the Storage dialog shows: the store, its spec and the metadata DB."""
    stats = library.stats()
    return {"store": stats["store"], "store_spec": library.store_spec.text, "db": stats["db"]}


def ensure_library(folder: str | os.PathLike) -> list[str]:
    """Create the library if it does not exist yet, or complete one an interrupted run left half-created
    (open writable once, then close: the lock is released); returns what was done, one line each."""
    if library_exists(folder):
        try:
            Library(folder).close()
            return []
        except LibraryIncompleteError:
            pass
    library = Library(folder, writable=True)
    library.close()
    return library.notices


def _under(column, root: str):
    return or_(column == root, column.startswith(root.rstrip(os.sep) + os.sep, autoescape=True))


def library_roots(library: Library) -> list[str]:
    """The folders (and files) indexed into the library: roots of past runs that still hold assets."""
    with library.Session() as s:
        roots: list[str] = []
        for (text,) in s.execute(select(Scan.roots).order_by(Scan.id)):
            for root in json.loads(text):
                if root not in roots:
                    roots.append(root)
        # An enclosing root covers the ones inside it.
        roots = [r for r in roots if not any(o != r and r.startswith(o.rstrip(os.sep) + os.sep) for o in roots)]
        kept = []
        for root in roots:
            if s.scalar(select(func.count()).select_from(Asset).where(_under(Asset.path, root))):
                kept.append(root)
        return kept


def remove_folders(library: Library, roots: list[str], *, state=None) -> int:
    """Remove every asset under ``roots`` (the files on disk are not touched); returns how many."""
    from audiosim.library.writer import LibraryWriter

    with library.Session() as s:
        ids = list(s.scalars(select(Asset.id).where(or_(*(_under(Asset.path, r) for r in roots)))))
    writer = LibraryWriter(library)
    for start in range(0, len(ids), 500):
        writer.commit(removed_asset_ids=ids[start:start + 500])
        if state is not None:
            state.set_progress(min(len(ids), start + 500), len(ids))
    writer.save()
    return len(ids)


def asset_counts(library: Library) -> int:
    with library.Session() as s:
        return int(s.scalar(select(func.count()).select_from(Asset)) or 0)


def asset_by_id(library: Library, asset_id: int) -> Asset | None:
    with library.Session() as s:
        return s.get(Asset, asset_id)
