"""SQLAlchemy 2.0 models of the metadata database.

Segment ids are also the vector-store ids (``AUTOINCREMENT``: an id is never reused, so a stale vector can
never be mistaken for a new segment). Each segment keeps its embedding as a float32 blob, which makes the
database the commit point: the vector store is rebuilt or reconciled from it after a crash.
"""

from __future__ import annotations

import base64
import os
from typing import NamedTuple

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# BigInteger on other databases, INTEGER PRIMARY KEY (a 64-bit rowid) on SQLite.
Id64 = BigInteger().with_variant(Integer(), "sqlite")

STATUS_INDEXED = "indexed"
STATUS_FAILED = "failed"


class FsPath(TypeDecorator):
    """An absolute filesystem path, stored losslessly even when its name is not valid UTF-8.

    Python represents undecodable bytes of a file name as lone surrogates, which a database's text
    type refuses. Such a path is stored as ``bytes:`` + base64 of its raw bytes: unambiguous, because a
    stored path is absolute and so always starts with ``/`` (or a drive letter).
    """

    impl = Text
    cache_ok = True
    PREFIX = "bytes:"

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return self.PREFIX + base64.b64encode(os.fsencode(value)).decode("ascii")

    def process_result_value(self, value, dialect):
        if value is not None and value.startswith(self.PREFIX):
            return os.fsdecode(base64.b64decode(value[len(self.PREFIX):]))
        return value


def display_name(name: str) -> str:
    """A file name fit to show and to store as text (undecodable bytes become U+FFFD)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Asset(Base):
    """One audio file (or a file that failed to index, with ``status='failed'`` and its ``error``)."""

    __tablename__ = "assets"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)  # absolute, as found on disk
    name: Mapped[str] = mapped_column(Text, index=True)  # for display and filters: see display_name
    folder: Mapped[str] = mapped_column(FsPath, index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    mtime: Mapped[float | None] = mapped_column(Float)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    format: Mapped[str | None] = mapped_column(String(32))
    subtype: Mapped[str | None] = mapped_column(String(32))
    duration: Mapped[float | None] = mapped_column(Float, index=True)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    avg_loudness: Mapped[float | None] = mapped_column(Float, index=True)  # integrated LUFS (BS.1770)
    peak_db: Mapped[float | None] = mapped_column(Float)  # dBFS, sample peak
    centroid: Mapped[float | None] = mapped_column(Float)  # mean spectral centroid, Hz
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    analysis_key: Mapped[str | None] = mapped_column(String(16))  # hash of the AnalysisParams used
    n_segments: Mapped[int] = mapped_column(Integer, default=0)
    frames_file: Mapped[str | None] = mapped_column(Text)  # relative to the library folder
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # file-level vector, float32
    indexed_at: Mapped[float | None] = mapped_column(Float)


class Segment(Base):
    """A window of an asset; the unit of search. ``id`` is the vector id in the segment store."""

    __tablename__ = "segments"
    __table_args__ = (Index("ix_segments_asset", "asset_id", "start"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"))
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, the exact vector in the store


class Scan(Base):
    """One indexing run; an unfinished one (``state='running'`` after a crash) can be resumed."""

    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    roots: Mapped[str] = mapped_column(Text)  # JSON list of absolute paths
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))  # running | finished | cancelled
    indexed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)


class AssetRow(NamedTuple):
    """An asset's row without its file vector: what a query result carries. Read with a plain select of
    these columns (``ASSET_ROW_COLUMNS``), several times cheaper than loading ``Asset`` objects."""

    id: int
    path: str
    name: str
    folder: str
    size: int | None
    mtime: float | None
    fingerprint: str | None
    format: str | None
    subtype: str | None
    duration: float | None
    sample_rate: int | None
    channels: int | None
    avg_loudness: float | None
    peak_db: float | None
    centroid: float | None
    status: str
    error: str | None
    analysis_key: str | None
    n_segments: int
    frames_file: str | None
    indexed_at: float | None


ASSET_ROW_COLUMNS = tuple(Asset.__table__.c[name] for name in AssetRow._fields)


# Fields a user may name in a filter expression or see in `audiosim assets`.
ASSET_FIELDS = (
    "id", "path", "name", "folder", "size", "mtime", "fingerprint", "format", "subtype", "duration",
    "sample_rate", "channels", "avg_loudness", "peak_db", "centroid", "status", "error", "n_segments",
)
