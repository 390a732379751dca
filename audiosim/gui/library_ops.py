"""Library chores the window runs in workers: create, list the indexed folders, remove folders.
Plain functions over the core (no Qt); writers are given a library opened ``writable=True`` for the job only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import func, or_, select

from audiosim.errors import LibraryIncompleteError
from audiosim.library.db import DB_FILE, Library
from audiosim.library.models import Asset, Scan


def library_exists(folder: str | os.PathLike) -> bool:
    return (Path(folder) / DB_FILE).exists() or bool(os.environ.get("AUDIOSIM_DB_URL"))


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
