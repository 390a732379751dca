"""Vectors in Milvus: a Milvus server or cluster (``http://host:19530``) or Milvus Lite (a local file).

One collection per store, ``<prefix>_<name>``, with an ``INT64`` primary key ``id`` and a ``FLOAT_VECTOR``
field ``vector``, L2 metric (Milvus reports squared distances; we take the root). Every call uses Strong
consistency, so a search sees every write that returned before it -- on another machine too.

Filters (``allow_ids``) are pushed into Milvus as a boolean expression ``id in [...]``, so only allowed
vectors are candidates; no over-fetching.

Milvus Lite is an embedded Milvus for one process at a time; it searches by brute force and is slow at
scale (the README's table). A server builds an HNSW index (``AUTOINDEX``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

import numpy as np

from audiosim.errors import StoreDimensionError, StoreError
from audiosim.stores.base import (
    add_args,
    as_ids,
    empty_result,
    last_occurrence,
    redact_url,
    require_extra,
    search_args,
    UnknownIdError,
    VectorStore,
)

pymilvus = require_extra("pymilvus", backend="milvus", extra="milvus")

CHUNK = 10_000  # rows per upsert/get/delete call
MAX_TOP_K = 16_384  # Milvus' limit on k
FILTER_CHUNK = 50_000  # ids per `id in [...]` expression
CONSISTENCY = "Strong"


class MilvusStore(VectorStore):
    """See the module docstring.

    Parameters
    ----------
    path, name, dim : as for every store (``path`` is unused)
    uri : a Milvus server URL, or the path of a Milvus Lite file (``*.db``)
    prefix : collection name prefix, so several libraries can share one Milvus
    create : create the collection when missing; otherwise a missing one is a `StoreError`
    """

    def __init__(self, path: Path, name: str, dim: int, *, uri: str, prefix: str = "audiosim",
                 create: bool = True) -> None:
        self.dim, self.name, self.uri = int(dim), name, uri
        self.collection = f"{prefix}_{name}"
        self.is_lite = not uri.startswith(("http://", "https://", "tcp://", "grpc://"))
        self._lock = threading.Lock()  # the client is shared by threads; writes are serialised anyway
        self._closed = False
        if self.is_lite:
            try:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of the Milvus Lite file {uri}: {exc}") from exc
        try:
            with _quiet_iterator_logs():  # a Lite file locked by another process: one line, not a traceback
                self._client = pymilvus.MilvusClient(uri=uri, timeout=15)
        except Exception as exc:  # noqa: BLE001 - pymilvus raises many kinds (MilvusException, grpc, OSError)
            if self.is_lite:
                _release_lite(uri, opened=False)
            raise StoreError(f"cannot reach the Milvus store {redact_url(uri)}: {_reason(exc)}") from None
        if self.is_lite:
            _retain_lite(uri)
        try:
            self._prepare(create)
        except BaseException:
            self.close()
            raise

    def _prepare(self, create: bool) -> None:
        client, where = self._client, redact_url(self.uri)
        try:
            exists = client.has_collection(self.collection)
            if not exists:
                if not create:
                    raise StoreError(f"the Milvus store {where} has no collection {self.collection}: "
                                     "run `audiosim store rebuild` to rebuild it from the library")
                schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
                schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
                index = client.prepare_index_params()
                index.add_index(field_name="vector", index_type="FLAT" if self.is_lite else "AUTOINDEX",
                                metric_type="L2")
                client.create_collection(self.collection, schema=schema, index_params=index,
                                         consistency_level=CONSISTENCY)
            else:
                fields = {f["name"]: f for f in client.describe_collection(self.collection)["fields"]}
                stored_dim = int(fields.get("vector", {}).get("params", {}).get("dim", -1))
                if stored_dim != self.dim or "id" not in fields:
                    raise StoreDimensionError(
                        f"Milvus collection {self.collection} at {where} holds {stored_dim}-dimensional vectors "
                        f"but {self.dim} are expected; run `audiosim verify --repair` to rebuild it")
                client.load_collection(self.collection)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None

    def _call(self, method: str, *args, **kwargs):
        """A client call with the lock held and Milvus' errors turned into one-line `StoreError`s."""
        with self._lock:
            self._check_open()
            try:
                return getattr(self._client, method)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                raise self._error(exc) from None

    # --- reading ------------------------------------------------------------------------------------

    @property
    def description(self) -> str:
        kind = "milvus lite" if self.is_lite else "milvus"
        return f"{kind} collection {self.collection} at {redact_url(self.uri)} ({self.count()} vectors)"

    def count(self) -> int:
        rows = self._call("query", self.collection, filter="", output_fields=["count(*)"],
                          consistency_level=CONSISTENCY)
        return int(rows[0]["count(*)"])

    def ids(self) -> np.ndarray:
        with self._lock, _quiet_iterator_logs():
            self._check_open()
            try:
                iterator = self._client.query_iterator(self.collection, batch_size=MAX_TOP_K, filter="id >= 0",
                                                       output_fields=["id"], consistency_level=CONSISTENCY)
                found = []
                while batch := iterator.next():
                    found += [row["id"] for row in batch]
                iterator.close()
            except Exception as exc:  # noqa: BLE001
                raise self._error(exc) from None
        return np.sort(np.asarray(found, np.int64))

    def contains(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids, allow_negative=True)
        found, _ = self._fetch(np.unique(ids[ids >= 0]), vectors=False)
        return np.isin(ids, found)

    def _fetch(self, unique_ids: np.ndarray, *, vectors: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, their vectors) of those of ``unique_ids`` that are stored."""
        rows = []
        for i in range(0, len(unique_ids), CHUNK):
            rows += self._call("get", self.collection, ids=unique_ids[i:i + CHUNK].tolist(),
                               output_fields=["id", "vector"] if vectors else ["id"],
                               consistency_level=CONSISTENCY)
        rows.sort(key=lambda r: r["id"])
        found = np.asarray([r["id"] for r in rows], np.int64)
        if not vectors:
            return found, np.empty((0, self.dim), np.float32)
        stacked = np.asarray([r["vector"] for r in rows], np.float32).reshape(len(rows), self.dim)
        return found, stacked

    def get(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids, allow_negative=True)
        found, vectors = self._fetch(np.unique(ids[ids >= 0]))
        present = np.isin(ids, found)
        if not present.all():
            missing = np.unique(ids[~present])
            shown = ", ".join(map(str, missing[:5].tolist())) + (", ..." if len(missing) > 5 else "")
            raise UnknownIdError(f"{len(missing)} id(s) not in the vector store: {shown}", ids=missing)
        return vectors[np.searchsorted(found, ids)]

    def search(
        self, queries: np.ndarray, k: int, *, allow_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries, k = search_args(queries, k, self.dim)
        distances, found = empty_result(len(queries), k)
        limit = min(k, MAX_TOP_K)
        if limit == 0 or len(queries) == 0:
            return distances, found
        filters = [""]
        if allow_ids is not None:
            allowed = np.unique(as_ids(allow_ids, allow_negative=True))
            allowed = allowed[allowed >= 0]
            if len(allowed) == 0:
                return distances, found
            filters = [f"id in [{','.join(map(str, allowed[i:i + FILTER_CHUNK].tolist()))}]"
                       for i in range(0, len(allowed), FILTER_CHUNK)]
        parts = []
        for expression in filters:
            hits = self._call("search", self.collection, data=[q.tolist() for q in queries], limit=limit,
                              filter=expression, output_fields=["id"], consistency_level=CONSISTENCY,
                              search_params={"metric_type": "L2"})
            part_d, part_i = empty_result(len(queries), limit)
            for row, row_hits in enumerate(hits):
                row_hits = list(row_hits)
                part_i[row, :len(row_hits)] = [h["id"] for h in row_hits]
                part_d[row, :len(row_hits)] = np.sqrt(np.maximum([h["distance"] for h in row_hits], 0))
            parts.append((part_d, part_i))
        if len(parts) == 1:
            distances[:, :limit], found[:, :limit] = parts[0]
            return distances, found
        from audiosim.stores.base import merge_results

        return merge_results(parts, k)

    # --- writing ------------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = add_args(ids, vectors, self.dim)
        keep = last_occurrence(ids) if len(ids) else ids
        ids, vectors = ids[keep], vectors[keep]
        for i in range(0, len(ids), CHUNK):
            rows = [{"id": row_id, "vector": vector} for row_id, vector in
                    zip(ids[i:i + CHUNK].tolist(), vectors[i:i + CHUNK])]
            self._call("upsert", self.collection, data=rows)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(as_ids(ids, allow_negative=True))
        present, _ = self._fetch(ids[ids >= 0], vectors=False)
        for i in range(0, len(present), CHUNK):
            self._call("delete", self.collection, ids=present[i:i + CHUNK].tolist())
        return len(present)

    def save(self) -> None:
        """Milvus persists every write itself; a flush seals the growing segment on a server."""
        if not self.is_lite:
            self._call("flush", self.collection)
        else:
            self._check_open()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._client.close()
                except Exception:  # noqa: BLE001 - closing must not fail
                    pass
                if self.is_lite:
                    _release_lite(self.uri)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"vector store {self.collection} at {redact_url(self.uri)} is closed")

    def _error(self, exc: BaseException) -> StoreError:
        return StoreError(f"the Milvus store {redact_url(self.uri)} failed: {_reason(exc)}")


def drop_collection(name: str, *, uri: str, prefix: str = "audiosim") -> None:
    """Delete the collection of store ``name`` whatever it holds (``verify --repair``, ``store rebuild``)."""
    store = MilvusStore.__new__(MilvusStore)  # no schema checks: the collection may be of another dimension
    store.uri, store.collection, store._closed = uri, f"{prefix}_{name}", False
    store.is_lite = not uri.startswith(("http://", "https://", "tcp://", "grpc://"))
    store._lock = threading.Lock()
    try:
        with _quiet_iterator_logs():
            store._client = pymilvus.MilvusClient(uri=uri, timeout=15)
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"cannot reach the Milvus store {redact_url(uri)}: {_reason(exc)}") from None
    if store.is_lite:
        _retain_lite(uri)
    try:
        if store._call("has_collection", store.collection):
            store._call("drop_collection", store.collection)
    finally:
        store.close()


# Milvus Lite runs inside this process, one server per file, holding the file's lock until released; a
# library opens two stores on one file, so the server is released when the last of them closes.
_lite_users: dict[str, int] = {}
_lite_lock = threading.Lock()


def _retain_lite(uri: str) -> None:
    with _lite_lock:
        _lite_users[uri] = _lite_users.get(uri, 0) + 1


def _release_lite(uri: str, *, opened: bool = True) -> None:
    with _lite_lock:
        users = _lite_users.get(uri, 0) - (1 if opened else 0)
        if users > 0:
            _lite_users[uri] = users
            return
        _lite_users.pop(uri, None)
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_server(uri)


@contextlib.contextmanager
def _quiet_iterator_logs():
    """Milvus Lite lacks the timestamp call pymilvus' query iterator tries first; both log the (harmless)
    failure with a traceback on every call, which a user should not see."""
    loggers = [logging.getLogger(name) for name in ("grpc._server", "pymilvus", "pymilvus.milvus_client",
                                                    "milvus_lite")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    lines = message.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
