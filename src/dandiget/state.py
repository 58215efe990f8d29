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
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .plan import LocalStat, StateRecord

log = logging.getLogger("dandiget")

STATE_DIR = ".dandiget"
STATE_FILE = "state.sqlite"
SCHEMA_VERSION = 1
FLUSH_EVERY = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if self.readonly and not self.path.exists():
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._open()
        except sqlite3.DatabaseError as e:
            if self.readonly:
                return None
            bad = self.path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
            log.warning("Local state %s is damaged (%s); moved aside to %s and starting over",
                        self.path, e, bad.name)
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
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute("SELECT count(*) FROM files").fetchone()  # detect damage now
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        return conn

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
            conn = self._connect()
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
            conn = self._connect()
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
        self.path = root / STATE_DIR / "lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        import fcntl

        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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
