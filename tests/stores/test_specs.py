"""Store specs as a user types them, and the message when a backend's extra is not installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from audiosim.errors import StoreError
from audiosim.stores import parse_store_spec


@pytest.mark.parametrize(("spec", "backend", "option", "value"), [
    ("faiss", "faiss", None, None),
    (None, "faiss", None, None),
    ("annoy", "annoy", None, None),
    ("milvus:///srv/lib/vectors.db", "milvus", "uri", "/srv/lib/vectors.db"),
    ("http://milvus.lan:19530", "milvus", "uri", "http://milvus.lan:19530"),
    ("https://milvus.lan:19530?prefix=studio", "milvus", "prefix", "studio"),
    ("postgresql://me@db.lan/sounds", "pgvector", "url", "postgresql://me@db.lan/sounds"),
    ("postgresql+psycopg://me@db.lan/sounds?prefix=lib2", "pgvector", "url", "postgresql://me@db.lan/sounds"),
])
def test_specs_name_a_backend_and_its_location(spec, backend, option, value):
    parsed = parse_store_spec(spec)
    assert parsed.backend == backend
    if option:
        assert parsed.options[option] == value


def test_a_relative_milvus_lite_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parsed = parse_store_spec("milvus://lib/vectors.db")
    assert parsed.options["uri"] == str(tmp_path / "lib" / "vectors.db")
    assert parse_store_spec(parsed.text).options == parsed.options  # the remembered text reopens the same


@pytest.mark.parametrize("spec", ["weaviate://x", "qdrant", "milvus://", "postgresql://x?prefix=1bad"])
def test_a_bad_spec_says_what_is_accepted(spec):
    with pytest.raises(StoreError, match="faiss, annoy|names no file|bad prefix"):
        parse_store_spec(spec)


def test_passwords_stay_out_of_the_location():
    assert "secret" not in parse_store_spec("postgresql://me:secret@db.lan/sounds").location


@pytest.mark.parametrize(("backend", "module", "extra"), [
    ("annoy", "annoy", "annoy"), ("milvus", "pymilvus", "milvus"), ("pgvector", "psycopg", "pgvector")])
def test_a_missing_extra_is_named(tmp_path, backend, module, extra):
    code = (f"import sys; sys.modules[{module!r}] = None\n"  # as if the package were not installed
            "from audiosim.stores import open_store\n"
            f"open_store({backend!r}, path={str(tmp_path)!r}, name='segments', dim=4, "
            + ("uri='x.db'" if backend == "milvus" else "url='postgresql://x/y'" if backend == "pgvector" else "")
            + ")\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"pip install 'audiosim[{extra}]'" in proc.stderr
