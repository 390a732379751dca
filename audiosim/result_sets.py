"""Result sets: what a map shows — the assets matching a filter, the hits of a query, a selection, or the
whole library (sampled above :data:`DEFAULT_MAX_POINTS`), as vector-store ids at file or segment level,
with the per-point fields a map is coloured and labelled by."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from audiosim.errors import AudiosimError
from audiosim.library.models import STATUS_INDEXED, Asset, Segment

if TYPE_CHECKING:
    from audiosim.library.db import Library
    from audiosim.search import Hit

LEVELS = ("file", "segment")
METRICS = ("euclidean", "cosine", "correlation", "manhattan", "chebyshev")
DEFAULT_MAX_POINTS = 20_000
"""Cap for "the whole library": above it a random sample is mapped (and the user told so). UMAP's cost
grows a little faster than linearly; on two cores 20k points map in ~10-15 s cold and the scatter stays
fluid, while 50k take ~4x longer (bench/map_timings.py). An explicit result set is never sampled unless
asked (``max_points``)."""
SQL_CHUNK = 10_000  # ids per IN (...) clause: SQLite caps bound parameters
NUMERIC_FIELDS = ("duration", "avg_loudness", "peak_db", "centroid", "sample_rate", "channels", "size",
                  "mtime", "n_segments")
"""Asset fields a map can be coloured by (plus ``start`` at segment level, and ``folder``)."""


class ProjectionError(AudiosimError):
    """A map cannot be made as asked (unknown metric, bad parameter, ...)."""



@dataclasses.dataclass(frozen=True, eq=False)
class ResultSet:
    """The points of a map, sorted by ``ids`` (vector-store ids: asset ids for files, segment ids for segments).

    ``starts``/``ends`` are NaN at file level. ``notices`` say what the user should know (sampled, items
    without vectors...).
    """

    level: str
    ids: np.ndarray  # int64, ascending, unique
    asset_ids: np.ndarray  # int64
    starts: np.ndarray  # float64
    ends: np.ndarray  # float64
    description: str = ""
    notices: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def key(self) -> str:
        return hashlib.blake2b(self.level.encode() + self.ids.tobytes(), digest_size=16).hexdigest()

    @property
    def segment_ids(self) -> np.ndarray | None:
        return self.ids if self.level == "segment" else None

    def rows_of(self, ids: Iterable[int]) -> np.ndarray:
        """Row numbers of the given vector ids (ids not in the set are skipped)."""
        ids = np.asarray(list(ids), np.int64)
        rows = np.searchsorted(self.ids, ids)
        rows = np.minimum(rows, max(0, len(self.ids) - 1))
        return rows[(len(self.ids) > 0) & (self.ids[rows] == ids)] if len(self.ids) else rows[:0]

    def rows_of_assets(self, asset_ids: Iterable[int]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.asset_ids, np.asarray(list(asset_ids), np.int64)))

    def subset(self, rows: np.ndarray, *, description: str = "", notices: Sequence[str] = ()) -> ResultSet:
        rows = np.sort(np.asarray(rows, np.int64))
        return ResultSet(self.level, self.ids[rows], self.asset_ids[rows], self.starts[rows],
                         self.ends[rows], description or self.description, tuple(notices))


def build_result_set(library: Library, *, level: str = "file", filter_expression: str | None = None,
                     hits: Sequence[Hit] | None = None, asset_ids: Iterable[int] | None = None,
                     segment_ids: Iterable[int] | None = None, max_points: int | None = None,
                     sample_seed: int = 0) -> ResultSet:
    """The points matching every source given (intersection); no source at all: the whole library.

    Parameters
    ----------
    level : ``"file"`` (one point per asset) or ``"segment"`` (one per segment)
    filter_expression : a filter over asset fields (``audiosim.library.filters``)
    hits : query results; at segment level a hit stands for its segment (or, without one, the segments
        overlapping its time range), at file level for its asset
    asset_ids, segment_ids : explicit selections (e.g. a lasso)
    max_points : above this many points, map a random sample (seeded by ``sample_seed``) and say so
    """
    if level not in LEVELS:
        raise ProjectionError(f"unknown level {level!r}: use 'file' or 'segment'")
    wanted_assets: set[int] | None = None if asset_ids is None else {int(a) for a in asset_ids}
    wanted_segments: set[int] | None = None if segment_ids is None else {int(s) for s in segment_ids}
    parts = []
    if filter_expression:
        parts.append(f"filter {filter_expression!r}")
    if hits is not None:
        parts.append(f"{len(hits)} query results")
        hit_assets = {int(h.asset_id) for h in hits}
        wanted_assets = hit_assets if wanted_assets is None else wanted_assets & hit_assets
        if level == "segment":
            hit_segments = _segments_of_hits(library, hits)
            wanted_segments = hit_segments if wanted_segments is None else wanted_segments & hit_segments
    if asset_ids is not None:
        parts.append("selected assets")
    if segment_ids is not None:
        parts.append("selected segments")
    if wanted_segments is not None and level == "segment":
        seg_assets = _assets_of_segments(library, wanted_segments)
        wanted_assets = set(seg_assets.values()) if wanted_assets is None else wanted_assets & set(
            seg_assets.values())
    description = " ∩ ".join(parts) or "whole library"

    condition = [Asset.status == STATUS_INDEXED]
    if filter_expression:
        from audiosim.library.filters import compile_filter

        condition.append(compile_filter(filter_expression))
    with library.Session() as s:
        if level == "file":
            stmt = select(Asset.id).where(*condition)
            found = _select_in(s, stmt, Asset.id, wanted_assets)
            ids = np.unique(np.asarray([r[0] for r in found], np.int64))
            assets = ids.copy()
            starts = ends = np.full(len(ids), np.nan)
        else:
            stmt = select(Segment.id, Segment.asset_id, Segment.start, Segment.end).join(
                Asset, Asset.id == Segment.asset_id).where(*condition)
            if wanted_segments is not None:
                found = _select_in(s, stmt, Segment.id, wanted_segments)
            else:
                found = _select_in(s, stmt, Segment.asset_id, wanted_assets)
            found = sorted(found)
            ids = np.asarray([r[0] for r in found], np.int64)
            assets = np.asarray([r[1] for r in found], np.int64)
            starts = np.asarray([r[2] for r in found], np.float64)
            ends = np.asarray([r[3] for r in found], np.float64)
    notices: list[str] = []
    store = library.store("files" if level == "file" else "segments")
    present = store.contains(ids) if len(ids) else np.zeros(0, bool)
    if not present.all():
        notices.append(f"{int((~present).sum())} {level}s have no vector yet (indexing?) and are left out")
        ids, assets, starts, ends = ids[present], assets[present], starts[present], ends[present]
    rs = ResultSet(level, ids, assets, starts, ends, description, tuple(notices))
    if max_points is not None and len(rs) > max_points:
        rows = np.random.default_rng(sample_seed).choice(len(rs), size=max_points, replace=False)
        notice = f"showing a random sample of {max_points:,} of {len(rs):,} {level}s"
        rs = rs.subset(rows, notices=(*notices, notice))
    return rs


def _select_in(session, stmt, column, values: set[int] | None) -> list[tuple]:
    if values is None:
        return list(session.execute(stmt).all())
    values_list = sorted(values)
    rows: list[tuple] = []
    for i in range(0, len(values_list), SQL_CHUNK):
        rows += session.execute(stmt.where(column.in_(values_list[i:i + SQL_CHUNK]))).all()
    return rows


def _assets_of_segments(library: Library, segment_ids: set[int]) -> dict[int, int]:
    with library.Session() as s:
        rows = _select_in(s, select(Segment.id, Segment.asset_id), Segment.id, segment_ids)
    return {int(r[0]): int(r[1]) for r in rows}


def _segments_of_hits(library: Library, hits: Sequence[Hit]) -> set[int]:
    """A hit's own segment, or (file-level hits, hits without one) the segments overlapping its range."""
    out = {int(h.segment_id) for h in hits if h.segment_id is not None}
    loose = [h for h in hits if h.segment_id is None]
    if loose:
        with library.Session() as s:
            for h in loose:
                stmt = select(Segment.id).where(Segment.asset_id == h.asset_id)
                if h.end > h.start:
                    stmt = stmt.where(Segment.start < h.end, Segment.end > h.start)
                out.update(int(i) for i in s.scalars(stmt))
    return out


