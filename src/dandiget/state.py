"""Local state: what dandiget verified, so re-runs decide without reading a byte.

One SQLite database per download root, at ``<output_dir>/.dandiget/state.sqlite``. For
every file dandiget verified (blob or Zarr entry) it records the digest the bytes matched
and the file's stat signature (size, mtime_ns, inode, ctime_ns) right after commit. A later
run trusts the record only while the signature is unchanged, so a file edited, replaced
or touched since is re-examined the documented way. The hidden folder is skipped by sync
and by ``dandi upload`` (which ignores dot-names).

Writes are batched in one transaction per flush; WAL journaling means a crash loses at most
the last unflushed batch, never the database. Deleting the database only makes the next
run slower, never wrong; a damaged one is set aside and rebuilt.

Nothing is created by reading: ``.dandiget/`` appears with the first write (a run that fails
before writing a file leaves the output folder as it was), and holds a ``.gitignore`` of
``*`` so that a download into a git/DataLad dataset shows no untracked files.

The schema version is SQLite's ``PRAGMA user_version``. A database from an older dandiget
is upgraded in place (:data:`_MIGRATIONS`); one this code cannot read (a newer version, an
unknown layout) is set aside under another name and rebuilt, never misread.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .plan import LocalStat, StateRecord

log = logging.getLogger("dandiget")

STATE_DIR = ".dandiget"
STATE_FILE = "state.sqlite"
#: ``PRAGMA user_version`` of the schema below. 0 is a database without one: either new and
#: empty, or written before the version moved there (it then says ``meta.schema = '1'``).
SCHEMA_VERSION = 1
FLUSH_EVERY = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,      -- posix path relative to the download root
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    algo TEXT NOT NULL,         -- dandi-etag | md5
    digest TEXT NOT NULL,
    asset_id TEXT,
    verified REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS zarrs (
    path TEXT PRIMARY KEY,
    zarr_id TEXT NOT NULL,
    checksum TEXT NOT NULL,
    entries INTEGER NOT NULL,
    verified REAL NOT NULL
);
-- Hash of every file's stat signature in a verified Zarr: one comparison instead of one
-- record per entry decides that a Zarr is untouched (a separate table so that databases
-- written before it keep working).
CREATE TABLE IF NOT EXISTS zarr_fingerprints (
    path TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL
);
"""


class _Unreadable(Exception):
    """A state database this version cannot use: it is set aside, not misread."""


