"""Check that a library agrees with itself and with the disk, and repair what does not.

Problems found (each a ``{"kind", "message", "count"}``):

* ``missing_vectors`` / ``orphan_vectors``: the vector store and the DB disagree;
* ``damaged_store``: a vector store file cannot be read (repair rebuilds it from the DB);
* ``missing_frames``: an indexed asset's stored frames are gone (its row of ``frames.db`` or its file);
* ``orphan_frames``: stored frames no asset refers to (left by a crash);
* ``vanished_files`` / ``changed_files``: the audio file is gone, or changed since it was indexed.
"""

from __future__ import annotations

import os
import numpy as np
from sqlalchemy import select

from audiosim.analysis import fingerprint_file
from audiosim.crashpoints import crash_point
from audiosim.errors import StoreError
from audiosim.library.db import Library
from audiosim.library.frames import is_inline, unreferenced_frames
from audiosim.library.models import STATUS_INDEXED, Asset


def _problem(kind: str, message: str, items: list) -> dict:
    return {"kind": kind, "message": message, "count": len(items), "examples": [str(i) for i in items[:5]]}


def find_problems(library: Library) -> tuple[list[dict], dict[str, list]]:
    """All problems, plus the raw lists a repair needs."""
    problems: list[dict] = []
    raw: dict[str, list] = {}
    with library.Session() as s:
        indexed = list(s.scalars(select(Asset).where(Asset.status == STATUS_INDEXED)))
    referenced = {a.frames_file for a in indexed if a.frames_file}
    for name, db_ids in library.vector_ids().items():
        try:
            store_ids = library.store(name).ids()
        except StoreError as exc:
            raw.setdefault("damaged_stores", []).append(name)
            problems.append(_problem("damaged_store", str(exc), [name]))
            continue
        missing = np.setdiff1d(db_ids, store_ids).tolist()
        orphans = np.setdiff1d(store_ids, db_ids).tolist()
        if missing:
            problems.append(_problem("missing_vectors", f"{len(missing)} {name} in the DB have no vector",
                                     missing))
        if orphans:
            problems.append(_problem("orphan_vectors", f"{len(orphans)} {name} vectors have no DB row",
                                     orphans))
    rows = library.frames_db.keys()

    def stored(key: str | None) -> bool:
        return bool(key) and (key in rows if is_inline(key) else (library.folder / key).is_file())

    missing_frames = [a for a in indexed if not stored(a.frames_file)]
    if missing_frames:
        raw["missing_frames"] = missing_frames
        problems.append(_problem("missing_frames", f"{len(missing_frames)} assets lost their stored frames",
                                 [a.path for a in missing_frames]))
    orphan_frames = unreferenced_frames(library.folder, library.frames_db, referenced)
    if orphan_frames:
        raw["orphan_frames"] = orphan_frames
        problems.append(_problem("orphan_frames", f"{len(orphan_frames)} stored frames belong to no asset",
                                 orphan_frames))
    vanished, changed = [], []
    for asset in indexed:
        try:
            st = os.stat(asset.path)
        except OSError:
            vanished.append(asset)
            continue
        if st.st_size != asset.size or (st.st_mtime != asset.mtime
                                        and _fingerprint(asset.path, st.st_size) != asset.fingerprint):
            changed.append(asset)
    if vanished:
        raw["vanished"] = vanished
        problems.append(_problem("vanished_files", f"{len(vanished)} indexed files are gone from disk",
                                 [a.path for a in vanished]))
    if changed:
        raw["changed"] = changed
        problems.append(_problem("changed_files", f"{len(changed)} files changed since they were indexed",
                                 [a.path for a in changed]))
    return problems, raw


def _fingerprint(path: str, size: int) -> str | None:
    try:
        return fingerprint_file(path, size)
    except OSError:
        return None


def verify(library: Library, *, repair: bool = False, workers: int | None = None) -> dict:
    """``{"ok": bool, "problems": [...]}``; with ``repair`` (needs a writable library), fix them first
    and report what was repaired under ``"repaired"``."""
    problems, raw = find_problems(library)
    if not repair or not problems:
        return {"ok": not problems, "problems": problems}
    from audiosim.indexer import index_paths
    from audiosim.library.writer import LibraryWriter

    for name in raw.get("damaged_stores", []):
        library.discard_store(name)
    # Each step below commits on its own and leaves a library that the next `verify --repair` picks up
    # from: a kill between them loses no repair already done.
    writer = LibraryWriter(library)
    repaired = {"vectors": writer.reconcile()}
    crash_point("repair-vectors-reconciled")
    gone = raw.get("vanished", []) + [a for a in raw.get("missing_frames", []) if not os.path.exists(a.path)]
    if gone:
        writer.commit(removed_asset_ids=sorted({a.id for a in gone}))
        writer.save()
    redo = sorted({a.path for a in raw.get("changed", []) + raw.get("missing_frames", [])
                   if os.path.exists(a.path)})
    if redo:
        report = index_paths(library, redo, workers=workers, force=True)
        repaired["reindexed"] = report.indexed
    repaired["removed_assets"] = len(gone)
    repaired["orphan_frames_deleted"] = writer.sweep_orphan_frames()
    remaining, _ = find_problems(library)
    return {"ok": not remaining, "problems": remaining, "repaired": repaired,
            "found": problems}