def describe_points(library: Library, result_set: ResultSet) -> dict[str, np.ndarray]:
    """Per point: ``path``, ``name``, ``folder`` (object arrays) and the numeric fields (float, NaN if unknown)
    of its asset, plus ``start``/``end`` — for hover text and colouring."""
    fields = ("path", "name", "folder", *NUMERIC_FIELDS)
    unique = np.unique(result_set.asset_ids)
    columns = [getattr(Asset, f) for f in ("id", *fields)]
    with library.Session() as s:
        stmt = select(*columns)
        rows = _select_in(s, stmt, Asset.id, None if len(unique) > SQL_CHUNK else set(unique.tolist()))
    by_id = {int(r[0]): r[1:] for r in rows}
    n = len(result_set)
    out: dict[str, np.ndarray] = {f: np.empty(n, object) for f in fields[:3]}
    out.update({f: np.full(n, np.nan) for f in NUMERIC_FIELDS})
    table = np.array([by_id.get(int(a), (None,) * len(fields)) for a in unique], dtype=object).reshape(
        len(unique), len(fields))
    where = np.searchsorted(unique, result_set.asset_ids)
    for j, f in enumerate(fields):
        col = table[where, j] if n else np.empty(0, object)
        if f in NUMERIC_FIELDS:
            out[f] = np.array([np.nan if v is None else float(v) for v in col], np.float64)
        else:
            out[f] = col
    out["start"] = result_set.starts.copy()
    out["end"] = result_set.ends.copy()
    return out