def _from_meta_table(conn: sqlite3.Connection) -> None:
    """0 -> 1: databases that kept the version in a ``meta`` table (``schema = '1'``)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return  # a new database
    row = (conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
           if "meta" in tables else None)
    if row is None or row[0] != "1":
        raise _Unreadable(f"unknown layout (tables {sorted(tables)}, schema {row})")
    conn.execute("DROP TABLE meta")  # the version now lives in user_version


#: ``user_version`` -> the step that brings such a database to the next version. Each step
#: runs inside the upgrade transaction; ``_SCHEMA`` then adds any table a step left out.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _from_meta_table}


def state_dir(root: Path) -> Path:
    """``<root>/.dandiget``, created (with its ``.gitignore``) on first use by a writer."""
    d = root / STATE_DIR
    if not d.is_dir():
        d.mkdir(parents=True, exist_ok=True)
    ignore = d / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# dandiget's local state; never part of the dataset\n*\n")
    return d


@dataclass(frozen=True)
class FileRow:
    path: str
    stat: LocalStat
    algo: str
    digest: str
    asset_id: str | None = None


@dataclass(frozen=True)
class ZarrRow:
    zarr_id: str
    checksum: str
    entries: int
    #: ``zarr.tree_fingerprint`` of the local tree when it was verified (None: not kept).
    fingerprint: str | None = None


class LocalState:
    """The state database of one download root. Thread-safe; cheap when unused."""

    def __init__(self, root: Path, *, readonly: bool = False):
        self.root = root
        self.path = root / STATE_DIR / STATE_FILE
        self.readonly = readonly
        self._lock = threading.Lock()
        self._pending: list[tuple[object, ...]] = []
        self._conn: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ lifecycle

    def _connect(self, *, create: bool = False) -> sqlite3.Connection | None:
        """The open database; readers (``create=False``) never create it, writers do."""
        if self._conn is not None:
            return self._conn
        if (self.readonly or not create) and not self.path.exists():
            return None
        try:
            if not self.readonly:
                state_dir(self.root)
            self._conn = self._open()
        except sqlite3.OperationalError as e:  # disk full, locked, read-only: not damage
            log.debug("Running without local state at %s: %s", self.path, e)
            return None
        except (sqlite3.DatabaseError, _Unreadable) as e:
            if self.readonly:
                return None
            unreadable = isinstance(e, _Unreadable)
            bad = self.path.with_name(
                f"{STATE_FILE}.{'unreadable' if unreadable else 'corrupt'}-{int(time.time())}")
            log.warning("Local state %s is %s (%s); moved aside to %s and starting over",
                        self.path, "not readable by this dandiget" if unreadable else "damaged",
                        e, bad.name)
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists():
                    os.replace(p, Path(str(bad) + suffix))
            self._conn = self._open()
        except OSError as e:  # read-only folder and the like: run without state
            log.debug("No local state at %s: %s", self.path, e)
            return None
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                               timeout=30)
        try:
            if not self.readonly:  # (the journal mode is written into the file)
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise _Unreadable(f"schema version {version} is newer than this dandiget's "
                                  f"{SCHEMA_VERSION}")
            if version < SCHEMA_VERSION:
                if self.readonly:
                    raise _Unreadable(f"schema version {version} needs an upgrade")
                self._upgrade(conn)
            conn.execute("SELECT count(*) FROM files").fetchone()  # detect damage now
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _upgrade(conn: sqlite3.Connection) -> None:
        """Run the migrations from the database's version to ours, all or nothing."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            # read again under the write lock: another process may have upgraded it
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            while version < SCHEMA_VERSION:
                _MIGRATIONS[version](conn)
                version += 1
            for stmt in _SCHEMA.split(";"):  # executescript would COMMIT first
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ------------------------------------------------------------------ files

    def load_prefix(self, prefix: str, *, blobs_only: bool = False) -> dict[str, StateRecord]:
        """Every file record at or below ``prefix`` (a relative folder path, "" for all).

        ``blobs_only`` leaves out Zarr entries (recorded with md5; blobs with dandi-etag):
        a dandiset-wide preload then costs per asset, not per chunk, and each Zarr loads
        its own entries only when it is not skipped whole.
        """
        where = " AND algo != 'md5'" if blobs_only else ""
        with self._lock:
            conn = self._connect()
            if conn is None:
                return {}
            try:
                if prefix:
                    lo = prefix.rstrip("/") + "/"
                    hi = lo[:-1] + "0"  # "/" + 1
                    rows = conn.execute(
                        "SELECT path,size,mtime_ns,ino,ctime_ns,algo,digest FROM files "
                        "WHERE path >= ? AND path < ?" + where, (lo, hi)).fetchall()
                else:
                    rows = conn.execute(
                        "SELECT path,size,mtime_ns,ino,ctime_ns,algo,digest FROM files"
                        + (" WHERE" + where.removeprefix(" AND") if where else "")
                    ).fetchall()
            except sqlite3.DatabaseError as e:
                log.warning("Could not read local state: %s", e)
                return {}
        return {r[0]: StateRecord((r[1], r[2], r[3], r[4]), (r[5], r[6])) for r in rows}

    def recorded_bytes(self, prefix: str) -> int:
        """Sum of the sizes recorded at or below the folder ``prefix`` ("" for all): what a
        verified earlier run already put there, without walking the tree."""
        with self._lock:
            conn = self._connect()
            if conn is None:
                return 0
            try:
                if prefix:
                    lo = prefix.rstrip("/") + "/"
                    row = conn.execute("SELECT sum(size) FROM files WHERE path >= ? AND path < ?",
                                       (lo, lo[:-1] + "0")).fetchone()
                else:
                    row = conn.execute("SELECT sum(size) FROM files").fetchone()
            except sqlite3.DatabaseError:
                return 0
        return int(row[0] or 0)

    def get(self, path: str) -> StateRecord | None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return None
            try:
                r = conn.execute("SELECT size,mtime_ns,ino,ctime_ns,algo,digest FROM files "
                                 "WHERE path = ?", (path,)).fetchone()
            except sqlite3.DatabaseError:
                return None
        return StateRecord((r[0], r[1], r[2], r[3]), (r[4], r[5])) if r else None

    def record(self, row: FileRow) -> None:
        """Queue a verified file; written at the next flush."""
        if self.readonly:
            return
        s = row.stat
        with self._lock:
            self._pending.append((row.path, s.size, s.mtime_ns, s.ino, s.ctime_ns, row.algo,
                                  row.digest, row.asset_id, time.time()))
            n = len(self._pending)
        if n >= FLUSH_EVERY:
            self.flush()

    def forget(self, paths: Iterable[str]) -> None:
        self.flush()
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            conn.execute("BEGIN")
            for p in paths:
                conn.execute("DELETE FROM files WHERE path = ? OR (path >= ? AND path < ?)",
                             (p, p + "/", p + "0"))
                conn.execute("DELETE FROM zarrs WHERE path = ?", (p,))
                conn.execute("DELETE FROM zarr_fingerprints WHERE path = ?", (p,))
            conn.execute("COMMIT")

    def flush(self) -> None:
        with self._lock:
            if not self._pending:
                return
            conn = self._connect(create=True)
            pending, self._pending = self._pending, []
            if conn is None:
                return
            try:
                conn.execute("BEGIN")
                conn.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)",
                                 pending)
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                log.warning("Could not update local state: %s", e)

    # ------------------------------------------------------------------ zarrs

    def get_zarr(self, path: str) -> ZarrRow | None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return None
            r = conn.execute("SELECT z.zarr_id,z.checksum,z.entries,f.fingerprint FROM zarrs z "
                             "LEFT JOIN zarr_fingerprints f ON f.path = z.path "
                             "WHERE z.path = ?", (path,)).fetchone()
        return ZarrRow(r[0], r[1], r[2], r[3]) if r else None

    def record_zarr(self, path: str, zarr_id: str, checksum: str, entries: int,
                    fingerprint: str | None = None) -> None:
        if self.readonly:
            return
        self.flush()
        with self._lock:
            conn = self._connect(create=True)
            if conn is None:
                return
            conn.execute("BEGIN")
            try:
                conn.execute("INSERT OR REPLACE INTO zarrs VALUES (?,?,?,?,?)",
                             (path, zarr_id, checksum, entries, time.time()))
                if fingerprint is None:
                    conn.execute("DELETE FROM zarr_fingerprints WHERE path = ?", (path,))
                else:
                    conn.execute("INSERT OR REPLACE INTO zarr_fingerprints VALUES (?,?)",
                                 (path, fingerprint))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def rel_to_root(root: Path, path: Path) -> str:
    """Posix path of ``path`` relative to the state root."""
    return path.relative_to(root).as_posix()


class OutputLock:
    """One dandiget process at a time per download root (an advisory ``flock``).

    A second process waits (saying so every 10 s) instead of racing the first one over
    the same temporary files; the caller polls :meth:`try_acquire` so Ctrl-C still works.
    """

    def __init__(self, root: Path):
        self.root = root
        self.path = root / STATE_DIR / "lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        import fcntl

        if self._fd is None:
            state_dir(self.root)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)
        return True

    def holder(self) -> str:
        if self._fd is None:
            return "?"
        return os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
