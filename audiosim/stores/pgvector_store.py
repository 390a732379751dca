"""Vectors in PostgreSQL with the pgvector extension: one table per store, an HNSW index on it.

Table ``<prefix>_<name>`` (``id bigint primary key, embedding vector(dim)``) with
``USING hnsw (embedding vector_l2_ops)``. Every write commits at once: the library's metadata DB stays the
commit point and ``reconcile`` repairs a store that is ahead of or behind it.

Filters (``allow_ids``) are pushed down: a small one fetches only those rows (``WHERE id = ANY(...)``) and
searches them exactly; a large one is a ``WHERE`` on the HNSW scan with pgvector's iterative scan, so the
index keeps looking until enough allowed rows are found.

Two connections: one for the writer and one for readers, each behind its own lock, so a search never
waits for a long write (PostgreSQL's MVCC gives the reader the last committed state).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from audiosim.errors import StoreDimensionError, StoreError
from audiosim.stores.base import (
    add_args,
    as_ids,
    empty_result,
    exact_search,
    last_occurrence,
    redact_url,
    require_extra,
    search_args,
    UnknownIdError,
    VectorStore,
)

psycopg = require_extra("psycopg", backend="pgvector", extra="pgvector")
pgvector_psycopg = require_extra("pgvector.psycopg", backend="pgvector", extra="pgvector")

EF_SEARCH_MIN = 100  # the HNSW candidate list: at least this long, and EF_PER_RESULT per result asked for
EF_PER_RESULT = 4  # at 2, recall@50 in the contract test was 0.947-0.96 from one index build to the next
EXACT_SUBSET_MAX = 20_000  # filters up to this many ids fetch just those rows and search them exactly
BULK_REINDEX_MIN = 1_000  # an add at least this large and as large as the table: index built after it
CHUNK = 20_000


class PgvectorStore(VectorStore):
    """See the module docstring.

    Parameters
    ----------
    path, name, dim : as for every store (``path`` is unused: the vectors are in PostgreSQL)
    url : ``postgresql://user:password@host:port/db``
    prefix : table name prefix, so several libraries can share one database
    create : create the extension and table when missing; otherwise a missing one is a `StoreError`
    """

    def __init__(self, path: Path, name: str, dim: int, *, url: str, prefix: str = "audiosim",
                 create: bool = True) -> None:
        self.dim, self.name, self.url = int(dim), name, url
        self.table = f"{prefix}_{name}"
        self._closed = False
        self._write_lock, self._read_lock = threading.Lock(), threading.Lock()
        self._writer = self._connect()
        self._reader = None
        try:
            self._prepare(create)
            self._reader = self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self):
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot reach the pgvector store {redact_url(self.url)}: {_reason(exc)}") from None
        try:
            pgvector_psycopg.register_vector(conn)
        except psycopg.ProgrammingError:  # the extension is not there yet; _prepare creates it
            pass
        return conn

    def _prepare(self, create: bool) -> None:
        conn, where = self._writer, redact_url(self.url)
        with self._write_lock:
            has_vector = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
            if not has_vector:
                if not create:
                    raise StoreError(f"PostgreSQL at {where} has no pgvector extension (CREATE EXTENSION vector)")
                try:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except psycopg.Error as exc:
                    raise StoreError(f"PostgreSQL at {where} cannot enable pgvector: {_reason(exc)}") from None
                pgvector_psycopg.register_vector(conn)
            row = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attname = 'embedding'", (self.table,)).fetchone()
            if row is None:
                if not create:
                    raise StoreError(f"the pgvector store {where} has no table {self.table}: "
                                     "run `audiosim store rebuild` to rebuild it from the library")
                with conn.transaction():
                    conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} "
                                 f"(id bigint PRIMARY KEY, embedding vector({self.dim}) NOT NULL)")
                    self._create_index(conn)
            elif row[0] != f"vector({self.dim})":
                raise StoreDimensionError(
                    f"pgvector table {self.table} at {where} holds {row[0]} but vector({self.dim}) is expected "
                    "(the analysis changed?); run `audiosim verify --repair` to rebuild it")

    def _create_index(self, conn) -> None:
        conn.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_hnsw ON {self.table} "
                     "USING hnsw (embedding vector_l2_ops)")

    # --- reading ------------------------------------------------------------------------------------

    def _read(self, sql: str, params: tuple = ()) -> list:
        with self._read_lock:
            self._check_open()
            try:
                return self._reader.execute(sql, params).fetchall()
            except psycopg.Error as exc:
                raise self._error(exc) from None

    @property
    def description(self) -> str:
        return f"pgvector hnsw table {self.table} at {redact_url(self.url)} ({self.count()} vectors)"

    def count(self) -> int:
        return int(self._read(f"SELECT count(*) FROM {self.table}")[0][0])

    def ids(self) -> np.ndarray:
        rows = self._read(f"SELECT id FROM {self.table} ORDER BY id")
        return np.asarray([r[0] for r in rows], np.int64)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids, allow_negative=True)
        found = self._present(np.unique(ids))
        return np.isin(ids, found)

    def _present(self, unique_ids: np.ndarray) -> np.ndarray:
        parts = [np.asarray([r[0] for r in self._read(
            f"SELECT id FROM {self.table} WHERE id = ANY(%s)", (unique_ids[i:i + CHUNK].tolist(),))], np.int64)
            for i in range(0, len(unique_ids), CHUNK)]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def get(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids, allow_negative=True)
        unique = np.unique(ids)
        found_ids, found_vectors = self._fetch(unique)
        present = np.isin(ids, found_ids)
        if not present.all():
            missing = np.unique(ids[~present])
            shown = ", ".join(map(str, missing[:5].tolist())) + (", ..." if len(missing) > 5 else "")
            raise UnknownIdError(f"{len(missing)} id(s) not in the vector store: {shown}", ids=missing)
        return found_vectors[np.searchsorted(found_ids, ids)]

    def _fetch(self, unique_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, their vectors) of those of ``unique_ids`` that are stored."""
        ids, vectors = [], []
        for i in range(0, len(unique_ids), CHUNK):
            rows = self._read(f"SELECT id, embedding FROM {self.table} WHERE id = ANY(%s) ORDER BY id",
                              (unique_ids[i:i + CHUNK].tolist(),))
            ids += [r[0] for r in rows]
            vectors += [_as_array(r[1]) for r in rows]
        if not ids:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        return np.asarray(ids, np.int64), np.asarray(vectors, np.float32)

    def search(
        self, queries: np.ndarray, k: int, *, allow_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries, k = search_args(queries, k, self.dim)
        if k == 0 or len(queries) == 0:
            return empty_result(len(queries), k)
        allowed = None
        if allow_ids is not None:
            allowed = np.unique(as_ids(allow_ids, allow_negative=True))
            allowed = allowed[allowed >= 0]
            if len(allowed) == 0:
                return empty_result(len(queries), k)
            if len(allowed) <= EXACT_SUBSET_MAX:
                ids, vectors = self._fetch(allowed)
                return exact_search(queries, ids, vectors, k)
        where = "" if allowed is None else "WHERE id = ANY(%(allowed)s)"
        sql = (f"SELECT id, embedding <-> %(q)s AS d FROM {self.table} {where} "
               "ORDER BY embedding <-> %(q)s LIMIT %(k)s")
        distances, found = empty_result(len(queries), k)
        with self._read_lock:
            self._check_open()
            try:
                with self._reader.transaction():
                    # SET LOCAL lasts for this transaction only; iterative scan keeps a filtered HNSW scan going.
                    ef_search = max(EF_SEARCH_MIN, min(1000, EF_PER_RESULT * k))
                    self._reader.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
                    self._reader.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                    params = {"k": k, "allowed": None if allowed is None else allowed.tolist()}
                    for row, query in enumerate(queries):
                        got = self._reader.execute(sql, {**params, "q": query}).fetchall()
                        if got:
                            found[row, :len(got)] = [g[0] for g in got]
                            distances[row, :len(got)] = [g[1] for g in got]
            except psycopg.Error as exc:
                raise self._error(exc) from None
        order = np.argsort(distances, axis=1, kind="stable")  # relaxed order: sort what came back
        return np.take_along_axis(distances, order, 1), np.take_along_axis(found, order, 1)

    # --- writing ------------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = add_args(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        keep = last_occurrence(ids)
        ids, vectors = ids[keep], vectors[keep]
        with self._write_lock:
            self._check_open()
            conn = self._writer
            try:
                # A big first load is much faster into a table without the index, built once afterwards.
                bulk = len(ids) >= BULK_REINDEX_MIN and len(ids) >= conn.execute(
                    f"SELECT count(*) FROM {self.table}").fetchone()[0]
                with conn.transaction():
                    if bulk:
                        conn.execute(f"DROP INDEX IF EXISTS {self.table}_hnsw")
                    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS staging_{self.name} "
                                 f"(id bigint, embedding vector({self.dim})) ON COMMIT DELETE ROWS")
                    with conn.cursor().copy(f"COPY staging_{self.name} (id, embedding) FROM STDIN "
                                            "WITH (FORMAT BINARY)") as copy:
                        copy.set_types(["int8", "vector"])
                        for row_id, vector in zip(ids.tolist(), vectors):
                            copy.write_row((row_id, vector))
                    conn.execute(f"INSERT INTO {self.table} (id, embedding) SELECT id, embedding "
                                 f"FROM staging_{self.name} "
                                 "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding")
                    if bulk:
                        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")  # the graph fits: fast build
                        conn.execute("SET LOCAL max_parallel_maintenance_workers = 2")
                        self._create_index(conn)
            except psycopg.Error as exc:
                raise self._error(exc) from None

    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(as_ids(ids, allow_negative=True))
        removed = 0
        with self._write_lock:
            self._check_open()
            try:
                for i in range(0, len(ids), CHUNK):
                    cur = self._writer.execute(f"DELETE FROM {self.table} WHERE id = ANY(%s)",
                                               (ids[i:i + CHUNK].tolist(),))
                    removed += cur.rowcount
            except psycopg.Error as exc:
                raise self._error(exc) from None
        return removed

    def save(self) -> None:
        """Nothing to do: every write has committed."""
        self._check_open()

    def close(self) -> None:
        self._closed = True
        for conn in (self._writer, self._reader):
            if conn is not None:
                try:
                    conn.close()
                except psycopg.Error:
                    pass

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"vector store {self.table} at {redact_url(self.url)} is closed")

    def _error(self, exc: BaseException) -> StoreError:
        return StoreError(f"the pgvector store {redact_url(self.url)} failed: {_reason(exc)}")


def drop_table(name: str, *, url: str, prefix: str = "audiosim") -> None:
    """Delete the table of store ``name`` whatever it holds (``verify --repair``, ``store rebuild``)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {prefix}_{name}")
    except psycopg.Error as exc:
        raise StoreError(f"the pgvector store {redact_url(url)} failed: {_reason(exc)}") from None


def _as_array(value) -> np.ndarray:
    """pgvector's ``Vector`` (or an array, depending on its version) as float32."""
    return value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value, np.float32)


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
