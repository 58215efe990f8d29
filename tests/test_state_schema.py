"""The state database's schema version (``PRAGMA user_version``): an older database is
upgraded and still trusted; a newer or unknown one is set aside and rebuilt, never misread."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

import dandiget.digests
from dandiget.download import download
from dandiget.state import SCHEMA_VERSION, STATE_DIR, STATE_FILE

#: The tables as dandiget wrote them before the version moved to user_version (schema 1 in a
#: ``meta`` table); ``with_fingerprints=False`` is the still older layout without them.
OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, algo TEXT NOT NULL, digest TEXT NOT NULL,
    asset_id TEXT, verified REAL NOT NULL);
CREATE TABLE zarrs (path TEXT PRIMARY KEY, zarr_id TEXT NOT NULL, checksum TEXT NOT NULL,
    entries INTEGER NOT NULL, verified REAL NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
"""


def count_reads(monkeypatch) -> list[str]:
    """Record every file whose content dandiget reads (to hash it)."""
    reads: list[str] = []
    real = dandiget.digests._read_chunks

    def counting(path, *a, **kw):
        reads.append(str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(dandiget.digests, "_read_chunks", counting)
    return reads


def rebuild(db: Path, schema: str, user_version: int,
            rows: Callable[[sqlite3.Connection], None] | None = None) -> None:
    """Replace ``db`` by a real database of another format holding the same file records."""
    with sqlite3.connect(db) as cur:
        files = cur.execute("SELECT * FROM files").fetchall()
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.executescript(schema)
    if rows is None:
        conn.executemany("INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?)", files)
    else:
        rows(conn)
    conn.execute(f"PRAGMA user_version = {user_version}")
    conn.commit()
    conn.close()


@pytest.fixture
def downloaded(text_archive, dandi_url, tmp_path) -> tuple[str, Path]:
    url = f"{dandi_url}/000001"
    download(url, tmp_path, format="plain")
    return url, tmp_path / STATE_DIR / STATE_FILE


@pytest.fixture
def n_blobs(text_archive) -> int:
    return len(text_archive.expected_files("000001"))


def user_version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


@pytest.mark.parametrize("fingerprints", [True, False])
def test_older_database_is_upgraded_and_trusted(downloaded, monkeypatch, fingerprints) -> None:
    url, db = downloaded
    schema = OLD_SCHEMA + ("CREATE TABLE zarr_fingerprints (path TEXT PRIMARY KEY, "
                           "fingerprint TEXT NOT NULL);" if fingerprints else "")
    rebuild(db, schema, 0)
    reads = count_reads(monkeypatch)
    r = download(url, db.parent.parent, format="plain", existing="overwrite-different")
    assert r.ok and r.files_downloaded == 0 and r.files_skipped == 5
    assert reads == []  # the records of the old database were used
    assert user_version(db) == SCHEMA_VERSION
    with sqlite3.connect(db) as conn:
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"files", "zarrs", "zarr_fingerprints"}
    assert list(db.parent.glob(f"{STATE_FILE}.*-*")) == []  # nothing set aside


def test_newer_database_is_set_aside_not_misread(downloaded, n_blobs, monkeypatch, caplog) -> None:
    url, db = downloaded
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    reads = count_reads(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="dandiget"):
        r = download(url, db.parent.parent, format="plain", existing="overwrite-different")
    assert r.ok and r.files_downloaded == 0 and r.files_skipped == 5
    assert len(reads) == n_blobs  # every file hashed: its records were not trusted
    assert "not readable by this dandiget" in caplog.text
    aside = list(db.parent.glob(f"{STATE_FILE}.unreadable-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))]
    kept = next(p for p in aside if not p.name.endswith(("-wal", "-shm")))
    assert user_version(kept) == SCHEMA_VERSION + 1  # kept for the newer dandiget
    assert user_version(db) == SCHEMA_VERSION
    reads.clear()  # the rebuilt database is trusted on the next run
    r = download(url, db.parent.parent, format="plain", existing="overwrite-different")
    assert r.ok and r.files_skipped == 5 and reads == []


def test_unknown_layout_is_set_aside(downloaded, n_blobs, monkeypatch) -> None:
    """Version 0 with tables but no ``meta.schema``: not ours, so not read."""
    url, db = downloaded

    def bogus(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO files VALUES ('000001/file.txt', 1, 2, 3, 4, 'x', 'y')")

    rebuild(db, "CREATE TABLE files (path TEXT, size INT, mtime_ns INT, ino INT, "
                "ctime_ns INT, algo TEXT, digest TEXT);", 0, bogus)
    reads = count_reads(monkeypatch)
    r = download(url, db.parent.parent, format="plain", existing="overwrite-different")
    assert r.ok and r.files_skipped == 5 and len(reads) == n_blobs
    assert list(db.parent.glob(f"{STATE_FILE}.unreadable-*"))
    assert user_version(db) == SCHEMA_VERSION


def test_dry_run_neither_upgrades_nor_trusts_an_old_database(downloaded, monkeypatch) -> None:
    url, db = downloaded
    rebuild(db, OLD_SCHEMA, 0)
    before = db.read_bytes()
    r = download(url, db.parent.parent, format="plain", existing="overwrite-different",
                 dry_run=True)
    assert r.ok and r.files_downloaded == 0
    assert user_version(db) == 0 and db.read_bytes() == before
